/*
 * The login rate limiter (src/app/ratelimit.c): a burst, then refusals with a
 * Retry-After, refills over time, keys independent, bounded memory.
 */
#include <stdio.h>

#include "app/ratelimit.h"
#include "check.h"

int main(void)
{
    tc_ratelimit *rl = tc_ratelimit_new(3, 6, 64); /* 3 at once, then one per 10 s */
    REQUIRE(rl != NULL);
    int retry = 0;
    uint64_t t = 1000000;
    for (int i = 0; i < 3; i++)
        CHECK(tc_ratelimit_take(rl, "ip:1", t, &retry));
    CHECK(!tc_ratelimit_take(rl, "ip:1", t, &retry));
    CHECK(retry >= 9 && retry <= 11);
    CHECK(tc_ratelimit_take(rl, "ip:2", t, &retry)); /* another key is independent */
    CHECK(!tc_ratelimit_take(rl, "ip:1", t + 5000, &retry));
    CHECK(tc_ratelimit_take(rl, "ip:1", t + 10001, &retry)); /* refilled one */
    CHECK(!tc_ratelimit_take(rl, "ip:1", t + 10002, &retry));
    /* many keys: the table stays bounded and keeps working */
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "ip:k%d", i);
        CHECK(tc_ratelimit_take(rl, key, t + 20000 + (uint64_t)i, &retry));
    }
    tc_ratelimit_free(rl);
    tc_ratelimit_free(NULL);
    return check_report();
}

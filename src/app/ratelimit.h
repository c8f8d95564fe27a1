/*
 * A token-bucket rate limiter keyed by short strings ("ip:127.0.0.1",
 * "email:a@b.co"), in process memory, safe from any thread. Bounded: at most
 * `capacity` keys are tracked; when full, the least recently refilled bucket
 * is forgotten (which can only make the limiter more lenient for that key,
 * never lock anyone out). Used for login, as the per-process half of the limit:
 * auth.c also takes a token from the bucket all instances share in Redis
 * (tc_rate_take), and this one is what holds when Redis cannot answer.
 */
#ifndef TC_APP_RATELIMIT_H
#define TC_APP_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct tc_ratelimit tc_ratelimit;

/* burst tokens, refilled at per_minute tokens a minute. */
tc_ratelimit *tc_ratelimit_new(int burst, int per_minute, int capacity);
void tc_ratelimit_free(tc_ratelimit *rl);
/* Takes one token for key at time now_ms; false when none is left, with
 * *retry_after_s set to the seconds until one is. */
bool tc_ratelimit_take(tc_ratelimit *rl, const char *key, uint64_t now_ms, int *retry_after_s);

#endif

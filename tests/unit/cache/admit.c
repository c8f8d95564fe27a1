/*
 * Tests src/cache/admit.c, the frequency sketch of L1's admission (TinyLFU). Its estimate
 * of a key is never below the times the key was added (until a halving), stops at 15, and
 * for keys never added is 0 or nearly (a count-min sketch only overestimates, through
 * collisions); after 10 additions per entry of its table every counter is halved, so old
 * popularity fades.
 * l1.c's tests prove what admission does with it (tests/unit/cache/l1.c).
 */
#include <stdio.h>

#include "cache/internal.h"
#include "check.h"

static uint64_t H(int i)
{
    char k[32];
    int n = snprintf(k, sizeof(k), "key:%d", i);
    return tc__hash(k, (size_t)n);
}

static void test_counts_and_saturates(void)
{
    tc__sketch s;
    REQUIRE(tc__sketch_init(&s, 1024) == 0);
    for (int i = 0; i < 100; i++)
        for (int n = 0; n < i % 16; n++)
            tc__sketch_add(&s, H(i), 1024);
    int below = 0;
    for (int i = 0; i < 100; i++)
        below += tc__sketch_freq(&s, H(i)) < (unsigned)(i % 16);
    CHECK_EQ_INT(below, 0); /* never an underestimate */
    for (int n = 0; n < 40; n++)
        tc__sketch_add(&s, H(7), 1024);
    CHECK_EQ_INT(tc__sketch_freq(&s, H(7)), 15); /* 4-bit counters stop at 15 */
    int seen = 0;
    for (int i = 1000; i < 2000; i++) /* never added */
        seen += tc__sketch_freq(&s, H(i)) > 0;
    CHECK(seen < 30); /* few collisions: 700 additions over 4 x 4096 counters */
    tc__sketch_free(&s);
}

static void test_halves_after_period(void)
{
    tc__sketch s;
    REQUIRE(tc__sketch_init(&s, 64) == 0);
    for (int n = 0; n < 12; n++)
        tc__sketch_add(&s, H(1), 64); /* a table of 64 entries: halves every 640 */
    CHECK_EQ_INT(tc__sketch_freq(&s, H(1)), 12);
    /* other keys' additions until the 640th: H(1) is halved once */
    for (int i = 2; s.additions < 639; i++)
        tc__sketch_add(&s, H(i % 400 + 2), 64);
    unsigned before = tc__sketch_freq(&s, H(1));
    CHECK(before >= 12);
    tc__sketch_add(&s, H(100000), 64); /* the 640th addition */
    unsigned after = tc__sketch_freq(&s, H(1));
    CHECK(after == before / 2);
    CHECK(s.additions <= 320);
    /* a small table halves no more often than every 160 additions */
    tc__sketch t;
    REQUIRE(tc__sketch_init(&t, 64) == 0);
    for (int n = 0; n < 4; n++)
        tc__sketch_add(&t, H(1), 2);
    for (int i = 2; t.additions < 159; i++)
        tc__sketch_add(&t, H(i + 1000), 2);
    CHECK_EQ_INT(tc__sketch_freq(&t, H(1)), 4);
    tc__sketch_add(&t, H(99999), 2);
    CHECK_EQ_INT(tc__sketch_freq(&t, H(1)), 2);
    tc__sketch_free(&t);
    tc__sketch_free(&s);
}

int main(void)
{
    test_counts_and_saturates();
    test_halves_after_period();
    return check_report();
}

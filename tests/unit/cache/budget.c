/* budget.c: the L2 budget's count of what this instance holds in Redis (src/cache/budget.c),
 * on a clock the test moves: records fit until a limit, the one past it is refused (and says
 * so once), a record counts until its TTL has passed (rounded up, never down), and room comes
 * back as records expire (said once). */
#include "cache/internal.h"
#include "check.h"

#define S 1000ull /* ms */

static void keys_limit(void)
{
    uint64_t now = 1000 * S, bytes, keys;
    tc__budget *b = tc__budget_new(0, 3, now);
    REQUIRE(b != NULL);
    CHECK_EQ_INT(tc__budget_take(b, now, 100, 60 * S), TC__BUDGET_OK);
    CHECK_EQ_INT(tc__budget_take(b, now, 100, 60 * S), TC__BUDGET_OK);
    CHECK_EQ_INT(tc__budget_take(b, now, 100, 600 * S), TC__BUDGET_OK);
    CHECK_EQ_INT(tc__budget_take(b, now, 1, 60 * S), TC__BUDGET_NOW_FULL); /* said once */
    CHECK_EQ_INT(tc__budget_take(b, now, 1, 60 * S), TC__BUDGET_FULL);
    tc__budget_read(b, now, &bytes, &keys);
    CHECK_EQ_INT(keys, 3);
    CHECK_EQ_INT(bytes, 300);
    /* Never released early: just before 60 s the two first still count. */
    CHECK_EQ_INT(tc__budget_take(b, now + 59 * S, 1, 60 * S), TC__BUDGET_FULL);
    /* Past their TTL and the rounding up to a 16 s bucket: room for two. */
    CHECK_EQ_INT(tc__budget_take(b, now + 100 * S, 1, 60 * S), TC__BUDGET_BACK);
    CHECK_EQ_INT(tc__budget_take(b, now + 100 * S, 1, 60 * S), TC__BUDGET_OK);
    CHECK_EQ_INT(tc__budget_take(b, now + 100 * S, 1, 60 * S), TC__BUDGET_NOW_FULL);
    /* Long idle (longer than the ring): everything expired. */
    tc__budget_read(b, now + 100000 * S, &bytes, &keys);
    CHECK_EQ_INT(keys, 0);
    CHECK_EQ_INT(bytes, 0);
    tc__budget_free(b);
}

static void bytes_limit(void)
{
    uint64_t now = 5 * S, bytes, keys;
    tc__budget *b = tc__budget_new(1000, 0, now);
    REQUIRE(b != NULL);
    CHECK_EQ_INT(tc__budget_take(b, now, 600, 10 * S), TC__BUDGET_OK);
    CHECK_EQ_INT(tc__budget_take(b, now, 401, 10 * S), TC__BUDGET_NOW_FULL);
    CHECK_EQ_INT(tc__budget_take(b, now, 400, 10 * S), TC__BUDGET_BACK); /* exactly full fits */
    tc__budget_read(b, now, &bytes, &keys);
    CHECK_EQ_INT(bytes, 1000);
    CHECK_EQ_INT(keys, 2);
    /* A TTL longer than the ring (36 h) is counted until the ring's end, not dropped. */
    CHECK_EQ_INT(tc__budget_take(b, now + 60 * S, 1, 200000 * S), TC__BUDGET_OK); /* 55 h */
    tc__budget_read(b, now + 30 * 3600 * S, &bytes, &keys);
    CHECK_EQ_INT(keys, 1);
    tc__budget_free(b);
    CHECK(tc__budget_new(0, 0, now) == NULL); /* no limits: no budget */
}

int main(void)
{
    keys_limit();
    bytes_limit();
    return check_report();
}

/*
 * Tests src/cache/topk.c (hot keys and hot tags, issue 11 part 3) and what the engine
 * shows of it (tc_hot_snapshot). Under a known stream — a few heavy names counted 3000,
 * 1500, 800, 400 and 200 times among 5,000 names counted once, in a shuffled order — the
 * top five are exactly the heavy names, in order, and each count is within its error of
 * the truth (never below it): Space-Saving's promise for every name counted more than
 * total / slots times (10,900 / 64 = 170 here). Four threads counting at once, each on a stripe of
 * its own, add up exactly (nothing skipped). A stripe halves its counts after 2^16 counts. A long
 * name is cut, not overrun. Through the engine: the keys read most (mostly L1 hits, via
 * tc_get_or_load and tc_peek) and the tags invalidated most come first, with their counts.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/internal.h"
#include "check.h"

static void add(tc__topk *t, const char *name)
{
    tc__topk_add(t, name, strlen(name), tc__hash(name, strlen(name)));
}

static const char *const HEAVY[] = {"user:1", "blog:post:intro", "session:ab", "plan:pro",
                                    "user:2"};
static const int WEIGHT[] = {3000, 1500, 800, 400, 200};
#define NHEAVY 5
#define NOISE 5000

typedef struct event {
    int heavy; /* index into HEAVY, or -1: noise number n */
    int n;
} event;

/* The stream: every heavy count and NOISE distinct names, shuffled (a fixed seed). */
static event *stream(int *len)
{
    int n = NOISE;
    for (int i = 0; i < NHEAVY; i++)
        n += WEIGHT[i];
    event *e = malloc(sizeof(*e) * (size_t)n);
    int k = 0;
    for (int i = 0; i < NHEAVY; i++)
        for (int j = 0; j < WEIGHT[i]; j++)
            e[k++] = (event){i, 0};
    for (int j = 0; j < NOISE; j++)
        e[k++] = (event){-1, j};
    uint64_t x = 0x2545f4914f6cdd1dull;
    for (int i = n - 1; i > 0; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int j = (int)(x % (uint64_t)(i + 1));
        event t = e[i];
        e[i] = e[j];
        e[j] = t;
    }
    *len = n;
    return e;
}

static void feed(tc__topk *t, const event *e, int n)
{
    char name[32];
    for (int i = 0; i < n; i++) {
        if (e[i].heavy >= 0) {
            add(t, HEAVY[e[i].heavy]);
        } else {
            snprintf(name, sizeof(name), "noise:%d", e[i].n);
            add(t, name);
        }
    }
}

static void test_top_of_a_known_stream(void)
{
    tc__topk *t = tc__topk_new(16);
    REQUIRE(t != NULL);
    int n;
    event *e = stream(&n);
    feed(t, e, n);
    tc_hot_item top[TC_HOT_MAX];
    uint64_t total, skipped;
    int k = tc__topk_read(t, top, TC_HOT_MAX, &total, &skipped);
    CHECK_EQ_INT(k, TC_HOT_MAX);
    CHECK_EQ_INT(total, (uint64_t)n);
    CHECK_EQ_INT(skipped, 0);
    for (int i = 0; i < NHEAVY; i++) {
        CHECK_EQ_STR(top[i].name, HEAVY[i]);
        if (!CHECK(top[i].count >= (uint64_t)WEIGHT[i] &&
                   top[i].count - top[i].error <= (uint64_t)WEIGHT[i]))
            fprintf(stderr, "    %s: count %llu error %llu, true %d\n", top[i].name,
                    (unsigned long long)top[i].count, (unsigned long long)top[i].error, WEIGHT[i]);
    }
    for (int i = NHEAVY; i < k; i++) /* the rest: noise, counted below the least heavy */
        CHECK(strncmp(top[i].name, "noise:", 6) == 0 && top[i].count < 200);
    free(e);
    tc__topk_free(t);
    tc__topk_free(NULL);
}

typedef struct counter_arg {
    tc__topk *t;
    const event *e;
    int n;
} counter_arg;

static void *count_run(void *arg)
{
    counter_arg *a = arg;
    for (int i = 0; i < a->n; i++)
        if (a->e[i].heavy >= 0)
            add(a->t, HEAVY[a->e[i].heavy]);
    return NULL;
}

static void test_threads_add_up(void)
{
    tc__topk *t = tc__topk_new(16);
    REQUIRE(t != NULL);
    int n;
    event *e = stream(&n);
    pthread_t th[4];
    counter_arg a = {t, e, n};
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&th[i], NULL, count_run, &a) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    tc_hot_item top[TC_HOT_MAX];
    uint64_t total, skipped;
    int k = tc__topk_read(t, top, TC_HOT_MAX, &total, &skipped);
    CHECK_EQ_INT(k, NHEAVY);
    CHECK_EQ_INT(skipped, 0); /* each thread had a stripe of its own */
    for (int i = 0; i < k; i++) {
        CHECK_EQ_STR(top[i].name, HEAVY[i]);
        CHECK_EQ_INT(top[i].count, 4 * WEIGHT[i]); /* few names: exact */
        CHECK_EQ_INT(top[i].error, 0);
    }
    free(e);
    tc__topk_free(t);
}

static void test_halving_and_long_names(void)
{
    tc__topk *t = tc__topk_new(1);
    REQUIRE(t != NULL);
    char longname[300];
    memset(longname, 'k', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    for (int i = 0; i < 100; i++)
        add(t, longname);
    for (int i = 0; i < (1 << 16) - 101; i++)
        add(t, "other");
    tc_hot_item top[TC_HOT_MAX];
    uint64_t total, skipped;
    CHECK_EQ_INT(tc__topk_read(t, top, TC_HOT_MAX, &total, &skipped), 2);
    CHECK_EQ_INT(total, (1 << 16) - 1);
    CHECK_EQ_INT(strlen(top[1].name), TC_HOT_NAME_MAX - 1);
    CHECK_EQ_INT(top[1].count, 100);
    add(t, "other"); /* the 2^16th count: every count halves */
    CHECK_EQ_INT(tc__topk_read(t, top, TC_HOT_MAX, &total, &skipped), 2);
    CHECK_EQ_INT(top[1].count, 50);
    CHECK_EQ_INT(total, 1 << 15);
    tc__topk_free(t);
}

static int loader(void *ctx, const char *key, tc_buf *out)
{
    return tc_buf_printf(out, "v:%s", key);
}

static void test_through_the_engine(void)
{
    tc_config cfg;
    tc_config_init(&cfg);
    cfg.redis_host = NULL;
    tc_cache *c = tc_cache_create(&cfg, NULL);
    REQUIRE(c != NULL);
    tc_policy p = {.fresh_ms = 600000, .loader = loader};
    tc_result r;
    static const char *const keys[] = {"user:7", "blog:list", "user:8"};
    static const int reads[] = {40, 20, 10};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < reads[k]; i++) {
            /* the first read loads, the others are L1 hits: half through tc_peek */
            int rc = i % 2 == 1 ? tc_peek(c, keys[k], &p, &r) : tc_get_or_load(c, keys[k], &p, &r);
            REQUIRE(rc == 0);
            tc_value_release(r.value);
        }
    CHECK_EQ_INT(tc_peek(c, "never", &p, &r), TC_ENOTFOUND); /* a miss is no read answered */
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(tc_invalidate_tag(c, "blog"), 0);
    CHECK_EQ_INT(tc_invalidate_key(c, "user:8"), 0);
    tc_hot h;
    tc_hot_snapshot(c, &h);
    CHECK_EQ_INT(h.nkeys, 3);
    for (int k = 0; k < 3 && k < h.nkeys; k++) {
        CHECK_EQ_STR(h.keys[k].name, keys[k]);
        CHECK_EQ_INT(h.keys[k].count, reads[k]);
    }
    CHECK_EQ_INT(h.key_reads, 70);
    CHECK_EQ_INT(h.ntags, 2);
    CHECK_EQ_STR(h.tags[0].name, "blog");
    CHECK_EQ_INT(h.tags[0].count, 3);
    CHECK_EQ_STR(h.tags[1].name, "#user:8");
    CHECK_EQ_INT(h.tag_invalidations, 4);
    CHECK_EQ_INT(h.skipped, 0);
    tc_cache_destroy(c);
}

int main(void)
{
    test_top_of_a_known_stream();
    test_threads_add_up();
    test_halving_and_long_names();
    test_through_the_engine();
    return check_report();
}

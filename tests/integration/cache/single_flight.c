/* single_flight.c: one loader per key across instances, through the short Redis lock
 * (tc_config.lock_ms > 0). Several in-process tc_cache instances stand in for several
 * processes: each has its own in-process single-flight table, so only the Redis lock can
 * keep them from loading the same key at once. They share one loader context, whose
 * counter is the number of loads in total.
 *
 * Proves, from DESIGN.md "The cache engine: what it must get right":
 *   1  get-or-load across processes: with lock_ms > 0, six callers on three instances read
 *      one cold key at once while the loader is slow (it blocks 200 ms on its own): the
 *      loader runs once in total and every caller gets the same bytes and hash. The lock is
 *      <prefix>~l:<key>, with a TTL of at most lock_ms, while the loader runs, and is gone
 *      after. Control: with lock_ms = 0 two instances do load twice (the counter can tell).
 */
#include "common.h"

#define NINST 3
#define PER_INST 2
#define LOCK_MS 5000

static int port;
static char prefix[64];

/* The shared loader context. */
typedef struct slow_source {
    atomic_int loads;
    int delay_ms;       /* block this long on its own (lock test) */
    int rendezvous;     /* or: wait until this many loads have started (control test) */
    char lock_key[160]; /* when set: the lock's PTTL, as seen from inside the loader */
    _Atomic long long lock_pttl;
} slow_source;

static int slow_loader(void *ctx, const char *key, tc_buf *out)
{
    slow_source *s = ctx;
    int n = atomic_fetch_add(&s->loads, 1) + 1;
    if (s->lock_key[0] != '\0') {
        redisContext *r = it_redis(port, 0);
        if (r != NULL) {
            atomic_store(&s->lock_pttl, it_rint(r, "PTTL %s", s->lock_key));
            redisFree(r);
        }
    }
    if (s->rendezvous > 0) {
        int met;
        IT_WAIT_UNTIL(met, atomic_load(&s->loads) >= s->rendezvous, 30000);
        (void)met;
    } else {
        it_sleep_ms(s->delay_ms);
    }
    return tc_buf_printf(out, "%s=load-%d", key, n);
}

typedef struct caller {
    tc_cache *c;
    const tc_policy *p;
    const char *key;
    pthread_barrier_t *start;
    it_read r;
} caller;

static void *caller_main(void *arg)
{
    caller *k = arg;
    pthread_barrier_wait(k->start);
    k->r = it_get_or_load(k->c, k->key, k->p);
    return NULL;
}

/* ncallers threads over ninst instances (round robin) read key at once; results in out. */
static void read_concurrently(tc_cache **inst, int ninst, int ncallers, const tc_policy *p,
                              const char *key, caller *out)
{
    pthread_barrier_t start;
    pthread_t threads[NINST * PER_INST];
    pthread_barrier_init(&start, NULL, (unsigned)ncallers);
    for (int i = 0; i < ncallers; i++) {
        out[i] = (caller){.c = inst[i % ninst], .p = p, .key = key, .start = &start};
        REQUIRE(pthread_create(&threads[i], NULL, caller_main, &out[i]) == 0);
    }
    for (int i = 0; i < ncallers; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
}

static uint64_t total_misses(tc_cache **inst, int n)
{
    uint64_t misses = 0;
    for (int i = 0; i < n; i++) {
        tc_metrics m;
        tc_metrics_snapshot(inst[i], &m);
        for (int j = 0; j < m.nns; j++)
            misses += m.ns[j].misses;
    }
    return misses;
}

static void test_lock_makes_one_load_across_instances(void)
{
    static slow_source src = {.delay_ms = 200};
    snprintf(src.lock_key, sizeof(src.lock_key), "%s~l:report:1", prefix);
    atomic_store(&src.lock_pttl, -100);
    tc_policy p = {.fresh_ms = 60000, .stale_ms = 60000, .loader = slow_loader, .loader_ctx = &src};
    tc_config cfg;
    it_config(&cfg, port, 0, prefix);
    cfg.lock_ms = LOCK_MS;
    tc_cache *inst[NINST];
    for (int i = 0; i < NINST; i++)
        REQUIRE((inst[i] = it_cache(&cfg)) != NULL);

    caller calls[NINST * PER_INST];
    read_concurrently(inst, NINST, NINST * PER_INST, &p, "report:1", calls);
    CHECK_EQ_INT(atomic_load(&src.loads), 1);
    CHECK_EQ_INT(total_misses(inst, NINST), 1);
    for (int i = 0; i < NINST * PER_INST; i++) {
        CHECK_EQ_INT(calls[i].r.rc, 0);
        CHECK_EQ_STR(calls[i].r.data, "report:1=load-1");
        CHECK(calls[i].r.hash == calls[0].r.hash);
    }

    /* The lock was in Redis while the loader ran, and is released. */
    long long pttl = atomic_load(&src.lock_pttl);
    if (!CHECK(pttl > 0 && pttl <= LOCK_MS))
        fprintf(stderr, "    lock PTTL during the load: %lld\n", pttl);
    redisContext *r = it_redis(port, 0);
    REQUIRE(r != NULL);
    CHECK_EQ_INT(it_rint(r, "EXISTS %s", src.lock_key), 0);
    redisFree(r);

    /* Later readers, on any instance, do not load again. */
    for (int i = 0; i < NINST; i++)
        CHECK_EQ_STR(it_get_or_load(inst[i], "report:1", &p).data, "report:1=load-1");
    CHECK_EQ_INT(atomic_load(&src.loads), 1);
    for (int i = 0; i < NINST; i++)
        tc_cache_destroy(inst[i]);
}

static void test_without_lock_each_instance_loads(void)
{
    static slow_source src = {.rendezvous = 2};
    tc_policy p = {.fresh_ms = 60000, .stale_ms = 60000, .loader = slow_loader, .loader_ctx = &src};
    tc_config cfg;
    it_config(&cfg, port, 0, prefix);
    cfg.lock_ms = 0;
    tc_cache *inst[2];
    for (int i = 0; i < 2; i++)
        REQUIRE((inst[i] = it_cache(&cfg)) != NULL);
    caller calls[2];
    read_concurrently(inst, 2, 2, &p, "report:2", calls);
    CHECK_EQ_INT(atomic_load(&src.loads), 2);
    CHECK_EQ_INT(calls[0].r.rc, 0);
    CHECK_EQ_INT(calls[1].r.rc, 0);
    for (int i = 0; i < 2; i++)
        tc_cache_destroy(inst[i]);
}

int main(void)
{
    tct_redis own;
    port = it_redis_port(&own);
    REQUIRE(port > 0);
    snprintf(prefix, sizeof(prefix), "it-sf-%ld:", (long)getpid());
    test_lock_makes_one_load_across_instances();
    test_without_lock_each_instance_loads();
    tct_redis_stop(&own);
    return check_report();
}

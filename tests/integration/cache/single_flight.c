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
 *   4  stale-while-revalidate without L1 (TC_POLICY_NO_L1; the same path as while the bus is
 *      down or the entry was evicted): while the one refresh runs, its loader held shut, the
 *      other callers get the stale record from L2 at once instead of waiting for it; then the
 *      new value; the loader ran once for the refresh.
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

/* A loader that blocks while its gate is shut (30 s at most). */
typedef struct gate_source {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    atomic_int loads;
    char version[16];
} gate_source;

static int gate_loader(void *ctx, const char *key, tc_buf *out)
{
    gate_source *g = ctx;
    atomic_fetch_add(&g->loads, 1);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&g->lock);
    while (!g->open && pthread_cond_timedwait(&g->cond, &g->lock, &until) == 0)
        ;
    int rc = tc_buf_printf(out, "%s=%s", key, g->version);
    pthread_mutex_unlock(&g->lock);
    return rc;
}

static void gate_set(gate_source *g, bool open, const char *version)
{
    pthread_mutex_lock(&g->lock);
    g->open = open;
    snprintf(g->version, sizeof(g->version), "%s", version);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void test_stale_from_l2_while_refreshing(void)
{
    it_clock clk;
    it_clock_init(&clk);
    tc_config cfg;
    it_config(&cfg, port, 0, prefix);
    cfg.clock = it_clock_fn;
    cfg.clock_ctx = &clk;
    tc_cache *c = it_cache(&cfg);
    REQUIRE(c != NULL);
    gate_source g = {.open = true, .version = "v1"};
    pthread_mutex_init(&g.lock, NULL);
    pthread_cond_init(&g.cond, NULL);
    tc_policy p = {.fresh_ms = 1000, .stale_ms = 60000, .loader = gate_loader,
                   .loader_ctx = &g, .flags = TC_POLICY_NO_L1};
    const char *key = "swr:no-l1";
    it_read r = it_get_or_load(c, key, &p);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(r.source, TC_SRC_LOADER);
    CHECK_EQ_STR(r.data, "swr:no-l1=v1");

    atomic_fetch_add(&clk.ms, 1500); /* past its fresh time, well within its stale time */
    gate_set(&g, false, "v2");
    r = it_get_or_load(c, key, &p); /* stale from L2; starts the refresh, which blocks */
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(r.source, TC_SRC_L2);
    CHECK_EQ_INT(r.stale, 1);
    CHECK_EQ_STR(r.data, "swr:no-l1=v1");
    int started;
    IT_WAIT_UNTIL(started, atomic_load(&g.loads) == 2, IT_DEADLINE_MS);
    CHECK(started);
    for (int i = 0; i < 5; i++) { /* the refresh is held: these must not wait for it */
        r = it_get_or_load(c, key, &p);
        CHECK_EQ_INT(r.rc, 0);
        CHECK_EQ_INT(r.source, TC_SRC_L2);
        CHECK_EQ_INT(r.stale, 1);
        CHECK_EQ_STR(r.data, "swr:no-l1=v1");
    }
    CHECK_EQ_INT(atomic_load(&g.loads), 2);
    gate_set(&g, true, "v2");
    r = it_read_until(c, key, &p, "swr:no-l1=v2", IT_DEADLINE_MS, NULL);
    CHECK_EQ_STR(r.data, "swr:no-l1=v2");
    CHECK_EQ_INT(r.stale, 0);
    CHECK_EQ_INT(atomic_load(&g.loads), 2); /* one refresh, nothing else loaded */
    tc_cache_destroy(c);
    pthread_cond_destroy(&g.cond);
    pthread_mutex_destroy(&g.lock);
}

int main(void)
{
    tct_redis own;
    port = it_redis_port(&own);
    REQUIRE(port > 0);
    snprintf(prefix, sizeof(prefix), "it-sf-%ld:", (long)getpid());
    test_lock_makes_one_load_across_instances();
    test_without_lock_each_instance_loads();
    test_stale_from_l2_while_refreshing();
    tct_redis_stop(&own);
    return check_report();
}

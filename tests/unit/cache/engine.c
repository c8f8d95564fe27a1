/*
 * Tests the cache engine (src/cache/cache.c) through the public API only, with
 * no Redis (redis_host = NULL: L1 only) and a fake clock the test moves by hand.
 * Proves, one function each, DESIGN.md guarantees:
 *   1   single-flight: N concurrent cold readers, one loader call, one value;
 *   2   an invalidation (tag, key or clear) that lands while a loader runs makes
 *       that loader's result unusable: its caller gets it, the next read reloads;
 *   3   a reader that arrives after an invalidation returned never joins a load
 *       begun before it;
 *   4   fresh -> stale -> expired; stale-while-revalidate with exactly one
 *       background refresh; stale-if-error; past stale the read waits for the
 *       loader, unless its source is down and the entry is in its grace;
 *       XFetch refreshes early while still answering fresh;
 *   5   an invalidated entry is never served stale;
 *   11  exact per-namespace metrics for a scripted sequence;
 * and the validation of keys, tags and policies (TC_EINVAL). And, through the
 * public API, the scan-resistant L1 (issue 11, part 4): with l1_admission (the
 * default) a scan of cold keys read through tc_get_or_load costs a hot set
 * that is still being read no miss; with l1_admission = 0 the same reads miss
 * (the knob works, and the test can fail); kept-out entries are counted.
 *
 * The fake clock decides every result; real time only bounds waits
 * (DEADLINE_MS), and a wait that runs out is a failed CHECK, never a hang.
 */
#define _GNU_SOURCE /* syscall(SYS_gettid) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "tiercache/cache.h"

#define DEADLINE_MS 10000
#define T0 1700000000000ull /* the fake clock's start */
#define FRESH 1000
#define STALE 5000

/* ---- real time: only for deadlines ---------------------------------------- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Once one wait has run out the test has failed: later waits are short, so a
 * broken engine fails in seconds rather than hitting ctest's timeout. */
static atomic_bool expired;

static uint64_t deadline_ms(void)
{
    return atomic_load(&expired) ? 200 : DEADLINE_MS;
}

/* Sleeps 1 ms; false (and the test has failed) once the deadline since t0 has passed. */
static bool tick(uint64_t t0)
{
    nanosleep(&(struct timespec){0, 1000000}, NULL);
    if (mono_ms() - t0 < deadline_ms())
        return true;
    atomic_store(&expired, true);
    return false;
}

static struct timespec realtime_deadline(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + deadline_ms() * 1000000u;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    return ts;
}

/* ---- the world the cache sees: a clock and a source of truth -------------- */

typedef struct fake_clock {
    _Atomic uint64_t now;
} fake_clock;

static uint64_t fake_now(void *ctx)
{
    return atomic_load(&((fake_clock *)ctx)->now);
}

/* The source of truth behind the loader. A load answers "<key>@<version>",
 * reading the version when it begins (as a database read would). */
typedef struct source {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;        /* loads begun */
    int version;      /* bumped by a "mutation" */
    bool gate_closed; /* while set, loads wait after reading (up to DEADLINE_MS) */
    int fail;         /* nonzero: loads return this code */
    int sleep_ms;     /* real time a load takes (XFetch weighs it) */
} source;

static int loader(void *ctx, const char *key, tc_buf *out)
{
    source *s = ctx;
    pthread_mutex_lock(&s->lock);
    s->calls++;
    int version = s->version;
    pthread_cond_broadcast(&s->cond);
    struct timespec ts = realtime_deadline();
    while (s->gate_closed && pthread_cond_timedwait(&s->cond, &s->lock, &ts) == 0)
        ;
    int fail = s->fail, sleep_ms = s->sleep_ms;
    pthread_mutex_unlock(&s->lock);
    if (sleep_ms > 0)
        nanosleep(&(struct timespec){0, sleep_ms * 1000000L}, NULL);
    if (fail != 0)
        return fail;
    return tc_buf_printf(out, "%s@%d", key, version);
}

static void source_init(source *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static void source_destroy(source *s)
{
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
}

static void set_gate(source *s, bool closed)
{
    pthread_mutex_lock(&s->lock);
    s->gate_closed = closed;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void set_fail(source *s, int code)
{
    pthread_mutex_lock(&s->lock);
    s->fail = code;
    pthread_mutex_unlock(&s->lock);
}

static void mutate(source *s)
{
    pthread_mutex_lock(&s->lock);
    s->version++;
    pthread_mutex_unlock(&s->lock);
}

static int calls(source *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->calls;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* Waits until n loads have begun; false at the deadline. */
static bool wait_calls(source *s, int n)
{
    struct timespec ts = realtime_deadline();
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    while (s->calls < n && rc == 0)
        rc = pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    bool ok = s->calls >= n;
    pthread_mutex_unlock(&s->lock);
    if (!ok)
        atomic_store(&expired, true);
    return ok;
}

/* ---- a cache in its world ------------------------------------------------- */

typedef struct world {
    fake_clock clock;
    source src;        /* behind p */
    source drain_src;  /* behind drain_p */
    tc_policy p;       /* FRESH, STALE, tag "t" */
    tc_policy drain_p; /* see drain() */
    int drains;
    tc_cache *c;
} world;

/* The world outlives its cache: world_free() destroys the cache first. One
 * refresh worker, so drain() can tell when earlier refreshes have finished. */
static void world_init(world *w, double xfetch_beta, int load_sleep_ms)
{
    memset(w, 0, sizeof(*w));
    atomic_store(&w->clock.now, T0);
    source_init(&w->src);
    w->src.sleep_ms = load_sleep_ms;
    source_init(&w->drain_src);
    w->p = (tc_policy){.fresh_ms = FRESH,
                       .stale_ms = STALE,
                       .tags = {"t"},
                       .ntags = 1,
                       .xfetch_beta = xfetch_beta,
                       .loader = loader,
                       .loader_ctx = &w->src};
    w->drain_p = (tc_policy){
        .fresh_ms = 0, .stale_ms = 1u << 30, .loader = loader, .loader_ctx = &w->drain_src};
    tc_config cfg;
    tc_config_init(&cfg);
    cfg.redis_host = NULL;
    cfg.refresh_workers = 1;
    cfg.wait_timeout_ms = 6 * DEADLINE_MS; /* waiters outlast any wait of ours */
    cfg.clock = fake_now;
    cfg.clock_ctx = &w->clock;
    int err = 0;
    w->c = tc_cache_create(&cfg, &err);
    REQUIRE(w->c != NULL);
}

static void world_free(world *w)
{
    set_gate(&w->src, false); /* a failed test must not leave a refresh blocked */
    tc_cache_destroy(w->c);
    source_destroy(&w->src);
    source_destroy(&w->drain_src);
}

static void advance(world *w, uint64_t ms)
{
    atomic_fetch_add(&w->clock.now, ms);
}

static void set_now(world *w, uint64_t t)
{
    atomic_store(&w->clock.now, t);
}

/* ---- answers ---------------------------------------------------------------- */

/* A tc_result copied out (value as a string) and released. */
typedef struct answer {
    int rc;
    char value[64];
    tc_source source;
    int stale;
    int64_t ttl_ms, age_ms;
} answer;

static answer answer_of(int rc, tc_result *r)
{
    answer a = {
        .rc = rc, .source = r->source, .stale = r->stale, .ttl_ms = r->ttl_ms, .age_ms = r->age_ms};
    if (rc == 0 && r->value != NULL)
        snprintf(a.value, sizeof(a.value), "%.*s", (int)r->value->len, r->value->data);
    tc_value_release(r->value);
    return a;
}

static answer load(world *w, const char *key)
{
    tc_result r;
    return answer_of(tc_get_or_load(w->c, key, &w->p, &r), &r);
}

static answer get(world *w, const char *key)
{
    tc_result r;
    return answer_of(tc_get(w->c, key, &w->p, &r), &r);
}

static answer peek(world *w, const char *key)
{
    tc_result r;
    return answer_of(tc_peek(w->c, key, &w->p, &r), &r);
}

/* Checks an answer: rc 0, the value, where it came from, whether stale. */
#define CHECK_ANSWER(expr, val, src, is_stale)                                                     \
    do {                                                                                           \
        answer check__ans = (expr);                                                                \
        CHECK_EQ_INT(check__ans.rc, 0);                                                            \
        CHECK_EQ_STR(check__ans.value, (val));                                                     \
        CHECK_EQ_INT(check__ans.source, (src));                                                    \
        CHECK_EQ_INT(check__ans.stale, (is_stale));                                                \
    } while (0)

/* ---- metrics ---------------------------------------------------------------- */

/* The counters of namespace name (all zero if it has none yet). */
static tc_ns_metrics ns_of(tc_cache *c, const char *name)
{
    static tc_metrics m; /* only the main thread reads metrics */
    tc_metrics_snapshot(c, &m);
    tc_ns_metrics out = {0};
    for (int i = 0; i < m.nns; i++)
        if (strcmp(m.ns[i].name, name) == 0)
            out = m.ns[i];
    return out;
}

static uint64_t ns_field(tc_cache *c, const char *name, size_t off)
{
    tc_ns_metrics m = ns_of(c, name);
    return *(const uint64_t *)((const char *)&m + off);
}

static uint64_t l1_entries(tc_cache *c)
{
    static tc_metrics m;
    tc_metrics_snapshot(c, &m);
    return m.l1_entries;
}

/* Waits until a namespace counter reaches n; false at the deadline. */
#define WAIT_NS(c, name, field, n) wait_ns((c), (name), offsetof(tc_ns_metrics, field), (n))
static bool wait_ns(tc_cache *c, const char *name, size_t off, uint64_t n)
{
    uint64_t t0 = mono_ms();
    while (ns_field(c, name, off) < n)
        if (!tick(t0))
            return false;
    return true;
}

/*
 * Waits until every background refresh queued before the call has run to its
 * end. The cache has one refresh worker, which runs jobs in order; so once a
 * refresh queued now has run, every earlier job has returned. The refresh is
 * of a new key "drain:<n>" whose policy has fresh_ms = 0: its first read
 * loads it, its second is stale and queues exactly one refresh.
 */
static bool drain(world *w)
{
    char key[32];
    snprintf(key, sizeof(key), "drain:%d", ++w->drains);
    for (int i = 0; i < 2; i++) {
        tc_result r;
        if (tc_get_or_load(w->c, key, &w->drain_p, &r) == 0)
            tc_value_release(r.value);
    }
    return WAIT_NS(w->c, "drain", refreshes, (uint64_t)w->drains);
}

/* ---- readers on their own threads ----------------------------------------- */

typedef struct reader {
    world *w;
    const char *key;
    pthread_t th;
    atomic_int tid;
    atomic_int state; /* 0 starting, 1 in tc_get_or_load, 2 returned */
    answer a;
} reader;

static void *reader_run(void *arg)
{
    reader *r = arg;
    atomic_store(&r->tid, (int)syscall(SYS_gettid));
    atomic_store(&r->state, 1);
    r->a = load(r->w, r->key);
    atomic_store(&r->state, 2);
    return NULL;
}

static void reader_start(reader *r, world *w, const char *key)
{
    r->w = w;
    r->key = key;
    atomic_store(&r->state, 0);
    REQUIRE(pthread_create(&r->th, NULL, reader_run, r) == 0);
}

/* Waits until n readers have returned; false at the deadline. */
static bool readers_returned(reader *r, int n)
{
    uint64_t t0 = mono_ms();
    for (int i = 0; i < n; i++)
        while (atomic_load(&r[i].state) != 2)
            if (!tick(t0))
                return false;
    return true;
}

/* The scheduler state of a thread of this process ('R', 'S', ...); 0 if unknown. */
static char thread_state(int tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* after "pid (comm)" */
    return p != NULL && p[1] == ' ' ? p[2] : 0;
}

/*
 * Waits until n readers are inside tc_get_or_load and all asleep, on three
 * looks in a row. With the loader held at its gate, a reader can only sleep
 * for long waiting for the load in flight: the locks on the way there are
 * held by running threads, for a moment. So once all sleep, all have joined.
 */
static bool readers_asleep(reader *r, int n)
{
    uint64_t t0 = mono_ms();
    for (int streak = 0; streak < 3;) {
        int asleep = 0;
        for (int i = 0; i < n; i++) {
            char st = atomic_load(&r[i].state) == 1 ? thread_state(atomic_load(&r[i].tid)) : 'R';
            asleep += st == 'S' || st == 0; /* unknown (no /proc): do not wait forever */
        }
        streak = asleep == n ? streak + 1 : 0;
        if (!tick(t0))
            return false;
    }
    return true;
}

/* ---- invalidation kinds ------------------------------------------------------ */

typedef enum inval { BY_TAG, BY_KEY, BY_CLEAR } inval;
static const char *const inval_name[] = {"tc_invalidate_tag", "tc_invalidate_key", "tc_clear"};

static int invalidate(world *w, inval how, const char *key)
{
    switch (how) {
    case BY_TAG:
        return tc_invalidate_tag(w->c, "t");
    case BY_KEY:
        return tc_invalidate_key(w->c, key);
    default:
        return tc_clear(w->c);
    }
}

static void begin(const char *test, const char *variant)
{
    printf("-- %s%s%s\n", test, variant != NULL ? " / " : "", variant != NULL ? variant : "");
    fflush(stdout);
}

/* ==== guarantee 4: fresh, stale, expired ====================================== */

static void test_fresh_stale_expired(void)
{
    begin(__func__, NULL);
    world w;
    world_init(&w, 0, 0);
    answer a = load(&w, "item:1");
    CHECK_ANSWER(a, "item:1@0", TC_SRC_LOADER, 0);
    CHECK_EQ_INT(a.ttl_ms, FRESH);
    CHECK_EQ_INT(a.age_ms, 0);
    mutate(&w.src); /* the source moves on; the cache keeps its copy until it expires */

    advance(&w, FRESH - 1); /* the last fresh millisecond */
    a = load(&w, "item:1");
    CHECK_ANSWER(a, "item:1@0", TC_SRC_L1, 0);
    CHECK_EQ_INT(a.ttl_ms, 1);
    CHECK_EQ_INT(a.age_ms, FRESH - 1);

    /* tc_get: the same entry without starting a refresh, so it stays put. */
    advance(&w, 1); /* fresh_until: stale from here */
    a = get(&w, "item:1");
    CHECK_ANSWER(a, "item:1@0", TC_SRC_L1, 1);
    CHECK_EQ_INT(a.ttl_ms, 0);
    advance(&w, STALE - 1); /* the last stale millisecond */
    a = get(&w, "item:1");
    CHECK_ANSWER(a, "item:1@0", TC_SRC_L1, 1);
    CHECK_EQ_INT(a.ttl_ms, -(STALE - 1));
    CHECK_EQ_INT(a.age_ms, FRESH + STALE - 1);
    CHECK(drain(&w));
    CHECK_EQ_INT(calls(&w.src), 1); /* tc_get ran no refresh */

    advance(&w, 1); /* stale_until: expired */
    CHECK_EQ_INT(get(&w, "item:1").rc, TC_ENOTFOUND);
    CHECK_EQ_INT(peek(&w, "item:1").rc, TC_ENOTFOUND);
    a = load(&w, "item:1");
    CHECK_ANSWER(a, "item:1@1", TC_SRC_LOADER, 0);
    CHECK_EQ_INT(a.ttl_ms, FRESH);
    CHECK_EQ_INT(calls(&w.src), 2);

    tc_ns_metrics m = ns_of(w.c, "item");
    CHECK_EQ_INT(m.misses, 2);
    CHECK_EQ_INT(m.l1_hits, 3);
    CHECK_EQ_INT(m.stale_served, 2);
    CHECK_EQ_INT(m.refreshes, 0);
    world_free(&w);
}

/* ==== guarantee 4: stale-while-revalidate ===================================== */

#define SWR_READERS 12

static void test_stale_while_revalidate_one_refresh(void)
{
    begin(__func__, NULL);
    world w;
    world_init(&w, 0, 0);
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_LOADER, 0);
    mutate(&w.src);
    set_gate(&w.src, true); /* the refresh will be held at the gate */
    advance(&w, FRESH + 10);

    /* Many readers at once: each gets the stale value at once, while the one
     * refresh is still held. */
    reader r[SWR_READERS];
    for (int i = 0; i < SWR_READERS; i++)
        reader_start(&r[i], &w, "item:1");
    CHECK(readers_returned(r, SWR_READERS));
    CHECK(wait_calls(&w.src, 2)); /* the refresh has begun, and is held */
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_L1, 1);
    CHECK_EQ_INT(calls(&w.src), 2);

    set_gate(&w.src, false);
    for (int i = 0; i < SWR_READERS; i++) {
        pthread_join(r[i].th, NULL);
        CHECK_ANSWER(r[i].a, "item:1@0", TC_SRC_L1, 1);
    }
    CHECK(WAIT_NS(w.c, "item", refreshes, 1));

    /* After the refresh: fresh, with the new value, from L1. */
    answer a = load(&w, "item:1");
    CHECK_ANSWER(a, "item:1@1", TC_SRC_L1, 0);
    CHECK_EQ_INT(a.ttl_ms, FRESH);
    CHECK(drain(&w));
    CHECK_EQ_INT(calls(&w.src), 2); /* one load, exactly one refresh */
    tc_ns_metrics m = ns_of(w.c, "item");
    CHECK_EQ_INT(m.refreshes, 1);
    CHECK_EQ_INT(m.stale_served, SWR_READERS + 1);
    CHECK_EQ_INT(m.misses, 1);
    CHECK_EQ_INT(m.refresh_dropped, 0);
    world_free(&w);
}

/* ==== guarantee 4: stale-if-error ============================================= */

static void test_stale_if_error(void)
{
    begin(__func__, NULL);
    world w;
    world_init(&w, 0, 0);
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_LOADER, 0);
    set_fail(&w.src, -42);
    advance(&w, FRESH + 10);

    /* The refresh fails: the stale value is still served. */
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_L1, 1);
    CHECK(WAIT_NS(w.c, "item", load_errors, 1));
    CHECK(drain(&w));
    CHECK_EQ_INT(calls(&w.src), 2);
    advance(&w, 500); /* within the retry pause: served, no new refresh */
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_L1, 1);
    CHECK(drain(&w));
    CHECK_EQ_INT(calls(&w.src), 2);
    advance(&w, 1000); /* past it: served, and the refresh is tried again, and fails */
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_L1, 1);
    CHECK(drain(&w));
    CHECK_EQ_INT(calls(&w.src), 3);

    /* The stale time ends: the read waits for the loader, which fails: an error. */
    set_now(&w, T0 + FRESH + STALE);
    CHECK_EQ_INT(load(&w, "item:1").rc, -42);
    CHECK_EQ_INT(get(&w, "item:1").rc, TC_ENOTFOUND);
    CHECK_EQ_INT(calls(&w.src), 4);

    set_fail(&w.src, 7); /* a loader code that is not negative becomes TC_ELOAD */
    CHECK_EQ_INT(load(&w, "item:1").rc, TC_ELOAD);

    set_fail(&w.src, 0); /* the source is back */
    mutate(&w.src);
    CHECK_ANSWER(load(&w, "item:1"), "item:1@1", TC_SRC_LOADER, 0);
    tc_ns_metrics m = ns_of(w.c, "item");
    CHECK_EQ_INT(m.load_errors, 4);
    CHECK_EQ_INT(m.stale_served, 3);
    CHECK_EQ_INT(m.refreshes, 0);
    world_free(&w);
}

/* ==== guarantee 4: past stale, the read waits ================================= */

/* Past fresh + stale, an entry in its grace is served only while the loader says
 * its source is unavailable (TC_EUNAVAILABLE), and the loader is asked again at
 * most once a second meanwhile; any other failure, the grace's end, or an
 * invalidation ends it. */
static void test_grace_when_the_source_is_down(void)
{
    begin(__func__, NULL);
    world w;
    world_init(&w, 0, 0);
    w.p.grace_ms = 10000;
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_LOADER, 0);
    CHECK_ANSWER(load(&w, "item:2"), "item:2@0", TC_SRC_LOADER, 0);
    set_fail(&w.src, TC_EUNAVAILABLE);
    advance(&w, FRESH + STALE + 10); /* past stale, in grace */

    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_L1, 1); /* asked, down: grace */
    CHECK_EQ_INT(calls(&w.src), 3);
    advance(&w, 500); /* within the second: served without asking */
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_L1, 1);
    CHECK_EQ_INT(calls(&w.src), 3);
    advance(&w, 600); /* past it: asked again, still down: grace again */
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_L1, 1);
    CHECK_EQ_INT(calls(&w.src), 4);

    /* Another failure is not "down": the grace does not answer it. */
    set_fail(&w.src, -42);
    CHECK_EQ_INT(load(&w, "item:2").rc, -42);
    set_fail(&w.src, TC_EUNAVAILABLE);

    /* Invalidated means gone, grace or not. */
    CHECK_EQ_INT(tc_invalidate_key(w.c, "item:2"), 0);
    CHECK_EQ_INT(load(&w, "item:2").rc, TC_EUNAVAILABLE);

    /* The grace ends. */
    set_now(&w, T0 + FRESH + STALE + 10000);
    CHECK_EQ_INT(load(&w, "item:1").rc, TC_EUNAVAILABLE);

    set_fail(&w.src, 0); /* the source is back */
    mutate(&w.src);
    CHECK_ANSWER(load(&w, "item:1"), "item:1@1", TC_SRC_LOADER, 0);
    world_free(&w);
}

static void test_past_stale_waits_for_loader(void)
{
    begin(__func__, NULL);
    world w;
    world_init(&w, 0, 0);
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_LOADER, 0);
    mutate(&w.src);
    advance(&w, FRESH + STALE);
    set_gate(&w.src, true);
    reader r;
    reader_start(&r, &w, "item:1");
    CHECK(wait_calls(&w.src, 2));
    CHECK(atomic_load(&r.state) != 2); /* it cannot answer before the loader does */
    set_gate(&w.src, false);
    pthread_join(r.th, NULL);
    CHECK_ANSWER(r.a, "item:1@1", TC_SRC_LOADER, 0);
    CHECK_EQ_INT(r.a.ttl_ms, FRESH);
    CHECK_EQ_INT(ns_of(w.c, "item").stale_served, 0);
    world_free(&w);
}

/* ==== guarantee 4: XFetch ====================================================== */

static void test_xfetch_early_refresh(void)
{
    begin(__func__, NULL);
    world w;
    /* Loads take >= 5 ms (the engine measures them on its monotonic clock, not the
     * fake one), and beta is so large that a read near the end of fresh refreshes. */
    world_init(&w, 1e9, 5);
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_LOADER, 0);
    mutate(&w.src);
    advance(&w, FRESH - 1);
    answer a = load(&w, "item:1");
    CHECK_ANSWER(a, "item:1@0", TC_SRC_L1, 0); /* still fresh, the current value */
    CHECK_EQ_INT(a.ttl_ms, 1);
    CHECK(WAIT_NS(w.c, "item", refreshes, 1));
    CHECK(drain(&w));
    CHECK_EQ_INT(calls(&w.src), 2); /* that one read: one refresh */
    /* Read with tc_get: with this beta any tc_get_or_load would refresh again. */
    a = get(&w, "item:1");
    CHECK_ANSWER(a, "item:1@1", TC_SRC_L1, 0);
    CHECK_EQ_INT(a.ttl_ms, FRESH);
    CHECK_EQ_INT(ns_of(w.c, "item").stale_served, 0);
    world_free(&w);

    /* Control: with xfetch_beta 0 the same read refreshes nothing. */
    world_init(&w, 0, 5);
    load(&w, "item:1");
    advance(&w, FRESH - 1);
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_L1, 0);
    CHECK(drain(&w));
    CHECK_EQ_INT(calls(&w.src), 1);
    CHECK_EQ_INT(ns_of(w.c, "item").refreshes, 0);
    world_free(&w);
}

/* ==== guarantee 1: single-flight ============================================== */

#define FLIGHT_READERS 16

static void test_single_flight(void)
{
    begin(__func__, NULL);
    world w;
    world_init(&w, 0, 0);
    set_gate(&w.src, true);
    reader r[FLIGHT_READERS];
    for (int i = 0; i < FLIGHT_READERS; i++)
        reader_start(&r[i], &w, "cold:1");
    CHECK(wait_calls(&w.src, 1));
    CHECK(readers_asleep(r, FLIGHT_READERS)); /* the leader in the loader, the rest waiting */
    CHECK_EQ_INT(calls(&w.src), 1);
    set_gate(&w.src, false);
    int same = 0;
    for (int i = 0; i < FLIGHT_READERS; i++) {
        pthread_join(r[i].th, NULL);
        same += r[i].a.rc == 0 && strcmp(r[i].a.value, "cold:1@0") == 0 &&
                r[i].a.source == TC_SRC_LOADER && !r[i].a.stale;
    }
    CHECK_EQ_INT(same, FLIGHT_READERS);
    CHECK_EQ_INT(calls(&w.src), 1);
    tc_ns_metrics m = ns_of(w.c, "cold");
    CHECK_EQ_INT(m.misses, 1);
    CHECK_EQ_INT(m.coalesced, FLIGHT_READERS - 1);
    CHECK_EQ_INT(m.l1_hits, 0);
    world_free(&w);
}

/* tc_await_flight: told when another's load is over, without a thread waiting. */
typedef struct awaited {
    _Atomic int calls, err;
} awaited;

static void on_flight_over(void *arg, int err)
{
    awaited *a = arg;
    atomic_store(&a->err, err);
    atomic_fetch_add(&a->calls, 1);
}

static void test_await_flight(void)
{
    begin(__func__, NULL);
    world w;
    world_init(&w, 0, 0);
    awaited a = {0};
    CHECK_EQ_INT(tc_await_flight(w.c, "cold:2", on_flight_over, &a), TC_ENOTFOUND); /* no load */
    set_gate(&w.src, true);
    reader leader;
    reader_start(&leader, &w, "cold:2");
    CHECK(wait_calls(&w.src, 1));
    CHECK_EQ_INT(tc_await_flight(w.c, "cold:2", on_flight_over, &a), 0);
    CHECK_EQ_INT(tc_await_flight(w.c, "cold:3", on_flight_over, &a), TC_ENOTFOUND); /* another key */
    CHECK_EQ_INT(atomic_load(&a.calls), 0);
    set_gate(&w.src, false);
    pthread_join(leader.th, NULL);
    CHECK_EQ_INT(atomic_load(&a.calls), 1); /* by the leader's thread, before it returned */
    CHECK_EQ_INT(atomic_load(&a.err), 0);
    CHECK_ANSWER(load(&w, "cold:2"), "cold:2@0", TC_SRC_L1, 0); /* stored before the call */
    CHECK_EQ_INT(calls(&w.src), 1);

    /* a failed load: the waiter gets its error */
    awaited b = {0};
    set_fail(&w.src, -42);
    set_gate(&w.src, true);
    reader failing;
    reader_start(&failing, &w, "cold:4");
    CHECK(wait_calls(&w.src, 2));
    CHECK_EQ_INT(tc_await_flight(w.c, "cold:4", on_flight_over, &b), 0);
    set_gate(&w.src, false);
    pthread_join(failing.th, NULL);
    CHECK_EQ_INT(atomic_load(&b.calls), 1);
    CHECK_EQ_INT(atomic_load(&b.err), -42);

    /* a load that began before an invalidation is not awaited: its result is not usable */
    set_fail(&w.src, 0);
    set_gate(&w.src, true);
    reader stale;
    reader_start(&stale, &w, "cold:5");
    CHECK(wait_calls(&w.src, 3));
    CHECK_EQ_INT(tc_invalidate_key(w.c, "cold:5"), 0);
    CHECK_EQ_INT(tc_await_flight(w.c, "cold:5", on_flight_over, &b), TC_ENOTFOUND);
    set_gate(&w.src, false);
    pthread_join(stale.th, NULL);
    CHECK_EQ_INT(atomic_load(&b.calls), 1);
    CHECK_EQ_INT(tc_await_flight(w.c, "", on_flight_over, &b), TC_EINVAL);
    world_free(&w);
}

/* ==== guarantee 2: an invalidation during a load ============================== */

static void invalidation_during_load(inval how)
{
    begin("invalidation_during_load", inval_name[how]);
    world w;
    world_init(&w, 0, 0);
    set_gate(&w.src, true);
    reader first;
    reader_start(&first, &w, "item:1");
    CHECK(wait_calls(&w.src, 1)); /* its loader has read version 0 */
    mutate(&w.src);
    CHECK_EQ_INT(invalidate(&w, how, "item:1"), 0);
    set_gate(&w.src, false);
    pthread_join(first.th, NULL);
    CHECK_ANSWER(first.a, "item:1@0", TC_SRC_LOADER, 0); /* its caller gets it... */

    CHECK_EQ_INT(l1_entries(w.c), 0); /* ...but it was born invalid, so never stored */
    CHECK_EQ_INT(get(&w, "item:1").rc, TC_ENOTFOUND);
    CHECK_ANSWER(load(&w, "item:1"), "item:1@1", TC_SRC_LOADER, 0);
    CHECK_EQ_INT(calls(&w.src), 2);
    CHECK_ANSWER(load(&w, "item:1"), "item:1@1", TC_SRC_L1, 0);
    CHECK_EQ_INT(calls(&w.src), 2);
    world_free(&w);
}

static void test_invalidate_tag_during_load(void)
{
    invalidation_during_load(BY_TAG);
}

static void test_invalidate_key_during_load(void)
{
    invalidation_during_load(BY_KEY);
}

static void test_clear_during_load(void)
{
    invalidation_during_load(BY_CLEAR);
}

/* ==== guarantee 3: no joining a load begun before an invalidation ============ */

static void late_reader_does_not_join(inval how)
{
    begin("late_reader_does_not_join", inval_name[how]);
    world w;
    world_init(&w, 0, 0);
    set_gate(&w.src, true);
    reader first, second;
    reader_start(&first, &w, "item:1");
    CHECK(wait_calls(&w.src, 1));
    mutate(&w.src);
    CHECK_EQ_INT(invalidate(&w, how, "item:1"), 0);
    /* The invalidation has returned: a reader from now on must not get version 0. */
    reader_start(&second, &w, "item:1");
    CHECK(wait_calls(&w.src, 2)); /* it ran its own load instead of joining */
    set_gate(&w.src, false);
    pthread_join(first.th, NULL);
    pthread_join(second.th, NULL);
    CHECK_ANSWER(first.a, "item:1@0", TC_SRC_LOADER, 0);
    CHECK_ANSWER(second.a, "item:1@1", TC_SRC_LOADER, 0);
    CHECK_ANSWER(load(&w, "item:1"), "item:1@1", TC_SRC_L1, 0);
    CHECK_EQ_INT(calls(&w.src), 2);
    CHECK_EQ_INT(ns_of(w.c, "item").coalesced, 0);
    world_free(&w);
}

static void test_late_reader_after_invalidate_tag(void)
{
    late_reader_does_not_join(BY_TAG);
}

static void test_late_reader_after_invalidate_key(void)
{
    late_reader_does_not_join(BY_KEY);
}

static void test_late_reader_after_clear(void)
{
    late_reader_does_not_join(BY_CLEAR);
}

/* ==== guarantee 5: invalidated is never served stale ========================= */

static void invalidated_not_served_stale(inval how)
{
    begin("invalidated_not_served_stale", inval_name[how]);
    world w;
    world_init(&w, 0, 0);
    CHECK_ANSWER(load(&w, "item:1"), "item:1@0", TC_SRC_LOADER, 0);
    advance(&w, FRESH + 10); /* in the stale window: expiry alone would serve it */
    CHECK_ANSWER(get(&w, "item:1"), "item:1@0", TC_SRC_L1, 1);
    mutate(&w.src);
    CHECK_EQ_INT(invalidate(&w, how, "item:1"), 0);
    CHECK_EQ_INT(peek(&w, "item:1").rc, TC_ENOTFOUND);
    CHECK_EQ_INT(get(&w, "item:1").rc, TC_ENOTFOUND);
    answer a = load(&w, "item:1");
    CHECK_ANSWER(a, "item:1@1", TC_SRC_LOADER, 0);
    CHECK_EQ_INT(a.ttl_ms, FRESH);
    CHECK_EQ_INT(calls(&w.src), 2);
    CHECK_EQ_INT(ns_of(w.c, "item").stale_served, 1); /* only the get before */
    world_free(&w);
}

static void test_invalidated_by_tag_not_served_stale(void)
{
    invalidated_not_served_stale(BY_TAG);
}

static void test_invalidated_by_key_not_served_stale(void)
{
    invalidated_not_served_stale(BY_KEY);
}

static void test_cleared_not_served_stale(void)
{
    invalidated_not_served_stale(BY_CLEAR);
}

/* ==== validation ============================================================== */

/* Every read and write of key under p answers TC_EINVAL. */
static int all_einval(world *w, const char *key, const tc_policy *p)
{
    tc_result r;
    int n = 0;
    n += tc_get_or_load(w->c, key, p, &r) == TC_EINVAL;
    n += tc_get(w->c, key, p, &r) == TC_EINVAL;
    n += tc_peek(w->c, key, p, &r) == TC_EINVAL;
    n += tc_set(w->c, key, "v", 1, p) == TC_EINVAL;
    return n == 4;
}

static void test_validation(void)
{
    begin(__func__, NULL);
    world w;
    world_init(&w, 0, 0);
    char too_long[TC_KEY_MAX + 2], longest[TC_KEY_MAX + 1];
    memset(too_long, 'k', TC_KEY_MAX + 1);
    too_long[TC_KEY_MAX + 1] = '\0';
    memcpy(longest, too_long, TC_KEY_MAX);
    longest[TC_KEY_MAX] = '\0';

    /* Keys: empty, too long, NULL, the reserved leading '~'. */
    const char *bad_keys[] = {"", too_long, NULL, "~t:x", "~"};
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        CHECK(all_einval(&w, bad_keys[i], &w.p));
        CHECK_EQ_INT(tc_invalidate_key(w.c, bad_keys[i]), TC_EINVAL);
        CHECK_EQ_INT(tc_delete(w.c, bad_keys[i]), TC_EINVAL);
    }

    /* Tags: the reserved '#...' and '*', too long, empty, NULL. */
    char tag_too_long[TC_TAG_MAX + 2], tag_longest[TC_TAG_MAX + 1];
    memset(tag_too_long, 'g', TC_TAG_MAX + 1);
    tag_too_long[TC_TAG_MAX + 1] = '\0';
    memcpy(tag_longest, tag_too_long, TC_TAG_MAX);
    tag_longest[TC_TAG_MAX] = '\0';
    const char *bad_tags[] = {"#x", "#", "*", tag_too_long, "", NULL};
    for (size_t i = 0; i < sizeof(bad_tags) / sizeof(bad_tags[0]); i++) {
        tc_policy p = w.p;
        p.tags[0] = bad_tags[i];
        CHECK(all_einval(&w, "item:1", &p));
        p.tags[0] = "ok", p.tags[1] = bad_tags[i], p.ntags = 2; /* in any position */
        CHECK(all_einval(&w, "item:1", &p));
        CHECK_EQ_INT(tc_invalidate_tag(w.c, bad_tags[i]), TC_EINVAL);
    }

    /* Too many tags, a negative count, no loader, no policy for tc_set. */
    tc_policy p = w.p;
    p.ntags = TC_TAGS_MAX + 1;
    CHECK(all_einval(&w, "item:1", &p));
    p.ntags = -1;
    CHECK(all_einval(&w, "item:1", &p));
    p = w.p;
    p.loader = NULL;
    tc_result r;
    CHECK_EQ_INT(tc_get_or_load(w.c, "item:1", &p, &r), TC_EINVAL);
    CHECK_EQ_INT(tc_set(w.c, "item:1", "v", 1, NULL), TC_EINVAL);
    CHECK_EQ_INT(tc_set(w.c, "item:1", NULL, 1, &w.p), TC_EINVAL);
    CHECK_EQ_INT(calls(&w.src), 0); /* nothing invalid reached the loader */

    /* The limits themselves are fine. */
    CHECK_EQ_INT(load(&w, longest).rc, 0);
    p = w.p;
    p.ntags = TC_TAGS_MAX;
    for (int i = 0; i < TC_TAGS_MAX; i++)
        p.tags[i] = i == 0 ? tag_longest : i == 1 ? "x#" : i == 2 ? "a*" : "plain";
    CHECK_EQ_INT(tc_get_or_load(w.c, "item:2", &p, &r), 0);
    tc_value_release(r.value);
    CHECK_EQ_INT(tc_invalidate_tag(w.c, tag_longest), 0);
    CHECK_EQ_INT(tc_invalidate_key(w.c, longest), 0);
    CHECK_EQ_INT(calls(&w.src), 2);
    world_free(&w);
}

/* ==== guarantee 11: metrics ================================================== */

static void test_metrics_per_namespace(void)
{
    begin(__func__, NULL);
    world w;
    world_init(&w, 0, 0);
    CHECK_EQ_INT(load(&w, "user:1").source, TC_SRC_LOADER); /* miss */
    CHECK_EQ_INT(load(&w, "user:1").source, TC_SRC_L1);     /* l1 hit */
    advance(&w, FRESH + 500);
    CHECK_EQ_INT(load(&w, "user:1").stale, 1); /* l1 hit, stale served, refresh */
    CHECK(WAIT_NS(w.c, "user", refreshes, 1));
    CHECK(drain(&w));
    CHECK_EQ_INT(load(&w, "user:1").stale, 0);              /* l1 hit, the refreshed entry */
    CHECK_EQ_INT(tc_invalidate_key(w.c, "user:1"), 0);      /* an invalidation */
    CHECK_EQ_INT(load(&w, "user:1").source, TC_SRC_LOADER); /* miss */
    set_fail(&w.src, -42);
    CHECK_EQ_INT(load(&w, "user:2").rc, -42); /* a miss whose load fails: a load error too */
    advance(&w, FRESH + 500);
    CHECK_EQ_INT(load(&w, "user:1").stale, 1); /* l1 hit, stale served; its refresh fails */
    CHECK(WAIT_NS(w.c, "user", load_errors, 2));
    CHECK(drain(&w));
    CHECK_EQ_INT(tc_invalidate_tag(w.c, "t"), 0); /* counted globally, not per key */
    set_fail(&w.src, 0);
    CHECK_EQ_INT(load(&w, "nokey").source, TC_SRC_LOADER); /* "-": miss */
    CHECK_EQ_INT(load(&w, "nokey").source, TC_SRC_L1);     /* "-": l1 hit */
    CHECK_EQ_INT(tc_invalidate_key(w.c, "nokey"), 0);      /* "-": an invalidation */
    CHECK_EQ_INT(tc_clear(w.c), 0);

    tc_ns_metrics u = ns_of(w.c, "user");
    CHECK_EQ_STR(u.name, "user");
    CHECK_EQ_INT(u.l1_hits, 4);
    CHECK_EQ_INT(u.l2_hits, 0);
    CHECK_EQ_INT(u.misses, 3);
    CHECK_EQ_INT(u.coalesced, 0);
    CHECK_EQ_INT(u.stale_served, 2);
    CHECK_EQ_INT(u.refreshes, 1);
    CHECK_EQ_INT(u.refresh_dropped, 0);
    CHECK_EQ_INT(u.load_errors, 2);
    CHECK_EQ_INT(u.invalidations, 1);
    CHECK(u.hit_latency.count <= 1); /* one L1 hit in 16 per thread is timed */
    CHECK_EQ_INT(u.load_latency.count, 5); /* every loader run: 3 misses (one failed), 2 refreshes */

    tc_ns_metrics d = ns_of(w.c, "-");
    CHECK_EQ_STR(d.name, "-");
    CHECK_EQ_INT(d.misses, 1);
    CHECK_EQ_INT(d.l1_hits, 1);
    CHECK_EQ_INT(d.invalidations, 1);
    CHECK_EQ_INT(d.stale_served + d.refreshes + d.load_errors + d.coalesced, 0);

    tc_metrics m;
    tc_metrics_snapshot(w.c, &m);
    CHECK_EQ_INT(m.tag_invalidations, 1);
    CHECK_EQ_INT(m.clears, 1);
    CHECK_EQ_INT(m.l1_entries, 0); /* tc_clear emptied L1 */
    CHECK_EQ_INT(m.breaker_open, 0);
    CHECK_EQ_INT(m.bus_connected, 0);
    int named = 0;
    for (int i = 0; i < m.nns; i++)
        named += strcmp(m.ns[i].name, "user") == 0 || strcmp(m.ns[i].name, "-") == 0 ||
                 strcmp(m.ns[i].name, "drain") == 0;
    CHECK_EQ_INT(named, m.nns); /* no namespace but these */
    CHECK_EQ_INT(m.nns, 3);
    world_free(&w);
}

/* Hot keys missed while 800 cold keys are read through, one hot read every 4. */
static uint64_t hot_misses_during_scan(int admission, uint64_t *rejections)
{
    fake_clock clock;
    atomic_store(&clock.now, T0);
    source src;
    source_init(&src);
    tc_policy p = {.fresh_ms = 1u << 30, .loader = loader, .loader_ctx = &src};
    tc_config cfg;
    tc_config_init(&cfg);
    cfg.redis_host = NULL;
    cfg.clock = fake_now;
    cfg.clock_ctx = &clock;
    cfg.l1_shards = 1;
    cfg.l1_max_bytes = 1u << 20;
    cfg.l1_admission = admission;
    /* the bytes of one entry, from a cache that holds one: then room for 60 */
    tc_cache *c = tc_cache_create(&cfg, NULL);
    REQUIRE(c != NULL);
    tc_result r;
    REQUIRE(tc_get_or_load(c, "hot:00", &p, &r) == 0);
    tc_value_release(r.value);
    tc_metrics m;
    tc_metrics_snapshot(c, &m);
    tc_cache_destroy(c);
    cfg.l1_max_bytes = 60 * m.l1_bytes + m.l1_bytes / 2;
    REQUIRE((c = tc_cache_create(&cfg, NULL)) != NULL);
    char k[16];
    for (int round = 0; round < 8; round++)
        for (int i = 0; i < 30; i++) {
            snprintf(k, sizeof(k), "hot:%02d", i);
            REQUIRE(tc_get_or_load(c, k, &p, &r) == 0);
            tc_value_release(r.value);
        }
    uint64_t before = ns_of(c, "hot").misses;
    for (int i = 0; i < 800; i++) {
        snprintf(k, sizeof(k), "cold:%03d", i); /* the same length as hot keys */
        REQUIRE(tc_get_or_load(c, k, &p, &r) == 0);
        tc_value_release(r.value);
        if (i % 4 == 3) {
            snprintf(k, sizeof(k), "hot:%02d", (i / 4) % 30);
            REQUIRE(tc_get_or_load(c, k, &p, &r) == 0);
            tc_value_release(r.value);
        }
    }
    uint64_t misses = ns_of(c, "hot").misses - before;
    tc_metrics_snapshot(c, &m);
    *rejections = m.l1_rejections;
    tc_cache_destroy(c);
    source_destroy(&src);
    return misses;
}

static void test_scan_resistant_l1(void)
{
    begin(__func__, NULL);
    uint64_t rej_on, rej_off;
    CHECK_EQ_INT(hot_misses_during_scan(1, &rej_on), 0);
    CHECK(hot_misses_during_scan(0, &rej_off) >= 180); /* of 200 hot reads */
    CHECK(rej_on > 500);
    CHECK_EQ_INT(rej_off, 0);
}

int main(void)
{
    test_fresh_stale_expired();
    test_stale_while_revalidate_one_refresh();
    test_stale_if_error();
    test_grace_when_the_source_is_down();
    test_past_stale_waits_for_loader();
    test_xfetch_early_refresh();
    test_single_flight();
    test_await_flight();
    test_invalidate_tag_during_load();
    test_invalidate_key_during_load();
    test_clear_during_load();
    test_late_reader_after_invalidate_tag();
    test_late_reader_after_invalidate_key();
    test_late_reader_after_clear();
    test_invalidated_by_tag_not_served_stale();
    test_invalidated_by_key_not_served_stale();
    test_cleared_not_served_stale();
    test_validation();
    test_metrics_per_namespace();
    test_scan_resistant_l1();
    return check_report();
}

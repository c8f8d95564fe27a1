/*
 * consistency.c — a concurrency checker for the cache engine's invalidation
 * guarantees (DESIGN.md 2, 3, 5, 6): "when a mutation returns, no later read
 * returns the value from before it", under many threads, on two cache
 * instances that share one Redis (L1 + L2 + the invalidation bus each).
 *
 * The source of truth is NKEYS integer versions (atomics). The loader returns
 * "<key index>:<current version>", sometimes after a short random sleep before
 * and/or after reading the version, to widen the window in which an
 * invalidation lands while a load runs. Writers bump a key's version and then
 * invalidate: by key, by the key's own tag, by a group tag shared by NKEYS /
 * NGROUPS keys, or (rarely) tc_clear. Readers call tc_get_or_load (and some
 * tc_get / tc_peek, and some tc_get_or_load with TC_POLICY_NO_L1, which reads
 * through L2 as every read does while the bus is down) and check every answer.
 *
 * What an invalidation covers. A writer reads ("snapshots") the version of
 * every key the call covers (one key, a group, or all keys) just BEFORE the
 * call. Every bump of those keys happened before the call began, so once the
 * call has returned no read that starts later may answer an older version:
 * an entry or L2 record with an older version was loaded before the bump,
 * i.e. with tag generations/versions recorded before the invalidation moved
 * them.
 *
 * The rule checked (per read, per key k, reader on instance r):
 *
 *   bound = max( same[r][k], cross[r][k] )  loaded (acquire) BEFORE the call
 *   assert  bound <= answer <= truth[k]     (truth read AFTER the call)
 *
 *  - same[r][k]: the largest snapshot of k of any invalidation MADE ON r that
 *    has returned (published with a release store after the call returned).
 *    This is the strict read-your-writes rule: no delivery delay is allowed.
 *
 *  - cross[r][k]: the same for invalidations made on the OTHER instance, but
 *    only once r's bus has delivered them. DESIGN.md 3 bounds cross-instance
 *    reads "only by bus delivery", so we must know when a message has been
 *    applied on r. Every invalidation runs exactly one PUBLISH on this test's
 *    own channel (a unique prefix per run, so no other test shares it).
 *    Writers increment `started` before each call and read it again (S)
 *    after the call returns; hence the message's position P in the channel
 *    is <= S. The bus thread of r handles messages one at a time, in channel
 *    order, and increments the metric bus_messages BEFORE applying a message;
 *    so bus_messages >= P + 1 proves message P has been fully applied. One
 *    "watcher" thread per instance polls tc_metrics_snapshot(): with C the
 *    observed bus_messages, it folds every returned invalidation with S < C
 *    (thus P <= S <= C - 1) into cross[r][k] (release). Every step errs on the
 *    lenient side (C is an old value by the time a reader uses it, P <= S, a
 *    message received before r subscribed is not counted), so the rule can
 *    miss a late violation but never flags a correct read.
 *    Caveat: the engine bumps bus_messages with a relaxed atomic, so in the
 *    C11 model "counter seen" does not formally order "message applied"
 *    (the apply happens in another translation unit, before the increment of
 *    the NEXT message; on x86 every atomic RMW is a full barrier anyway).
 *    The check is sound only if Redis calls do not fail (a failed
 *    invalidation is replayed later, publishing a message `started` did not
 *    count): the test uses a generous Redis timeout and requires zero
 *    errors.
 *
 * Stale-while-revalidate (phase 2, fresh 20 ms / stale 200 ms, real clock)
 * uses the same rule: a stale answer is allowed only if no invalidation of it
 * has returned (DESIGN.md 5), i.e. it too must be >= bound. Phase 1 uses
 * fresh 60 s so that expiry never hides a bug.
 *
 * At the end of each phase, once both buses have delivered every message,
 * every key read on both instances must answer exactly its final version.
 *
 * Size: TC_CONSISTENCY_OPS (default 100000; under ThreadSanitizer scaled down
 * to half, never below 20000) operations in all, half per phase. Prints
 * operations, reads checked, violations; zero violations are required.
 * Redis: $TC_REDIS_PORT (scripts/test.sh) or a private redis-server; with
 * TC_TEST_CLUSTER=1 (consistency@cluster) a Redis Cluster: $TC_CLUSTER_NODES
 * or a private one.
 *
 * Faults (TC_CONSISTENCY_FAULT, on a private cluster of 3 masters + 3 replicas,
 * node timeout 1 s; consistency@cluster-kill, consistency@cluster-reshard):
 * once a quarter of phase 1's reads are done, a fault thread
 *   kill-master  SIGKILLs the master that serves the bus's slot (the meta slot,
 *                and a third of the data); its replica takes over; then the
 *                killed node is started again (it rejoins as a replica);
 *   reshard      moves, under load, the meta slot and the slots of half the
 *                phase's keys and tags to another master, one slot at a time
 *                as redis-cli --cluster reshard does (each split 10 ms between
 *                its two masters: ASK), then the meta slot back;
 * and the readers go on until it is done. Zero violations are required, as
 * without a fault. Errors (reads and invalidations that fail) are counted and
 * timed: none before the fault began, and none after the cluster is whole
 * again (every slot served by a running master) plus FAULT_GRACE_MS for this
 * process to learn the new map; they are printed either way. The end-of-phase
 * delivery check is not required across a fault (a bus that lost messages
 * emptied its L1); the exact final reads are.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "redis_cluster.h"
#include "redis_server.h"
#include "tiercache/cache.h"

#if defined(__SANITIZE_THREAD__)
#define TC_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TC_UNDER_TSAN 1
#endif
#endif
#ifndef TC_UNDER_TSAN
#define TC_UNDER_TSAN 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TC_BUILD_KIND "AddressSanitizer build"
#elif TC_UNDER_TSAN
#define TC_BUILD_KIND "ThreadSanitizer build: ops halved"
#else
#define TC_BUILD_KIND "no sanitizer"
#endif

#define NKEYS 64
#define NGROUPS 8
#define NINST 2
#define NREADERS 8 /* reader i runs on instance i % NINST */
#define NWRITERS 2 /* writer i runs on instance i % NINST */
#define RING 16384 /* returned invalidations not yet folded by every watcher */
#define MAX_REPORTS 20
#define FAULT_GRACE_MS 3000 /* after the cluster is whole again: map refresh, breaker probe */

typedef struct keystate {
    _Atomic uint64_t truth;
    _Atomic uint64_t same[NINST];  /* see the top comment */
    _Atomic uint64_t cross[NINST]; /* see the top comment */
    char name[32];
    tc_policy pol, pol_no_l1;
    char tag[24], group[24];
} keystate;

typedef struct phase {
    const char *name; /* also the key namespace: "<name>:<k>" */
    uint32_t fresh_ms, stale_ms;
    int writer_pause_us, reader_pause_us; /* max random pause between operations */
    int group_permille, clear_permille;   /* the rest: half key, half the key's own tag */
    int write_percent;                    /* share of the phase's operations */
    long reads, writes_min, writes_max;
    keystate keys[NKEYS];
} phase;

typedef struct record {
    int k;
    uint64_t v, s;
} record;

static tc_cache *g_cache[NINST];
static phase *g_phase;
static _Atomic uint64_t g_started; /* invalidation calls begun (both instances) */
static _Atomic int g_readers_left;
static _Atomic bool g_stop_watchers;

/* Returned invalidations, for the watchers (writers append, watchers fold). */
static pthread_mutex_t g_ring_lock = PTHREAD_MUTEX_INITIALIZER;
static record g_ring[RING];
static uint64_t g_ring_end;         /* records appended */
static uint64_t g_ring_done[NINST]; /* per watcher: everything before is folded */

/* Results. */
static _Atomic long g_reads, g_checked_same, g_checked_cross, g_unbounded, g_notfound;
static _Atomic long g_writes, g_violations, g_errors, g_inv_errors, g_loads;
static _Atomic int g_reports;

/* Faults (top comment): on a private cluster. Times are monotonic ms; 0: not yet. */
enum { FAULT_NONE, FAULT_KILL_MASTER, FAULT_RESHARD };
static int g_fault;
static tct_cluster g_cluster;
static char g_prefix[64];
static _Atomic bool g_fault_done;
static _Atomic int64_t g_fault_began, g_fault_whole; /* the fault; the cluster whole again */
static _Atomic int64_t g_first_error, g_last_error;
static _Atomic long g_errors_before_fault;

/* ---- small helpers ----------------------------------------------------------------- */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t seed_for(uint64_t i)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t s = ((uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 20)) + i * 0x9e3779b97f4a7c15ull;
    return s | 1;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A read or an invalidation failed: when, relative to the fault. */
static void note_error(void)
{
    int64_t t = now_ms(), none = 0;
    atomic_compare_exchange_strong(&g_first_error, &none, t);
    atomic_store(&g_last_error, t);
    if (atomic_load(&g_fault_began) == 0)
        atomic_fetch_add(&g_errors_before_fault, 1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void atomic_max(_Atomic uint64_t *a, uint64_t v)
{
    uint64_t cur = atomic_load_explicit(a, memory_order_relaxed);
    while (cur < v && !atomic_compare_exchange_weak_explicit(a, &cur, v, memory_order_release,
                                                             memory_order_relaxed))
        ;
}

static uint64_t bus_messages(int inst)
{
    static _Thread_local tc_metrics m; /* ~16 KiB: not on the stack */
    tc_metrics_snapshot(g_cache[inst], &m);
    return m.bus_messages;
}

/* ---- the loader: the source of truth ----------------------------------------------- */

static _Thread_local uint64_t t_seed;

static int loader(void *ctx, const char *key, tc_buf *out)
{
    phase *ph = ctx;
    const char *colon = strchr(key, ':');
    int k = colon != NULL ? atoi(colon + 1) : -1;
    if (k < 0 || k >= NKEYS)
        return TC_ELOAD;
    if (t_seed == 0)
        t_seed = seed_for((uint64_t)(uintptr_t)&t_seed);
    uint64_t r = rnd(&t_seed);
    if ((r & 7) == 0)
        sleep_us((long)(r >> 8) % 200); /* before reading: an invalidation may land first */
    uint64_t v = atomic_load(&ph->keys[k].truth);
    if ((r & 0x38) == 0)
        sleep_us((long)(r >> 24) % 300); /* after reading: the result may be born stale */
    atomic_fetch_add_explicit(&g_loads, 1, memory_order_relaxed);
    return tc_buf_printf(out, "%d:%llu", k, (unsigned long long)v);
}

/* ---- writers ------------------------------------------------------------------------ */

/* Records one returned invalidation that covered keys[] at versions snap[]. */
static void published(int inst, const int *keys, const uint64_t *snap, int n, uint64_t s)
{
    for (int i = 0; i < n; i++)
        atomic_max(&g_phase->keys[keys[i]].same[inst], snap[i]);
    pthread_mutex_lock(&g_ring_lock);
    for (int i = 0; i < n; i++) {
        g_ring[g_ring_end % RING] = (record){keys[i], snap[i], s};
        g_ring_end++;
    }
    pthread_mutex_unlock(&g_ring_lock);
}

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg, inst = id % NINST;
    tc_cache *c = g_cache[inst];
    phase *ph = g_phase;
    uint64_t seed = seed_for(1000 + (uint64_t)id);
    int keys[NKEYS];
    uint64_t snap[NKEYS];
    long n = 0;
    while (n < ph->writes_max && (atomic_load(&g_readers_left) > 0 || n < ph->writes_min)) {
        int k = (int)(rnd(&seed) % NKEYS), r = (int)(rnd(&seed) % 1000), nk = 0, rc;
        /* 0 the key, 1 the key's own tag, 2 the group tag, 3 everything */
        int kind = r < ph->clear_permille                        ? 3
                   : r < ph->clear_permille + ph->group_permille ? 2
                                                                 : 1 - (r & 1);
        atomic_fetch_add(&ph->keys[k].truth, 1);
        if (kind < 2) {
            keys[nk++] = k;
        } else if (kind == 2) {
            for (int j = k % NGROUPS; j < NKEYS; j += NGROUPS)
                keys[nk++] = j;
        } else {
            for (int j = 0; j < NKEYS; j++)
                keys[nk++] = j;
        }
        for (int i = 0; i < nk; i++)
            snap[i] = atomic_load(&ph->keys[keys[i]].truth);
        atomic_fetch_add(&g_started, 1);
        if (kind == 0)
            rc = tc_invalidate_key(c, ph->keys[k].name);
        else if (kind == 1)
            rc = tc_invalidate_tag(c, ph->keys[k].tag);
        else if (kind == 2)
            rc = tc_invalidate_tag(c, ph->keys[k].group);
        else
            rc = tc_clear(c);
        if (rc != 0) {
            atomic_fetch_add(&g_inv_errors, 1);
            atomic_fetch_add(&g_started, 1); /* a replay may publish once more */
            note_error();
            if (atomic_load(&g_inv_errors) <= 5)
                fprintf(stderr, "writer %d: invalidation failed: %s\n", id, tc_strerror(rc));
        } else {
            published(inst, keys, snap, nk, atomic_load(&g_started));
        }
        n++;
        if (ph->writer_pause_us > 0)
            sleep_us((long)(rnd(&seed) % (uint64_t)ph->writer_pause_us));
    }
    atomic_fetch_add(&g_writes, n);
    return NULL;
}

/* ---- watchers: fold delivered invalidations into cross[][] -------------------------- */

static void fold(int inst)
{
    uint64_t delivered = bus_messages(inst); /* C */
    pthread_mutex_lock(&g_ring_lock);
    uint64_t i = g_ring_done[inst];
    if (g_ring_end - i > RING) /* fell behind: skip (only makes the check more lenient) */
        i = g_ring_end - RING;
    bool prefix = true;
    for (; i < g_ring_end; i++) {
        record *r = &g_ring[i % RING];
        if (r->s < delivered)
            atomic_max(&g_phase->keys[r->k].cross[inst], r->v);
        else
            prefix = false;
        if (prefix)
            g_ring_done[inst] = i + 1;
    }
    pthread_mutex_unlock(&g_ring_lock);
}

static void *watcher(void *arg)
{
    int inst = (int)(intptr_t)arg;
    while (!atomic_load(&g_stop_watchers)) {
        fold(inst);
        sleep_us(200);
    }
    fold(inst);
    return NULL;
}

/* ---- readers ------------------------------------------------------------------------ */

static void violation(const char *what, int inst, int k, uint64_t got, uint64_t same,
                      uint64_t cross, uint64_t truth, const tc_result *res)
{
    atomic_fetch_add(&g_violations, 1);
    if (atomic_fetch_add(&g_reports, 1) >= MAX_REPORTS)
        return;
    fprintf(stderr,
            "VIOLATION (%s) phase %s instance %d key %d: got v%llu, bound same=%llu cross=%llu, "
            "truth now %llu; source %s stale %d age %lld ms ttl %lld ms\n",
            what, g_phase->name, inst, k, (unsigned long long)got, (unsigned long long)same,
            (unsigned long long)cross, (unsigned long long)truth,
            res->source == TC_SRC_L1   ? "L1"
            : res->source == TC_SRC_L2 ? "L2"
                                       : "loader",
            res->stale, (long long)res->age_ms, (long long)res->ttl_ms);
}

/* One checked read; op 0 get_or_load, 1 tc_get, 2 tc_peek, 3 get_or_load without L1. */
static void check_read(int inst, int k, int op)
{
    keystate *ks = &g_phase->keys[k];
    uint64_t same = atomic_load_explicit(&ks->same[inst], memory_order_acquire);
    uint64_t cross = atomic_load_explicit(&ks->cross[inst], memory_order_acquire);
    tc_result res;
    int rc = op == 0   ? tc_get_or_load(g_cache[inst], ks->name, &ks->pol, &res)
             : op == 1 ? tc_get(g_cache[inst], ks->name, &ks->pol, &res)
             : op == 2 ? tc_peek(g_cache[inst], ks->name, &ks->pol, &res)
                       : tc_get_or_load(g_cache[inst], ks->name, &ks->pol_no_l1, &res);
    uint64_t truth = atomic_load(&ks->truth);
    atomic_fetch_add_explicit(&g_reads, 1, memory_order_relaxed);
    if (rc == TC_ENOTFOUND && op != 0) {
        atomic_fetch_add_explicit(&g_notfound, 1, memory_order_relaxed);
        return;
    }
    if (rc != 0) {
        atomic_fetch_add(&g_errors, 1);
        note_error();
        if (atomic_load(&g_errors) <= 5)
            fprintf(stderr, "read %s on instance %d: %s\n", ks->name, inst, tc_strerror(rc));
        return;
    }
    int gotk = -1;
    unsigned long long got = 0;
    if (sscanf(res.value->data, "%d:%llu", &gotk, &got) != 2 || gotk != k) {
        violation("garbled value", inst, k, got, same, cross, truth, &res);
    } else {
        if (got < same)
            violation("stale after a returned invalidation on this instance", inst, k, got, same,
                      cross, truth, &res);
        else if (got < cross)
            violation("stale after a delivered invalidation from the other instance", inst, k, got,
                      same, cross, truth, &res);
        if (got > truth)
            violation("version from the future", inst, k, got, same, cross, truth, &res);
        if (same > 0 && same >= cross)
            atomic_fetch_add_explicit(&g_checked_same, 1, memory_order_relaxed);
        else if (cross > 0)
            atomic_fetch_add_explicit(&g_checked_cross, 1, memory_order_relaxed);
        else
            atomic_fetch_add_explicit(&g_unbounded, 1, memory_order_relaxed);
    }
    tc_value_release(res.value);
}

static void *reader(void *arg)
{
    int id = (int)(intptr_t)arg, inst = id % NINST;
    uint64_t seed = seed_for(2000 + (uint64_t)id);
    long n = g_phase->reads / NREADERS;
    /* across a fault: on until it is over */
    for (long i = 0; i < n || (g_fault != FAULT_NONE && !atomic_load(&g_fault_done)); i++) {
        uint64_t r = rnd(&seed);
        /* half the reads on 8 hot keys, so that reads and writes collide */
        int k = (r & 1) ? (int)((r >> 8) % 8) : (int)((r >> 8) % NKEYS);
        int d = (int)((r >> 40) % 10);
        int op = d < 7 ? 0 : d == 7 ? 1 : d == 8 ? 2 : 3;
        check_read(inst, k, op);
        if (g_phase->reader_pause_us > 0)
            sleep_us((long)(rnd(&seed) % (uint64_t)g_phase->reader_pause_us));
    }
    atomic_fetch_sub(&g_readers_left, 1);
    return NULL;
}

/* ---- faults ------------------------------------------------------------------------- */

static long long keyslot(const char *key)
{
    redisReply *rep = tct_cluster_command(&g_cluster, "CLUSTER KEYSLOT %s", key);
    long long slot = rep != NULL && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    return slot;
}

/* The slots of the meta keys (bus, sequence, members): where the bus listens. */
static long long meta_slot(void)
{
    char key[256];
    snprintf(key, sizeof(key), "%s~{%smeta}seq", g_prefix, g_prefix);
    return keyslot(key);
}

static void kill_master(void)
{
    int victim = tct_cluster_master_of(&g_cluster, (unsigned)meta_slot());
    REQUIRE(victim >= 0);
    atomic_store(&g_fault_began, now_ms());
    REQUIRE(tct_cluster_kill(&g_cluster, victim) == 0);
    REQUIRE(tct_cluster_wait_ok(&g_cluster, 60000) == 0); /* its replica took over */
    atomic_store(&g_fault_whole, now_ms());
    printf("fault: killed the master of the meta slot (node %d); the cluster was whole again "
           "%lld ms later\n",
           victim, (long long)(atomic_load(&g_fault_whole) - atomic_load(&g_fault_began)));
    sleep_us(500000);
    REQUIRE(tct_cluster_restart(&g_cluster, victim) == 0); /* it rejoins as a replica */
    REQUIRE(tct_cluster_wait_ok(&g_cluster, 60000) == 0);
}

static void reshard(void)
{
    long long meta = meta_slot();
    int from = tct_cluster_master_of(&g_cluster, (unsigned)meta), to = -1;
    for (unsigned s = 0; s < 16384 && to < 0; s += 1024) { /* another master */
        int m = tct_cluster_master_of(&g_cluster, s);
        if (m != from)
            to = m;
    }
    REQUIRE(from >= 0 && to >= 0 && to != from);
    /* the meta slot, then the slots of half the keys and their tags (and the global tag) */
    long long slots[4 * NKEYS + 2];
    int n = 0;
    slots[n++] = meta;
    char key[256];
    snprintf(key, sizeof(key), "%s~t:*", g_prefix);
    slots[n++] = keyslot(key);
    for (int k = 0; k < NKEYS; k += 2) {
        const char *fmt[] = {"%s%s:%d", "%s~t:#%s:%d", "%s~t:%s-key-%d", "%s~t:%s-group-%d"};
        for (int f = 0; f < 4; f++) {
            snprintf(key, sizeof(key), fmt[f], g_prefix, g_phase->name, f == 3 ? k % NGROUPS : k);
            long long s = keyslot(key);
            int seen = 0;
            for (int i = 0; i < n; i++)
                seen |= slots[i] == s;
            if (!seen && s >= 0)
                slots[n++] = s;
        }
    }
    atomic_store(&g_fault_began, now_ms());
    int moved = 0;
    for (int i = 0; i < n; i++) {
        REQUIRE(tct_cluster_move_slot(&g_cluster, (unsigned)slots[i], to, 10) == 0);
        moved++;
    }
    REQUIRE(tct_cluster_move_slot(&g_cluster, (unsigned)meta, from, 10) == 0); /* and back */
    REQUIRE(tct_cluster_wait_ok(&g_cluster, 60000) == 0);
    atomic_store(&g_fault_whole, now_ms());
    printf("fault: moved %d slots (the meta slot among them) to node %d under load, and the meta "
           "slot back to node %d, in %lld ms\n",
           moved, to, from,
           (long long)(atomic_load(&g_fault_whole) - atomic_load(&g_fault_began)));
}

static void *fault_thread(void *arg)
{
    long target = (long)(intptr_t)arg;
    while (atomic_load(&g_reads) < target)
        sleep_us(1000);
    if (g_fault == FAULT_KILL_MASTER)
        kill_master();
    else
        reshard();
    atomic_store(&g_fault_done, true);
    return NULL;
}

/* ---- phases ------------------------------------------------------------------------- */

static void phase_init(phase *ph)
{
    for (int k = 0; k < NKEYS; k++) {
        keystate *ks = &ph->keys[k];
        atomic_init(&ks->truth, 1);
        for (int i = 0; i < NINST; i++) {
            atomic_init(&ks->same[i], 0);
            atomic_init(&ks->cross[i], 0);
        }
        snprintf(ks->name, sizeof(ks->name), "%s:%d", ph->name, k);
        snprintf(ks->tag, sizeof(ks->tag), "%s-key-%d", ph->name, k);
        snprintf(ks->group, sizeof(ks->group), "%s-group-%d", ph->name, k % NGROUPS);
        ks->pol = (tc_policy){.fresh_ms = ph->fresh_ms,
                              .stale_ms = ph->stale_ms,
                              .tags = {ks->tag, ks->group},
                              .ntags = 2,
                              .loader = loader,
                              .loader_ctx = ph};
        ks->pol_no_l1 = ks->pol;
        ks->pol_no_l1.flags = TC_POLICY_NO_L1;
    }
}

/* Across a fault the count above cannot be met (failed invalidations are replayed
 * collapsed): waits (bounded) until neither bus has had a message for 300 ms. */
static void wait_quiet(void)
{
    uint64_t last[NINST] = {0};
    int quiet = 0;
    for (int i = 0; i < 1000 && quiet < 30; i++) {
        bool same = true;
        for (int k = 0; k < NINST; k++) {
            uint64_t now = bus_messages(k);
            same = same && now == last[k];
            last[k] = now;
        }
        quiet = same ? quiet + 1 : 0;
        sleep_us(10000);
    }
}

/* Waits (bounded) until both buses have seen every message published so far. */
static bool wait_delivered(void)
{
    uint64_t want = atomic_load(&g_started) - atomic_load(&g_inv_errors);
    for (int i = 0; i < 1000; i++) {
        if (bus_messages(0) >= want && bus_messages(1) >= want)
            return true;
        sleep_us(10000);
    }
    return false;
}

static void metrics_line(const char *ns)
{
    for (int inst = 0; inst < NINST; inst++) {
        tc_metrics m;
        tc_metrics_snapshot(g_cache[inst], &m);
        for (int i = 0; i < m.nns; i++) {
            tc_ns_metrics *s = &m.ns[i];
            if (strcmp(s->name, ns) != 0)
                continue;
            printf("  instance %d: l1_hits %llu l2_hits %llu misses %llu coalesced %llu "
                   "stale_served %llu refreshes %llu dropped %llu load_errors %llu\n",
                   inst, (unsigned long long)s->l1_hits, (unsigned long long)s->l2_hits,
                   (unsigned long long)s->misses, (unsigned long long)s->coalesced,
                   (unsigned long long)s->stale_served, (unsigned long long)s->refreshes,
                   (unsigned long long)s->refresh_dropped, (unsigned long long)s->load_errors);
        }
        printf("  instance %d: bus_messages %llu bus_reconnects %llu redis_errors %llu "
               "breaker_opens %llu\n",
               inst, (unsigned long long)m.bus_messages, (unsigned long long)m.bus_reconnects,
               (unsigned long long)m.redis_errors, (unsigned long long)m.breaker_opens);
    }
}

static void run_phase(phase *ph)
{
    g_phase = ph;
    phase_init(ph);
    atomic_store(&g_readers_left, NREADERS);
    atomic_store(&g_stop_watchers, false);
    pthread_mutex_lock(&g_ring_lock); /* the previous phase's records are not this one's */
    for (int i = 0; i < NINST; i++)
        g_ring_done[i] = g_ring_end;
    pthread_mutex_unlock(&g_ring_lock);
    long reads0 = atomic_load(&g_reads), writes0 = atomic_load(&g_writes);
    long viol0 = atomic_load(&g_violations);
    double t0 = now_s();

    pthread_t w[NINST], wr[NWRITERS], rd[NREADERS], ft;
    bool faulting = g_fault != FAULT_NONE && !atomic_load(&g_fault_done);
    if (faulting) /* once a quarter of this phase's reads are done */
        REQUIRE(pthread_create(&ft, NULL, fault_thread,
                               (void *)(intptr_t)(reads0 + ph->reads / 4)) == 0);
    for (int i = 0; i < NINST; i++)
        REQUIRE(pthread_create(&w[i], NULL, watcher, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NREADERS; i++)
        REQUIRE(pthread_create(&rd[i], NULL, reader, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NWRITERS; i++)
        REQUIRE(pthread_create(&wr[i], NULL, writer, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NREADERS; i++)
        pthread_join(rd[i], NULL);
    for (int i = 0; i < NWRITERS; i++)
        pthread_join(wr[i], NULL);
    if (faulting)
        pthread_join(ft, NULL);

    /* Quiescent check: every invalidation returned and delivered; every read is exact.
     * Once a fault happened a bus may have lost messages (it emptied its L1 then): the
     * buses are only waited for to go quiet; the exact reads are required all the same. */
    bool delivered = true;
    if (g_fault == FAULT_NONE)
        CHECK(delivered = wait_delivered());
    else
        wait_quiet();
    atomic_store(&g_stop_watchers, true);
    for (int i = 0; i < NINST; i++)
        pthread_join(w[i], NULL);
    long final_bad = 0;
    for (int inst = 0; inst < NINST && delivered; inst++) {
        for (int k = 0; k < NKEYS; k++) {
            keystate *ks = &ph->keys[k];
            tc_result res;
            int rc = tc_get_or_load(g_cache[inst], ks->name, &ks->pol, &res);
            unsigned long long got = 0;
            int gotk = -1;
            if (rc != 0 || sscanf(res.value->data, "%d:%llu", &gotk, &got) != 2 || gotk != k ||
                got != atomic_load(&ks->truth)) {
                final_bad++;
                fprintf(stderr,
                        "final read: phase %s instance %d key %d: rc %d got v%llu, want "
                        "v%llu (source %d)\n",
                        ph->name, inst, k, rc, got, (unsigned long long)atomic_load(&ks->truth),
                        rc == 0 ? (int)res.source : -1);
            }
            if (rc == 0)
                tc_value_release(res.value);
        }
    }
    atomic_fetch_add(&g_violations, final_bad);

    double dt = now_s() - t0;
    long reads = atomic_load(&g_reads) - reads0, writes = atomic_load(&g_writes) - writes0;
    printf("phase %s (fresh %u ms, stale %u ms): %ld reads + %ld writes in %.2f s, "
           "%ld violations (%ld in the final exact reads)\n",
           ph->name, ph->fresh_ms, ph->stale_ms, reads, writes, dt,
           atomic_load(&g_violations) - viol0, final_bad);
    metrics_line(ph->name);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    long ops = 100000;
    if (TC_UNDER_TSAN) /* ~5x slower there: 100000 ops took 10 s alone, 2 cores */
        ops = ops / 2 < 20000 ? 20000 : ops / 2;
    const char *env = getenv("TC_CONSISTENCY_OPS");
    if (env != NULL && *env != '\0') {
        char *end;
        long v = strtol(env, &end, 10);
        REQUIRE(*end == '\0' && v >= 1000);
        ops = v;
    }

    const char *fault = getenv("TC_CONSISTENCY_FAULT");
    const char *on_cluster = getenv("TC_TEST_CLUSTER");
    bool cluster = on_cluster != NULL && strcmp(on_cluster, "1") == 0;
    if (fault != NULL && *fault != '\0') {
        g_fault = strcmp(fault, "kill-master") == 0 ? FAULT_KILL_MASTER
                  : strcmp(fault, "reshard") == 0   ? FAULT_RESHARD
                                                    : -1;
        REQUIRE(g_fault > 0 && cluster);
    }
    tct_redis srv = {0};
    int port = -1;
    const char *seeds = NULL;
    if (cluster) {
        seeds = g_fault == FAULT_NONE ? tct_env_cluster_nodes() : NULL;
        if (seeds == NULL) { /* a fault is made on a private one, with a fast failover */
            REQUIRE(tct_cluster_start(&g_cluster, 3, g_fault == FAULT_NONE ? 5000 : 1000) == 0);
            seeds = g_cluster.seeds;
        }
    } else if ((port = tct_env_redis_port()) < 0) {
        REQUIRE(tct_redis_start(&srv) == 0);
        port = srv.port;
    }

    char *prefix = g_prefix;
    snprintf(g_prefix, sizeof(g_prefix), "tcconsistency:%ld:%llx:", (long)getpid(),
             (unsigned long long)(seed_for(0) & 0xffffff));
    for (int i = 0; i < NINST; i++) {
        tc_config cfg;
        tc_config_init(&cfg);
        if (cluster) {
            cfg.cluster_nodes = seeds;
        } else {
            cfg.redis_host = "127.0.0.1";
            cfg.redis_port = port;
        }
        cfg.prefix = prefix;
        /* Generous: a timed-out call would make the cross-instance bound unsound. */
        cfg.redis_timeout_ms = 5000;
        cfg.connect_timeout_ms = 2000;
        cfg.wait_timeout_ms = 30000;
        cfg.refresh_workers = 2;
        int err = 0;
        g_cache[i] = tc_cache_create(&cfg, &err);
        REQUIRE(g_cache[i] != NULL);
    }
    for (int i = 0; i < NINST; i++) { /* both subscribed before the first message */
        tc_metrics m;
        tc_metrics_snapshot(g_cache[i], &m);
        for (int tries = 0; !m.bus_connected && tries < 500; tries++) {
            sleep_us(10000);
            tc_metrics_snapshot(g_cache[i], &m);
        }
        REQUIRE(m.bus_connected);
    }

    /* Phase 1: long fresh time, so nothing expires during the run; no pauses: as much
     * contention as the machine allows. */
    static phase p1 = {.name = "p1",
                       .fresh_ms = 60000,
                       .stale_ms = 60000,
                       .group_permille = 245,
                       .clear_permille = 5,
                       .write_percent = 10};
    /* Phase 2: short fresh/stale, so stale-while-revalidate and expiry race with
     * invalidations. Everyone paces itself so that reads and writes overlap for the whole
     * phase, and a key goes ~70 ms between invalidations: long enough to go stale. */
    static phase p2 = {.name = "p2",
                       .fresh_ms = 20,
                       .stale_ms = 200,
                       .writer_pause_us = 6000,
                       .reader_pause_us = 1000,
                       .group_permille = 50,
                       .clear_permille = 2,
                       .write_percent = 5};
    long per_phase = ops / 2;
    for (phase *ph = &p1; ph != NULL; ph = ph == &p1 ? &p2 : NULL) {
        long writes = per_phase * ph->write_percent / 100;
        ph->reads = per_phase - writes;
        ph->writes_min = (writes + NWRITERS - 1) / NWRITERS;
        ph->writes_max = per_phase / NWRITERS;
    }
    printf("consistency: %ld operations requested (%s), %d keys, %d readers + %d writers on %d "
           "instances, %s %s%s%d prefix %s%s%s\n",
           ops, TC_BUILD_KIND, NKEYS, NREADERS, NWRITERS, NINST,
           cluster ? "Redis Cluster" : "redis", cluster ? seeds : "127.0.0.1:",
           cluster ? " " : "", cluster ? 3 : port, prefix, fault != NULL ? ", fault " : "",
           fault != NULL ? fault : "");
    run_phase(&p1);
    run_phase(&p2);

    tc_metrics m0, m1;
    tc_metrics_snapshot(g_cache[0], &m0);
    tc_metrics_snapshot(g_cache[1], &m1);
    long reads = atomic_load(&g_reads), writes = atomic_load(&g_writes);
    printf("operations %ld (reads %ld, writes %ld), loads %ld; reads checked %ld "
           "(against a same-instance bound %ld, a delivered cross-instance bound %ld, "
           "no invalidation yet %ld; tc_get/tc_peek not found %ld); read errors %ld, "
           "invalidation errors %ld; violations %ld\n",
           reads + writes, reads, writes, atomic_load(&g_loads),
           atomic_load(&g_checked_same) + atomic_load(&g_checked_cross) + atomic_load(&g_unbounded),
           atomic_load(&g_checked_same), atomic_load(&g_checked_cross), atomic_load(&g_unbounded),
           atomic_load(&g_notfound), atomic_load(&g_errors), atomic_load(&g_inv_errors),
           atomic_load(&g_violations));

    if (cluster)
        printf("cluster: moved %llu ask %llu retries %llu down %llu map refreshes %llu "
               "(both instances)\n",
               (unsigned long long)(m0.cluster_moved + m1.cluster_moved),
               (unsigned long long)(m0.cluster_ask + m1.cluster_ask),
               (unsigned long long)(m0.cluster_retries + m1.cluster_retries),
               (unsigned long long)(m0.cluster_down + m1.cluster_down),
               (unsigned long long)(m0.cluster_refreshes + m1.cluster_refreshes));
    CHECK(reads + writes >= ops - 2 * NREADERS);
    CHECK_EQ_INT(atomic_load(&g_violations), 0);
    CHECK(atomic_load(&g_checked_same) > 0 && atomic_load(&g_checked_cross) > 0);
    if (g_fault == FAULT_NONE) {
        CHECK_EQ_INT(atomic_load(&g_errors), 0);
        CHECK_EQ_INT(atomic_load(&g_inv_errors), 0);
        CHECK_EQ_INT(m0.redis_errors + m1.redis_errors, 0);
        CHECK_EQ_INT(m0.bus_reconnects + m1.bus_reconnects, 0);
    } else {
        int64_t began = atomic_load(&g_fault_began), whole = atomic_load(&g_fault_whole);
        int64_t first = atomic_load(&g_first_error), last = atomic_load(&g_last_error);
        printf("fault: %ld read errors, %ld invalidation errors, redis errors %llu; first %lld ms "
               "and last %lld ms after the fault began; the cluster was whole again at %lld ms\n",
               atomic_load(&g_errors), atomic_load(&g_inv_errors),
               (unsigned long long)(m0.redis_errors + m1.redis_errors),
               first ? (long long)(first - began) : -1LL, last ? (long long)(last - began) : -1LL,
               (long long)(whole - began));
        CHECK(began > 0 && whole >= began);
        CHECK_EQ_INT(atomic_load(&g_errors_before_fault), 0);
        if (!CHECK(last == 0 || last <= whole + FAULT_GRACE_MS))
            fprintf(stderr, "errors went on %lld ms after the cluster was whole again\n",
                    (long long)(last - whole));
        if (g_fault == FAULT_RESHARD) /* a slot always had a master: nothing failed */
            CHECK_EQ_INT(atomic_load(&g_errors) + atomic_load(&g_inv_errors), 0);
    }

    for (int i = 0; i < NINST; i++)
        tc_cache_destroy(g_cache[i]);
    if (srv.pid > 0)
        tct_redis_stop(&srv);
    tct_cluster_stop(&g_cluster);
    return check_report();
}

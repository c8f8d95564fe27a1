/*
 * bench_cache — microbenchmark of the cache engine's hot paths, 1 and 2 threads:
 *
 *   L1 hit          tc_get_or_load on 1000 keys already in L1 (one policy tag)
 *   L2 hit          the same with TC_POLICY_NO_L1: one Redis round trip (the READ script)
 *   miss + load     a key never seen before: L1 miss, READ, a trivial loader, WRITE
 *   invalidate_tag  tc_invalidate_tag on a tag carried by N entries (N = 10, 1000, 10000,
 *                   all loaded into L1 and Redis first): its cost must not depend on N
 *
 * Each case runs for -d seconds (default 3) per thread count. Throughput counts every
 * operation; latency is sampled (every 16th operation of the sub-microsecond L1 case,
 * every operation otherwise) with CLOCK_MONOTONIC, whose own cost is printed too.
 *
 * Redis: $TC_REDIS_PORT if set, else a private redis-server (tests/support) on loopback.
 * Usage: bench_cache [-d seconds] [-c case] [-t threads] [-C host:port[,host:port...]]
 *   -c  only the cases whose name starts with it, case-insensitively: "L1", "L2", "miss",
 *       "invalidate" (e.g. for perf record); -t  only this thread count (1 or 2)
 *   -C  one Redis beside a Redis Cluster (some of its nodes): the L2 cases (L2 hit, miss +
 *       load, invalidate_tag 10) run on one, then on the other, case by case (bench/cluster.sh)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "redis_server.h"
#include "tiercache/cache.h"

#define NKEYS 1000
#define MAX_THREADS 2
#define MAX_SAMPLES (4u << 20) /* per thread and case */

enum { CASE_L1, CASE_L2, CASE_MISS, CASE_INV };

typedef struct bench_case {
    const char *name;
    int kind;
    int tagged; /* CASE_INV: entries carrying the tag */
} bench_case;

typedef struct worker {
    pthread_t th;
    int id;
    const bench_case *bc;
    uint64_t ops, wrong_source, errors;
    uint32_t *lat; /* ns */
    size_t nlat;
} worker;

static tc_cache *g_cache; /* the one the case runs on */
static tc_policy g_pol_l1, g_pol_l2, g_pol_miss, g_pol_inv;
static char g_keys_l1[NKEYS][32], g_keys_l2[NKEYS][32];
static char g_inv_tag[64];
static pthread_barrier_t g_barrier;
static _Atomic bool g_stop;
static int g_run; /* run_case() calls: keeps each miss run's keys new */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int loader(void *ctx, const char *key, tc_buf *out)
{
    static const char payload[] = "0123456789abcdef0123456789abcdef0123456789abcdef012345678";
    return tc_buf_append(out, payload, sizeof(payload) - 1); /* 64 bytes with the key */
}

static bool get_one(const char *key, const tc_policy *p, tc_source want, worker *w)
{
    tc_result res;
    int rc = tc_get_or_load(g_cache, key, p, &res);
    if (rc != 0) {
        w->errors++;
        return false;
    }
    if (res.source != want)
        w->wrong_source++;
    tc_value_release(res.value);
    return true;
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    const bench_case *bc = w->bc;
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1) | 1, n = 0;
    uint64_t mask = bc->kind == CASE_L1 ? 15 : 0; /* which operations are timed */
    char key[64];
    pthread_barrier_wait(&g_barrier);
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        bool timed = (n & mask) == 0 && w->nlat < MAX_SAMPLES;
        uint64_t t0 = timed ? now_ns() : 0;
        switch (bc->kind) {
        case CASE_L1:
            get_one(g_keys_l1[rnd(&seed) % NKEYS], &g_pol_l1, TC_SRC_L1, w);
            break;
        case CASE_L2:
            get_one(g_keys_l2[rnd(&seed) % NKEYS], &g_pol_l2, TC_SRC_L2, w);
            break;
        case CASE_MISS:
            snprintf(key, sizeof(key), "miss:%d:%d:%llu", g_run, w->id, (unsigned long long)n);
            get_one(key, &g_pol_miss, TC_SRC_LOADER, w);
            break;
        case CASE_INV:
            if (tc_invalidate_tag(g_cache, g_inv_tag) != 0)
                w->errors++;
            break;
        }
        if (timed) {
            uint64_t dt = now_ns() - t0;
            w->lat[w->nlat++] = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
        }
        n++;
    }
    w->ops = n;
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Loads the entries a case reads, outside the timed part. */
static int prepare(const bench_case *bc)
{
    worker w = {0};
    static int round;
    switch (bc->kind) {
    case CASE_L1:
        for (int i = 0; i < NKEYS; i++)
            if (!get_one(g_keys_l1[i], &g_pol_l1, TC_SRC_LOADER, &w))
                return -1;
        break;
    case CASE_L2:
        for (int i = 0; i < NKEYS; i++)
            if (!get_one(g_keys_l2[i], &g_pol_l2, TC_SRC_LOADER, &w))
                return -1;
        break;
    case CASE_INV:
        /* A fresh tag per run, carried by bc->tagged entries in L1 and in Redis. */
        snprintf(g_inv_tag, sizeof(g_inv_tag), "invtag-%d-%d", bc->tagged, round++);
        g_pol_inv.tags[0] = g_inv_tag;
        for (int i = 0; i < bc->tagged; i++) {
            char key[128];
            snprintf(key, sizeof(key), "inv:%s:%d", g_inv_tag, i);
            if (!get_one(key, &g_pol_inv, TC_SRC_LOADER, &w))
                return -1;
        }
        break;
    }
    return 0;
}

typedef struct row {
    const char *name, *where;
    int threads;
    uint64_t ops, wrong, errors;
    double secs, p50_ns, p99_ns;
} row;

static int run_case(const bench_case *bc, int threads, double secs, row *out)
{
    if (prepare(bc) != 0)
        return -1;
    worker w[MAX_THREADS] = {0};
    g_run++;
    atomic_store(&g_stop, false);
    pthread_barrier_init(&g_barrier, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        w[i].id = i;
        w[i].bc = bc;
        w[i].lat = malloc(MAX_SAMPLES * sizeof(uint32_t));
        if (w[i].lat == NULL || pthread_create(&w[i].th, NULL, run_worker, &w[i]) != 0) {
            fprintf(stderr, "bench: cannot start a thread\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&g_barrier);
    uint64_t t0 = now_ns();
    struct timespec d = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    nanosleep(&d, NULL);
    atomic_store(&g_stop, true);
    for (int i = 0; i < threads; i++)
        pthread_join(w[i].th, NULL);
    uint64_t t1 = now_ns();
    pthread_barrier_destroy(&g_barrier);

    size_t total = 0;
    for (int i = 0; i < threads; i++)
        total += w[i].nlat;
    uint32_t *all = malloc((total > 0 ? total : 1) * sizeof(uint32_t));
    if (all == NULL)
        exit(1);
    *out = (row){.name = bc->name, .threads = threads, .secs = (double)(t1 - t0) / 1e9};
    size_t k = 0;
    for (int i = 0; i < threads; i++) {
        memcpy(all + k, w[i].lat, w[i].nlat * sizeof(uint32_t));
        k += w[i].nlat;
        out->ops += w[i].ops;
        out->wrong += w[i].wrong_source;
        out->errors += w[i].errors;
        free(w[i].lat);
    }
    qsort(all, total, sizeof(uint32_t), cmp_u32);
    if (total > 0) {
        out->p50_ns = all[(size_t)(0.50 * (double)(total - 1))];
        out->p99_ns = all[(size_t)(0.99 * (double)(total - 1))];
    }
    free(all);
    return 0;
}

/* /proc/loadavg's first three fields (Linux), or "?": a busy machine skews every number. */
static const char *loadavg(char *buf, size_t n)
{
    snprintf(buf, n, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (f == NULL)
        return buf;
    double a, b, c;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(buf, n, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
    return buf;
}

static const char *fmt_ns(double ns, char *buf, size_t n)
{
    if (ns < 10000)
        snprintf(buf, n, "%.2f us", ns / 1000.0);
    else
        snprintf(buf, n, "%.1f us", ns / 1000.0);
    return buf;
}

static const char *fmt_rate(double r, char *buf, size_t n)
{
    if (r >= 1e6)
        snprintf(buf, n, "%.2f M/s", r / 1e6);
    else
        snprintf(buf, n, "%.1f k/s", r / 1e3);
    return buf;
}

int main(int argc, char **argv)
{
    double secs = 3;
    const char *only = NULL, *cluster = NULL;
    int opt, tmin = 1, tmax = MAX_THREADS;
    while ((opt = getopt(argc, argv, "d:c:t:C:h")) != -1) {
        if (opt == 'd' && (secs = atof(optarg)) > 0 && secs <= 600)
            continue;
        if (opt == 'c') {
            only = optarg;
            continue;
        }
        if (opt == 't' && (tmin = tmax = atoi(optarg)) >= 1 && tmax <= MAX_THREADS)
            continue;
        if (opt == 'C') {
            cluster = optarg;
            continue;
        }
        fprintf(stderr,
                "usage: %s [-d seconds per case, default 3] [-c case name prefix] [-t 1|2] "
                "[-C cluster host:port,...]\n",
                argv[0]);
        return opt == 'h' ? 0 : 2;
    }

    tct_redis srv = {0};
    int port = tct_env_redis_port();
    const char *redis_from = "TC_REDIS_PORT";
    if (port < 0) {
        if (tct_redis_start(&srv) != 0)
            return 1;
        port = srv.port;
        redis_from = "private redis-server";
    }

    char prefix[64];
    snprintf(prefix, sizeof(prefix), "tcbench:%ld:", (long)getpid());
    tc_config cfg;
    tc_config_init(&cfg);
    cfg.redis_host = "127.0.0.1";
    cfg.redis_port = port;
    cfg.prefix = prefix;
    cfg.redis_timeout_ms = 1000; /* a benchmark must not trip the breaker on a busy box */
    int err = 0;
    /* on[0]: the one Redis; on[1]: the cluster (-C) */
    tc_cache *on[2] = {tc_cache_create(&cfg, &err), NULL};
    const char *where[2] = {"redis", "cluster"};
    if (on[0] != NULL && cluster != NULL) {
        cfg.cluster_nodes = cluster;
        on[1] = tc_cache_create(&cfg, &err);
    }
    if (on[0] == NULL || (cluster != NULL && on[1] == NULL)) {
        fprintf(stderr, "bench: tc_cache_create: %s\n", tc_strerror(err));
        return 1;
    }
    for (int i = 0; i < NKEYS; i++) {
        snprintf(g_keys_l1[i], sizeof(g_keys_l1[i]), "l1:%d", i);
        snprintf(g_keys_l2[i], sizeof(g_keys_l2[i]), "l2:%d", i);
    }
    tc_policy base = {.fresh_ms = 600000, .stale_ms = 60000, .ntags = 1, .loader = loader};
    g_pol_l1 = base;
    g_pol_l1.tags[0] = "bench-l1";
    g_pol_l2 = base;
    g_pol_l2.tags[0] = "bench-l2";
    g_pol_l2.flags = TC_POLICY_NO_L1;
    g_pol_miss = base;
    g_pol_miss.tags[0] = "bench-miss";
    g_pol_miss.fresh_ms = 10000; /* new keys: let Redis drop them soon */
    g_pol_miss.stale_ms = 0;
    g_pol_inv = base;

    static const bench_case cases[] = {
        {"L1 hit", CASE_L1, 0},
        {"L2 hit (L1 off: 1 round trip)", CASE_L2, 0},
        {"miss + load (new key)", CASE_MISS, 0},
        {"invalidate_tag, 10 tagged", CASE_INV, 10},
        {"invalidate_tag, 1000 tagged", CASE_INV, 1000},
        {"invalidate_tag, 10000 tagged", CASE_INV, 10000},
    };
    enum { NCASES = sizeof(cases) / sizeof(cases[0]) };

    /* The timer's own cost, included in every latency sample. */
    uint64_t c0 = now_ns(), c1 = c0;
    for (int i = 0; i < 1000000; i++)
        c1 = now_ns();
    double timer_ns = (double)(c1 - c0) / 1e6;

    char cmd[512] = "";
    for (int i = 0; i < argc; i++)
        snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), "%s%s", i ? " " : "", argv[i]);
    printf("command: %s\n", cmd);
    char load[64];
    printf("cpus online: %ld; load average at start %s; redis 127.0.0.1:%d (%s)%s%s; %g s per "
           "case; clock_gettime %.0f ns (in each latency sample)\n\n",
           sysconf(_SC_NPROCESSORS_ONLN), loadavg(load, sizeof(load)), port, redis_from,
           cluster != NULL ? ", cluster " : "", cluster != NULL ? cluster : "", secs, timer_ns);

    row rows[NCASES * MAX_THREADS * 2];
    int nrows = 0;
    for (int c = 0; c < NCASES; c++) {
        if (only != NULL && strncasecmp(cases[c].name, only, strlen(only)) != 0)
            continue;
        /* beside a cluster: the cases that go to Redis, each on both, one after the other */
        if (cluster != NULL && (cases[c].kind == CASE_L1 || cases[c].tagged > 10))
            continue;
        for (int t = tmin; t <= tmax; t++)
            for (int w = 0; w < (cluster != NULL ? 2 : 1); w++) {
                g_cache = on[w];
                if (run_case(&cases[c], t, secs, &rows[nrows]) != 0) {
                    fprintf(stderr, "bench: preparing '%s' on the %s failed\n", cases[c].name,
                            where[w]);
                    return 1;
                }
                rows[nrows++].where = where[w];
            }
    }

    printf("%-32s %-8s %7s %12s %12s %11s %11s\n", "case", "on", "threads", "ops", "ops/s", "p50",
           "p99");
    for (int i = 0; i < nrows; i++) {
        row *r = &rows[i];
        char rate[32], p50[32], p99[32];
        printf("%-32s %-8s %7d %12llu %12s %11s %11s", r->name, r->where, r->threads,
               (unsigned long long)r->ops, fmt_rate((double)r->ops / r->secs, rate, sizeof(rate)),
               fmt_ns(r->p50_ns, p50, sizeof(p50)), fmt_ns(r->p99_ns, p99, sizeof(p99)));
        if (r->errors || r->wrong)
            printf("   (errors %llu, answered from another tier %llu)",
                   (unsigned long long)r->errors, (unsigned long long)r->wrong);
        printf("\n");
    }
    printf("\n");
    for (int w = 0; w < 2 && on[w] != NULL; w++) {
        tc_metrics m;
        tc_metrics_snapshot(on[w], &m);
        printf("%s: redis errors %llu, breaker opens %llu, l1 entries %llu, l1 evictions %llu\n",
               where[w], (unsigned long long)m.redis_errors, (unsigned long long)m.breaker_opens,
               (unsigned long long)m.l1_entries, (unsigned long long)m.l1_evictions);
        tc_cache_destroy(on[w]);
    }
    printf("load average at end %s\n", loadavg(load, sizeof(load)));
    if (srv.pid > 0)
        tct_redis_stop(&srv);
    return 0;
}

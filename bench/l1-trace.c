/*
 * bench_l1-trace — the scan-resistant L1 (tc_config.l1_admission) on a trace:
 * L1 hit ratio and the cost of a get, with and without admission, side by side.
 *
 * The trace: reads of a Zipf-distributed key space (KEYS keys, exponent -s), and every
 * SCAN_EVERY of those reads a scan: SCAN_LEN reads of keys never read before (a crawler,
 * an export). The L1 holds about -c percent of the key space (16 shards, as the server).
 * Every read is tc_get_or_load through the engine with no Redis and a loader that answers
 * at once, so a miss costs the engine's own work (a flight, an insert), not a database.
 *
 * Printed for each of admission on and off: the hit ratio of the Zipf reads (what users
 * see), of the first AFTER Zipf reads after each scan (what a scan does to the hot set),
 * of all reads (scans included), the L1 entries kept out by admission, and ns per get:
 * over the whole trace, and over a pure-hit loop (the 100 hottest keys, already in L1:
 * the sketch's cost on the hit path). Both use the same trace (same seed), in one
 * process; the timed runs alternate (on, off, on, off, ...) -r times and the fastest of
 * each is printed (a shared machine's noise only adds time). Usage:
 *   bench_l1-trace [-n Zipf reads (2000000)] [-k keys (100000)] [-s exponent (0.99)]
 *                  [-c percent in L1 (5)] [-e scan every (200000)] [-l scan length (50000)]
 *                  [-r rounds (3)] [-H hit-loop gets (2000000)] [-a on|off: that mode only]
 * On a busy machine the times say little: bench/l1-trace-cpu.sh counts instructions
 * instead (callgrind), with -a and -H to run one mode and one part at a time.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tiercache/cache.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int loader(void *ctx, const char *key, tc_buf *out)
{
    /* a value of about 200 bytes: a small JSON object */
    return tc_buf_printf(out, "{\"key\":\"%s\",\"pad\":\"%0180d\"}", key, 0);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The Zipf CDF over n ranks: cdf[i] = P(rank <= i). */
static double *zipf_cdf(int n, double s)
{
    double *cdf = malloc(sizeof(double) * (size_t)n), sum = 0;
    for (int i = 0; i < n; i++)
        sum += 1.0 / pow(i + 1, s);
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += 1.0 / pow(i + 1, s) / sum;
        cdf[i] = acc;
    }
    return cdf;
}

static int zipf_draw(const double *cdf, int n)
{
    double u = (double)(next_u64() >> 11) / 9007199254740992.0;
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

#define AFTER 5000 /* Zipf reads after a scan whose hit ratio is shown apart */

typedef struct params {
    long reads, scan_every, scan_len, hit_loop;
    int keys, rounds, only; /* only: -1 both modes, else that one */
    double s, pct;
} params;

typedef struct result {
    double zipf_hit, after_hit, all_hit, ns_per_get, ns_per_hit;
    uint64_t rejections, evictions;
} result;

/* The bytes L1 charges for one of our entries (a cache that holds one). */
static uint64_t entry_bytes(const tc_policy *p)
{
    tc_config cfg;
    tc_config_init(&cfg);
    cfg.redis_host = NULL;
    tc_cache *c = tc_cache_create(&cfg, NULL);
    tc_result r;
    if (c == NULL || tc_get_or_load(c, "k:0000000", p, &r) != 0)
        exit(1);
    tc_value_release(r.value);
    tc_metrics m;
    tc_metrics_snapshot(c, &m);
    tc_cache_destroy(c);
    return m.l1_bytes;
}

static result run(const params *pa, const double *cdf, int admission)
{
    tc_policy p = {.fresh_ms = 1u << 30, .loader = loader};
    tc_config cfg;
    tc_config_init(&cfg);
    cfg.redis_host = NULL;
    cfg.l1_admission = admission;
    cfg.l1_max_bytes = (size_t)((double)entry_bytes(&p) * pa->keys * pa->pct / 100.0);
    tc_cache *c = tc_cache_create(&cfg, NULL);
    if (c == NULL)
        exit(1);
    rng = 0x9e3779b97f4a7c15ull; /* the same trace for both runs */
    long zipf_reads = 0, zipf_hits = 0, all_reads = 0, all_hits = 0, scanned = 0;
    long after_reads = 0, after_hits = 0;
    char key[32];
    tc_result r;
    double t0 = now_s();
    for (long i = 0; i < pa->reads; i++) {
        if (i > 0 && i % pa->scan_every == 0)
            for (long j = 0; j < pa->scan_len; j++, scanned++) {
                snprintf(key, sizeof(key), "s:%07ld", scanned);
                if (tc_get_or_load(c, key, &p, &r) != 0)
                    exit(1);
                all_reads++;
                all_hits += r.source == TC_SRC_L1;
                tc_value_release(r.value);
            }
        snprintf(key, sizeof(key), "k:%07d", zipf_draw(cdf, pa->keys));
        if (tc_get_or_load(c, key, &p, &r) != 0)
            exit(1);
        zipf_reads++, all_reads++;
        zipf_hits += r.source == TC_SRC_L1;
        if (i >= pa->scan_every && i % pa->scan_every < AFTER) {
            after_reads++;
            after_hits += r.source == TC_SRC_L1;
        }
        all_hits += r.source == TC_SRC_L1;
        tc_value_release(r.value);
    }
    double took = now_s() - t0;
    /* the hit path alone: the 100 hottest keys, in L1 by now, round and round */
    long hits = 0, loops = pa->hit_loop;
    double h0 = now_s();
    for (long i = 0; i < loops; i++) {
        snprintf(key, sizeof(key), "k:%07ld", i % 100);
        if (tc_get_or_load(c, key, &p, &r) != 0)
            exit(1);
        hits += r.source == TC_SRC_L1;
        tc_value_release(r.value);
    }
    double hit_took = now_s() - h0;
    tc_metrics m;
    tc_metrics_snapshot(c, &m);
    tc_cache_destroy(c);
    if (hits < loops * 99 / 100)
        fprintf(stderr, "l1-trace: the hot loop hit only %ld of %ld\n", hits, loops);
    return (result){.zipf_hit = (double)zipf_hits / (double)zipf_reads,
                    .after_hit = after_reads > 0 ? (double)after_hits / (double)after_reads : 0,
                    .all_hit = (double)all_hits / (double)all_reads,
                    .ns_per_get = took * 1e9 / (double)all_reads,
                    .ns_per_hit = loops > 0 ? hit_took * 1e9 / (double)loops : 0,
                    .rejections = m.l1_rejections,
                    .evictions = m.l1_evictions};
}

int main(int argc, char **argv)
{
    params pa = {.reads = 2000000,
                 .keys = 100000,
                 .s = 0.99,
                 .pct = 5,
                 .scan_every = 200000,
                 .scan_len = 50000,
                 .rounds = 3,
                 .hit_loop = 2000000,
                 .only = -1};
    int opt;
    while ((opt = getopt(argc, argv, "n:k:s:c:e:l:r:H:a:")) != -1) {
        switch (opt) {
        case 'n':
            pa.reads = atol(optarg);
            break;
        case 'k':
            pa.keys = atoi(optarg);
            break;
        case 's':
            pa.s = atof(optarg);
            break;
        case 'c':
            pa.pct = atof(optarg);
            break;
        case 'e':
            pa.scan_every = atol(optarg);
            break;
        case 'l':
            pa.scan_len = atol(optarg);
            break;
        case 'r':
            pa.rounds = atoi(optarg);
            break;
        case 'H':
            pa.hit_loop = atol(optarg);
            break;
        case 'a':
            pa.only = strcmp(optarg, "on") == 0 ? 1 : strcmp(optarg, "off") == 0 ? 0 : -2;
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-n reads] [-k keys] [-s exponent] [-c percent] "
                    "[-e scan every] [-l scan length] [-r rounds] [-H hit loop] "
                    "[-a on|off]\n",
                    argv[0]);
            return 2;
        }
    }
    if (pa.reads < 1 || pa.keys < 100 || pa.pct <= 0 || pa.scan_every < 1 || pa.scan_len < 0 ||
        pa.rounds < 1 || pa.hit_loop < 0 || pa.only == -2)
        return 2;
    double *cdf = zipf_cdf(pa.keys, pa.s);
    printf("trace: %ld Zipf reads over %d keys (s=%.2f), a scan of %ld new keys every %ld; "
           "L1 holds %.1f%% of the keys (16 shards)\n",
           pa.reads, pa.keys, pa.s, pa.scan_len, pa.scan_every, pa.pct);
    printf("%-10s %11s %13s %10s %9s %9s %10s %10s\n", "L1", "zipf hit %", "after scan %",
           "all hit %", "ns/get", "ns/hit", "kept out", "evictions");
    result res[2] = {{0}};
    for (int round = 0; round < pa.rounds; round++)
        for (int a = 1; a >= 0; a--) {
            if (pa.only >= 0 && a != pa.only)
                continue;
            result one = run(&pa, cdf, a);
            if (round == 0 || one.ns_per_get < res[a].ns_per_get)
                res[a].ns_per_get = one.ns_per_get;
            if (round == 0 || one.ns_per_hit < res[a].ns_per_hit)
                res[a].ns_per_hit = one.ns_per_hit;
            if (round == 0) {
                double g = res[a].ns_per_get, h = res[a].ns_per_hit;
                res[a] = one;
                res[a].ns_per_get = g, res[a].ns_per_hit = h;
            }
        }
    for (int a = 1; a >= 0; a--)
        if (pa.only < 0 || a == pa.only)
            printf("%-10s %11.2f %13.2f %10.2f %9.0f %9.0f %10llu %10llu\n",
                   a ? "admission" : "LRU only", 100 * res[a].zipf_hit, 100 * res[a].after_hit,
                   100 * res[a].all_hit, res[a].ns_per_get, res[a].ns_per_hit,
                   (unsigned long long)res[a].rejections, (unsigned long long)res[a].evictions);
    if (pa.only < 0)
        printf("admission / LRU: zipf hit ratio %.2fx, after a scan %.2fx, ns/get %.2fx, "
               "ns/hit %.2fx (fastest of %d rounds each)\n",
               res[1].zipf_hit / res[0].zipf_hit, res[1].after_hit / res[0].after_hit,
               res[1].ns_per_get / res[0].ns_per_get, res[1].ns_per_hit / res[0].ns_per_hit,
               pa.rounds);
    free(cdf);
    return 0;
}

/*
 * bench_l2-compress — what compressing large values in L2 (tc_config.l2_compress_min_bytes)
 * saves in Redis and costs an L2 hit, on a given data set, side by side in one run.
 *
 *   bench_l2-compress DIR [rounds]
 *
 * DIR holds the values, one file each (bench/l2-compress.sh fills it with the server's
 * blog data: every blog.list page and every post, as the server caches them). For each of
 * compression off (0) and on (the default threshold, 1024 bytes): one cache stores every
 * value through tc_get_or_load under a prefix of its own; then the record bytes in Redis
 * (STRLEN of each record, and Redis's own MEMORY USAGE) are summed; then a cache without
 * L1 reads every key back with tc_get (each one an L2 hit: a round trip, the record decoded
 * and, when compressed, decompressed) for `rounds` rounds alternating off and on, and the
 * fastest round of each is kept (a shared machine's noise only adds time): wall time per
 * hit (Redis's work and the round trip included) and this process's CPU time per hit
 * (the client's side: hiredis, the record, decompression). Answers are checked: same bytes
 * and hash as loaded, from L2.
 *
 * Redis: $TC_REDIS_PORT if set, else a private redis-server (tests/support).
 */
#include <dirent.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "redis_server.h"
#include "tiercache/cache.h"

#define MAX_VALUES 4096

typedef struct value {
    char key[300];
    char *data;
    size_t len;
    uint64_t hash;
} value;

static value values[MAX_VALUES];
static int nvalues;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int loader(void *ctx, const char *key, tc_buf *out)
{
    for (int i = 0; i < nvalues; i++)
        if (strcmp(values[i].key, key) == 0)
            return tc_buf_append(out, values[i].data, values[i].len);
    return TC_ELOAD;
}

static void read_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        perror(dir);
        exit(2);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && nvalues < MAX_VALUES) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        value *v = &values[nvalues];
        v->data = malloc((size_t)n + 1);
        if (v->data == NULL || fread(v->data, 1, (size_t)n, f) != (size_t)n) {
            fclose(f);
            exit(1);
        }
        fclose(f);
        v->len = (size_t)n;
        snprintf(v->key, sizeof(v->key), "blog:%s", e->d_name);
        nvalues++;
    }
    closedir(d);
}

static tc_cache *cache(int port, const char *prefix, size_t min_bytes, size_t l1)
{
    tc_config cfg;
    tc_config_init(&cfg);
    cfg.redis_host = "127.0.0.1";
    cfg.redis_port = port;
    cfg.prefix = prefix;
    cfg.l2_compress_min_bytes = min_bytes;
    cfg.l1_max_bytes = l1;
    cfg.redis_timeout_ms = 1000;
    tc_cache *c = tc_cache_create(&cfg, NULL);
    if (c == NULL) {
        fprintf(stderr, "l2-compress: no cache\n");
        exit(1);
    }
    return c;
}

static const tc_policy POLICY = {.fresh_ms = 600000, .loader = loader};

/* Stores every value under prefix; returns the Redis bytes: STRLEN and MEMORY USAGE. */
static void store(int port, redisContext *r, const char *prefix, size_t min_bytes,
                  long long *strlen_sum, long long *memory_sum)
{
    tc_cache *c = cache(port, prefix, min_bytes, 64u << 20);
    *strlen_sum = *memory_sum = 0;
    for (int i = 0; i < nvalues; i++) {
        tc_result res;
        if (tc_get_or_load(c, values[i].key, &POLICY, &res) != 0)
            exit(1);
        values[i].hash = res.value->hash;
        tc_value_release(res.value);
        redisReply *a = redisCommand(r, "STRLEN %s%s", prefix, values[i].key);
        redisReply *b = redisCommand(r, "MEMORY USAGE %s%s", prefix, values[i].key);
        if (a == NULL || b == NULL || a->type != REDIS_REPLY_INTEGER ||
            b->type != REDIS_REPLY_INTEGER || a->integer == 0) {
            fprintf(stderr, "l2-compress: %s was not stored\n", values[i].key);
            exit(1);
        }
        *strlen_sum += a->integer;
        *memory_sum += b->integer;
        freeReplyObject(a);
        freeReplyObject(b);
    }
    tc_cache_destroy(c);
}

/* One round of L2 hits over every key: wall and CPU seconds. */
static void l2_round(tc_cache *c, double *wall, double *cpu)
{
    double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; i < nvalues; i++) {
        tc_result res;
        if (tc_get(c, values[i].key, &POLICY, &res) != 0 || res.source != TC_SRC_L2 ||
            res.value->len != values[i].len || res.value->hash != values[i].hash ||
            memcmp(res.value->data, values[i].data, values[i].len) != 0) {
            fprintf(stderr, "l2-compress: a wrong answer for %s\n", values[i].key);
            exit(1);
        }
        tc_value_release(res.value);
    }
    *wall = clock_s(CLOCK_MONOTONIC) - t0;
    *cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [rounds]\n", argv[0]);
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 20;
    read_dir(argv[1]);
    if (nvalues == 0 || rounds < 1) {
        fprintf(stderr, "l2-compress: no values in %s\n", argv[1]);
        return 2;
    }
    tct_redis own;
    int port = tct_env_redis_port();
    if (port <= 0) {
        if (tct_redis_start(&own) != 0)
            return 1;
        port = own.port;
    }
    redisContext *r = redisConnect("127.0.0.1", port);
    if (r == NULL || r->err)
        return 1;
    char prefix[2][64];
    const size_t min_bytes[2] = {0, 1024};
    long long bytes[2], memory[2];
    size_t raw = 0, large = 0;
    for (int i = 0; i < nvalues; i++) {
        raw += values[i].len;
        large += values[i].len >= 1024;
    }
    for (int m = 0; m < 2; m++) {
        snprintf(prefix[m], sizeof(prefix[m]), "bench-z%zu-%ld:", min_bytes[m], (long)getpid());
        store(port, r, prefix[m], min_bytes[m], &bytes[m], &memory[m]);
    }
    tc_cache *reader[2] = {cache(port, prefix[0], 0, 0), cache(port, prefix[1], 1024, 0)};
    double best[2] = {1e9, 1e9}, best_cpu[2] = {1e9, 1e9};
    for (int k = 0; k < rounds; k++)
        for (int m = 0; m < 2; m++) {
            double wall, cpu;
            l2_round(reader[m], &wall, &cpu);
            if (wall < best[m])
                best[m] = wall;
            if (cpu < best_cpu[m])
                best_cpu[m] = cpu;
        }
    printf("data set: %d values, %zu bytes (%zu of them >= 1024 bytes)\n", nvalues, raw, large);
    printf("%-22s %13s %13s %15s %15s\n", "", "record bytes", "MEMORY USAGE", "us/L2 hit wall",
           "us/L2 hit CPU");
    for (int m = 0; m < 2; m++)
        printf("%-22s %13lld %13lld %15.1f %15.1f\n", m ? "compressed (>= 1024)" : "uncompressed",
               bytes[m], memory[m], best[m] * 1e6 / nvalues, best_cpu[m] * 1e6 / nvalues);
    printf("compressed / uncompressed: record bytes %.2fx, MEMORY USAGE %.2fx, L2 hit wall %.2fx, "
           "CPU %.2fx (fastest of %d rounds each)\n",
           (double)bytes[1] / (double)bytes[0], (double)memory[1] / (double)memory[0],
           best[1] / best[0], best_cpu[1] / best_cpu[0], rounds);
    for (int m = 0; m < 2; m++) {
        tc_cache_destroy(reader[m]);
        for (int i = 0; i < nvalues; i++) /* leave the shared Redis as it was */
            freeReplyObject(redisCommand(r, "DEL %s%s", prefix[m], values[i].key));
    }
    redisFree(r);
    if (tct_env_redis_port() <= 0)
        tct_redis_stop(&own);
    return 0;
}

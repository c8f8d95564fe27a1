/* common.h: helpers shared by the cache engine's integration tests (tests/integration/cache).
 * Not a framework: a source of truth with a counting loader, a fake clock, cache and Redis
 * connection set-up, bounded waits, and a few hiredis shortcuts to inspect Redis directly.
 * Everything is static inline; every wait has a deadline and reports failure, never hangs. */
#ifndef TC_IT_CACHE_COMMON_H
#define TC_IT_CACHE_COMMON_H

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "check.h"
#include "proxy.h"
#include "redis_cluster.h"
#include "redis_server.h"
#include "tiercache/cache.h"

/* A generous bound for "returns promptly": a guarantee, not a benchmark. */
#define IT_CALL_BOUND_MS 2000
/* How long to wait for something asynchronous (bus delivery, reconnect) before failing. */
#define IT_DEADLINE_MS 10000

/* ---- time ------------------------------------------------------------------------------ */

static inline int64_t it_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void it_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Polls cond every 10 ms until it holds or ms pass; sets ok to whether it held. */
#define IT_WAIT_UNTIL(ok, cond, ms)                                                                \
    do {                                                                                           \
        int64_t it__end = it_now_ms() + (ms);                                                      \
        while (!((ok) = !!(cond)) && it_now_ms() < it__end)                                        \
            it_sleep_ms(10);                                                                       \
    } while (0)

/* A fake wall clock (tc_config.clock) shared by several caches: tests move time by hand. */
typedef struct it_clock {
    _Atomic uint64_t ms;
} it_clock;

static inline uint64_t it_clock_fn(void *ctx)
{
    return atomic_load(&((it_clock *)ctx)->ms);
}

static inline void it_clock_init(it_clock *k)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    atomic_store(&k->ms, (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/* ---- the source of truth and its loader -------------------------------------------------- */

/* What a loader reads: a version string, a count of loads, an optional delay and an optional
 * hook run inside the loader (to land an invalidation while a load is in flight). */
typedef struct it_source {
    pthread_mutex_t lock;
    char version[64];
    atomic_int loads;
    int delay_ms;
    void (*hook)(struct it_source *s, const char *key);
    void *hook_ctx;
} it_source;

static inline void it_source_init(it_source *s, const char *version)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    snprintf(s->version, sizeof(s->version), "%s", version);
}

static inline void it_source_set(it_source *s, const char *version)
{
    pthread_mutex_lock(&s->lock);
    snprintf(s->version, sizeof(s->version), "%s", version);
    pthread_mutex_unlock(&s->lock);
}

/* The bytes the loader produces for key at version: "key=version". */
static inline void it_expect(char *out, size_t n, const char *key, const char *version)
{
    snprintf(out, n, "%s=%s", key, version);
}

static inline int it_loader(void *ctx, const char *key, tc_buf *out)
{
    it_source *s = ctx;
    atomic_fetch_add(&s->loads, 1);
    if (s->delay_ms > 0)
        it_sleep_ms(s->delay_ms);
    char v[64];
    pthread_mutex_lock(&s->lock);
    snprintf(v, sizeof(v), "%s", s->version);
    pthread_mutex_unlock(&s->lock);
    if (s->hook != NULL)
        s->hook(s, key);
    return tc_buf_printf(out, "%s=%s", key, v);
}

/* A policy over source s: fresh/stale times and at most one tag (NULL: none). */
static inline tc_policy it_policy(it_source *s, uint32_t fresh_ms, uint32_t stale_ms,
                                  const char *tag)
{
    tc_policy p = {
        .fresh_ms = fresh_ms, .stale_ms = stale_ms, .loader = it_loader, .loader_ctx = s};
    if (tag != NULL)
        p.tags[p.ntags++] = tag;
    return p;
}

/* ---- one Redis, or a Redis Cluster -------------------------------------------------------
 * Every test file here that runs on one Redis runs on a cluster too, unchanged: CMakeLists.txt
 * registers it twice, "<name>" and "<name>@cluster" (with TC_TEST_CLUSTER=1). On a cluster,
 * it_redis_port() gives the port of one node of it (the shared cluster scripts/test.sh starts,
 * $TC_CLUSTER_NODES, or a private one), it_config() points the cache at the cluster's nodes,
 * and the inspection helpers below (it_rint, it_rstr, it_command, it_keys) follow MOVED to the
 * master of each key: the test's own routing, not the engine's. */

static const char *it__seeds;        /* on a cluster: its nodes, "127.0.0.1:p,..." */
static tct_cluster it__own_cluster;  /* a private one, when there is no shared one */

static inline int it_on_cluster(void)
{
    const char *s = getenv("TC_TEST_CLUSTER");
    return s != NULL && strcmp(s, "1") == 0;
}

static inline void it__stop_own_cluster(void)
{
    tct_cluster_stop(&it__own_cluster);
}

/* A private cluster of its own (stopped at exit, also when a REQUIRE fails); its first
 * node's port, or -1. */
static inline int it_private_cluster(void)
{
    if (tct_cluster_start(&it__own_cluster, 3, 5000) != 0)
        return -1;
    atexit(it__stop_own_cluster);
    it__seeds = it__own_cluster.seeds;
    return it__own_cluster.node[0].port;
}

/* ---- a private server to kill, pause, restore: one Redis, or a whole cluster -------------- */

typedef struct it_server {
    int port; /* the server's, or the cluster's first node's */
    tct_redis redis;
    tct_cluster cluster;
} it_server;

static inline int it_server_start(it_server *s)
{
    memset(s, 0, sizeof(*s));
    if (!it_on_cluster()) {
        if (tct_redis_start(&s->redis) != 0)
            return -1;
        s->port = s->redis.port;
        return 0;
    }
    if (tct_cluster_start(&s->cluster, 3, 5000) != 0)
        return -1;
    it__seeds = s->cluster.seeds; /* what it_config() points caches at */
    s->port = s->cluster.node[0].port;
    return 0;
}

static inline void it_server_stop(it_server *s)
{
    tct_redis_stop(&s->redis);
    tct_cluster_stop(&s->cluster);
}

/* Every node at once (SIGKILL): the whole L2 gone. */
static inline int it_server_kill(it_server *s)
{
    if (!it_on_cluster())
        return tct_redis_kill(&s->redis);
    for (int i = 0; i < s->cluster.n; i++)
        tct_cluster_kill(&s->cluster, i);
    return 0;
}

/* Every node again, empty (a cluster keeps its nodes.conf: the same masters and slots);
 * returns once every slot is served. */
static inline int it_server_restart(it_server *s)
{
    if (!it_on_cluster())
        return tct_redis_restart(&s->redis);
    for (int i = 0; i < s->cluster.n; i++)
        if (tct_cluster_restart(&s->cluster, i) != 0)
            return -1;
    return tct_cluster_wait_ok(&s->cluster, 60000);
}

/* 1 when node i of the cluster is a master now. */
static inline int it__is_master(it_server *s, int i)
{
    redisContext *r = redisConnect("127.0.0.1", s->cluster.node[i].port);
    redisReply *rep = r != NULL && !r->err ? redisCommand(r, "ROLE") : NULL;
    int master = rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
                 strcmp(rep->element[0]->str, "master") == 0;
    freeReplyObject(rep);
    redisFree(r);
    return master;
}

/* A snapshot of the data as it is now (on a cluster: of every master), which
 * it_server_restore brings back. */
static inline int it_server_snapshot(it_server *s)
{
    if (!it_on_cluster())
        return tct_redis_snapshot(&s->redis);
    for (int i = 0; i < s->cluster.n; i++)
        if (it__is_master(s, i) && tct_redis_snapshot(&s->cluster.node[i]) != 0)
            return -1;
    return 0;
}

/* Every node that has a snapshot killed and started again from it (a cluster's masters,
 * back well within the node timeout: no failover); returns once every slot is served. */
static inline int it_server_restore(it_server *s)
{
    if (!it_on_cluster())
        return tct_redis_restore(&s->redis);
    for (int i = 0; i < s->cluster.n; i++) {
        char path[300];
        snprintf(path, sizeof(path), "%s/snapshot.rdb", s->cluster.node[i].dir);
        if (access(path, F_OK) == 0 && tct_redis_restore(&s->cluster.node[i]) != 0)
            return -1;
    }
    return tct_cluster_wait_ok(&s->cluster, 60000);
}

/* CLIENT PAUSE ms ALL on the server (on a cluster: on every master). */
static inline int it_server_pause(it_server *s, int ms)
{
    int n = it_on_cluster() ? s->cluster.n : 1;
    for (int i = 0; i < n; i++) {
        if (it_on_cluster() && !it__is_master(s, i))
            continue;
        redisContext *r = redisConnect("127.0.0.1", it_on_cluster() ? s->cluster.node[i].port
                                                                    : s->port);
        redisReply *rep = r != NULL && !r->err ? redisCommand(r, "CLIENT PAUSE %d ALL", ms) : NULL;
        int ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
        redisFree(r);
        if (!ok)
            return -1;
    }
    return 0;
}

/* ---- a network partition: an instance that reaches the server only through proxies ------- */

typedef struct it_partition {
    int n;
    int target[TCT_CLUSTER_NODES_MAX]; /* the ports proxied: the server, or every node */
    tct_proxy *px[TCT_CLUSTER_NODES_MAX];
    char seeds[TCT_CLUSTER_NODES_MAX * 24];
} it_partition;

static inline int it_partition_start(it_partition *pt, it_server *s)
{
    memset(pt, 0, sizeof(*pt));
    pt->n = it_on_cluster() ? s->cluster.n : 1;
    size_t used = 0;
    for (int i = 0; i < pt->n; i++) {
        pt->target[i] = it_on_cluster() ? s->cluster.node[i].port : s->port;
        if ((pt->px[i] = tct_proxy_start(pt->target[i])) == NULL)
            return -1;
        used += (size_t)snprintf(pt->seeds + used, sizeof(pt->seeds) - used, "%s127.0.0.1:%d",
                                 i ? "," : "", tct_proxy_port(pt->px[i]));
    }
    return 0;
}

/* tc_config.cluster_address: every node the cluster names, through its proxy. */
static inline void it__through_proxy(void *ctx, char *host, size_t n, int *port)
{
    it_partition *pt = ctx;
    for (int i = 0; i < pt->n; i++)
        if (pt->target[i] == *port)
            *port = tct_proxy_port(pt->px[i]);
}

/* A cache config (from it_config) that reaches the server only through the proxies. */
static inline void it_partition_config(it_partition *pt, tc_config *cfg)
{
    if (!it_on_cluster()) {
        cfg->redis_port = tct_proxy_port(pt->px[0]);
        return;
    }
    cfg->cluster_nodes = pt->seeds;
    cfg->cluster_address = it__through_proxy;
    cfg->cluster_address_ctx = pt;
}

static inline void it_partition_freeze(it_partition *pt, int frozen)
{
    for (int i = 0; i < pt->n; i++)
        tct_proxy_freeze(pt->px[i], frozen);
}

static inline void it_partition_stop(it_partition *pt)
{
    for (int i = 0; i < pt->n; i++)
        tct_proxy_stop(pt->px[i]);
    pt->n = 0;
}

/* ---- caches ------------------------------------------------------------------------------ */

static inline void it_config(tc_config *cfg, int port, int db, const char *prefix)
{
    tc_config_init(cfg);
    if (it_on_cluster()) {
        cfg->cluster_nodes = it__seeds;
    } else {
        cfg->redis_host = "127.0.0.1";
    }
    cfg->redis_port = port;
    cfg->redis_db = db;
    cfg->prefix = prefix;
    cfg->l1_max_bytes = 1u << 20;
    cfg->l1_shards = 4;
    /* Generous for sanitizer builds on a loaded machine; the outage tests set their own. */
    cfg->redis_timeout_ms = 1000;
    cfg->connect_timeout_ms = 1000;
    /* A bus thread starved of CPU for longer than a lease makes L1 lapse (correctly): a test
     * that checks where an answer came from would see L2. The fleet tests set their own. */
    cfg->lease_ms = 2000;
}

static inline tc_cache *it_cache(const tc_config *cfg)
{
    int err = 0;
    tc_cache *c = tc_cache_create(cfg, &err);
    if (c == NULL)
        fprintf(stderr, "tc_cache_create: %s\n", tc_strerror(err));
    return c;
}

static inline int it_bus_connected(tc_cache *c)
{
    tc_metrics m;
    tc_metrics_snapshot(c, &m);
    return m.bus_connected;
}

/* L1 is served again only under the lease, which follows the bus's first answers (fleet.c). */
static inline int it_l1_trusted(tc_cache *c)
{
    tc_metrics m;
    tc_metrics_snapshot(c, &m);
    return m.l1_trusted;
}

static inline uint64_t it_pending(tc_cache *c)
{
    tc_metrics m;
    tc_metrics_snapshot(c, &m);
    return m.pending_invalidations;
}

/* One read: rc; on success the value's bytes (NUL-terminated, truncated to n), its source
 * and hash. The value is released here. */
typedef struct it_read {
    int rc;
    tc_source source;
    int stale;
    uint64_t hash;
    char data[256];
    int64_t took_ms;
} it_read;

/* One call of fn (tc_get_or_load or tc_get), as an it_read. */
static inline it_read it_call(int (*fn)(tc_cache *, const char *, const tc_policy *, tc_result *),
                              tc_cache *c, const char *key, const tc_policy *p)
{
    it_read r = {0};
    tc_result res;
    int64_t t0 = it_now_ms();
    r.rc = fn(c, key, p, &res);
    r.took_ms = it_now_ms() - t0;
    if (r.rc == 0) {
        size_t n = res.value->len < sizeof(r.data) - 1 ? res.value->len : sizeof(r.data) - 1;
        memcpy(r.data, res.value->data, n);
        r.source = res.source;
        r.stale = res.stale;
        r.hash = res.value->hash;
        tc_value_release(res.value);
    }
    return r;
}

static inline it_read it_get_or_load(tc_cache *c, const char *key, const tc_policy *p)
{
    return it_call(tc_get_or_load, c, key, p);
}

static inline it_read it_get(tc_cache *c, const char *key, const tc_policy *p)
{
    return it_call(tc_get, c, key, p);
}

/* Reads key on c (get_or_load) until it answers want, at most ms; returns the last read.
 * first_new, if not NULL, gets the first read that answered want. */
static inline it_read it_read_until(tc_cache *c, const char *key, const tc_policy *p,
                                    const char *want, int ms, it_read *first_new)
{
    int64_t end = it_now_ms() + ms;
    it_read r;
    for (;;) {
        r = it_get_or_load(c, key, p);
        if (r.rc == 0 && strcmp(r.data, want) == 0) {
            if (first_new != NULL)
                *first_new = r;
            return r;
        }
        if (it_now_ms() >= end)
            return r;
        it_sleep_ms(10);
    }
}

static inline const char *it_source_name(tc_source s)
{
    return s == TC_SRC_L1 ? "L1" : s == TC_SRC_L2 ? "L2" : s == TC_SRC_LOADER ? "LOADER" : "?";
}

/* ---- Redis ------------------------------------------------------------------------------- */

/* The shared test Redis (scripts/test.sh) if there is one, else a private one in *own.
 * On a cluster: the shared cluster's first node, or a private cluster's. Returns the port,
 * or -1. */
static inline int it_redis_port(tct_redis *own)
{
    memset(own, 0, sizeof(*own));
    if (it_on_cluster()) {
        const char *shared = tct_env_cluster_nodes();
        if (shared == NULL)
            return it_private_cluster();
        it__seeds = shared;
        const char *colon = strchr(shared, ':');
        return colon != NULL ? atoi(colon + 1) : -1;
    }
    int port = tct_env_redis_port();
    if (port > 0)
        return port;
    return tct_redis_start(own) == 0 ? own->port : -1;
}

/* A direct connection for inspection, on database db; NULL on failure. */
static inline redisContext *it_redis(int port, int db)
{
    struct timeval tv = {5, 0};
    redisContext *r = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (r == NULL || r->err || redisSetTimeout(r, tv) != REDIS_OK) {
        fprintf(stderr, "it_redis: cannot connect to port %d\n", port);
        redisFree(r);
        return NULL;
    }
    redisReply *rep = redisCommand(r, "SELECT %d", db);
    int ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    if (!ok) {
        redisFree(r);
        return NULL;
    }
    return r;
}

/* Runs a command on r, or, when the answer is MOVED, on the node it names (a connection of
 * its own, so any thread may): the reply (freeReplyObject) or NULL. */
static inline redisReply *it_vcommand(redisContext *r, const char *fmt, va_list ap)
{
    va_list aq;
    va_copy(aq, ap);
    redisReply *rep = redisvCommand(r, fmt, aq);
    va_end(aq);
    for (int hops = 0; hops < 3 && rep != NULL && rep->type == REDIS_REPLY_ERROR &&
                       strncmp(rep->str, "MOVED ", 6) == 0;
         hops++) {
        const char *colon = strrchr(rep->str, ':');
        int port = colon != NULL ? atoi(colon + 1) : -1;
        freeReplyObject(rep);
        rep = NULL;
        struct timeval tv = {5, 0};
        redisContext *t = port > 0 ? redisConnectWithTimeout("127.0.0.1", port, tv) : NULL;
        if (t != NULL && !t->err && redisSetTimeout(t, tv) == REDIS_OK) {
            va_copy(aq, ap);
            rep = redisvCommand(t, fmt, aq);
            va_end(aq);
        }
        redisFree(t);
    }
    return rep;
}

static inline redisReply *it_command(redisContext *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = it_vcommand(r, fmt, ap);
    va_end(ap);
    return rep;
}

/* Runs a command; returns its integer reply, or LLONG_MIN when it is not an integer. */
static inline long long it_rint(redisContext *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = it_vcommand(r, fmt, ap);
    va_end(ap);
    long long v = rep != NULL && rep->type == REDIS_REPLY_INTEGER ? rep->integer : LLONG_MIN;
    freeReplyObject(rep);
    return v;
}

/* Runs a command; copies a string/status reply into out (empty when nil or another type).
 * Returns the reply's length, or -1 when it was not a string or status. */
static inline long it_rstr(redisContext *r, char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = it_vcommand(r, fmt, ap);
    va_end(ap);
    long len = -1;
    out[0] = '\0';
    if (rep != NULL && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)) {
        len = (long)rep->len;
        size_t m = rep->len < n - 1 ? rep->len : n - 1;
        memcpy(out, rep->str, m);
        out[m] = '\0';
    }
    freeReplyObject(rep);
    return len;
}

/* Every key of r's current database (SCAN, bounded) appended to keys. */
static inline char **it__scan(redisContext *r, char **keys, size_t *n)
{
    size_t cap = *n;
    char cursor[32] = "0";
    for (int rounds = 0; rounds < 10000; rounds++) {
        redisReply *rep = redisCommand(r, "SCAN %s COUNT 1000", cursor);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            freeReplyObject(rep);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        redisReply *list = rep->element[1];
        for (size_t i = 0; i < list->elements; i++) {
            if (*n == cap) {
                cap = cap ? cap * 2 : 64;
                keys = realloc(keys, cap * sizeof(*keys));
                if (keys == NULL)
                    abort();
            }
            keys[(*n)++] = strdup(list->element[i]->str);
        }
        freeReplyObject(rep);
        if (strcmp(cursor, "0") == 0)
            break;
    }
    return keys;
}

/* The ports of the cluster's masters, as r's node sees them (CLUSTER SLOTS); their number. */
static inline int it_masters(redisContext *r, int *ports, int max)
{
    redisReply *rep = redisCommand(r, "CLUSTER SLOTS");
    int n = 0;
    for (size_t i = 0; rep != NULL && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        int port = (int)rep->element[i]->element[2]->element[1]->integer, k = 0;
        while (k < n && ports[k] != port)
            k++;
        if (k == n && n < max)
            ports[n++] = port;
    }
    freeReplyObject(rep);
    return n;
}

/* Every key of the current database (on a cluster: of every master), as a malloc'd array of
 * strdup'd names; *n set. The caller frees with it_free_keys. */
static inline char **it_keys(redisContext *r, size_t *n)
{
    char **keys = NULL;
    *n = 0;
    if (!it_on_cluster())
        return it__scan(r, keys, n);
    int ports[16], nm = it_masters(r, ports, 16);
    for (int i = 0; i < nm; i++) {
        struct timeval tv = {5, 0};
        redisContext *m = redisConnectWithTimeout("127.0.0.1", ports[i], tv);
        if (m != NULL && !m->err)
            keys = it__scan(m, keys, n);
        redisFree(m);
    }
    return keys;
}

static inline void it_free_keys(char **keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

static inline int it_starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

#endif

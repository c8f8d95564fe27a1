/*
 * tiercache — a multi-layer cache: an in-process L1, Redis as L2, and a loader
 * that reaches the source of truth.
 *
 * This header is the whole public API of the cache engine. The engine knows
 * nothing of HTTP or of any application: keys and tags are strings, values are
 * opaque bytes with a content hash. docs/cache.md explains the guarantees and
 * names the tests that prove each of them.
 *
 * Threads: every function may be called from any number of threads at once,
 * except tc_cache_destroy(), which must be the last call on a cache.
 *
 * Errors: functions return 0 on success or a negative TC_E* code;
 * tc_strerror() names it.
 */
#ifndef TIERCACHE_CACHE_H
#define TIERCACHE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden symbols: what this header declares is all
 * it exports. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* Error codes. */
enum {
    TC_OK = 0,
    TC_ENOMEM = -1,    /* out of memory */
    TC_EINVAL = -2,    /* invalid argument (key too long, bad policy, ...) */
    TC_ENOTFOUND = -3, /* tc_get(): no usable entry */
    TC_ELOAD = -4,     /* the loader failed and no stale value could be served */
    TC_EREDIS = -5,    /* Redis unreachable, timed out, or answered an error */
    TC_ETIMEDOUT = -6, /* waited too long for another caller's load */
    TC_ECLOSED = -7,   /* the cache is being destroyed */
    TC_EUNAVAILABLE = -8, /* a loader's source cannot be reached, or did not answer in
                             time: what a loader returns to have its grace served */
};

const char *tc_strerror(int err);

/* Limits. */
#define TC_KEY_MAX 512 /* bytes in a key */
#define TC_TAG_MAX 128 /* bytes in a tag */
#define TC_TAGS_MAX 8  /* tags on one entry */

/* --------------------------------------------------------------------------
 * Values: immutable, reference-counted bytes.
 *
 * A value handed out by the cache belongs to the caller until it calls
 * tc_value_release(); the bytes stay valid until then, whatever the cache does
 * (eviction, invalidation, destroy).
 */
typedef struct tc_value {
    const char *data;
    size_t len;
    uint64_t hash; /* 64-bit content hash of data (XXH3); equal bytes, equal hash */
} tc_value;

void tc_value_retain(const tc_value *v);
void tc_value_release(const tc_value *v); /* NULL is a no-op */

/* Writes the content hash as 16 lower-case hex digits and a NUL (17 bytes). */
void tc_hash_hex(uint64_t hash, char out[17]);

/* --------------------------------------------------------------------------
 * Configuration.
 */
typedef uint64_t (*tc_clock_fn)(void *ctx); /* wall-clock milliseconds */

typedef struct tc_config {
    const char *redis_host;     /* NULL: no L2 and no bus (L1 only, one process) */
    /* Redis Sentinel instead of a fixed address: "host:port[,host:port...]" and
     * the master's name. The master is asked of them, and followed through
     * failovers (a new master is a new Redis: nothing cached before is
     * trusted). redis_host/port are then ignored; redis_password and redis_db
     * apply to the master. */
    const char *sentinels;
    const char *sentinel_master;
    const char *sentinel_password; /* AUTH on the sentinels, or NULL */
    /* A Redis Cluster instead: "host:port[,host:port...]", some of its nodes
     * (any one that answers gives the slot map). Every key goes to the master
     * that serves its slot; the engine follows MOVED and ASK, refreshes the map,
     * keeps a pool and a breaker per master. redis_db must be 0 (a cluster has
     * no other); redis_password applies to every node. docs/cache.md, "On a
     * Redis Cluster". redis_host/port and sentinels are then ignored. */
    const char *cluster_nodes;
    /* How often the cluster's slot map is asked again; a redirection or a master
     * that fails asks sooner (at most every 50 ms). Default 1000. */
    int cluster_refresh_ms;
    /* Where this process reaches a node the cluster names (in CLUSTER SLOTS, MOVED,
     * ASK), for nodes behind NAT (or a test's proxies): called with the address
     * as named, it may change host (n bytes) and port in place. NULL: as named. */
    void (*cluster_address)(void *ctx, char *host, size_t n, int *port);
    void *cluster_address_ctx;
    int redis_port;             /* default 6379 */
    int redis_db;               /* SELECT index, default 0 */
    const char *redis_password; /* AUTH, or NULL */
    const char *prefix;         /* every Redis key starts with it; default "tc:" */

    size_t l1_max_bytes; /* L1 memory limit; default 64 MiB; 0 disables L1 */
    int l1_shards;       /* power of two; default 16 */
    /* Admission (TinyLFU): a new entry that needs room enters L1 only if its key
     * was looked up more often, lately, than each entry it would evict, so
     * a scan over many cold keys does not push the hot set out. 0: plain LRU.
     * Default 1. Only what L1 keeps changes: no guarantee depends on it. */
    int l1_admission;

    int redis_timeout_ms;   /* per command; default 50 */
    int connect_timeout_ms; /* default 100 */
    int redis_pool_max;     /* connections for commands; default 16 */
    int breaker_failures;   /* consecutive failures that open the breaker; default 5 */
    int breaker_open_ms;    /* how long it stays open before one probe; default 1000 */

    int refresh_workers; /* background refresh threads; default 2 */
    int refresh_queue;   /* bounded queue of refreshes; default 1024 */
    int wait_timeout_ms; /* how long a caller waits for another's load; default 5000 */
    int lock_ms;         /* cross-process single-flight lock (0: off); default 0 */

    /* When true, this is the only process that writes through this prefix:
     * L1 stays trusted while the invalidation bus is down. */
    int single_instance;
    /* Invalidations that could not reach Redis are kept and replayed before
     * L2 is used again; past this many, the whole cache is cleared instead. */
    int pending_invalidations_max; /* default 4096 */

    /* What this instance may hold in Redis: records it wrote and that have not
     * expired, by bytes and by count (0: no limit). A write past either is
     * not made (the value is still served, from L1 and the loader), counted in
     * l2_budget_refusals and reported through log. The count errs high (a
     * record written again before it expires counts twice meanwhile). For a
     * Redis that will not evict (a job queue shares it): docs/cache.md. */
    uint64_t l2_budget_bytes, l2_budget_keys;

    /* How long an L1 stays trusted after the bus last proved it had every
     * invalidation (the lease; docs/cache.md "The fleet"): an instance that
     * cannot renew it stops serving from L1 within this bound, and an
     * invalidation that a live instance does not acknowledge returns after
     * it. Default 250 ms. */
    int lease_ms;

    /* Values of at least this many bytes are stored in Redis compressed (zstd),
     * when that makes them an eighth smaller or more (0: never). L1 keeps them
     * uncompressed; hashes and bytes handed out are the same either way.
     * Default 1024: below it the bytes saved are few and the decompression
     * (a microsecond or two on every L2 hit) is not paid back (docs/cache.md). */
    size_t l2_compress_min_bytes;

    tc_clock_fn clock; /* NULL: CLOCK_REALTIME */
    void *clock_ctx;

    /* Where the engine reports a change of state an operator should know of
     * (Redis lost and back, the breaker opened and closed, a new Redis
     * incarnation, L1 trust lost and back, the budget full), once per change,
     * on the thread that saw it: component is "redis", "bus", "cache" or
     * "sentinel"; msg says what and why. NULL: silent. */
    void (*log)(void *ctx, int level, const char *component, const char *msg);
    void *log_ctx;
} tc_config;

enum { TC_LOG_INFO = 0, TC_LOG_WARN = 1, TC_LOG_ERROR = 2 };

/* Fills *cfg with the defaults above. */
void tc_config_init(tc_config *cfg);

typedef struct tc_cache tc_cache;

/* Creates a cache. Redis being down is not an error: the cache starts with
 * the breaker open and connects when Redis is back (with sentinels: when one
 * names a master). On failure returns NULL and, if err is not NULL, sets *err
 * (TC_EINVAL for a malformed sentinel list). */
tc_cache *tc_cache_create(const tc_config *cfg, int *err);

/* Stops the workers and the bus, frees everything. NULL is a no-op. Values
 * the caller still holds stay valid. */
void tc_cache_destroy(tc_cache *c);

/* --------------------------------------------------------------------------
 * Policies and loading.
 */

/* A growable output buffer for loaders. */
typedef struct tc_buf {
    char *data;
    size_t len, cap, max;
} tc_buf;

int tc_buf_append(tc_buf *b, const void *data, size_t len);
int tc_buf_printf(tc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * A loader reads the source of truth for a key and appends the value to out.
 * Returns 0, or a negative code (its own, or TC_ELOAD) on failure.
 * ctx is the policy's loader_ctx; it must stay valid for the life of the cache,
 * since a background refresh may call the loader after the caller has left.
 * Everything a loader needs about the request must be derivable from the key.
 */
typedef int (*tc_loader_fn)(void *ctx, const char *key, tc_buf *out);

#define TC_POLICY_NO_L1 0x1 /* keep this entry out of L1 */
#define TC_POLICY_NO_L2 0x2 /* keep this entry out of Redis */

typedef struct tc_policy {
    uint32_t fresh_ms; /* served as fresh for this long */
    uint32_t stale_ms; /* then served stale (with one background refresh),
                          or on loader error, for this much longer */
    const char *tags[TC_TAGS_MAX];
    int ntags;
    /* after stale, how much longer this process keeps the entry in L1 to serve
     * it when the loader returns TC_EUNAVAILABLE (its source is down): served
     * stale, and the loader is tried again at most once a second per entry.
     * Redis's TTL is not extended. An invalidated entry is never served. */
    uint32_t grace_ms;
    double xfetch_beta; /* >0: probabilistic early refresh (XFetch), 1.0 typical */
    unsigned flags;     /* TC_POLICY_* */
    tc_loader_fn loader;
    void *loader_ctx;
} tc_policy;

/* Where an answer came from. */
typedef enum tc_source {
    TC_SRC_L1 = 0,
    TC_SRC_L2 = 1,
    TC_SRC_LOADER = 2, /* the loader ran (for this caller, or for one it waited for) */
} tc_source;

typedef struct tc_result {
    const tc_value *value; /* owned by the caller: tc_value_release() */
    tc_source source;
    int stale;      /* 1: past its fresh time (a refresh was started) */
    int64_t ttl_ms; /* time left fresh (negative when stale) */
    int64_t age_ms; /* time since the value was loaded */
} tc_result;

/*
 * L1 -> L2 -> loader. One load per key at a time in this process (the others
 * wait for it); across processes too when lock_ms is set. On success fills
 * *res; the caller releases res->value.
 */
int tc_get_or_load(tc_cache *c, const char *key, const tc_policy *p, tc_result *res);

/*
 * For callers that must not block a thread waiting for another's load (an
 * event loop, a worker pool): if a load of key is running in this process that
 * tc_get_or_load would join now, arranges for cb(arg, err) to be called once it
 * is over — from the thread that ran it, after its result is stored, with the
 * load's error or 0 — and returns 0. The caller then reads the key again
 * (that read is what the metrics count). TC_ENOTFOUND when there is no such load (cb is never
 * called); TC_EINVAL, TC_ENOMEM.
 */
int tc_await_flight(tc_cache *c, const char *key, void (*cb)(void *arg, int err), void *arg);

/* L1 -> L2 only; TC_ENOTFOUND when there is no fresh or stale-allowed entry.
 * p gives the tags the entry must carry (NULL: no tags). No refresh is run. */
int tc_get(tc_cache *c, const char *key, const tc_policy *p, tc_result *res);

/* L1 only, and never blocks on I/O: for an event-loop thread that must not
 * wait for Redis or a loader. A stale entry is returned (and, if p has a
 * loader, one background refresh queued). TC_ENOTFOUND otherwise. */
int tc_peek(tc_cache *c, const char *key, const tc_policy *p, tc_result *res);

/* Stores a value computed by the caller under p's times and tags. An
 * invalidation of one of the tags that lands while the caller computed the
 * value is NOT detected; use tc_get_or_load for that guarantee. */
int tc_set(tc_cache *c, const char *key, const void *data, size_t len, const tc_policy *p);

/*
 * Invalidation. When these return 0, no later read in any process on this
 * Redis and prefix returns the old entry: every live instance has applied the
 * invalidation and said so, or has stopped trusting its L1 (it could not
 * renew its lease; see lease_ms). That costs a round trip to Redis and one
 * from each other instance, or at most lease_ms when one does not answer. An
 * invalidated entry is never served stale. If Redis cannot be reached the
 * invalidation is applied locally, kept, and replayed before Redis is read
 * again; the return is then TC_EREDIS.
 */
int tc_invalidate_key(tc_cache *c, const char *key);
int tc_invalidate_tag(tc_cache *c, const char *tag);
/*
 * Several tags at once, as one step: one round trip, one wait for the other
 * instances; "#<key>" names the one entry under key (tc_invalidate_key).
 * While Redis cannot be reached it tries again for up to wait_ms (0: once), so
 * a write made during a short stall or a failover still becomes visible
 * everywhere before the caller answers; past that, as above.
 */
int tc_invalidate_tags(tc_cache *c, const char *const *tags, int ntags, int wait_ms);
/*
 * Whether an invalidation made now would reach Redis: 0 once a round trip to
 * it has succeeded, trying for up to wait_ms; TC_EREDIS if none did; 0 at
 * once without Redis. A writer asks before it changes the source of truth,
 * and refuses the write rather than make one the fleet might not see.
 */
int tc_ready(tc_cache *c, int wait_ms);
int tc_delete(tc_cache *c, const char *key); /* = tc_invalidate_key */
/* Every entry under the prefix, in every process: one counter and one message,
 * no FLUSHDB, no scan of the keyspace. */
int tc_clear(tc_cache *c);

/*
 * A rate limit shared by every process on this Redis and prefix: a token
 * bucket of `burst` tokens refilled at `per_minute` a minute, kept in Redis as
 * one number under <prefix>~rl:<name>, on Redis's clock (hosts need not agree
 * on the time). One round trip. Returns 1 (a token taken), 0 (none left:
 * *retry_after_ms until one is), or a negative error when it cannot tell
 * (TC_EREDIS: no Redis, the breaker open, a failure; TC_EINVAL): the caller
 * decides what that means, e.g. falls back to a per-process limit.
 */
int tc_rate_take(tc_cache *c, const char *name, int burst, int per_minute,
                 int64_t *retry_after_ms);

/* --------------------------------------------------------------------------
 * Metrics. A namespace is the part of a key before its first ':'
 * ("user" for "user:42"); keys without ':' count under "-".
 */
#define TC_NS_MAX 32
#define TC_NS_NAME_MAX 32
#define TC_HIST_BUCKETS 24 /* bucket i counts latencies < 2^i microseconds; the last is +Inf */

typedef struct tc_histogram {
    uint64_t buckets[TC_HIST_BUCKETS];
    uint64_t count;
    uint64_t sum_us;
} tc_histogram;

typedef struct tc_ns_metrics {
    char name[TC_NS_NAME_MAX];
    uint64_t l1_hits, l2_hits;
    uint64_t misses;           /* loads this process ran for a caller */
    uint64_t coalesced;        /* callers that waited for another caller's load */
    uint64_t stale_served;     /* answers past their fresh time */
    uint64_t refreshes;        /* background refreshes run */
    uint64_t refresh_dropped;  /* refreshes not queued: the queue was full */
    uint64_t load_errors;      /* loader failures, foreground or background */
    uint64_t invalidations;    /* keys invalidated in this namespace */
    tc_histogram hit_latency;  /* L1 hits, microseconds: one hit in 16 per thread is timed */
    tc_histogram load_latency; /* loader run */
} tc_ns_metrics;

typedef struct tc_metrics {
    int nns;
    tc_ns_metrics ns[TC_NS_MAX];
    uint64_t tag_invalidations, clears, bus_messages, bus_reconnects, pending_invalidations;
    uint64_t l1_entries, l1_bytes, l1_evictions;
    uint64_t l1_rejections; /* new entries admission kept out of L1 (l1_admission) */
    uint64_t redis_errors, breaker_opens;
    int breaker_open; /* 1 while L2 is skipped */
    int bus_connected;
    int l1_trusted; /* 1 while this instance's lease holds (always without a bus) */
    uint64_t lease_lapses;       /* times the lease ran out while subscribed */
    uint64_t incarnations;       /* new Redis processes seen after the first */
    uint64_t ack_timeouts;       /* invalidations that waited out the lease for an instance */
    uint64_t l2_budget_bytes, l2_budget_keys; /* what the budget counts now (0: no budget) */
    uint64_t l2_budget_refusals;              /* records not written: over the budget */
    /* On a Redis Cluster: MOVED and ASK redirections followed, commands sent
     * again (TRYAGAIN, an invalidation fenced while the bus's slot moves),
     * commands failed because their slot had no master (CLUSTERDOWN), slot
     * maps read. 0 on one Redis. */
    uint64_t cluster_moved, cluster_ask, cluster_retries, cluster_down, cluster_refreshes;
    uint64_t l2_decode_errors;                /* records read from Redis that were no record, or
                                                 whose compressed value did not decode: misses */
    uint64_t l2_compressed_writes;            /* records written with their value compressed */
    uint64_t l2_compressed_saved_bytes;       /* what compression took off those records' values */
    tc_histogram redis_latency;
    tc_histogram invalidate_latency; /* until applied fleet-wide (sent and acknowledged) */
    /* The bus delivery lag: from another instance sending an invalidation (its wall
     * clock) to this one applying it (ours), once per invalidation; a clock skew
     * between hosts adds to it (a negative difference counts as 0). */
    tc_histogram bus_lag;
} tc_metrics;

/* Copies the current counters into *m (no allocation). */
void tc_metrics_snapshot(tc_cache *c, tc_metrics *m);

/* --------------------------------------------------------------------------
 * Hot keys and hot tags: the keys read most and the tags invalidated most by
 * this process, lately (counts are halved as they age), estimated in fixed
 * memory (Space-Saving; src/cache/topk.c says how, and what it costs a read).
 * A read counts once when it is answered (tc_get_or_load, tc_get, tc_peek);
 * an invalidation counts each of its tags ("#<key>" for a key, "*" for
 * tc_clear) where it is made, not where it is applied from the bus.
 */
#define TC_HOT_MAX 16      /* names in each list */
#define TC_HOT_NAME_MAX 96 /* bytes of a name with its NUL: longer ones are cut */

typedef struct tc_hot_item {
    char name[TC_HOT_NAME_MAX];
    uint64_t count; /* counted lately: an estimate, never below the true count by more */
    uint64_t error; /* than it is above it by at most this (other names' counts in it) */
} tc_hot_item;

typedef struct tc_hot {
    int nkeys, ntags;
    tc_hot_item keys[TC_HOT_MAX]; /* the most read first */
    tc_hot_item tags[TC_HOT_MAX]; /* the most invalidated first */
    uint64_t key_reads;           /* reads counted lately (what keys' counts are out of) */
    uint64_t tag_invalidations;   /* the same for tags */
    uint64_t skipped;             /* reads not counted: their thread's counter was busy */
} tc_hot;

/* Copies the current top lists into *h (a few microseconds: it locks each
 * counter in turn, and reads counted meanwhile are skipped). */
void tc_hot_snapshot(tc_cache *c, tc_hot *h);

/* Estimated percentile (0..100) of a histogram, in microseconds. */
double tc_histogram_percentile(const tc_histogram *h, double pct);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif

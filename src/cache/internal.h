/*
 * What the cache engine's modules share with each other and with nobody else.
 * A library user includes <tiercache/cache.h>; tests and fuzz targets may
 * include this header to reach a module directly.
 *
 *   value.c    reference-counted values, output buffers, hashing, errors
 *   codec.c    the L2 record format (a pure parser: fuzz/codec.c)
 *   compress.c values stored compressed in L2 (zstd)
 *   tags.c     interned tags with their local generation counters
 *   l1.c       the sharded in-process table with its byte limit
 *   admit.c    the frequency sketch of L1's admission policy (TinyLFU)
 *   topk.c     hot keys and hot tags (Space-Saving, striped)
 *   metrics.c  per-namespace counters and histograms
 *   pool.c     a fixed set of threads over a bounded queue
 *   redis.c    pooled hiredis connections, timeouts, circuit breaker
 *   bus.c      the invalidation subscriber thread
 *   fleet.c    the L1 lease, membership and acknowledged invalidations
 *   sentinel.c where the master is, per Redis Sentinel
 *   cluster.c  the L2 on a Redis Cluster: slots, routing, redirections (cluster.h)
 *   cache.c    get-or-load, single-flight, refresh, invalidation
 */
#ifndef TC_CACHE_INTERNAL_H
#define TC_CACHE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "base/assert.h"
#include "base/cond.h"
#include "base/time.h"
#include "tiercache/cache.h"

/* ---- value.c ------------------------------------------------------------ */

uint64_t tc__hash(const void *data, size_t len);
/* A new value holding a copy of data, with refcount 1. hash 0 computes it. */
const tc_value *tc__value_new(const void *data, size_t len, uint64_t hash);
/* A new value (refcount 1) of len bytes that the caller writes, through *bytes,
 * and hashes (->hash) before anyone else sees it. NULL on ENOMEM. */
tc_value *tc__value_alloc(size_t len, char **bytes);

/* Where the engine's modules report a change of state (tc_config.log). */
typedef struct tc__logger {
    void (*fn)(void *ctx, int level, const char *component, const char *msg);
    void *ctx;
} tc__logger;
/* Formats and hands one line to lg (nothing when lg->fn is NULL). */
void tc__say(const tc__logger *lg, int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A random starting point for a tag counter, in [10^14, 10^15): a counter that
 * is lost and made again never comes back at a value an entry recorded. */
uint64_t tc__random_epoch(void);
/* A random amount in [10^9, 10^12) by which the global tag moves when a Redis
 * is met that was not written through as it is now (its records may predate
 * invalidations it never saw): never back to an old value. */
uint64_t tc__random_increment(void);
/* How long a tag counter that an invalidation creates lives (longer than any
 * load that may have seen it missing; a write of an entry carrying it then
 * extends it). */
#define TC__NEW_TAG_TTL_MS 600000

/* ---- codec.c ------------------------------------------------------------ */

/* The record stored in Redis under <prefix><key>. Versions are those of the
 * entry's tags as read before its loader ran: [0] the global tag, [1] the
 * key's own tag, [2..] the policy's tags in order. */
typedef struct tc__record {
    uint64_t created_ms, fresh_until, stale_until;
    uint32_t load_ms;
    uint64_t hash;
    int nversions;
    int64_t versions[TC_TAGS_MAX + 2];
    int ntags;                     /* policy tags */
    const char *tags[TC_TAGS_MAX]; /* point into the decoded bytes, not NUL-terminated */
    uint8_t taglen[TC_TAGS_MAX];
    unsigned flags; /* 0, or TC__REC_ZSTD: data is a zstd frame of raw_len bytes */
    size_t raw_len;
    const char *data; /* points into the decoded bytes */
    size_t len;
} tc__record;

#define TC__REC_ZSTD 0x1u
/* The largest value stored compressed: a record never claims more, so a hostile
 * or corrupt one cannot make a reader allocate more than this. */
#define TC__RAW_MAX (16u << 20)

/* Appends the encoding of r to out. */
int tc__record_encode(const tc__record *r, tc_buf *out);
/* Parses buf; pointers in *r point into buf. Returns 0 or TC_EINVAL. Pure. */
int tc__record_decode(const char *buf, size_t len, tc__record *r);

/* ---- compress.c --------------------------------------------------------- */

/* Before r is written: when r->len >= min_bytes (min_bytes > 0), at most
 * TC__RAW_MAX, and zstd makes it at least an eighth smaller, puts the frame in
 * *z (the caller frees z->data) and points r at it (flags, raw_len, data, len):
 * 1. 0: r is left as it was. */
int tc__record_compress(tc__record *r, size_t min_bytes, tc_buf *z);
/* The value of a decoded record, a new reference: its bytes, or for a
 * compressed one the frame's content, which must be exactly raw_len bytes
 * with the record's hash. TC_EINVAL (a corrupt record: a miss), TC_ENOMEM. */
int tc__record_value(const tc__record *r, const tc_value **out);

/* ---- tags.c ------------------------------------------------------------- */

typedef struct tc__tag tc__tag;
typedef struct tc__tags tc__tags;

struct tc__tag {
    _Atomic uint64_t gen; /* bumped by every invalidation of the tag seen here */
    /* private to tags.c */
    tc__tags *owner;
    tc__tag *next;
    uint64_t hash;
    unsigned refs;
    char name[];
};

tc__tags *tc__tags_new(void);
void tc__tags_free(tc__tags *t);
/* Interns name and returns it with a reference; NULL on ENOMEM. */
tc__tag *tc__tag_get(tc__tags *t, const char *name, size_t len);
void tc__tag_ref(tc__tag *tag); /* one more reference to an interned tag */
void tc__tag_put(tc__tag *tag); /* NULL is a no-op */
/* Bumps the generation of name if it is interned here; returns whether it was. */
bool tc__tags_bump(tc__tags *t, const char *name, size_t len);

/* ---- metrics.c ---------------------------------------------------------- */

typedef struct tc__hist {
    _Atomic uint64_t buckets[TC_HIST_BUCKETS];
    _Atomic uint64_t count, sum_us;
} tc__hist;

typedef struct tc__ns {
    char name[TC_NS_NAME_MAX];
    _Atomic uint64_t l1_hits, l2_hits, misses, coalesced, stale_served, refreshes, refresh_dropped,
        load_errors, invalidations;
    tc__hist hit_latency, load_latency;
} tc__ns;

typedef struct tc__metrics {
    pthread_mutex_t lock; /* guards adding a namespace */
    _Atomic int nns;
    tc__ns ns[TC_NS_MAX];
    _Atomic uint64_t tag_invalidations, clears, bus_messages, bus_reconnects;
    _Atomic uint64_t redis_errors, breaker_opens;
    _Atomic uint64_t lease_lapses, incarnations, ack_timeouts, budget_refusals;
    _Atomic uint64_t cluster_moved, cluster_ask, cluster_retries, cluster_down, cluster_refreshes;
    _Atomic uint64_t l2_decode_errors, l2_compressed, l2_compress_saved;
    tc__hist redis_latency, invalidate_latency;
    tc__hist bus_lag; /* another instance's invalidation: sent (its clock) to applied here */
} tc__metrics;

void tc__metrics_init(tc__metrics *m);
void tc__metrics_destroy(tc__metrics *m);
/* The namespace of key (the part before ':'), added on first sight; when the
 * table is full, the last slot ("other") counts the rest. Never NULL. */
tc__ns *tc__metrics_ns(tc__metrics *m, const char *key);
void tc__hist_add(tc__hist *h, uint64_t us);
void tc__hist_copy(const tc__hist *h, tc_histogram *out);

#define TC__INC(field) atomic_fetch_add_explicit(&(field), 1, memory_order_relaxed)

/* ---- admit.c ------------------------------------------------------------ */

/* How often a key hash was seen lately: a count-min sketch of 4-bit counters
 * that halves itself every 10 additions per entry of its table (admit.c's
 * DESIGN). Not thread-safe: l1.c keeps one per shard, under the shard's lock. */
typedef struct tc__sketch {
    uint64_t *table;
    uint32_t mask, words; /* counters per row - 1; 64-bit words per row */
    uint32_t additions;   /* since the last halving */
} tc__sketch;

/* Sized for a table of at most `entries` entries: 0 or TC_ENOMEM. */
int tc__sketch_init(tc__sketch *s, size_t entries);
void tc__sketch_free(tc__sketch *s);
/* Counts h once; entries: what the table holds now (how often it halves). */
void tc__sketch_add(tc__sketch *s, uint64_t h, size_t entries);
unsigned tc__sketch_freq(const tc__sketch *s, uint64_t h); /* 0..15 */

/* ---- topk.c ------------------------------------------------------------- */

/* The most counted names, lately (Space-Saving, striped: topk.c's DESIGN). */
typedef struct tc__topk tc__topk;

tc__topk *tc__topk_new(int nstripes); /* NULL on ENOMEM */
void tc__topk_free(tc__topk *t);      /* NULL is a no-op */
/* Counts name (len bytes, hash its 64-bit hash) once, on this thread's stripe;
 * never waits: skipped (and counted as skipped) when the stripe is busy. */
void tc__topk_add(tc__topk *t, const char *name, size_t len, uint64_t hash);
/* The top max names into out, most counted first; returns how many. *total:
 * the counts they are out of; *skipped: counts skipped since the start. */
int tc__topk_read(tc__topk *t, tc_hot_item *out, int max, uint64_t *total, uint64_t *skipped);

/* ---- l1.c --------------------------------------------------------------- */

typedef struct tc__lru {
    struct tc__lru *prev, *next;
} tc__lru;

typedef struct tc__entry {
    _Atomic unsigned refs;
    /* Refresh state: 0 none yet; UINT64_MAX one is running or done; any other
     * value: the clock time after which a failed refresh may be tried again. */
    _Atomic uint64_t refresh_at;
    const tc_value *value;
    uint64_t created_ms, fresh_until, stale_until;
    uint64_t grace_until;              /* stale_until + the policy's grace_ms */
    _Atomic uint64_t grace_serve_until; /* the loader failed: serve from grace until then */
    uint32_t load_ms;
    tc__ns *ns;
    int ntags; /* [0] global, [1] the key's own, then policy tags */
    tc__tag *tags[TC_TAGS_MAX + 2];
    uint64_t gens[TC_TAGS_MAX + 2]; /* their generations before the load began */
    /* private to l1.c */
    struct tc__entry *hnext;
    tc__lru lru;
    uint64_t khash;
    size_t charge;
    uint16_t klen;
    char key[];
} tc__entry;

typedef struct tc__l1 tc__l1;

/* admission: a new key displaces the least recently used entries only if the
 * shard's sketch has seen it more often than each of them (TinyLFU). */
tc__l1 *tc__l1_new(size_t max_bytes, int nshards, bool admission);
void tc__l1_free(tc__l1 *l1);
/* A new unlinked entry (refs 1) taking over one reference to value and to each tag. */
tc__entry *tc__entry_new(const char *key, size_t klen, uint64_t khash, const tc_value *value);
void tc__entry_release(tc__entry *e); /* NULL is a no-op */
/* The entry under key with a reference for the caller, or NULL. */
tc__entry *tc__l1_get(tc__l1 *l1, const char *key, size_t klen, uint64_t khash);
/* Inserts e (the table takes its own reference), replacing any entry under
 * the same key, then evicts from the least recently used end to fit. With
 * admission, a key not in the table that would have to evict an entry seen
 * more often than itself is not inserted (counted); returns whether e is in. */
bool tc__l1_put(tc__l1 *l1, tc__entry *e);
/* Unlinks the entry under key; if only is not NULL, only when it is that entry. */
void tc__l1_remove(tc__l1 *l1, const char *key, size_t klen, uint64_t khash, tc__entry *only);
void tc__l1_clear(tc__l1 *l1);
void tc__l1_stats(tc__l1 *l1, uint64_t *entries, uint64_t *bytes, uint64_t *evictions);
/* New entries admission kept out (they were not seen as often as what they would evict). */
uint64_t tc__l1_rejections(tc__l1 *l1);

/* ---- pool.c ------------------------------------------------------------- */

typedef struct tc__pool tc__pool;
typedef void (*tc__job_fn)(void *arg, bool cancelled);

tc__pool *tc__pool_new(int nthreads, int queue_max);
/* Queues fn(arg, false); returns -1 at once when the queue is full. */
int tc__pool_submit(tc__pool *p, tc__job_fn fn, void *arg);
/* Runs the jobs already running to the end, calls the queued ones with
 * cancelled = true, joins the threads. */
void tc__pool_free(tc__pool *p);

/* ---- redis.c ------------------------------------------------------------ */

typedef struct tc__redis tc__redis;
struct redisReply;
struct redisContext;

/* What the transport tells the engine, on the thread that noticed. */
typedef struct tc__redis_events {
    /* A Redis process other than the one dialed before answers (restarted,
     * restored, failed over): called before its first connection is used. */
    void (*incarnation)(void *ctx, const char *run_id);
    void *ctx;
    /* A master of a cluster (cluster.c): run on every new connection instead of
     * SCRIPT_EPOCH, once the scripts are loaded and before the connection is
     * used; it writes the process's run_id (at most idn bytes). 0, or nonzero
     * to refuse the connection, why said in why. NULL: one Redis. */
    int (*dialed)(void *dctx, struct redisContext *conn, char *run_id, size_t idn, char *why,
                  size_t wn);
    void *dctx;
} tc__redis_events;

/* One Redis at cfg->redis_host, or, when cfg->cluster_nodes is set, a Redis
 * Cluster: then every call below is the cluster's (cluster.h). */
tc__redis *tc__redis_new(const tc_config *cfg, tc__metrics *m, tc__redis_events ev);
void tc__redis_free(tc__redis *r);
/* Runs one command. Returns the reply (free with freeReplyObject) or NULL when
 * Redis is unreachable, timed out, the breaker is open, or it answered an
 * error (that counts as a failure too). */
struct redisReply *tc__redis_command(tc__redis *r, int argc, const char **argv, const size_t *lens);
/* Runs one of the engine's Lua scripts (EVALSHA, loading it when Redis lost it). */
struct redisReply *tc__redis_script(tc__redis *r, int script, int nkeys, int argc,
                                    const char **argv, const size_t *lens);
enum {
    TC__SCRIPT_READ,
    TC__SCRIPT_WRITE,
    TC__SCRIPT_INVALIDATE,
    TC__SCRIPT_UNLOCK,
    TC__SCRIPT_RATE,
    TC__SCRIPT_REGISTER,
    TC__SCRIPT_EPOCH, /* run by the transport itself on every new connection */
    /* on a cluster, the single-slot steps of WRITE and INVALIDATE (cluster.c) */
    TC__SCRIPT_TAGPREP,
    TC__SCRIPT_BUMP,
    TC__SCRIPT_META,
    TC__NSCRIPTS
};
/* A script's text (for EVAL when a node lost it) and, once a connection has
 * loaded it, its SHA1 ("" before). */
const char *tc__redis_script_text(int script);
void tc__redis_sha(tc__redis *r, int script, char out[41]);
/* One pooled connection, for a caller that pipelines on it (cluster.c):
 * ctx NULL when none is to be had (breaker open, pool exhausted past the
 * timeout, unreachable). Give it back with tc__redis_release: healthy, or not
 * (it is closed and counts against the breaker). */
typedef struct tc__redis_conn {
    struct redisContext *ctx;
    unsigned gen; /* the address generation it was dialed under */
} tc__redis_conn;
tc__redis_conn tc__redis_acquire(tc__redis *r);
/* Whether a connection that failed was closed or reset by the server (not a timeout). */
bool tc__redis_conn_lost(const struct redisContext *ctx);
/* false: dialed before the address moved; what it answered must not be used. */
bool tc__redis_release(tc__redis *r, tc__redis_conn c, bool healthy);
bool tc__redis_breaker_open(tc__redis *r);
/* Why the last command or dial failed (for a log line). */
void tc__redis_cause(tc__redis *r, char *out, size_t n);
/* On a cluster: read the slot map again soon (within 50 ms); else nothing. */
void tc__redis_refresh_soon(tc__redis *r);
/* The address commands go to now. 0, or TC_EINVAL if host does not fit in n. */
int tc__redis_address(tc__redis *r, char *host, size_t n, int *port);
/* Moves commands to another address (a failover): connections to the old one
 * are closed as they come back, and the breaker is reset. Returns 1 if it
 * moved, 0 if it was the same, TC_ENOMEM. */
int tc__redis_set_address(tc__redis *r, const char *host, int port);

/* ---- bus.c -------------------------------------------------------------- */

typedef struct tc__bus tc__bus;
/* Everything is called on the bus thread. */
typedef struct tc__bus_handler {
    void *ctx;
    /* where to subscribe now: 0, or nonzero to wait and ask again */
    int (*address)(void *ctx, char *host, size_t n, int *port);
    void (*connected)(void *ctx); /* subscribed: invalidations from now on arrive */
    /* sharded (a cluster): the id of the node subscribed to, before connected() */
    void (*node)(void *ctx, const char *id);
    /* subscription lost, and why: messages may be missed */
    void (*lost)(void *ctx, const char *cause);
    /* no subscription could be made, and why (once until one is made) */
    void (*unreachable)(void *ctx, const char *cause);
    /* sharded: a subscription could not be made (where to is asked again next) */
    void (*stale)(void *ctx);
    void (*message)(void *ctx, const char *msg, size_t len); /* on the shared channel */
    void (*direct)(void *ctx, const char *msg, size_t len);  /* on this instance's own */
    /* the PONG of a ping sent at sent_us (monotonic): every message published
     * before Redis saw that ping has been handed over */
    void (*pong)(void *ctx, uint64_t sent_us);
    void (*batch_done)(void *ctx); /* after the messages of one read */
    void (*tick)(void *ctx);       /* at least every ping interval, up or down: deferred work */
} tc__bus_handler;

/* Subscribes to channel and direct, pinging every ping_every_ms. On a cluster
 * (cfg->cluster_nodes) with SSUBSCRIBE: both are in the meta slot; a node that
 * stops serving it (sunsubscribe), or an address() that changes, is a lost
 * subscription, made again where address() says. */
tc__bus *tc__bus_start(const tc_config *cfg, const char *channel, const char *direct,
                       int ping_every_ms, tc__bus_handler h, tc__metrics *m);
/* Waits up to ms for the first subscription; returns whether it is up. */
bool tc__bus_wait_connected(tc__bus *b, int ms);
/* Drops the subscription and subscribes again (to the address asked anew). */
void tc__bus_reconnect(tc__bus *b);
void tc__bus_stop(tc__bus *b);

/* ---- budget.c ------------------------------------------------------------ */

typedef struct tc__budget tc__budget;

/* NULL when both limits are 0 (no budget), or on ENOMEM. Times are monotonic
 * ms (tc_mono_ms(); a test passes its own). */
tc__budget *tc__budget_new(uint64_t max_bytes, uint64_t max_keys, uint64_t now);
void tc__budget_free(tc__budget *b); /* NULL is a no-op */
/* Before writing a record of bytes living ttl_ms: counts it if it fits. */
enum {
    TC__BUDGET_OK = 0,        /* fits */
    TC__BUDGET_BACK = 1,      /* fits, and the write before was refused */
    TC__BUDGET_FULL = -1,     /* refused */
    TC__BUDGET_NOW_FULL = -2, /* refused, and the write before fitted */
};
int tc__budget_take(tc__budget *b, uint64_t now, uint64_t bytes, uint64_t ttl_ms);
/* What is counted now (records written and not expired). */
void tc__budget_read(tc__budget *b, uint64_t now, uint64_t *bytes, uint64_t *keys);

/* ---- fleet.c ------------------------------------------------------------- */

typedef struct tc__fleet tc__fleet;
typedef struct tc__fleet_wait tc__fleet_wait;

/* An invalidation message on the bus, "<seq> <writer>[@<sent>] <tag>" (published by the
 * INVALIDATE script, redis.c): sent is the writer's wall clock, in µs since the epoch,
 * when it sent it; messages of builds before it carry none. */
typedef struct tc__bus_msg {
    uint64_t seq;
    const char *writer; /* points into the message; wlen bytes */
    size_t wlen;
    int64_t sent_us; /* 0: not given, or not a number (the tag still counts) */
    const char *tag; /* points into the message; taglen bytes, at least one */
    size_t taglen;
} tc__bus_msg;
/* Parses one message: 0, or TC_EINVAL when it is not one. Pure (fuzz/busmsg.c). */
int tc__bus_msg_parse(const char *msg, size_t len, tc__bus_msg *m);

/* The lease, membership and acknowledgements of this instance (cfg: lease_ms,
 * prefix, redis_db, log). NULL on ENOMEM. */
tc__fleet *tc__fleet_new(const tc_config *cfg, tc__redis *r, tc__metrics *m, const char *instance,
                         const char *channel);
void tc__fleet_free(tc__fleet *f); /* NULL is a no-op */
const char *tc__fleet_direct(const tc__fleet *f); /* our own channel, for the bus */
/* Bus thread, on a cluster: the node the bus listens on now; registered with
 * the membership ("<id>/<lease>@<node>"), which the meta script checks. */
void tc__fleet_node(tc__fleet *f, const char *node);
/* Any thread: whether the lease holds now. */
bool tc__fleet_trusted(tc__fleet *f);
/* Bus thread: the pong of a ping sent at sent_us; the subscription lost
 * (returns whether L1 was trusted); at least every ping interval; another
 * instance's invalidation applied (acknowledged at the next flush; its delivery
 * lag recorded in bus_lag, once per invalidation); the end of a batch of
 * messages; an acknowledgement on our own channel. */
void tc__fleet_pong(tc__fleet *f, uint64_t sent_us);
bool tc__fleet_lost(tc__fleet *f);
void tc__fleet_tick(tc__fleet *f, bool subscribed);
void tc__fleet_saw(tc__fleet *f, const tc__bus_msg *msg);
void tc__fleet_flush_acks(tc__fleet *f);
void tc__fleet_acked(tc__fleet *f, const char *msg, size_t len);
/* Leaves the members (a clean stop). */
void tc__fleet_leave(tc__fleet *f);
/* Runs the INVALIDATE script: bumps the tags (their counter keys tag_keys),
 * deletes val_keys, publishes tags. 0, TC_EREDIS, TC_ENOMEM. With waitp, sets
 * *waitp to the wait for the members' acknowledgements, which the caller
 * must pass to tc__fleet_wait_acks. */
int tc__fleet_send(tc__fleet *f, const char *const *tag_keys, const size_t *tag_lens,
                   const char *const *val_keys, const size_t *val_lens, int nval,
                   const char *const *tags, int n, tc__fleet_wait **waitp);
/* Until every member acknowledged, or the longest lease among them ran out
 * since the send; frees w. */
void tc__fleet_wait_acks(tc__fleet *f, tc__fleet_wait *w);

/* ---- sentinel.c ---------------------------------------------------------- */

typedef struct tc__sentinel tc__sentinel;

/* "host:port,host:port" into hosts/ports (a cluster's nodes too); the count, or
 * TC_EINVAL (an empty item, a port out of 1..65535, more than max). Pure. */
int tc__sentinel_parse(const char *list, char (*hosts)[256], int *ports, int max);
/* Asks the sentinels of list for master's address once (it may not be known:
 * tc__sentinel_master says); NULL if list is malformed or on ENOMEM. Nothing
 * runs until tc__sentinel_watch. */
tc__sentinel *tc__sentinel_start(const char *list, const char *master, const char *password,
                                 int timeout_ms, void (*moved)(void *ctx, const char *host, int port),
                                 void *ctx);
/* Starts the thread that follows failovers: moved() is called on it with every
 * new address. */
int tc__sentinel_watch(tc__sentinel *s);
/* The master's address as last learned: 0, or TC_EREDIS when none is known. */
int tc__sentinel_master(tc__sentinel *s, char *host, size_t n, int *port);
void tc__sentinel_stop(tc__sentinel *s); /* NULL is a no-op */

#endif

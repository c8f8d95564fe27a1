/*
 * L2 transport: a small pool of blocking hiredis connections shared by all
 * threads, with a timeout on every call and a circuit breaker.
 *
 * A connection that times out or fails is closed, never reused (hiredis
 * leaves it in an unknown state). After breaker_failures consecutive failures
 * the breaker opens: for breaker_open_ms every call fails at once without
 * touching the network, then one call is let through as a probe; its success
 * closes the breaker, its failure opens it again. So a dead Redis costs a
 * request nothing once noticed, and a slow one at most redis_timeout_ms.
 *
 * The engine's Lua scripts are loaded on every new connection (one pipelined
 * round trip) and run with EVALSHA; a NOSCRIPT answer loads them again.
 *
 * A tc__redis made with cluster seeds (tc_config.cluster_nodes) is a Redis
 * Cluster: every call below is handed to cluster.c, which keeps one tc__redis
 * like this file's per master.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cluster.h"

/* KEYS[1] value, KEYS[2..] tags. Returns {value or nil, the version of each
 * tag, "0" for one that does not exist}. Read only: a read creates no key, so
 * reading (what anonymous clients do) cannot fill Redis; a missing tag is
 * created when a value carrying it is written (WRITE) or when it is
 * invalidated (INVALIDATE). */
static const char SCRIPT_READ[] = "local r = {redis.call('GET', KEYS[1])}\n"
                                  "for i = 2, #KEYS do r[i] = redis.call('GET', KEYS[i]) or '0' end\n"
                                  "return r\n";

/* KEYS[1] value, KEYS[2..] its n tags; ARGV[1] record, ARGV[2] px, ARGV[3] px
 * for tags, ARGV[4..3+n] the tag versions read before the load ("0": it did
 * not exist), ARGV[4+n..3+2n] the versions the record carries (for a tag that
 * did not exist, the random epoch it is created at now). Writes only if no
 * tag moved meanwhile — created by an invalidation counts as moved — creates
 * the missing ones, and keeps each tag alive at least as long as the entry. */
static const char SCRIPT_WRITE[] =
    "local n = #KEYS - 1\n"
    "for i = 2, #KEYS do\n"
    "  if (redis.call('GET', KEYS[i]) or '0') ~= ARGV[i + 2] then return 0 end\n"
    "end\n"
    "for i = 2, #KEYS do\n"
    "  if ARGV[i + 2] == '0' then redis.call('SET', KEYS[i], ARGV[i + 2 + n], 'PX', ARGV[3])\n"
    "  else redis.call('PEXPIRE', KEYS[i], ARGV[3], 'GT') end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return 1\n";

/* KEYS[1] the bus sequence, KEYS[2] the members, then ARGV[3] tag counters,
 * then the values to delete; ARGV[1] channel, ARGV[2] this instance's id
 * and the time it sends them ("<id>@<wall µs>", fleet.c: the receivers' lag),
 * ARGV[3] the number of tags, ARGV[4] a random step, ARGV[5] a random epoch,
 * ARGV[6] px, then the tag names. Bumps each tag that exists and creates each
 * that does not, at a random epoch for px (no entry depends on it yet, but a
 * load that saw it missing must not store what it read: WRITE sees it moved),
 * deletes the values, and publishes one message per tag, "<seq> <id>@<µs> <tag>",
 * all under one sequence number, which the instances that apply them echo in
 * their acknowledgements (the random step keeps a number from coming back
 * after a failover to a replica that missed the last ones). Returns {seq, the
 * ids of the live members}: the instances that may be trusting an L1 this
 * invalidation has to reach. */
static const char SCRIPT_INVALIDATE[] =
    "local seq = redis.call('INCRBY', KEYS[1], ARGV[4])\n"
    "local n = tonumber(ARGV[3])\n"
    "for i = 3, 2 + n do\n"
    "  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCR', KEYS[i])\n"
    "  else redis.call('SET', KEYS[i], ARGV[5] + i, 'PX', ARGV[6]) end\n"
    "end\n"
    "for i = 3 + n, #KEYS do redis.call('DEL', KEYS[i]) end\n"
    "for i = 1, n do\n"
    "  redis.call('PUBLISH', ARGV[1], seq .. ' ' .. ARGV[2] .. ' ' .. ARGV[6 + i])\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)\n"
    "return {seq, redis.call('ZRANGE', KEYS[2], 0, -1)}\n";

/* KEYS[1] the members; ARGV[1] this instance's entry, ARGV[2] ms it stays a
 * member, on Redis's clock; ARGV[3], if any, its entry before (on a cluster the
 * entry names the node its bus listens on, which changes). */
static const char SCRIPT_REGISTER[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "if ARGV[3] then redis.call('ZREM', KEYS[1], ARGV[3]) end\n"
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)\n"
    "return 1\n";

/* KEYS[1] lock; ARGV[1] our token. */
static const char SCRIPT_UNLOCK[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

/* KEYS[1] bucket; ARGV[1] burst, ARGV[2] ms per token. A token bucket kept as
 * one number, the time at which it would be full again ("theoretical arrival
 * time", GCRA), on Redis's clock. Returns {1, 0} (taken) or {0, ms to wait}. */
static const char SCRIPT_RATE[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local burst, step = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if tat < now then tat = now end\n"
    "local wait = tat + step - burst * step - now\n"
    "if wait > 0 then return {0, math.ceil(wait)} end\n"
    "redis.call('SET', KEYS[1], tostring(math.ceil(tat + step)), 'PX', math.ceil(tat + step - now))\n"
    "return {1, 0}\n";

/* KEYS[1] the incarnation marker, KEYS[2] the global tag; ARGV[1] a random
 * increment. Run first on every new connection: if the marker does not name
 * this Redis process (run_id), this is a Redis we have not written through yet
 * — restarted, restored from a snapshot, a replica promoted — whose records
 * may predate invalidations it never saw: the global tag moves, so every
 * record stored before is born invalid, and the marker is set. Returns
 * {run_id, 1 if it moved the global tag}. A replica refuses the SET: a
 * connection to one is never used. */
static const char SCRIPT_EPOCH[] =
    "local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')\n"
    "if redis.call('GET', KEYS[1]) == run then return {run, 0} end\n"
    "redis.call('INCRBY', KEYS[2], ARGV[1])\n"
    "redis.call('SET', KEYS[1], run)\n"
    "return {run, 1}\n";

/* On a cluster (cluster.c), WRITE for one tag: KEYS[1] its counter; ARGV[1]
 * the version read before the load ("0": it did not exist), ARGV[2] the one
 * the record carries, ARGV[3] px for the tag. 1: unchanged (made if it was
 * missing, kept alive at least px), 0: it moved. */
static const char SCRIPT_TAGPREP[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if (v or '0') ~= ARGV[1] then return 0 end\n"
    "if v then redis.call('PEXPIRE', KEYS[1], ARGV[3], 'GT')\n"
    "else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end\n"
    "return 1\n";

/* On a cluster, INVALIDATE for one tag: KEYS[1] its counter; ARGV[1] a random
 * epoch, ARGV[2] px. Bumps it, or makes it at the epoch (see INVALIDATE). */
static const char SCRIPT_BUMP[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCR', KEYS[1]) end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return 0\n";

/* On a cluster, the rest of INVALIDATE, once every tag moved: KEYS[1] the bus
 * sequence, KEYS[2] the members (one slot: the meta hash tag); ARGV[1]
 * channel, ARGV[2] this instance's id, ARGV[3] a random step, then the tags.
 * Publishes (sharded) only if every live member's bus listens on this node
 * ("<id>/<lease>@<node id>"): else returns {0, that member} and publishes
 * nothing (cluster.c sends it again). Returns {seq, the members} as INVALIDATE. */
static const char SCRIPT_META[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)\n"
    "local members = redis.call('ZRANGE', KEYS[2], 0, -1)\n"
    "local here = redis.call('CLUSTER', 'MYID')\n"
    "for _, m in ipairs(members) do\n"
    "  if string.match(m, '@(%x+)$') ~= here then return {0, m} end\n"
    "end\n"
    "local seq = redis.call('INCRBY', KEYS[1], ARGV[3])\n"
    "for i = 4, #ARGV do\n"
    "  redis.call('SPUBLISH', ARGV[1], seq .. ' ' .. ARGV[2] .. ' ' .. ARGV[i])\n"
    "end\n"
    "return {seq, members}\n";

static const char *const SCRIPTS[TC__NSCRIPTS] = {
    SCRIPT_READ,     SCRIPT_WRITE, SCRIPT_INVALIDATE, SCRIPT_UNLOCK, SCRIPT_RATE,
    SCRIPT_REGISTER, SCRIPT_EPOCH, SCRIPT_TAGPREP,    SCRIPT_BUMP,   SCRIPT_META};

const char *tc__redis_script_text(int script)
{
    TC_ASSERT(script >= 0 && script < TC__NSCRIPTS);
    return SCRIPTS[script];
}

enum { CLOSED, OPEN };

typedef tc__redis_conn conn;

struct tc__redis {
    char *host, *password; /* host: guarded by lock (a failover moves it) */
    int port, db, timeout_ms, connect_timeout_ms, max, failures_to_open, open_ms;
    tc__metrics *m;
    tc__redis_events ev;
    char inc_key[TC_KEY_MAX + 256], global_key[TC_KEY_MAX + 256];

    pthread_mutex_t lock;
    tc_cond freed;
    conn *idle;
    int nidle, total;
    unsigned gen;
    char sha[TC__NSCRIPTS][41];
    char run_id[48]; /* the Redis process last dialed, "" before the first */
    char cause[512];   /* why the last command or dial failed */
    uint64_t opened_ms; /* when the breaker last opened from closed (mono) */
    tc__logger log;
    int state, failures;
    bool probing;
    uint64_t open_until_us;
    tc__cluster *cluster; /* a cluster: every call is cluster.c's, nothing above is used */
};

tc__redis *tc__redis_new(const tc_config *cfg, tc__metrics *m, tc__redis_events ev)
{
    tc__redis *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    if (cfg->cluster_nodes != NULL) {
        if ((r->cluster = tc__cluster_new(cfg, m, ev)) == NULL) {
            free(r);
            return NULL;
        }
        return r;
    }
    r->host = strdup(cfg->redis_host);
    r->password = cfg->redis_password != NULL ? strdup(cfg->redis_password) : NULL;
    r->idle = calloc((size_t)cfg->redis_pool_max, sizeof(*r->idle));
    if (r->host == NULL || r->idle == NULL ||
        (cfg->redis_password != NULL && r->password == NULL)) {
        tc__redis_free(r);
        return NULL;
    }
    r->port = cfg->redis_port;
    r->db = cfg->redis_db;
    r->timeout_ms = cfg->redis_timeout_ms;
    r->connect_timeout_ms = cfg->connect_timeout_ms;
    r->max = cfg->redis_pool_max;
    r->failures_to_open = cfg->breaker_failures;
    r->open_ms = cfg->breaker_open_ms;
    r->m = m;
    r->ev = ev;
    r->log = (tc__logger){cfg->log, cfg->log_ctx};
    snprintf(r->inc_key, sizeof(r->inc_key), "%s~inc", cfg->prefix);
    snprintf(r->global_key, sizeof(r->global_key), "%s~t:*", cfg->prefix);
    pthread_mutex_init(&r->lock, NULL);
    tc_cond_init(&r->freed);
    return r;
}

void tc__redis_free(tc__redis *r)
{
    if (r == NULL)
        return;
    if (r->cluster != NULL) {
        tc__cluster_free(r->cluster);
        free(r);
        return;
    }
    for (int i = 0; i < r->nidle; i++)
        redisFree(r->idle[i].ctx);
    tc_cond_destroy(&r->freed);
    pthread_mutex_destroy(&r->lock);
    free(r->idle);
    free(r->host);
    free(r->password);
    free(r);
}

int tc__redis_address(tc__redis *r, char *host, size_t n, int *port)
{
    if (r->cluster != NULL)
        return tc__cluster_address(r->cluster, host, n, port);
    pthread_mutex_lock(&r->lock);
    int len = snprintf(host, n, "%s", r->host);
    *port = r->port;
    pthread_mutex_unlock(&r->lock);
    return len > 0 && (size_t)len < n ? 0 : TC_EINVAL;
}

int tc__redis_set_address(tc__redis *r, const char *host, int port)
{
    if (r->cluster != NULL) /* a cluster's masters come from its slot map */
        return TC_EINVAL;
    char *copy = strdup(host);
    if (copy == NULL)
        return TC_ENOMEM;
    pthread_mutex_lock(&r->lock);
    bool same = strcmp(r->host, host) == 0 && r->port == port;
    conn old[r->nidle > 0 ? r->nidle : 1];
    int nold = 0;
    if (!same) {
        free(r->host);
        r->host = copy;
        r->port = port;
        r->gen++; /* connections to the old address are closed, never reused */
        nold = r->nidle;
        memcpy(old, r->idle, (size_t)nold * sizeof(conn));
        r->total -= nold;
        r->nidle = 0;
        /* the new address deserves a try at once, not after the breaker's wait */
        r->state = CLOSED;
        r->failures = 0;
        tc_cond_broadcast(&r->freed);
    }
    pthread_mutex_unlock(&r->lock);
    if (same)
        free(copy);
    for (int i = 0; i < nold; i++)
        redisFree(old[i].ctx);
    return same ? 0 : 1;
}

static struct timeval tv_ms(int ms)
{
    return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

static bool reply_ok(redisReply *rep)
{
    return rep != NULL && rep->type != REDIS_REPLY_ERROR;
}

/*
 * A new connection to the address of generation gen: authenticated, on the
 * right database, scripts loaded, and the incarnation checked (SCRIPT_EPOCH),
 * all in one pipelined round trip. A Redis process other than the one dialed
 * before is a new incarnation: the engine is told before the connection is
 * used, so nothing it cached under the old one is trusted again.
 */
static redisContext *dial(tc__redis *r, unsigned *gen)
{
    char host[256];
    int port;
    pthread_mutex_lock(&r->lock);
    snprintf(host, sizeof(host), "%s", r->host);
    port = r->port;
    *gen = r->gen;
    pthread_mutex_unlock(&r->lock);
    char why[160] = "out of memory";
    redisContext *ctx = redisConnectWithTimeout(host, port, tv_ms(r->connect_timeout_ms));
    if (ctx != NULL && ctx->err)
        snprintf(why, sizeof(why), "%s", ctx->errstr);
    if (ctx == NULL || ctx->err || redisSetTimeout(ctx, tv_ms(r->timeout_ms)) != REDIS_OK)
        goto fail;
    /* a cluster's master checks its incarnation in r->ev.dialed instead of EPOCH */
    int first_script = (r->password != NULL) + 1;
    int n = 0, want = first_script + TC__NSCRIPTS + (r->ev.dialed == NULL);
    char incr[24];
    snprintf(incr, sizeof(incr), "%llu", (unsigned long long)tc__random_increment());
    if (r->password != NULL)
        n += redisAppendCommand(ctx, "AUTH %s", r->password) == REDIS_OK;
    n += redisAppendCommand(ctx, "SELECT %d", r->db) == REDIS_OK;
    for (int i = 0; i < TC__NSCRIPTS; i++)
        n += redisAppendCommand(ctx, "SCRIPT LOAD %s", SCRIPTS[i]) == REDIS_OK;
    if (r->ev.dialed == NULL)
        n += redisAppendCommand(ctx, "EVAL %s 2 %s %s %s", SCRIPT_EPOCH, r->inc_key,
                                r->global_key, incr) == REDIS_OK;
    if (n != want)
        goto fail;
    char sha[TC__NSCRIPTS][41], run_id[48] = "";
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(ctx, (void **)&rep) != REDIS_OK || !reply_ok(rep)) {
            /* e.g. NOAUTH, a wrong database index, READONLY (a replica) */
            snprintf(why, sizeof(why), "%s", rep != NULL ? rep->str : ctx->errstr);
            if (rep != NULL)
                freeReplyObject(rep);
            goto fail;
        }
        int script = i - first_script;
        if (script >= 0 && script < TC__NSCRIPTS && rep->type == REDIS_REPLY_STRING &&
            rep->len == 40)
            memcpy(sha[script], rep->str, 41);
        if (script == TC__NSCRIPTS && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
            rep->element[0]->type == REDIS_REPLY_STRING &&
            rep->element[0]->len < sizeof(run_id))
            memcpy(run_id, rep->element[0]->str, rep->element[0]->len + 1);
        freeReplyObject(rep);
    }
    if (r->ev.dialed != NULL && r->ev.dialed(r->ev.dctx, ctx, run_id, sizeof(run_id), why,
                                             sizeof(why)) != 0)
        goto fail;
    if (run_id[0] == '\0') {
        snprintf(why, sizeof(why), "no run_id in INFO server");
        goto fail;
    }
    pthread_mutex_lock(&r->lock);
    memcpy(r->sha, sha, sizeof(sha));
    bool changed = r->run_id[0] != '\0' && strcmp(r->run_id, run_id) != 0;
    memcpy(r->run_id, run_id, sizeof(run_id));
    pthread_mutex_unlock(&r->lock);
    if (changed && r->ev.incarnation != NULL)
        r->ev.incarnation(r->ev.ctx, run_id);
    return ctx;
fail:
    pthread_mutex_lock(&r->lock);
    snprintf(r->cause, sizeof(r->cause), "%s:%d: %s", host, port, why);
    pthread_mutex_unlock(&r->lock);
    if (ctx != NULL)
        redisFree(ctx);
    return NULL;
}

/* Returns whether it was closed (a change an operator is told of). */
static bool open_breaker_locked(tc__redis *r)
{
    bool was_closed = r->state == CLOSED;
    r->state = OPEN;
    r->open_until_us = tc_mono_us() + (uint64_t)r->open_ms * 1000u;
    TC__INC(r->m->breaker_opens);
    if (was_closed)
        r->opened_ms = tc_mono_ms();
    return was_closed;
}

void tc__redis_cause(tc__redis *r, char *out, size_t n)
{
    if (r->cluster != NULL) {
        tc__cluster_cause(r->cluster, out, n);
        return;
    }
    pthread_mutex_lock(&r->lock);
    snprintf(out, n, "%s", r->cause[0] != '\0' ? r->cause : "no answer");
    pthread_mutex_unlock(&r->lock);
}

void tc__redis_refresh_soon(tc__redis *r)
{
    if (r->cluster != NULL)
        tc__cluster_refresh_soon(r->cluster);
}

bool tc__redis_breaker_open(tc__redis *r)
{
    if (r->cluster != NULL)
        return tc__cluster_breaker_open(r->cluster);
    pthread_mutex_lock(&r->lock);
    bool open = r->state == OPEN;
    pthread_mutex_unlock(&r->lock);
    return open;
}

static bool release(tc__redis *r, conn c, bool healthy);
static conn acquire(tc__redis *r);

conn tc__redis_acquire(tc__redis *r)
{
    return acquire(r);
}

bool tc__redis_release(tc__redis *r, conn c, bool healthy)
{
    return release(r, c, healthy);
}

void tc__redis_sha(tc__redis *r, int script, char out[41])
{
    TC_ASSERT(script >= 0 && script < TC__NSCRIPTS);
    pthread_mutex_lock(&r->lock);
    memcpy(out, r->sha[script], 41);
    pthread_mutex_unlock(&r->lock);
}

/* A connection the server closed or reset, as opposed to one that timed out. */
bool tc__redis_conn_lost(const redisContext *ctx)
{
    return ctx->err == REDIS_ERR_EOF ||
           (ctx->err == REDIS_ERR_IO && strstr(ctx->errstr, "temporarily") == NULL &&
            strstr(ctx->errstr, "timed out") == NULL);
}

/* A connection for one command, or ctx NULL (breaker open, pool exhausted past
 * the timeout, or Redis unreachable). */
static conn acquire(tc__redis *r)
{
    conn c = {NULL, 0};
    pthread_mutex_lock(&r->lock);
    if (r->state == OPEN) {
        if (tc_mono_us() < r->open_until_us || r->probing) {
            pthread_mutex_unlock(&r->lock);
            return c;
        }
        r->probing = true; /* this call is the probe */
    }
    tc_deadline until = tc_deadline_in_ms(r->timeout_ms);
    while (r->nidle == 0 && r->total >= r->max &&
           tc_cond_wait_until(&r->freed, &r->lock, until) == 0)
        ;
    if (r->nidle > 0) {
        c = r->idle[--r->nidle];
        pthread_mutex_unlock(&r->lock);
        return c;
    }
    if (r->total >= r->max) { /* waited in vain: a pool this busy is as good as down */
        r->probing = false;
        pthread_mutex_unlock(&r->lock);
        return c;
    }
    r->total++;
    pthread_mutex_unlock(&r->lock);
    c.ctx = dial(r, &c.gen);
    if (c.ctx == NULL)
        release(r, c, false);
    return c;
}

/* Gives a connection back (healthy) or drops it (not healthy; ctx may be NULL
 * for a connection that never came up), feeding the breaker either way.
 * Returns false for a connection dialed before the address moved: it is
 * closed, says nothing about the breaker, and what it answered is not used —
 * it may come from the Redis a failover left behind. */
static bool release(tc__redis *r, conn c, bool healthy)
{
    pthread_mutex_lock(&r->lock);
    if (c.gen != r->gen) { /* set_address counted out only the idle ones */
        r->total--;
        tc_cond_signal(&r->freed);
        pthread_mutex_unlock(&r->lock);
        if (c.ctx != NULL)
            redisFree(c.ctx);
        return false;
    }
    TC_ASSERT(r->total > 0 && r->nidle < r->total); /* c counted in total, not idle */
    bool opened = false, closed = false;
    int failures = r->failures;
    if (healthy) {
        closed = r->state == OPEN;
        r->failures = 0;
        r->state = CLOSED;
        r->idle[r->nidle++] = c;
    } else {
        TC__INC(r->m->redis_errors); /* before the breaker shows open: a reader sees both */
        r->total--;
        failures = ++r->failures;
        if (c.ctx != NULL) /* a dial that failed said why in dial() */
            snprintf(r->cause, sizeof(r->cause), "%s", c.ctx->err ? c.ctx->errstr : "an error");
        if (r->probing || r->failures >= r->failures_to_open)
            opened = open_breaker_locked(r);
    }
    char cause[512];
    snprintf(cause, sizeof(cause), "%s", r->cause);
    uint64_t down_ms = closed ? tc_mono_ms() - r->opened_ms : 0;
    r->probing = false;
    tc_cond_signal(&r->freed);
    /* The server closed it or reset it (not a timeout): the idle ones dialed
     * with it are most likely dead too. Closing them now spares a failure
     * each, and lets the next command dial whatever answers there now. */
    int nold = 0;
    conn old[r->nidle > 0 ? r->nidle : 1];
    if (!healthy && c.ctx != NULL && tc__redis_conn_lost(c.ctx)) {
        nold = r->nidle;
        memcpy(old, r->idle, (size_t)nold * sizeof(conn));
        r->total -= nold;
        r->nidle = 0;
    }
    pthread_mutex_unlock(&r->lock);
    if (opened)
        tc__say(&r->log, TC_LOG_WARN, "redis",
                "unreachable (%s), %d failures in a row: the breaker is open: reads are served "
                "without Redis, writes wait for it, and it is tried once every %d ms",
                cause, failures, r->open_ms);
    if (closed)
        tc__say(&r->log, TC_LOG_INFO, "redis",
                "answering again after %.1f s: the breaker is closed", (double)down_ms / 1000.0);
    for (int i = 0; i < nold; i++)
        redisFree(old[i].ctx);
    if (!healthy && c.ctx != NULL)
        redisFree(c.ctx);
    return true;
}

static redisReply *run(tc__redis *r, int argc, const char **argv, const size_t *lens,
                       bool *noscript)
{
    conn c = acquire(r);
    if (c.ctx == NULL)
        return NULL;
    uint64_t t0 = tc_mono_us();
    redisReply *rep = redisCommandArgv(c.ctx, argc, argv, lens);
    tc__hist_add(&r->m->redis_latency, tc_mono_us() - t0);
    if (!release(r, c, rep != NULL && c.ctx->err == 0)) {
        if (rep != NULL)
            freeReplyObject(rep);
        return NULL;
    }
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
        if (noscript != NULL)
            *noscript = strncmp(rep->str, "NOSCRIPT", 8) == 0;
        TC__INC(r->m->redis_errors);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

redisReply *tc__redis_command(tc__redis *r, int argc, const char **argv, const size_t *lens)
{
    if (r->cluster != NULL)
        return tc__cluster_command(r->cluster, argc, argv, lens);
    return run(r, argc, argv, lens, NULL);
}

redisReply *tc__redis_script(tc__redis *r, int script, int nkeys, int argc, const char **argv,
                             const size_t *lens)
{
    /* EVALSHA sha nkeys argv... */
    const char *av[3 + TC_TAGS_MAX * 3 + 16];
    size_t al[3 + TC_TAGS_MAX * 3 + 16];
    char sha[41], nk[12];
    TC_ASSERT(script >= 0 && script < TC__NSCRIPTS);
    TC_ASSERT(nkeys >= 0 && nkeys <= argc && argc + 3 <= (int)TC_COUNTOF(av));
    if (r->cluster != NULL)
        return tc__cluster_script(r->cluster, script, nkeys, argc, argv, lens);
    snprintf(nk, sizeof(nk), "%d", nkeys);
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&r->lock);
        memcpy(sha, r->sha[script], sizeof(sha));
        pthread_mutex_unlock(&r->lock);
        bool noscript = false;
        av[0] = attempt == 0 && sha[0] != '\0' ? "EVALSHA" : "EVAL";
        av[1] = av[0][4] == 'S' ? sha : SCRIPTS[script];
        av[2] = nk;
        al[0] = strlen(av[0]);
        al[1] = strlen(av[1]);
        al[2] = strlen(nk);
        for (int i = 0; i < argc; i++) {
            av[3 + i] = argv[i];
            al[3 + i] = lens[i];
        }
        redisReply *rep = run(r, argc + 3, av, al, &noscript);
        if (rep != NULL || !noscript)
            return rep;
    }
    return NULL;
}

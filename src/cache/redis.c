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
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/internal.h"

/* KEYS[1] value, KEYS[2..] tags; ARGV[1] random epoch, ARGV[2] px of new tags.
 * Returns {value or nil, version of each tag}; a missing tag is created at a
 * random epoch so a lost counter never comes back at an old value. */
static const char SCRIPT_READ[] = "local r = {redis.call('GET', KEYS[1])}\n"
                                  "for i = 2, #KEYS do\n"
                                  "  local v = redis.call('GET', KEYS[i])\n"
                                  "  if not v then\n"
                                  "    v = ARGV[1] .. i\n"
                                  "    redis.call('SET', KEYS[i], v, 'PX', ARGV[2])\n"
                                  "  end\n"
                                  "  r[i] = v\n"
                                  "end\n"
                                  "return r\n";

/* KEYS[1] value, KEYS[2..] tags; ARGV[1] record, ARGV[2] px, ARGV[3] px for
 * tags, ARGV[4..] the tag versions read before the load. Writes only if no
 * tag moved meanwhile, and keeps each tag alive at least as long as the entry. */
static const char SCRIPT_WRITE[] =
    "for i = 2, #KEYS do\n"
    "  if redis.call('GET', KEYS[i]) ~= ARGV[i + 2] then return 0 end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "for i = 2, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[3], 'GT') end\n"
    "return 1\n";

/* KEYS[1] tag, KEYS[2] (optional) a value to delete; ARGV[1] channel,
 * ARGV[2] message. A missing tag has no entry depending on it. */
static const char SCRIPT_INVALIDATE[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCR', KEYS[1]) end\n"
    "if KEYS[2] then redis.call('DEL', KEYS[2]) end\n"
    "redis.call('PUBLISH', ARGV[1], ARGV[2])\n"
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

static const char *const SCRIPTS[TC__NSCRIPTS] = {SCRIPT_READ, SCRIPT_WRITE, SCRIPT_INVALIDATE,
                                                  SCRIPT_UNLOCK, SCRIPT_RATE};

enum { CLOSED, OPEN };

struct tc__redis {
    char *host, *password;
    int port, db, timeout_ms, connect_timeout_ms, max, failures_to_open, open_ms;
    tc__metrics *m;

    pthread_mutex_t lock;
    tc_cond freed;
    redisContext **idle;
    int nidle, total;
    char sha[TC__NSCRIPTS][41];
    int state, failures;
    bool probing;
    uint64_t open_until_us;
};

tc__redis *tc__redis_new(const tc_config *cfg, tc__metrics *m)
{
    tc__redis *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
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
    pthread_mutex_init(&r->lock, NULL);
    tc_cond_init(&r->freed);
    return r;
}

void tc__redis_free(tc__redis *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < r->nidle; i++)
        redisFree(r->idle[i]);
    tc_cond_destroy(&r->freed);
    pthread_mutex_destroy(&r->lock);
    free(r->idle);
    free(r->host);
    free(r->password);
    free(r);
}

static struct timeval tv_ms(int ms)
{
    return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

static bool reply_ok(redisReply *rep)
{
    return rep != NULL && rep->type != REDIS_REPLY_ERROR;
}

/* A new connection, authenticated, on the right database, scripts loaded. */
static redisContext *dial(tc__redis *r)
{
    redisContext *ctx = redisConnectWithTimeout(r->host, r->port, tv_ms(r->connect_timeout_ms));
    if (ctx == NULL || ctx->err || redisSetTimeout(ctx, tv_ms(r->timeout_ms)) != REDIS_OK)
        goto fail;
    int n = 0;
    if (r->password != NULL)
        n += redisAppendCommand(ctx, "AUTH %s", r->password) == REDIS_OK;
    n += redisAppendCommand(ctx, "SELECT %d", r->db) == REDIS_OK;
    for (int i = 0; i < TC__NSCRIPTS; i++)
        n += redisAppendCommand(ctx, "SCRIPT LOAD %s", SCRIPTS[i]) == REDIS_OK;
    if (n != (r->password != NULL) + 1 + TC__NSCRIPTS)
        goto fail;
    char sha[TC__NSCRIPTS][41];
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(ctx, (void **)&rep) != REDIS_OK || !reply_ok(rep)) {
            if (rep != NULL)
                freeReplyObject(rep);
            goto fail;
        }
        int script = i - (n - TC__NSCRIPTS);
        if (script >= 0 && rep->type == REDIS_REPLY_STRING && rep->len == 40)
            memcpy(sha[script], rep->str, 41);
        freeReplyObject(rep);
    }
    pthread_mutex_lock(&r->lock);
    memcpy(r->sha, sha, sizeof(sha));
    pthread_mutex_unlock(&r->lock);
    return ctx;
fail:
    if (ctx != NULL)
        redisFree(ctx);
    return NULL;
}

static void open_breaker_locked(tc__redis *r)
{
    r->state = OPEN;
    r->open_until_us = tc_mono_us() + (uint64_t)r->open_ms * 1000u;
    TC__INC(r->m->breaker_opens);
}

bool tc__redis_breaker_open(tc__redis *r)
{
    pthread_mutex_lock(&r->lock);
    bool open = r->state == OPEN;
    pthread_mutex_unlock(&r->lock);
    return open;
}

static void release(tc__redis *r, redisContext *ctx, bool healthy);

/* A connection for one command, or NULL (breaker open, pool exhausted past
 * the timeout, or Redis unreachable). */
static redisContext *acquire(tc__redis *r)
{
    redisContext *ctx = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->state == OPEN) {
        if (tc_mono_us() < r->open_until_us || r->probing) {
            pthread_mutex_unlock(&r->lock);
            return NULL;
        }
        r->probing = true; /* this call is the probe */
    }
    tc_deadline until = tc_deadline_in_ms(r->timeout_ms);
    while (r->nidle == 0 && r->total >= r->max &&
           tc_cond_wait_until(&r->freed, &r->lock, until) == 0)
        ;
    if (r->nidle > 0) {
        ctx = r->idle[--r->nidle];
        pthread_mutex_unlock(&r->lock);
        return ctx;
    }
    if (r->total >= r->max) { /* waited in vain: a pool this busy is as good as down */
        r->probing = false;
        pthread_mutex_unlock(&r->lock);
        return NULL;
    }
    r->total++;
    pthread_mutex_unlock(&r->lock);
    ctx = dial(r);
    if (ctx == NULL)
        release(r, NULL, false);
    return ctx;
}

/* Gives a connection back (healthy) or drops it (not healthy; ctx may be NULL
 * for a connection that never came up), feeding the breaker either way. */
static void release(tc__redis *r, redisContext *ctx, bool healthy)
{
    pthread_mutex_lock(&r->lock);
    TC_ASSERT(r->total > 0 && r->nidle < r->total); /* ctx counted in total, not idle */
    if (healthy) {
        r->failures = 0;
        r->state = CLOSED;
        r->idle[r->nidle++] = ctx;
    } else {
        r->total--;
        r->failures++;
        if (r->probing || r->failures >= r->failures_to_open)
            open_breaker_locked(r);
    }
    r->probing = false;
    tc_cond_signal(&r->freed);
    pthread_mutex_unlock(&r->lock);
    if (!healthy) {
        if (ctx != NULL)
            redisFree(ctx);
        TC__INC(r->m->redis_errors);
    }
}

static redisReply *run(tc__redis *r, int argc, const char **argv, const size_t *lens,
                       bool *noscript)
{
    redisContext *ctx = acquire(r);
    if (ctx == NULL)
        return NULL;
    uint64_t t0 = tc_mono_us();
    redisReply *rep = redisCommandArgv(ctx, argc, argv, lens);
    tc__hist_add(&r->m->redis_latency, tc_mono_us() - t0);
    release(r, ctx, rep != NULL && ctx->err == 0);
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
    return run(r, argc, argv, lens, NULL);
}

redisReply *tc__redis_script(tc__redis *r, int script, int nkeys, int argc, const char **argv,
                             const size_t *lens)
{
    /* EVALSHA sha nkeys argv... */
    const char *av[2 + TC_TAGS_MAX * 2 + 16];
    size_t al[2 + TC_TAGS_MAX * 2 + 16];
    char sha[41], nk[12];
    TC_ASSERT(script >= 0 && script < TC__NSCRIPTS);
    TC_ASSERT(nkeys >= 0 && nkeys <= argc && argc + 3 <= (int)TC_COUNTOF(av));
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

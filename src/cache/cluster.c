/*
 * The L2 on a Redis Cluster: the slot of a key, the slot map, one pool and
 * breaker per master (redis.c's: a tc__redis per master), redirections, and
 * the engine's scripts whose keys live on several masters.
 *
 * Routing. A command goes to the master the slot map names for its key's
 * slot. The map is CLUSTER SLOTS, asked of a node that answers (the masters
 * known, then the seeds) by a thread of its own: at start, every
 * cluster_refresh_ms (1 s), and soon (at most every REFRESH_MIN_MS) after a
 * redirection or a master that failed; no command waits for it. MOVED: the new
 * master goes into the map at once and the command is sent there. ASK: the
 * command is sent once to the node named, after ASKING; the map stays (the
 * slot is being moved). TRYAGAIN (a script's keys split by a migration): sent
 * again every RETRY_SLEEP_MS until the command's time (redis_timeout_ms) is
 * up. A pooled connection the server had closed (a master restarted): the
 * command is sent once more, on a new one. CLUSTERDOWN, or a slot no master
 * serves: the command fails and is
 * counted (cluster_down); to the engine that is Redis unreachable, which it
 * already degrades on. Commands for several masters are sent together, each
 * master's pipelined on one of its connections, then every reply is read: a
 * round trip of wall time, whatever the number of masters.
 *
 * DESIGN — the engine's guarantees on a cluster, without multi-slot scripts.
 *
 * On one Redis, READ, WRITE and INVALIDATE each run as one script over a
 * record and its tags' counters. On a cluster those keys hash to different
 * slots and Redis refuses such a script. Correctness never rested on that
 * atomicity; it rests on validity on read:
 *   - A record carries the versions of its tags as read BEFORE its loader ran.
 *   - READ: GET the record and every counter, from their masters at once
 *     (one round trip). The engine serves the record only if every counter
 *     equals the version the record carries; a missing counter reads "0",
 *     which no record carries. Counters only grow (INCR), so an invalidation
 *     that returned before the read began moved a counter before the read's
 *     GET of it: the record loaded before it is refused.
 *   - WRITE: per tag, one single-key script (TAGPREP: still the version read?
 *     make a missing one at the record's epoch, keep it alive as long as the
 *     record), then SET the record, only if every tag said yes. That check is
 *     an economy, not the guarantee: a record stored after an invalidation
 *     carries the versions from before it, so it is born invalid.
 *   - INVALIDATE: first every counter moves (BUMP, one single-key script per
 *     tag, with the keys' own records deleted), then one script on the meta
 *     slot (META) numbers the invalidation, publishes it and returns the
 *     members. An instance that hears the message and reads again reads the
 *     moved counters: the publication comes after them.
 *   - The lock, the rate limit and the members are single keys or single
 *     slots: they are routed like any command.
 *
 * DESIGN — the bus on a cluster is sharded pub/sub on the meta slot, and the
 * meta script publishes only where every member listens.
 * An instance trusts its L1 under a lease renewed by PINGs on its subscribed
 * connection (fleet.c): a PONG proves every message published before it on
 * that node has arrived. With classic PUBLISH a message published on one node
 * reaches the others over the cluster bus, later than their PONGs, so the
 * proof would not hold unless publisher and subscriber are on one node; and
 * every message would be copied to every node. So the bus is SSUBSCRIBE /
 * SPUBLISH on the channels of the meta slot: one master carries the traffic,
 * the one that runs META. When that slot moves (a reshard, a failover) the
 * subscribers are told (sunsubscribe, or their connection dies) and follow;
 * but for a moment META may run on the new master while some instance still
 * listens on the old one, its lease renewed there. So each member registers
 * the node it listens on ("<id>/<lease>@<node id>"), and META, before it
 * publishes, checks that every live member listens on the node it runs on
 * (CLUSTER MYID); if one does not, it publishes nothing and the invalidation
 * is sent again shortly (fenced, counted in cluster_retries), until the
 * members have moved or their registration expired.
 *
 * DESIGN — a new master is a new world (the incarnation check). On one Redis
 * a marker names the Redis process last written through (SCRIPT_EPOCH). On a
 * cluster every master has its own marker, <prefix>~inc{<t>}, a key in the
 * lowest slot that master serves (so it is replicated with that master's data
 * and comes back with it from a snapshot or a promoted replica). On every new
 * connection to a master (dialed(), before redis.c hands the connection out)
 * the marker is read; if it does not name the process that answers, that
 * master's data may be older than what the fleet saw — a restart, a restore,
 * a replica that missed the last writes — and its counters may have gone back
 * in time. Then, in this order: the global tag ~t:* moves by a random amount
 * (wherever it lives; every record anywhere carries it, so every record
 * stored before is born invalid), and only then is the marker set. Another
 * instance that finds the marker set knows the bump is done. Every command of
 * a read is sent only once all the connections it uses are made (and so
 * checked), so no read pairs a counter from a rolled-back master with a
 * global version from before the bump. Cost: one full reload of the L2 after
 * a failover, as on one Redis. L1 is emptied (the engine's on_incarnation)
 * only when the master restarted in place serves the meta slot: L1 rests on
 * the bus, which lives there (node_incarnation). (Bumping only the counters the master holds
 * would need a SCAN of it before any read may use it.)
 *
 * Threads: commands on any thread; the map is read by the map thread
 * (refresher), the only one that waits for CLUSTER SLOTS. The map and the nodes
 * are guarded by lock (a rwlock: every command reads it; a MOVED writes one
 * slot); nodes are never freed before the cluster, so a node pointer stays
 * good after the lock is let go.
 */
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cluster.h"

#define NODES_MAX 64 /* masters' addresses remembered (kept until the cache goes) */
#define SEEDS_MAX 16
#define REFRESH_MIN_MS 50 /* between refreshes asked for by a redirection or a failure */
#define RETRY_SLEEP_MS 5  /* before a TRYAGAIN or a fenced invalidation is sent again */
#define ROUNDS_MAX 4      /* rounds of redirections per batch */
#define WORDS_MAX (3 + 3 * (TC_TAGS_MAX + 2) + 8) /* a command's words */
#define BATCH_MAX (2 * (TC_TAGS_MAX + 2) + 4)     /* commands sent together */

/* ---- pure ---------------------------------------------------------------------- */

static unsigned crc16(const char *s, size_t n)
{
    unsigned crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (unsigned)(unsigned char)s[i] << 8;
        for (int b = 0; b < 8; b++)
            crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    }
    return crc & 0xffff;
}

unsigned tc__cluster_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t rest = len - (size_t)(open + 1 - key);
        const char *close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    return crc16(key, len) & (TC__SLOTS - 1);
}

int tc__cluster_redirect(const char *err, size_t len, tc__redirect *out)
{
    memset(out, 0, sizeof(*out));
    int kind;
    const char *p = err, *end = err + len;
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0)
        kind = TC__REDIRECT_MOVED, p += 6;
    else if (len > 4 && memcmp(err, "ASK ", 4) == 0)
        kind = TC__REDIRECT_ASK, p += 4;
    else
        return TC__REDIRECT_NONE;
    unsigned slot = 0;
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9' && p - digits < 5)
        slot = slot * 10 + (unsigned)(*p++ - '0');
    if (p == digits || p == end || *p != ' ' || slot >= TC__SLOTS)
        return TC__REDIRECT_NONE;
    const char *host = ++p, *colon = NULL;
    for (; p < end; p++)
        if (*p == ':')
            colon = p;
    if (colon == NULL || (size_t)(colon - host) >= sizeof(out->host) || colon + 1 == end)
        return TC__REDIRECT_NONE;
    long port = 0;
    for (p = colon + 1; p < end; p++) {
        if (*p < '0' || *p > '9' || port > 65535)
            return TC__REDIRECT_NONE;
        port = port * 10 + (*p - '0');
    }
    if (port <= 0 || port > 65535)
        return TC__REDIRECT_NONE;
    size_t hl = (size_t)(colon - host);
    if (!(hl == 1 && host[0] == '?')) /* "?": an address the node does not know */
        memcpy(out->host, host, hl);
    out->slot = slot;
    out->port = (int)port;
    out->kind = kind;
    return kind;
}

static bool is_int(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_INTEGER;
}

static bool is_str(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_STRING;
}

int tc__cluster_parse_slots(const redisReply *rep, const char *asked, tc__node_addr *nodes, int max,
                            int16_t *owner)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY)
        return TC_EINVAL;
    for (int s = 0; s < TC__SLOTS; s++)
        owner[s] = -1;
    int n = 0;
    for (size_t i = 0; i < rep->elements; i++) {
        /* [first, last, [host, port, id, ...], replicas...] */
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || !is_int(e->element[0]) ||
            !is_int(e->element[1]) || e->element[2]->type != REDIS_REPLY_ARRAY)
            return TC_EINVAL;
        long long first = e->element[0]->integer, last = e->element[1]->integer;
        const redisReply *m = e->element[2];
        if (first < 0 || last >= TC__SLOTS || first > last || m->elements < 2 ||
            !is_str(m->element[0]) || !is_int(m->element[1]) || m->element[1]->integer <= 0 ||
            m->element[1]->integer > 65535)
            return TC_EINVAL;
        const char *host = m->element[0]->str;
        if (m->element[0]->len == 0 || strcmp(host, "?") == 0)
            host = asked;
        int port = (int)m->element[1]->integer;
        if (strlen(host) >= sizeof(nodes[0].host))
            return TC_EINVAL;
        int k = 0;
        while (k < n && !(nodes[k].port == port && strcmp(nodes[k].host, host) == 0))
            k++;
        if (k == n) {
            if (n == max)
                return TC_EINVAL;
            memset(&nodes[n], 0, sizeof(nodes[n]));
            snprintf(nodes[n].host, sizeof(nodes[n].host), "%s", host);
            nodes[n].port = port;
            if (m->elements >= 3 && is_str(m->element[2]) && m->element[2]->len < 41)
                memcpy(nodes[n].id, m->element[2]->str, m->element[2]->len + 1);
            n++;
        }
        for (long long s = first; s <= last; s++)
            owner[s] = (int16_t)k;
    }
    return n;
}

int tc__cluster_meta_name(const char *prefix, const char *name, char *out, size_t n)
{
    int len = snprintf(out, n, "%s~{%smeta}%s", prefix, prefix, name);
    return len > 0 && (size_t)len < n ? 0 : TC_EINVAL;
}

int tc__cluster_marker_key(const char *prefix, unsigned slot, char *out, size_t n)
{
    /* The slot of "...{t}" is the slot of t, unless the prefix has a hash tag of
     * its own: then every key has the prefix's slot, which the check below sees. */
    char t[16];
    for (unsigned long i = 0; i < 2000000; i++) {
        int tl = snprintf(t, sizeof(t), "%lx", i);
        if ((crc16(t, (size_t)tl) & (TC__SLOTS - 1)) != slot)
            continue;
        int kl = snprintf(out, n, "%s~inc{%s}", prefix, t);
        if (kl < 0 || (size_t)kl >= n)
            return TC_ENOTFOUND;
        return tc__cluster_slot(out, (size_t)kl) == slot ? 0 : TC_ENOTFOUND;
    }
    return TC_ENOTFOUND;
}

/* ---- the cluster ----------------------------------------------------------------- */

typedef struct cnode {
    tc__cluster *cl;
    char host[256];
    int port;
    char id[41]; /* CLUSTER MYID, from its first connection; cl->lock */
    tc__redis *r;
} cnode;

struct tc__cluster {
    tc_config cfg; /* what a master's pool is made from (no cluster_nodes) */
    char *prefix, *password;
    tc__metrics *m;
    tc__redis_events ev;
    tc__logger log;
    char seeds[SEEDS_MAX][256];
    int seed_ports[SEEDS_MAX], nseeds;
    char global_key[TC_KEY_MAX + 256];
    unsigned global_slot;
    unsigned meta_slot;

    pthread_rwlock_t lock; /* nodes, nnodes, owner, cause */
    cnode *nodes[NODES_MAX];
    int nnodes;
    int16_t owner[TC__SLOTS]; /* the master of each slot (an index of nodes), or -1 */
    char cause[256];          /* why the last command or refresh failed */

    /* the map thread: it alone asks for the slot map, every cluster_refresh_ms or
     * when wanted (a redirection, a master that failed), at most every REFRESH_MIN_MS */
    pthread_t refresher;
    bool started;
    pthread_mutex_t refresh_lock; /* wanted, stopping */
    tc_cond refresh_cond;
    bool wanted, stopping;
    bool unreachable_said; /* the map thread's */
};

#define say(cl, ...) tc__say(&(cl)->log, __VA_ARGS__)

static void set_cause(tc__cluster *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_cause(tc__cluster *cl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_rwlock_wrlock(&cl->lock);
    vsnprintf(cl->cause, sizeof(cl->cause), fmt, ap);
    pthread_rwlock_unlock(&cl->lock);
    va_end(ap);
}

/* Which nodes serve at least one slot; the caller holds the lock. */
static void masters_locked(const tc__cluster *cl, bool *owns)
{
    memset(owns, 0, NODES_MAX * sizeof(*owns));
    for (int s = 0; s < TC__SLOTS; s++)
        if (cl->owner[s] >= 0)
            owns[cl->owner[s]] = true;
}

static int dialed(void *dctx, struct redisContext *conn, char *run_id, size_t idn, char *why,
                  size_t wn);
static void node_incarnation(void *ctx, const char *run_id);

/* The node the cluster names host:port (as this process reaches it:
 * cluster_address), made if it is new: its index, or -1 (the table is full, or
 * ENOMEM). The caller holds the lock for writing. */
static int node_at_locked(tc__cluster *cl, const char *named, int port)
{
    char host[256];
    snprintf(host, sizeof(host), "%s", named);
    if (cl->cfg.cluster_address != NULL) /* behind NAT: where we reach it */
        cl->cfg.cluster_address(cl->cfg.cluster_address_ctx, host, sizeof(host), &port);
    for (int i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i]->port == port && strcmp(cl->nodes[i]->host, host) == 0)
            return i;
    if (cl->nnodes == NODES_MAX)
        return -1;
    cnode *nd = calloc(1, sizeof(*nd));
    if (nd == NULL)
        return -1;
    nd->cl = cl;
    snprintf(nd->host, sizeof(nd->host), "%s", host);
    nd->port = port;
    tc_config cfg = cl->cfg;
    cfg.redis_host = nd->host;
    cfg.redis_port = port;
    tc__redis_events ev = {.incarnation = node_incarnation, .ctx = nd, .dialed = dialed, .dctx = nd};
    if ((nd->r = tc__redis_new(&cfg, cl->m, ev)) == NULL) {
        free(nd);
        return -1;
    }
    cl->nodes[cl->nnodes] = nd;
    return cl->nnodes++;
}

/* The map thread reads the map again now (at most REFRESH_MIN_MS after the last time). */
static void want_refresh(tc__cluster *cl)
{
    pthread_mutex_lock(&cl->refresh_lock);
    if (!cl->wanted) {
        cl->wanted = true;
        tc_cond_signal(&cl->refresh_cond);
    }
    pthread_mutex_unlock(&cl->refresh_lock);
}

static redisContext *connect_plain(tc__cluster *cl, const char *host, int port, char *why,
                                   size_t wn)
{
    struct timeval tv = {cl->cfg.connect_timeout_ms / 1000,
                         (cl->cfg.connect_timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(host, port, tv);
    if (ctx == NULL || ctx->err || redisSetTimeout(ctx, tv) != REDIS_OK) {
        snprintf(why, wn, "%s:%d: %s", host, port, ctx != NULL ? ctx->errstr : "out of memory");
        redisFree(ctx);
        return NULL;
    }
    if (cl->password != NULL) {
        redisReply *rep = redisCommand(ctx, "AUTH %s", cl->password);
        bool ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;
        snprintf(why, wn, "%s:%d: AUTH: %s", host, port,
                 rep != NULL && rep->type == REDIS_REPLY_ERROR ? rep->str : ctx->errstr);
        freeReplyObject(rep);
        if (!ok) {
            redisFree(ctx);
            return NULL;
        }
    }
    return ctx;
}

/* The new map, read from a CLUSTER SLOTS reply, replaces the old one. */
static int apply_map(tc__cluster *cl, const redisReply *rep, const char *asked)
{
    int16_t *owner = malloc(TC__SLOTS * sizeof(*owner)); /* 32 KiB: not on the stack */
    tc__node_addr *addrs = malloc(NODES_MAX * sizeof(*addrs));
    int n = owner != NULL && addrs != NULL
                ? tc__cluster_parse_slots(rep, asked, addrs, NODES_MAX, owner)
                : TC_ENOMEM;
    if (n < 0) {
        free(owner);
        free(addrs);
        return n;
    }
    int index[NODES_MAX], changed = 0, uncovered = 0;
    pthread_rwlock_wrlock(&cl->lock);
    for (int k = 0; k < n; k++)
        index[k] = node_at_locked(cl, addrs[k].host, addrs[k].port);
    for (int s = 0; s < TC__SLOTS; s++) {
        int16_t o = owner[s] >= 0 ? (int16_t)index[owner[s]] : -1;
        changed += cl->owner[s] != o;
        uncovered += o < 0;
        cl->owner[s] = o;
    }
    pthread_rwlock_unlock(&cl->lock);
    free(owner);
    free(addrs);
    TC__INC(cl->m->cluster_refreshes);
    if (changed > 0 && atomic_load(&cl->m->cluster_refreshes) > 1)
        say(cl, TC_LOG_INFO, "cluster",
            "slot map: %d slots have another master now; %d slots have none", changed,
            uncovered);
    return 0;
}

/* Asks the masters known, then the seeds, for the slot map. 0 or TC_EREDIS. */
static int refresh(tc__cluster *cl)
{
    char (*hosts)[256] = malloc((NODES_MAX + SEEDS_MAX) * sizeof(*hosts));
    int ports[NODES_MAX + SEEDS_MAX], n = 0;
    if (hosts == NULL)
        return TC_ENOMEM;
    bool owns[NODES_MAX];
    pthread_rwlock_rdlock(&cl->lock);
    masters_locked(cl, owns);
    for (int i = 0; i < cl->nnodes; i++)
        if (owns[i]) {
            memcpy(hosts[n], cl->nodes[i]->host, sizeof(hosts[n]));
            ports[n++] = cl->nodes[i]->port;
        }
    pthread_rwlock_unlock(&cl->lock);
    for (int i = 0; i < cl->nseeds; i++) {
        memcpy(hosts[n], cl->seeds[i], sizeof(hosts[n]));
        ports[n++] = cl->seed_ports[i];
    }
    char why[256] = "no node to ask";
    int rc = TC_EREDIS;
    for (int i = 0; i < n && rc != 0; i++) {
        redisContext *ctx = connect_plain(cl, hosts[i], ports[i], why, sizeof(why));
        if (ctx == NULL)
            continue;
        redisReply *rep = redisCommand(ctx, "CLUSTER SLOTS");
        if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements > 0)
            rc = apply_map(cl, rep, hosts[i]);
        if (rc != 0)
            snprintf(why, sizeof(why), "%s:%d: CLUSTER SLOTS: %s", hosts[i], ports[i],
                     rep == NULL ? ctx->errstr
                     : rep->type == REDIS_REPLY_ERROR ? rep->str
                                                      : "no slot map");
        freeReplyObject(rep);
        redisFree(ctx);
    }
    free(hosts);
    if (rc != 0) {
        set_cause(cl, "%s", why);
        if (!cl->unreachable_said)
            say(cl, TC_LOG_WARN, "cluster",
                "no node of the Redis Cluster gives its slot map (%s): asking again", why);
        cl->unreachable_said = true;
    } else if (cl->unreachable_said) {
        cl->unreachable_said = false;
        say(cl, TC_LOG_INFO, "cluster", "the Redis Cluster gives its slot map again");
    }
    return rc;
}

/* The map thread (the only one that waits for CLUSTER SLOTS: a command, or the
 * bus thread, never does). */
static void *refresher(void *arg)
{
    tc__cluster *cl = arg;
    pthread_mutex_lock(&cl->refresh_lock);
    while (!cl->stopping) {
        int every = cl->cfg.cluster_refresh_ms;
        tc_deadline until = tc_deadline_in_ms(every);
        while (!cl->wanted && !cl->stopping &&
               tc_cond_wait_until(&cl->refresh_cond, &cl->refresh_lock, until) == 0)
            ;
        if (cl->stopping)
            break;
        cl->wanted = false;
        pthread_mutex_unlock(&cl->refresh_lock);
        int rc = refresh(cl);
        tc_sleep_ms(REFRESH_MIN_MS); /* a storm of MOVED costs one refresh per interval */
        pthread_mutex_lock(&cl->refresh_lock);
        if (rc != 0) /* nobody answered: again soon, it may be a failover */
            cl->wanted = true;
    }
    pthread_mutex_unlock(&cl->refresh_lock);
    return NULL;
}

/* ---- commands ------------------------------------------------------------------ */

/* One command of a batch. */
typedef struct ccmd {
    unsigned slot;
    int script;         /* TC__SCRIPT_*, or -1: argv is the whole command */
    int nkeys, argc;    /* a script's keys (argv[0..nkeys)) and all its arguments */
    const char **argv;
    const size_t *lens;
    int node;           /* send it to this node (an index), or -1: to the slot's master */
    redisReply *reply;  /* the answer, a value or an error reply for the caller */
    /* the batch's own */
    int ask;            /* ASK: the node to send it to next, after ASKING; -1 */
    bool eval, failed;  /* eval: send the script's text (the node said NOSCRIPT) */
    bool resent;        /* sent again once already, its connection found closed */
} ccmd;

static ccmd command(const char **argv, const size_t *lens, int argc)
{
    return (ccmd){.slot = argc > 1 ? tc__cluster_slot(argv[1], lens[1]) : 0,
                  .script = -1,
                  .argc = argc,
                  .argv = argv,
                  .lens = lens,
                  .node = -1};
}

static ccmd script(int script, int nkeys, int argc, const char **argv, const size_t *lens)
{
    TC_ASSERT(nkeys >= 1 && nkeys <= argc);
    return (ccmd){.slot = tc__cluster_slot(argv[0], lens[0]),
                  .script = script,
                  .nkeys = nkeys,
                  .argc = argc,
                  .argv = argv,
                  .lens = lens,
                  .node = -1};
}

static bool is_error(const redisReply *r, const char *code)
{
    size_t n = strlen(code);
    return r != NULL && r->type == REDIS_REPLY_ERROR && r->len >= n &&
           memcmp(r->str, code, n) == 0 && (r->len == n || r->str[n] == ' ');
}

/* Appends c to ctx, EVALSHA (or EVAL) first for a script. */
static bool append(tc__redis *r, redisContext *ctx, ccmd *c)
{
    const char *words[WORDS_MAX];
    size_t lens[WORDS_MAX];
    char sha[41], nk[12];
    int n = 0;
    if (c->ask >= 0 && redisAppendCommand(ctx, "ASKING") != REDIS_OK)
        return false;
    if (c->script >= 0) {
        tc__redis_sha(r, c->script, sha);
        bool eval = c->eval || sha[0] == '\0';
        snprintf(nk, sizeof(nk), "%d", c->nkeys);
        words[n] = eval ? "EVAL" : "EVALSHA", lens[n] = strlen(words[n]), n++;
        words[n] = eval ? tc__redis_script_text(c->script) : sha, lens[n] = strlen(words[n]), n++;
        words[n] = nk, lens[n] = strlen(nk), n++;
    }
    TC_ASSERT(n + c->argc <= WORDS_MAX);
    for (int i = 0; i < c->argc; i++)
        words[n] = c->argv[i], lens[n] = c->lens[i], n++;
    return redisAppendCommandArgv(ctx, n, words, lens) == REDIS_OK;
}

static bool flush(redisContext *ctx)
{
    int done = 0;
    while (!done)
        if (redisBufferWrite(ctx, &done) != REDIS_OK)
            return false;
    return true;
}

enum { DONE, AGAIN, RETRY_LATER, FAILED };

/* MOVED: slot is node k's now; the rest of the map is read again soon. */
static void moved(tc__cluster *cl, unsigned slot, int k)
{
    TC__INC(cl->m->cluster_moved);
    pthread_rwlock_wrlock(&cl->lock);
    cl->owner[slot] = (int16_t)k;
    pthread_rwlock_unlock(&cl->lock);
    want_refresh(cl);
}

/* What to do about c's reply (a redirection updates the map here). */
static int classify(tc__cluster *cl, ccmd *c)
{
    redisReply *rep = c->reply;
    if (rep->type != REDIS_REPLY_ERROR)
        return DONE;
    tc__redirect rd;
    int kind = tc__cluster_redirect(rep->str, rep->len, &rd);
    if (kind != TC__REDIRECT_NONE) {
        if (rd.host[0] == '\0') { /* the node that answered: its own address */
            pthread_rwlock_rdlock(&cl->lock);
            int at = c->ask >= 0 ? c->ask : c->node >= 0 ? c->node : cl->owner[c->slot];
            if (at >= 0)
                snprintf(rd.host, sizeof(rd.host), "%s", cl->nodes[at]->host);
            pthread_rwlock_unlock(&cl->lock);
        }
        pthread_rwlock_wrlock(&cl->lock);
        int k = node_at_locked(cl, rd.host, rd.port);
        pthread_rwlock_unlock(&cl->lock);
        if (k < 0)
            return FAILED;
        if (kind == TC__REDIRECT_MOVED)
            moved(cl, rd.slot, k);
        else
            TC__INC(cl->m->cluster_ask);
        c->ask = kind == TC__REDIRECT_ASK ? k : -1;
        c->node = -1;
        return AGAIN;
    }
    if (is_error(rep, "TRYAGAIN")) {
        TC__INC(cl->m->cluster_retries);
        return RETRY_LATER;
    }
    if (is_error(rep, "NOSCRIPT") && c->script >= 0 && !c->eval) {
        c->eval = true;
        return AGAIN;
    }
    if (is_error(rep, "CLUSTERDOWN")) {
        TC__INC(cl->m->cluster_down);
        set_cause(cl, "%s", rep->str);
        want_refresh(cl);
        return FAILED;
    }
    return DONE; /* an error the caller reads */
}

/*
 * Sends the commands not answered yet, each to its master (or the node an ASK
 * named), all of them before any reply is read, every connection made first;
 * reads the replies. Returns whether any must go again, and sets *later when
 * one should wait first.
 */
static bool round_once(tc__cluster *cl, ccmd *c, int n, bool *later)
{
    int target[BATCH_MAX], used[BATCH_MAX], nused = 0;
    tc__redis *node_r[BATCH_MAX];
    pthread_rwlock_rdlock(&cl->lock);
    for (int i = 0; i < n; i++) {
        target[i] = -1;
        if (c[i].reply != NULL || c[i].failed)
            continue;
        target[i] = c[i].ask >= 0 ? c[i].ask : c[i].node >= 0 ? c[i].node : cl->owner[c[i].slot];
        if (target[i] < 0)
            continue;
        int k = 0;
        while (k < nused && used[k] != target[i])
            k++;
        if (k == nused) {
            /* ascending, so that two batches take connections in one order */
            int at = nused++;
            while (at > 0 && used[at - 1] > target[i]) {
                used[at] = used[at - 1];
                at--;
            }
            used[at] = target[i];
        }
    }
    for (int k = 0; k < nused; k++)
        node_r[k] = cl->nodes[used[k]]->r;
    pthread_rwlock_unlock(&cl->lock);
    for (int i = 0; i < n; i++)
        if (c[i].reply == NULL && !c[i].failed && target[i] < 0) { /* no master for the slot */
            c[i].failed = true;
            TC__INC(cl->m->cluster_down);
            set_cause(cl, "slot %u has no master", c[i].slot);
            want_refresh(cl);
        }

    /* Every connection first (a new one is checked: dialed()), then the commands. */
    tc__redis_conn conns[BATCH_MAX];
    bool healthy[BATCH_MAX];
    for (int k = 0; k < nused; k++) {
        conns[k] = tc__redis_acquire(node_r[k]);
        healthy[k] = conns[k].ctx != NULL;
    }
    uint64_t t0 = tc_mono_us();
    for (int k = 0; k < nused; k++) {
        for (int i = 0; i < n && healthy[k]; i++)
            if (target[i] == used[k] && c[i].reply == NULL && !c[i].failed)
                healthy[k] = append(node_r[k], conns[k].ctx, &c[i]);
        healthy[k] = healthy[k] && flush(conns[k].ctx);
    }
    bool again = false;
    for (int k = 0; k < nused; k++) {
        for (int i = 0; i < n; i++) {
            if (target[i] != used[k] || c[i].reply != NULL || c[i].failed)
                continue;
            redisReply *rep = NULL;
            if (healthy[k] && c[i].ask >= 0) { /* ASKING's +OK */
                healthy[k] = redisGetReply(conns[k].ctx, (void **)&rep) == REDIS_OK;
                freeReplyObject(rep);
                rep = NULL;
            }
            if (healthy[k])
                healthy[k] = redisGetReply(conns[k].ctx, (void **)&rep) == REDIS_OK && rep != NULL;
            if (!healthy[k]) { /* a connection the server closed: once more, on a new one */
                bool lost = conns[k].ctx != NULL && tc__redis_conn_lost(conns[k].ctx);
                c[i].failed = !lost || c[i].resent;
                c[i].resent = true;
                again |= !c[i].failed;
                continue;
            }
            c[i].reply = rep;
            int what = classify(cl, &c[i]);
            if (what == DONE)
                continue;
            freeReplyObject(c[i].reply);
            c[i].reply = NULL;
            c[i].failed = what == FAILED;
            again |= what != FAILED;
            *later |= what == RETRY_LATER;
        }
        if (!healthy[k]) {
            char why[512];
            if (conns[k].ctx != NULL) /* acquire() let go of one it could not make */
                tc__redis_release(node_r[k], conns[k], false);
            tc__redis_cause(node_r[k], why, sizeof(why));
            set_cause(cl, "%s", why);
            want_refresh(cl);
        } else {
            tc__redis_release(node_r[k], conns[k], true);
        }
    }
    if (nused > 0)
        tc__hist_add(&cl->m->redis_latency, tc_mono_us() - t0);
    return again;
}

/*
 * Runs the n commands. together: when one must go again (a redirection, a
 * retry), all go again — a read's GETs are only good together if every one of
 * them was sent after every connection they use was checked. Returns 0 when
 * every command has its reply (maybe an error reply: the caller's to read),
 * else TC_EREDIS (no reply is left then).
 */
static int batch(tc__cluster *cl, ccmd *c, int n, bool together)
{
    TC_ASSERT(n >= 1 && n <= BATCH_MAX);
    tc_deadline until = tc_deadline_in_ms(cl->cfg.redis_timeout_ms);
    for (int i = 0; i < n; i++) {
        c[i].reply = NULL;
        c[i].ask = -1;
        c[i].failed = c[i].eval = c[i].resent = false;
    }
    bool ok = false;
    for (int redirections = 0;;) {
        bool later = false, again = round_once(cl, c, n, &later);
        bool failed = false;
        for (int i = 0; i < n; i++)
            failed |= c[i].failed;
        if (failed || !again) {
            ok = !failed;
            break;
        }
        /* redirections: a few rounds; TRYAGAIN: until the command's time is up */
        if (later ? tc_deadline_expired(until) : ++redirections >= ROUNDS_MAX)
            break;
        if (together)
            for (int i = 0; i < n; i++) {
                freeReplyObject(c[i].reply);
                c[i].reply = NULL;
            }
        if (later)
            tc_sleep_ms(RETRY_SLEEP_MS);
    }
    if (!ok)
        for (int i = 0; i < n; i++) {
            freeReplyObject(c[i].reply);
            c[i].reply = NULL;
        }
    return ok ? 0 : TC_EREDIS;
}

/* A reply of one command: its answer, or NULL for an error reply (counted) or
 * no answer — what tc__redis_command returns. */
static redisReply *one(tc__cluster *cl, ccmd c)
{
    if (batch(cl, &c, 1, false) != 0) {
        TC__INC(cl->m->redis_errors);
        return NULL;
    }
    if (c.reply->type == REDIS_REPLY_ERROR) {
        set_cause(cl, "%s", c.reply->str);
        TC__INC(cl->m->redis_errors);
        freeReplyObject(c.reply);
        return NULL;
    }
    return c.reply;
}

/* ---- replies made here (freed by freeReplyObject, as hiredis's) ---------------- */

static redisReply *new_reply(int type)
{
    redisReply *r = calloc(1, sizeof(*r));
    if (r != NULL)
        r->type = type;
    return r;
}

static redisReply *new_string(const char *s, size_t len)
{
    redisReply *r = new_reply(REDIS_REPLY_STRING);
    if (r != NULL && (r->str = malloc(len + 1)) == NULL) {
        free(r);
        return NULL;
    }
    if (r != NULL) {
        memcpy(r->str, s, len);
        r->str[len] = '\0';
        r->len = len;
    }
    return r;
}

static redisReply *new_integer(long long v)
{
    redisReply *r = new_reply(REDIS_REPLY_INTEGER);
    if (r != NULL)
        r->integer = v;
    return r;
}

/* ---- the engine's scripts on a cluster (the DESIGN comment above) -------------- */

/* READ (KEYS value, tags): {value or nil, each tag's version or "0"}. */
static redisReply *cl_read(tc__cluster *cl, int nkeys, const char **argv, const size_t *lens)
{
    ccmd c[BATCH_MAX];
    const char *words[BATCH_MAX][2];
    size_t wl[BATCH_MAX][2];
    TC_ASSERT(nkeys >= 1 && nkeys <= BATCH_MAX);
    for (int i = 0; i < nkeys; i++) {
        words[i][0] = "GET", wl[i][0] = 3;
        words[i][1] = argv[i], wl[i][1] = lens[i];
        c[i] = command(words[i], wl[i], 2);
    }
    if (batch(cl, c, nkeys, true) != 0) {
        TC__INC(cl->m->redis_errors);
        return NULL;
    }
    redisReply *out = new_reply(REDIS_REPLY_ARRAY);
    bool ok = out != NULL && (out->element = calloc((size_t)nkeys, sizeof(*out->element))) != NULL;
    for (int i = 0; i < nkeys; i++) {
        redisReply *r = c[i].reply;
        if (ok && i > 0 && r->type == REDIS_REPLY_NIL) { /* a missing tag reads "0" */
            freeReplyObject(r);
            r = new_string("0", 1);
        }
        ok = ok && r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL);
        if (out != NULL && out->element != NULL)
            out->element[out->elements++] = r;
        else
            freeReplyObject(r);
    }
    if (!ok) {
        TC__INC(cl->m->redis_errors);
        freeReplyObject(out);
        return NULL;
    }
    return out;
}

/* WRITE (KEYS value, n tags; ARGV record, px, tag px, n versions read, n
 * carried): per tag TAGPREP, then the record if every tag said yes. 1 or 0. */
static redisReply *cl_write(tc__cluster *cl, int nkeys, int argc, const char **argv,
                            const size_t *lens)
{
    int n = nkeys - 1;
    TC_ASSERT(n >= 0 && n <= BATCH_MAX && argc == nkeys + 3 + 2 * n);
    const char **a = argv + nkeys; /* record, px, tag px, read..., carried... */
    const size_t *al = lens + nkeys;
    ccmd c[BATCH_MAX];
    const char *words[BATCH_MAX][4];
    size_t wl[BATCH_MAX][4];
    for (int i = 0; i < n; i++) {
        words[i][0] = argv[1 + i], wl[i][0] = lens[1 + i];
        words[i][1] = a[3 + i], wl[i][1] = al[3 + i];
        words[i][2] = a[3 + n + i], wl[i][2] = al[3 + n + i];
        words[i][3] = a[2], wl[i][3] = al[2];
        c[i] = script(TC__SCRIPT_TAGPREP, 1, 4, words[i], wl[i]);
    }
    bool store = true;
    if (n > 0) {
        if (batch(cl, c, n, false) != 0) {
            TC__INC(cl->m->redis_errors);
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            store = store && is_int(c[i].reply) && c[i].reply->integer == 1;
            freeReplyObject(c[i].reply);
        }
    }
    if (!store)
        return new_integer(0);
    const char *set[] = {"SET", argv[0], a[0], "PX", a[1]};
    size_t setl[] = {3, lens[0], al[0], 2, al[1]};
    redisReply *rep = one(cl, command(set, setl, 5));
    if (rep == NULL)
        return NULL;
    freeReplyObject(rep);
    return new_integer(1);
}

/* INVALIDATE (KEYS seq, members, n tags, the values; ARGV channel, id, n,
 * step, epoch, px, the n tags): BUMP each tag and DEL each value, then META.
 * {seq, members}, as the script on one Redis. */
static redisReply *cl_invalidate(tc__cluster *cl, int nkeys, int argc, const char **argv,
                                 const size_t *lens)
{
    const char **a = argv + nkeys;
    const size_t *al = lens + nkeys;
    int n = atoi(a[2]), nval = nkeys - 2 - n;
    TC_ASSERT(n >= 1 && nval >= 0 && n + nval <= BATCH_MAX && argc == nkeys + 6 + n);
    uint64_t epoch = strtoull(a[4], NULL, 10);
    ccmd c[BATCH_MAX];
    const char *words[BATCH_MAX][3];
    size_t wl[BATCH_MAX][3];
    char epochs[BATCH_MAX][24];
    for (int i = 0; i < n; i++) { /* each tag at its own random epoch if it is made now */
        snprintf(epochs[i], sizeof(epochs[i]), "%llu", (unsigned long long)(epoch + (uint64_t)i));
        words[i][0] = argv[2 + i], wl[i][0] = lens[2 + i];
        words[i][1] = epochs[i], wl[i][1] = strlen(epochs[i]);
        words[i][2] = a[5], wl[i][2] = al[5];
        c[i] = script(TC__SCRIPT_BUMP, 1, 3, words[i], wl[i]);
    }
    for (int j = 0; j < nval; j++) {
        words[n + j][0] = "DEL", wl[n + j][0] = 3;
        words[n + j][1] = argv[2 + n + j], wl[n + j][1] = lens[2 + n + j];
        c[n + j] = command(words[n + j], wl[n + j], 2);
    }
    if (batch(cl, c, n + nval, false) != 0) {
        TC__INC(cl->m->redis_errors);
        return NULL;
    }
    bool ok = true;
    for (int i = 0; i < n + nval; i++) {
        ok = ok && c[i].reply->type != REDIS_REPLY_ERROR;
        freeReplyObject(c[i].reply);
    }
    if (!ok) {
        TC__INC(cl->m->redis_errors);
        return NULL;
    }
    /* META: KEYS seq, members; ARGV channel, id, step, the tags */
    const char *m[4 + 3 + TC_TAGS_MAX];
    size_t ml[TC_COUNTOF(m)];
    int mc = 0;
    TC_ASSERT(n <= TC_TAGS_MAX);
    m[mc] = argv[0], ml[mc++] = lens[0];
    m[mc] = argv[1], ml[mc++] = lens[1];
    m[mc] = a[0], ml[mc++] = al[0];
    m[mc] = a[1], ml[mc++] = al[1];
    m[mc] = a[3], ml[mc++] = al[3];
    for (int i = 0; i < n; i++)
        m[mc] = a[6 + i], ml[mc++] = al[6 + i];
    tc_deadline until = tc_deadline_in_ms(cl->cfg.redis_timeout_ms);
    for (;;) {
        redisReply *rep = one(cl, script(TC__SCRIPT_META, 2, mc, m, ml));
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            !is_int(rep->element[0]) || rep->element[0]->integer != 0)
            return rep;
        /* fenced: a member listens on another node (the DESIGN comment above) */
        TC__INC(cl->m->cluster_retries);
        freeReplyObject(rep);
        want_refresh(cl);
        if (tc_deadline_expired(until)) {
            set_cause(cl, "an instance still listens on the former master of the meta slot");
            TC__INC(cl->m->redis_errors);
            return NULL;
        }
        tc_sleep_ms(RETRY_SLEEP_MS);
    }
}

/* PING every master: the first reply if all of them answered. */
static redisReply *ping_all(tc__cluster *cl)
{
    ccmd c[BATCH_MAX];
    const char *ping[] = {"PING"};
    size_t pl[] = {4};
    int n = 0;
    bool covered = true, owns[NODES_MAX];
    pthread_rwlock_rdlock(&cl->lock);
    masters_locked(cl, owns);
    for (int s = 0; s < TC__SLOTS; s++)
        covered = covered && cl->owner[s] >= 0;
    for (int i = 0; i < cl->nnodes; i++)
        if (owns[i] && n < BATCH_MAX) {
            c[n] = command(ping, pl, 1);
            c[n++].node = i;
        }
    pthread_rwlock_unlock(&cl->lock);
    if (!covered || n == 0) {
        TC__INC(cl->m->cluster_down);
        set_cause(cl, "some slots have no master");
        want_refresh(cl);
        return NULL;
    }
    if (batch(cl, c, n, false) != 0)
        return NULL;
    bool all = true;
    for (int i = 1; i < n; i++) {
        all = all && c[i].reply->type != REDIS_REPLY_ERROR;
        freeReplyObject(c[i].reply);
    }
    if (!all || c[0].reply->type == REDIS_REPLY_ERROR) {
        freeReplyObject(c[0].reply);
        return NULL;
    }
    return c[0].reply;
}

redisReply *tc__cluster_command(tc__cluster *cl, int argc, const char **argv, const size_t *lens)
{
    if (argc == 1 && lens[0] == 4 && memcmp(argv[0], "PING", 4) == 0)
        return ping_all(cl);
    TC_ASSERT(argc >= 2 && argc <= WORDS_MAX);
    const char *words[WORDS_MAX];
    size_t wl[WORDS_MAX];
    memcpy(words, argv, (size_t)argc * sizeof(*argv));
    memcpy(wl, lens, (size_t)argc * sizeof(*lens));
    if (lens[0] == 7 && memcmp(argv[0], "PUBLISH", 7) == 0) /* the bus is sharded */
        words[0] = "SPUBLISH", wl[0] = 8;
    return one(cl, command(words, wl, argc));
}

redisReply *tc__cluster_script(tc__cluster *cl, int sc, int nkeys, int argc, const char **argv,
                               const size_t *lens)
{
    switch (sc) {
    case TC__SCRIPT_READ:
        return cl_read(cl, nkeys, argv, lens);
    case TC__SCRIPT_WRITE:
        return cl_write(cl, nkeys, argc, argv, lens);
    case TC__SCRIPT_INVALIDATE:
        return cl_invalidate(cl, nkeys, argc, argv, lens);
    default: /* one key, or keys of one slot */
        return one(cl, script(sc, nkeys, argc, argv, lens));
    }
}

/* ---- a master's new connection: the incarnation check ----------------------------- */

/*
 * redis.c calls this when a master answers at its address with another process
 * than before (restarted in place). The records it holds are already born
 * invalid (dialed() moved the global tag). The engine is told (its L1 emptied,
 * its generations moved, as on one Redis) only when that master serves the
 * meta slot: the bus and the members live there, and until the bus notices the
 * new process a write may not wait for this instance. Another master's restart
 * touches no bus message, which is what L1 rests on; emptying L1 then would
 * only make loads running across it born invalid.
 */
static void node_incarnation(void *ctx, const char *run_id)
{
    cnode *nd = ctx;
    tc__cluster *cl = nd->cl;
    pthread_rwlock_rdlock(&cl->lock);
    int o = cl->owner[cl->meta_slot];
    bool meta = o >= 0 && cl->nodes[o] == nd;
    pthread_rwlock_unlock(&cl->lock);
    if (meta && cl->ev.incarnation != NULL) {
        cl->ev.incarnation(cl->ev.ctx, run_id);
        return;
    }
    TC__INC(cl->m->incarnations);
    say(cl, TC_LOG_WARN, "redis",
        "a different Redis process answers on the master %s:%d (run_id %.12s): restarted or "
        "restored; its records from before are not trusted",
        nd->host, nd->port, run_id);
}

/*
 * redis.c calls this on every new connection to a master, after the scripts
 * are loaded and before the connection is used (the DESIGN comment above):
 * learns the node's id and run_id; if its marker does not name that process,
 * moves the global tag, then sets the marker. 0, or -1 to refuse the
 * connection (why says why).
 */
static int dialed(void *dctx, struct redisContext *conn, char *run_id, size_t idn, char *why,
                  size_t wn)
{
    cnode *nd = dctx;
    tc__cluster *cl = nd->cl;
    char marker[TC_KEY_MAX + 256];
    int lowest = -1;
    bool global_here = false;
    pthread_rwlock_rdlock(&cl->lock);
    int me = 0;
    while (me < cl->nnodes && cl->nodes[me] != nd)
        me++;
    for (int s = 0; s < TC__SLOTS && lowest < 0; s++)
        if (cl->owner[s] == me)
            lowest = s;
    global_here = cl->owner[cl->global_slot] == me;
    pthread_rwlock_unlock(&cl->lock);
    /* A master that serves no slot holds none of our keys to trust (an ASK's
     * target importing one does, from the master it comes from). */
    bool check = lowest >= 0 && tc__cluster_marker_key(cl->prefix, (unsigned)lowest, marker,
                                                       sizeof(marker)) == 0;
    int want = 2 + check;
    int sent = (redisAppendCommand(conn, "CLUSTER MYID") == REDIS_OK) +
               (redisAppendCommand(conn, "INFO server") == REDIS_OK) +
               (check && redisAppendCommand(conn, "GET %s", marker) == REDIS_OK);
    if (sent != want) {
        snprintf(why, wn, "out of memory");
        return -1;
    }
    redisReply *rep[3] = {NULL, NULL, NULL};
    int rc = 0;
    for (int i = 0; i < want && rc == 0; i++)
        if (redisGetReply(conn, (void **)&rep[i]) != REDIS_OK || rep[i] == NULL ||
            rep[i]->type == REDIS_REPLY_ERROR) {
            snprintf(why, wn, "%s", rep[i] != NULL ? rep[i]->str : conn->errstr);
            rc = -1;
        }
    const char *at = rc == 0 && is_str(rep[1]) ? strstr(rep[1]->str, "run_id:") : NULL;
    size_t len = at != NULL ? strcspn(at + 7, "\r\n") : 0;
    if (rc == 0 && (at == NULL || len == 0 || len >= idn || !is_str(rep[0]) || rep[0]->len >= 41)) {
        snprintf(why, wn, "no run_id or node id");
        rc = -1;
    }
    bool same = false;
    if (rc == 0) {
        memcpy(run_id, at + 7, len);
        run_id[len] = '\0';
        pthread_rwlock_wrlock(&cl->lock);
        memcpy(nd->id, rep[0]->str, rep[0]->len + 1);
        pthread_rwlock_unlock(&cl->lock);
        same = !check || (is_str(rep[2]) && strcmp(rep[2]->str, run_id) == 0);
    }
    for (int i = 0; i < 3; i++)
        freeReplyObject(rep[i]);
    if (rc != 0) {
        want_refresh(cl); /* e.g. MOVED: the map is older than the cluster */
        return rc;
    }
    if (same)
        return 0;
    /* Not written through as it is now: the global tag first, then the marker. */
    char incr[24];
    snprintf(incr, sizeof(incr), "%llu", (unsigned long long)tc__random_increment());
    redisReply *bump;
    if (global_here) {
        bump = redisCommand(conn, "INCRBY %s %s", cl->global_key, incr);
    } else {
        const char *argv[] = {"INCRBY", cl->global_key, incr};
        size_t lens[] = {6, strlen(cl->global_key), strlen(incr)};
        bump = tc__cluster_command(cl, 3, argv, lens);
    }
    bool ok = is_int(bump);
    snprintf(why, wn, "moving the global tag: %s",
             bump != NULL && bump->type == REDIS_REPLY_ERROR ? bump->str : "no answer");
    freeReplyObject(bump);
    redisReply *set = ok ? redisCommand(conn, "SET %s %s", marker, run_id) : NULL;
    if (ok && (set == NULL || set->type != REDIS_REPLY_STATUS)) {
        snprintf(why, wn, "setting %s: %s", marker,
                 set != NULL && set->type == REDIS_REPLY_ERROR ? set->str : conn->errstr);
        ok = false;
    }
    freeReplyObject(set);
    if (!ok)
        want_refresh(cl);
    return ok ? 0 : -1;
}

/* ---- life cycle and the rest of redis.c's calls ----------------------------------- */

tc__cluster *tc__cluster_new(const tc_config *cfg, tc__metrics *m, tc__redis_events ev)
{
    char (*hosts)[256] = calloc(SEEDS_MAX, sizeof(*hosts));
    int ports[SEEDS_MAX];
    int nseeds = hosts != NULL ? tc__sentinel_parse(cfg->cluster_nodes, hosts, ports, SEEDS_MAX)
                               : TC_ENOMEM;
    tc__cluster *cl = nseeds > 0 ? calloc(1, sizeof(*cl)) : NULL;
    if (cl == NULL) {
        free(hosts);
        return NULL;
    }
    memcpy(cl->seeds, hosts, (size_t)nseeds * sizeof(*hosts));
    memcpy(cl->seed_ports, ports, (size_t)nseeds * sizeof(*ports));
    cl->nseeds = nseeds;
    free(hosts);
    cl->cfg = *cfg;
    cl->cfg.cluster_nodes = NULL;
    cl->cfg.redis_host = NULL;
    cl->m = m;
    cl->ev = ev;
    cl->log = (tc__logger){cfg->log, cfg->log_ctx};
    cl->prefix = strdup(cfg->prefix);
    cl->password = cfg->redis_password != NULL ? strdup(cfg->redis_password) : NULL;
    pthread_rwlock_init(&cl->lock, NULL);
    pthread_mutex_init(&cl->refresh_lock, NULL);
    tc_cond_init(&cl->refresh_cond);
    for (int s = 0; s < TC__SLOTS; s++)
        cl->owner[s] = -1;
    if (cl->prefix == NULL || (cfg->redis_password != NULL && cl->password == NULL)) {
        tc__cluster_free(cl);
        return NULL;
    }
    cl->cfg.prefix = cl->prefix;
    cl->cfg.redis_password = cl->password;
    int len = snprintf(cl->global_key, sizeof(cl->global_key), "%s~t:*", cl->prefix);
    cl->global_slot = tc__cluster_slot(cl->global_key, (size_t)len);
    char meta[TC_KEY_MAX + 256];
    if (tc__cluster_meta_name(cl->prefix, "seq", meta, sizeof(meta)) != 0) {
        tc__cluster_free(cl);
        return NULL;
    }
    cl->meta_slot = tc__cluster_slot(meta, strlen(meta));
    cl->wanted = refresh(cl) != 0; /* known before the first command, when a node answers */
    if (pthread_create(&cl->refresher, NULL, refresher, cl) != 0) {
        tc__cluster_free(cl);
        return NULL;
    }
    cl->started = true;
    return cl;
}

void tc__cluster_free(tc__cluster *cl)
{
    if (cl == NULL)
        return;
    if (cl->started) {
        pthread_mutex_lock(&cl->refresh_lock);
        cl->stopping = true;
        tc_cond_signal(&cl->refresh_cond);
        pthread_mutex_unlock(&cl->refresh_lock);
        pthread_join(cl->refresher, NULL);
    }
    for (int i = 0; i < cl->nnodes; i++) {
        tc__redis_free(cl->nodes[i]->r);
        free(cl->nodes[i]);
    }
    tc_cond_destroy(&cl->refresh_cond);
    pthread_mutex_destroy(&cl->refresh_lock);
    pthread_rwlock_destroy(&cl->lock);
    free(cl->prefix);
    free(cl->password);
    free(cl);
}

int tc__cluster_address(tc__cluster *cl, char *host, size_t n, int *port)
{
    pthread_rwlock_rdlock(&cl->lock);
    int o = cl->owner[cl->meta_slot];
    int len = o >= 0 ? snprintf(host, n, "%s", cl->nodes[o]->host) : 0;
    *port = o >= 0 ? cl->nodes[o]->port : 0;
    pthread_rwlock_unlock(&cl->lock);
    return len > 0 && (size_t)len < n ? 0 : TC_EREDIS;
}

bool tc__cluster_breaker_open(tc__cluster *cl)
{
    bool open = false, owns[NODES_MAX];
    pthread_rwlock_rdlock(&cl->lock);
    masters_locked(cl, owns);
    for (int i = 0; i < cl->nnodes && !open; i++)
        open = owns[i] && tc__redis_breaker_open(cl->nodes[i]->r);
    pthread_rwlock_unlock(&cl->lock);
    return open;
}

void tc__cluster_refresh_soon(tc__cluster *cl)
{
    want_refresh(cl);
}

void tc__cluster_cause(tc__cluster *cl, char *out, size_t n)
{
    pthread_rwlock_rdlock(&cl->lock);
    snprintf(out, n, "%s", cl->cause[0] != '\0' ? cl->cause : "no answer");
    pthread_rwlock_unlock(&cl->lock);
}

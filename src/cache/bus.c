/*
 * The invalidation bus: one thread with its own Redis connection, subscribed
 * to the cache's channel (every instance's invalidations) and to this
 * instance's own channel (acknowledgements addressed to it), handing every
 * message to the engine.
 *
 * The hard part is knowing, at every moment, whether we may have missed a
 * message. The thread sends PING on the subscribed connection every
 * ping_every_ms. Redis answers a PING in the same stream as the messages, so
 * when the PONG of a ping sent at time s arrives, every message published
 * before Redis saw that ping has already been handed over: the engine is told
 * pong(s), and may trust its L1 until s + its lease (cache.c). A connection
 * that falls silent thus stops being trusted one lease after the last ping it
 * answered, however slow the thread or the network; no answer for
 * DEAD_AFTER_US, a read error or a closed socket count as lost: the engine is
 * told at once (lost), and again when a new subscription is confirmed
 * (connected). Reconnects back off from 50 ms to 2 s.
 *
 * On a Redis Cluster the bus is sharded pub/sub (SSUBSCRIBE) on the master
 * of the meta slot, the one the meta script publishes on (cluster.c says
 * why). The ping proves the same thing there. That master stops being the
 * right one when the slot moves: it then says sunsubscribe, or the address
 * the engine names changes (checked every tick), or the connection dies;
 * each is a lost subscription, made again where the engine says.
 *
 * Not for: applying invalidations or sending acknowledgements (cache.c does,
 * from the handler's calls on this thread).
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/internal.h"

#define DEAD_AFTER_US 3000000u
#define PINGS_MAX 64 /* unanswered pings remembered; past it, no more are sent */

struct tc__bus {
    char *password, *channel, *direct;
    int connect_timeout_ms, ping_every_ms;
    bool sharded;  /* a cluster: SSUBSCRIBE on the meta slot's master */
    char host[256]; /* where the subscription is (bus thread) */
    int port;
    char node[41]; /* its node id, when sharded (bus thread) */
    tc__bus_handler h;
    tc__metrics *m;
    int wake[2]; /* 'x' written to wake[1] stops the thread, 'r' makes it reconnect */
    pthread_t thread;
    pthread_mutex_t lock;
    tc_cond changed;
    bool connected, stopping;
    char cause[160]; /* why the last subscription ended, or why none could be made */
    /* the send times of the pings not answered yet, oldest first (a ring) */
    uint64_t pings[PINGS_MAX];
    int ping_head, nping;
};

static void set_connected(tc__bus *b, bool up)
{
    pthread_mutex_lock(&b->lock);
    b->connected = up;
    tc_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->lock);
}

enum { WAKE_NONE, WAKE_STOP, WAKE_RECONNECT };

static int read_wake(tc__bus *b)
{
    char ch[16];
    ssize_t n = read(b->wake[0], ch, sizeof(ch));
    int what = WAKE_NONE;
    for (ssize_t i = 0; i < n; i++)
        if (ch[i] == 'x')
            what = WAKE_STOP;
        else if (ch[i] == 'r' && what == WAKE_NONE)
            what = WAKE_RECONNECT;
    return what;
}

/* Sleeps ms or until woken; returns whether we are stopping. */
static bool nap(tc__bus *b, int ms)
{
    struct pollfd p = {b->wake[0], POLLIN, 0};
    return poll(&p, 1, ms) > 0 && read_wake(b) == WAKE_STOP;
}

static void set_cause(tc__bus *b, const char *what, const redisContext *ctx)
{
    snprintf(b->cause, sizeof(b->cause), "%s%s%s", what, ctx != NULL && ctx->err ? ": " : "",
             ctx != NULL && ctx->err ? ctx->errstr : "");
}

static redisContext *subscribe(tc__bus *b)
{
    char *host = b->host;
    int port;
    if (b->h.address(b->h.ctx, host, sizeof(b->host), &port) != 0 || port <= 0) {
        set_cause(b, "no master known", NULL);
        return NULL;
    }
    b->port = port;
    struct timeval tv = {b->connect_timeout_ms / 1000, (b->connect_timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(host, port, tv);
    set_cause(b, "cannot subscribe", ctx);
    if (ctx == NULL || ctx->err || redisSetTimeout(ctx, tv) != REDIS_OK)
        goto fail;
    redisReply *rep;
    if (b->password != NULL) {
        rep = redisCommand(ctx, "AUTH %s", b->password);
        bool ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;
        if (rep != NULL)
            freeReplyObject(rep);
        if (!ok)
            goto fail;
    }
    if (b->sharded) { /* which node, for the membership (the meta script checks it) */
        rep = redisCommand(ctx, "CLUSTER MYID");
        bool ok = rep != NULL && rep->type == REDIS_REPLY_STRING && rep->len < sizeof(b->node);
        if (ok)
            memcpy(b->node, rep->str, rep->len + 1);
        if (rep != NULL)
            freeReplyObject(rep);
        if (!ok)
            goto fail;
    }
    /* one reply per channel, each ["subscribe", channel, count]; sharded: both
     * channels are in the meta slot, and a node that does not serve it says
     * MOVED */
    if (redisAppendCommand(ctx, "%s %s %s", b->sharded ? "SSUBSCRIBE" : "SUBSCRIBE", b->channel,
                           b->direct) != REDIS_OK)
        goto fail;
    for (int i = 0; i < 2; i++) {
        if (redisGetReply(ctx, (void **)&rep) != REDIS_OK)
            goto fail;
        bool ok = rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3;
        if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
            snprintf(b->cause, sizeof(b->cause), "cannot subscribe: %s", rep->str);
        if (rep != NULL)
            freeReplyObject(rep);
        if (!ok)
            goto fail;
    }
    return ctx;
fail:
    if (ctx != NULL)
        redisFree(ctx);
    return NULL;
}

static bool flush_output(redisContext *ctx)
{
    int done = 0;
    while (!done)
        if (redisBufferWrite(ctx, &done) != REDIS_OK)
            return false;
    return true;
}

static bool is_str(const redisReply *r, const char *s)
{
    return r->type == REDIS_REPLY_STRING && strcmp(r->str, s) == 0;
}

/* One reply from the subscription. Returns false when it ends the
 * subscription (sharded: the node no longer serves the channels' slot). */
static bool handle(tc__bus *b, redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1)
        return true;
    redisReply **el = rep->element;
    if (is_str(el[0], "sunsubscribe")) {
        set_cause(b, "the node stopped serving the bus's slot", NULL);
        return false;
    }
    if (rep->elements == 3 && (is_str(el[0], "message") || is_str(el[0], "smessage")) &&
        el[1]->type == REDIS_REPLY_STRING && el[2]->type == REDIS_REPLY_STRING) {
        if (strcmp(el[1]->str, b->direct) == 0) {
            b->h.direct(b->h.ctx, el[2]->str, el[2]->len);
        } else {
            TC__INC(b->m->bus_messages);
            b->h.message(b->h.ctx, el[2]->str, el[2]->len);
        }
    } else if (is_str(el[0], "pong") && b->nping > 0) {
        uint64_t sent = b->pings[b->ping_head];
        b->ping_head = (b->ping_head + 1) % PINGS_MAX;
        b->nping--;
        b->h.pong(b->h.ctx, sent);
    }
    return true;
}

/* Sharded: whether the engine now names another node for the bus (its slot
 * moved: a reshard, a failover). */
static bool address_moved(tc__bus *b)
{
    char host[256];
    int port;
    return b->sharded && b->h.address(b->h.ctx, host, sizeof(host), &port) == 0 &&
           (port != b->port || strcmp(host, b->host) != 0);
}

enum { LOOP_LOST, LOOP_STOP, LOOP_RECONNECT };

/* Handles replies until the connection is lost, we stop, or are told to reconnect. */
static int listen_loop(tc__bus *b, redisContext *ctx)
{
    uint64_t every = (uint64_t)b->ping_every_ms * 1000u;
    uint64_t last_ping = 0, last_pong = tc_mono_us();
    b->nping = 0;
    b->ping_head = 0;
    for (;;) {
        uint64_t now = tc_mono_us();
        if (now - last_ping >= every && b->nping < PINGS_MAX) {
            /* the send time is taken before the bytes leave: the lease it grants
             * counts from no later than the moment Redis can have seen the ping */
            b->pings[(b->ping_head + b->nping) % PINGS_MAX] = now;
            b->nping++;
            last_ping = now;
            if (redisAppendCommand(ctx, "PING") != REDIS_OK || !flush_output(ctx)) {
                set_cause(b, "cannot send", ctx);
                return LOOP_LOST;
            }
        }
        uint64_t next = last_ping + every;
        int timeout = next > now ? (int)((next - now + 999) / 1000) : 0;
        struct pollfd p[2] = {{ctx->fd, POLLIN, 0}, {b->wake[0], POLLIN, 0}};
        if (poll(p, 2, timeout) < 0 && errno != EINTR) {
            set_cause(b, "poll failed", NULL);
            return LOOP_LOST;
        }
        if (p[1].revents) {
            int w = read_wake(b);
            if (w == WAKE_STOP)
                return LOOP_STOP;
            if (w == WAKE_RECONNECT)
                return LOOP_RECONNECT;
        }
        if (p[0].revents) {
            if (redisBufferRead(ctx) != REDIS_OK) {
                set_cause(b, "connection lost", ctx);
                return LOOP_LOST;
            }
            redisReply *rep;
            bool any = false, up = true;
            while (up && redisGetReplyFromReader(ctx, (void **)&rep) == REDIS_OK && rep != NULL) {
                up = handle(b, rep);
                freeReplyObject(rep);
                any = true;
            }
            if (!up)
                return LOOP_LOST;
            if (any) {
                last_pong = tc_mono_us(); /* any reply shows the link is alive */
                b->h.batch_done(b->h.ctx);
            }
            if (ctx->err) {
                set_cause(b, "connection lost", ctx);
                return LOOP_LOST;
            }
        }
        b->h.tick(b->h.ctx);
        if (address_moved(b)) {
            set_cause(b, "the bus's slot moved to another node", NULL);
            return LOOP_LOST;
        }
        if (tc_mono_us() - last_pong > DEAD_AFTER_US) {
            set_cause(b, "no answer for 3 s", NULL);
            return LOOP_LOST;
        }
    }
}

static void *bus_thread(void *arg)
{
    tc__bus *b = arg;
    int backoff = 50;
    bool stopping = false, said_down = false;
    while (!stopping) {
        redisContext *ctx = subscribe(b);
        if (ctx == NULL) {
            if (!said_down) { /* once per outage: the engine says whether it matters */
                b->h.unreachable(b->h.ctx, b->cause);
                said_down = true;
            }
            if (b->sharded && b->h.stale != NULL) /* e.g. MOVED: the slot map is old */
                b->h.stale(b->h.ctx);
            b->h.tick(b->h.ctx);
            stopping = nap(b, backoff);
            backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
            continue;
        }
        backoff = 50;
        said_down = false;
        if (b->sharded && b->h.node != NULL)
            b->h.node(b->h.ctx, b->node);
        b->h.connected(b->h.ctx);
        set_connected(b, true);
        int how = listen_loop(b, ctx);
        stopping = how == LOOP_STOP;
        set_connected(b, false);
        redisFree(ctx);
        if (!stopping) {
            if (how == LOOP_RECONNECT)
                set_cause(b, "moving to the new master", NULL);
            b->h.lost(b->h.ctx, b->cause);
        }
    }
    return NULL;
}

tc__bus *tc__bus_start(const tc_config *cfg, const char *channel, const char *direct,
                       int ping_every_ms, tc__bus_handler h, tc__metrics *m)
{
    tc__bus *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->channel = strdup(channel);
    b->direct = strdup(direct);
    b->password = cfg->redis_password != NULL ? strdup(cfg->redis_password) : NULL;
    b->connect_timeout_ms = cfg->connect_timeout_ms;
    b->ping_every_ms = ping_every_ms;
    b->sharded = cfg->cluster_nodes != NULL;
    b->h = h;
    b->m = m;
    pthread_mutex_init(&b->lock, NULL);
    tc_cond_init(&b->changed);
    if (b->channel == NULL || b->direct == NULL || pipe(b->wake) != 0) {
        b->wake[0] = b->wake[1] = -1;
        tc__bus_stop(b);
        return NULL;
    }
    if (pthread_create(&b->thread, NULL, bus_thread, b) != 0) {
        b->stopping = true; /* no thread to join */
        tc__bus_stop(b);
        return NULL;
    }
    return b;
}

bool tc__bus_wait_connected(tc__bus *b, int ms)
{
    tc_deadline until = tc_deadline_in_ms(ms);
    pthread_mutex_lock(&b->lock);
    while (!b->connected && tc_cond_wait_until(&b->changed, &b->lock, until) == 0)
        ;
    bool up = b->connected;
    pthread_mutex_unlock(&b->lock);
    return up;
}

void tc__bus_reconnect(tc__bus *b)
{
    if (b != NULL && b->wake[1] >= 0) {
        ssize_t n = write(b->wake[1], "r", 1);
        (void)n;
    }
}

void tc__bus_stop(tc__bus *b)
{
    if (b == NULL)
        return;
    if (b->wake[1] >= 0 && !b->stopping) {
        ssize_t n = write(b->wake[1], "x", 1);
        (void)n;
        pthread_join(b->thread, NULL);
    }
    if (b->wake[0] >= 0) {
        close(b->wake[0]);
        close(b->wake[1]);
    }
    tc_cond_destroy(&b->changed);
    pthread_mutex_destroy(&b->lock);
    free(b->channel);
    free(b->direct);
    free(b->password);
    free(b);
}

/*
 * The invalidation bus: one thread with its own Redis connection, subscribed
 * to the cache's channel, handing every message to the engine.
 *
 * The hard part is knowing when we may have missed a message. The thread
 * sends PING every second on the subscribed connection; no answer for three
 * seconds, a read error or a closed socket all count as lost. The engine is
 * told at once (lost), and again when a new subscription is confirmed
 * (connected) — only then is anything published afterwards sure to reach us.
 * Reconnects back off from 50 ms to 2 s.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/internal.h"

#define PING_EVERY_US 1000000u
#define DEAD_AFTER_US 3000000u

struct tc__bus {
    char *host, *password, *channel;
    int port, connect_timeout_ms;
    tc__bus_handler h;
    tc__metrics *m;
    int wake[2]; /* a byte written to wake[1] stops the thread */
    pthread_t thread;
    pthread_mutex_t lock;
    tc_cond changed;
    bool connected, stopping;
};

static void set_connected(tc__bus *b, bool up)
{
    pthread_mutex_lock(&b->lock);
    b->connected = up;
    tc_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->lock);
}

/* Sleeps ms or until stopped; returns whether we are stopping. */
static bool nap(tc__bus *b, int ms)
{
    struct pollfd p = {b->wake[0], POLLIN, 0};
    return poll(&p, 1, ms) > 0;
}

static redisContext *subscribe(tc__bus *b)
{
    struct timeval tv = {b->connect_timeout_ms / 1000, (b->connect_timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(b->host, b->port, tv);
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
    rep = redisCommand(ctx, "SUBSCRIBE %s", b->channel);
    bool ok = rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3;
    if (rep != NULL)
        freeReplyObject(rep);
    if (ok)
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

/* Handles replies until the connection is lost or we stop; returns whether stopping. */
static bool listen_loop(tc__bus *b, redisContext *ctx)
{
    uint64_t last_ping = tc_mono_us(), last_pong = last_ping;
    for (;;) {
        struct pollfd p[2] = {{ctx->fd, POLLIN, 0}, {b->wake[0], POLLIN, 0}};
        if (poll(p, 2, 250) < 0 && errno != EINTR)
            return false;
        if (p[1].revents)
            return true;
        if (p[0].revents) {
            if (redisBufferRead(ctx) != REDIS_OK)
                return false;
            redisReply *rep;
            while (redisGetReplyFromReader(ctx, (void **)&rep) == REDIS_OK && rep != NULL) {
                if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
                    rep->element[0]->type == REDIS_REPLY_STRING &&
                    strcmp(rep->element[0]->str, "message") == 0 &&
                    rep->element[2]->type == REDIS_REPLY_STRING) {
                    TC__INC(b->m->bus_messages);
                    b->h.message(b->h.ctx, rep->element[2]->str, rep->element[2]->len);
                } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
                           rep->element[0]->type == REDIS_REPLY_STRING &&
                           strcmp(rep->element[0]->str, "pong") == 0) {
                    last_pong = tc_mono_us();
                }
                freeReplyObject(rep);
            }
            if (ctx->err)
                return false;
        }
        if (b->h.tick != NULL)
            b->h.tick(b->h.ctx);
        uint64_t now = tc_mono_us();
        if (now - last_pong > DEAD_AFTER_US)
            return false;
        if (now - last_ping >= PING_EVERY_US) {
            last_ping = now;
            if (redisAppendCommand(ctx, "PING") != REDIS_OK || !flush_output(ctx))
                return false;
        }
    }
}

static void *bus_thread(void *arg)
{
    tc__bus *b = arg;
    int backoff = 50;
    bool stopping = false;
    while (!stopping) {
        redisContext *ctx = subscribe(b);
        if (ctx == NULL) {
            if (b->h.tick != NULL)
                b->h.tick(b->h.ctx);
            stopping = nap(b, backoff);
            backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
            continue;
        }
        backoff = 50;
        b->h.connected(b->h.ctx);
        set_connected(b, true);
        stopping = listen_loop(b, ctx);
        set_connected(b, false);
        redisFree(ctx);
        if (!stopping) {
            TC__INC(b->m->bus_reconnects);
            b->h.lost(b->h.ctx);
        }
    }
    return NULL;
}

tc__bus *tc__bus_start(const tc_config *cfg, const char *channel, tc__bus_handler h, tc__metrics *m)
{
    tc__bus *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->host = strdup(cfg->redis_host);
    b->channel = strdup(channel);
    b->password = cfg->redis_password != NULL ? strdup(cfg->redis_password) : NULL;
    b->port = cfg->redis_port;
    b->connect_timeout_ms = cfg->connect_timeout_ms;
    b->h = h;
    b->m = m;
    pthread_mutex_init(&b->lock, NULL);
    tc_cond_init(&b->changed);
    if (b->host == NULL || b->channel == NULL || pipe(b->wake) != 0) {
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
    free(b->host);
    free(b->channel);
    free(b->password);
    free(b);
}

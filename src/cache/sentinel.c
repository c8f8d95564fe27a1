/*
 * Redis Sentinel: where the master is now. A thread asks the sentinels for the
 * master's address (SENTINEL get-master-addr-by-name), listens on one of them
 * for +switch-master, and asks again every second in case a message was lost
 * (pub/sub from a sentinel is as lossy as any). When the answer changes it
 * tells the engine, which moves its connections and its bus (cache.c); what a
 * new master means for the cached data is the incarnation check's business
 * (redis.c, SCRIPT_EPOCH), not this file's.
 *
 * Not for: choosing a master (the sentinels do), talking to replicas.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/internal.h"

#define ASK_EVERY_MS 1000
#define SENTINELS_MAX 16

typedef struct addr {
    char host[256];
    int port;
} addr;

struct tc__sentinel {
    addr sentinels[SENTINELS_MAX];
    int nsentinels, next; /* the one to try first */
    char *master, *password;
    int timeout_ms;
    void (*moved)(void *ctx, const char *host, int port);
    void *ctx;
    int wake[2];
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    addr current; /* port 0: not known yet */
};

int tc__sentinel_parse(const char *list, char (*hosts)[256], int *ports, int max)
{
    int n = 0;
    const char *p = list;
    while (p != NULL) { /* every item, also an empty one after a comma: refused */
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *colon = NULL;
        for (const char *q = p; q < p + len; q++)
            if (*q == ':')
                colon = q;
        if (n == max || colon == NULL || colon == p || (size_t)(colon - p) >= 256)
            return TC_EINVAL;
        char *num_end;
        long port = strtol(colon + 1, &num_end, 10);
        if (num_end != p + len || port <= 0 || port > 65535)
            return TC_EINVAL;
        memcpy(hosts[n], p, (size_t)(colon - p));
        hosts[n][colon - p] = '\0';
        ports[n++] = (int)port;
        p = end != NULL ? end + 1 : NULL;
    }
    return n > 0 ? n : TC_EINVAL;
}

static redisContext *dial(tc__sentinel *s, const addr *a)
{
    struct timeval tv = {s->timeout_ms / 1000, (s->timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(a->host, a->port, tv);
    if (ctx == NULL || ctx->err || redisSetTimeout(ctx, tv) != REDIS_OK)
        goto fail;
    if (s->password != NULL) {
        redisReply *rep = redisCommand(ctx, "AUTH %s", s->password);
        bool ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;
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

/* Asks the sentinels in turn, from the last that answered; 0 and *out, or TC_EREDIS. */
static int ask(tc__sentinel *s, addr *out)
{
    for (int i = 0; i < s->nsentinels; i++) {
        int k = (s->next + i) % s->nsentinels;
        redisContext *ctx = dial(s, &s->sentinels[k]);
        if (ctx == NULL)
            continue;
        redisReply *rep = redisCommand(ctx, "SENTINEL get-master-addr-by-name %s", s->master);
        bool ok = rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
                  rep->element[0]->type == REDIS_REPLY_STRING &&
                  rep->element[1]->type == REDIS_REPLY_STRING &&
                  rep->element[0]->len < sizeof(out->host);
        if (ok) {
            memcpy(out->host, rep->element[0]->str, rep->element[0]->len + 1);
            out->port = atoi(rep->element[1]->str);
            ok = out->port > 0 && out->port <= 65535;
        }
        if (rep != NULL)
            freeReplyObject(rep);
        redisFree(ctx);
        if (ok) {
            s->next = k;
            return 0;
        }
    }
    return TC_EREDIS;
}

static void learned(tc__sentinel *s, const addr *a)
{
    pthread_mutex_lock(&s->lock);
    bool moved = strcmp(s->current.host, a->host) != 0 || s->current.port != a->port;
    s->current = *a;
    pthread_mutex_unlock(&s->lock);
    if (moved)
        s->moved(s->ctx, a->host, a->port);
}

/* Returns whether we are stopping. */
static bool nap(tc__sentinel *s, int ms)
{
    struct pollfd p = {s->wake[0], POLLIN, 0};
    return poll(&p, 1, ms) > 0;
}

/* "+switch-master <name> <old ip> <old port> <new ip> <new port>" for our master. */
static bool parse_switch(tc__sentinel *s, const char *msg, addr *out)
{
    char name[256], oldip[256], newip[256];
    int oldport, newport;
    if (sscanf(msg, "%255s %255s %d %255s %d", name, oldip, &oldport, newip, &newport) != 5 ||
        strcmp(name, s->master) != 0 || newport <= 0 || newport > 65535)
        return false;
    snprintf(out->host, sizeof(out->host), "%s", newip);
    out->port = newport;
    return true;
}

static void *watch(void *arg)
{
    tc__sentinel *s = arg;
    for (;;) {
        addr a;
        if (ask(s, &a) == 0)
            learned(s, &a);
        redisContext *ctx = dial(s, &s->sentinels[s->next]);
        redisReply *rep = NULL;
        if (ctx != NULL && (rep = redisCommand(ctx, "SUBSCRIBE +switch-master")) != NULL &&
            rep->type == REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            /* listen, asking again every ASK_EVERY_MS all the same */
            uint64_t last_ask = tc_mono_us();
            for (;;) {
                struct pollfd p[2] = {{ctx->fd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};
                if (poll(p, 2, ASK_EVERY_MS) < 0 && errno != EINTR)
                    break;
                if (p[1].revents) {
                    redisFree(ctx);
                    return NULL;
                }
                if (p[0].revents) {
                    if (redisBufferRead(ctx) != REDIS_OK)
                        break;
                    while (redisGetReplyFromReader(ctx, (void **)&rep) == REDIS_OK && rep != NULL) {
                        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
                            rep->element[2]->type == REDIS_REPLY_STRING &&
                            parse_switch(s, rep->element[2]->str, &a))
                            learned(s, &a);
                        freeReplyObject(rep);
                    }
                }
                if (tc_mono_us() - last_ask >= ASK_EVERY_MS * 1000u) {
                    last_ask = tc_mono_us();
                    if (ask(s, &a) == 0)
                        learned(s, &a);
                }
            }
        } else if (rep != NULL) {
            freeReplyObject(rep);
        }
        if (ctx != NULL)
            redisFree(ctx);
        s->next = (s->next + 1) % s->nsentinels; /* that one failed us: another next time */
        if (nap(s, 200))
            return NULL;
    }
}

tc__sentinel *tc__sentinel_start(const char *list, const char *master, const char *password,
                                 int timeout_ms, void (*moved)(void *, const char *, int),
                                 void *ctx)
{
    tc__sentinel *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    char hosts[SENTINELS_MAX][256];
    int ports[SENTINELS_MAX];
    s->wake[0] = s->wake[1] = -1;
    pthread_mutex_init(&s->lock, NULL);
    s->nsentinels = tc__sentinel_parse(list, hosts, ports, SENTINELS_MAX);
    s->master = master != NULL ? strdup(master) : NULL;
    s->password = password != NULL ? strdup(password) : NULL;
    if (s->nsentinels <= 0 || s->master == NULL || (password != NULL && s->password == NULL) ||
        pipe(s->wake) != 0) {
        tc__sentinel_stop(s);
        return NULL;
    }
    for (int i = 0; i < s->nsentinels; i++) {
        memcpy(s->sentinels[i].host, hosts[i], sizeof(hosts[i]));
        s->sentinels[i].port = ports[i];
    }
    s->timeout_ms = timeout_ms;
    s->moved = moved;
    s->ctx = ctx;
    addr a;
    if (ask(s, &a) == 0) /* known before the first command, when a sentinel answers */
        s->current = a;
    return s;
}

int tc__sentinel_watch(tc__sentinel *s)
{
    if (pthread_create(&s->thread, NULL, watch, s) != 0)
        return TC_ENOMEM;
    s->started = true;
    return 0;
}

int tc__sentinel_master(tc__sentinel *s, char *host, size_t n, int *port)
{
    pthread_mutex_lock(&s->lock);
    int len = snprintf(host, n, "%s", s->current.host);
    *port = s->current.port;
    pthread_mutex_unlock(&s->lock);
    return *port > 0 && len > 0 && (size_t)len < n ? 0 : TC_EREDIS;
}

void tc__sentinel_stop(tc__sentinel *s)
{
    if (s == NULL)
        return;
    if (s->started) {
        ssize_t w = write(s->wake[1], "x", 1);
        (void)w;
        pthread_join(s->thread, NULL);
    }
    if (s->wake[0] >= 0) {
        close(s->wake[0]);
        close(s->wake[1]);
    }
    pthread_mutex_destroy(&s->lock);
    free(s->master);
    free(s->password);
    free(s);
}

/*
 * The purge queue and its thread (see purge.h). A ring of tag strings under
 * one mutex; the thread takes up to batch_max of them, joins them into one
 * header and sends one PURGE request over a fresh loopback connection with a
 * deadline (poll on a non-blocking socket), reading only the status line.
 */
#define _GNU_SOURCE /* getaddrinfo etc. are POSIX; MSG_NOSIGNAL is Linux */
#include "http/purge.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/cond.h"
#include "base/thread.h"
#include "base/time.h"

#define TAG_MAX 128
#define AGAIN_MAX 16

struct tc_purger {
    tc_purge_config cfg;
    char host[64], path[256], header[64], sep[8];
    int port;
    struct sockaddr_storage addr;
    socklen_t addrlen;

    pthread_mutex_t lock;
    tc_cond cond;
    char **ring;
    int head, count;
    int in_flight; /* tags taken by the thread and not yet answered */
    bool stop;
    bool failing;           /* the last request failed: logged once until one succeeds */
    char *again[AGAIN_MAX]; /* joined tags of purges to send once more (repurge_ms) */
    tc_deadline again_at[AGAIN_MAX];
    int nagain;
    tc_thread thread;
    tc_purge_stats st;
};

void tc_purge_config_init(tc_purge_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->header = "xkey";
    cfg->sep = " ";
    cfg->queue_max = 1024;
    cfg->batch_max = 32;
    cfg->timeout_ms = 1000;
}

static void plog(tc_purger *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void plog(tc_purger *p, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (p->cfg.log != NULL)
        p->cfg.log(p->cfg.log_ctx, line);
    else
        fprintf(stderr, "tiercache: %s\n", line);
}

int tc_purge_parse_url(const char *url, char *host, size_t host_cap, int *port, char *path,
                       size_t path_cap)
{
    if (url == NULL || strncmp(url, "http://", 7) != 0)
        return TC_HTTP_EINVAL;
    const char *h = url + 7, *hend, *rest;
    char lit[64];
    if (*h == '[') { /* [::1] */
        hend = strchr(h, ']');
        if (hend == NULL)
            return TC_HTTP_EINVAL;
        rest = hend + 1;
        h++;
    } else {
        hend = h + strcspn(h, ":/");
        rest = hend;
    }
    size_t hlen = (size_t)(hend - h);
    if (hlen == 0 || hlen >= sizeof(lit) || *rest != ':')
        return TC_HTTP_EINVAL; /* the port is required */
    memcpy(lit, h, hlen);
    lit[hlen] = '\0';
    char *end;
    long pn = strtol(rest + 1, &end, 10);
    if (end == rest + 1 || pn < 1 || pn > 65535 || (*end != '\0' && *end != '/'))
        return TC_HTTP_EINVAL;
    const char *pth = *end == '/' ? end : "/";
    for (const char *c = pth; *c != '\0'; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '?' || *c == '#')
            return TC_HTTP_EINVAL;
    if (strcmp(lit, "localhost") == 0)
        snprintf(lit, sizeof(lit), "127.0.0.1");
    struct in_addr a4;
    struct in6_addr a6;
    bool loopback = false;
    if (inet_pton(AF_INET, lit, &a4) == 1)
        loopback = (ntohl(a4.s_addr) >> 24) == 127;
    else if (inet_pton(AF_INET6, lit, &a6) == 1)
        loopback = IN6_IS_ADDR_LOOPBACK(&a6);
    if (!loopback || strlen(lit) >= host_cap || strlen(pth) >= path_cap)
        return TC_HTTP_EINVAL;
    snprintf(host, host_cap, "%s", lit);
    snprintf(path, path_cap, "%s", pth);
    *port = (int)pn;
    return 0;
}

static bool header_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s) != NULL))
            return false;
    return true;
}

/* ---- one request ------------------------------------------------------------------------- */

/* Waits for fd to be ready for ev until deadline; false on timeout or error. */
static bool wait_fd(int fd, short ev, tc_deadline deadline)
{
    for (;;) {
        int left = tc_deadline_left_ms(deadline);
        if (left == 0)
            return false;
        struct pollfd pfd = {.fd = fd, .events = ev};
        int n = poll(&pfd, 1, left);
        if (n > 0)
            return (pfd.revents & (ev | POLLHUP)) != 0 && !(pfd.revents & POLLNVAL);
        if (n < 0 && errno != EINTR)
            return false;
    }
}

/* Sends one PURGE with tags (already joined); the HTTP status, or -1. */
static int send_purge(tc_purger *p, const char *tags)
{
    char req[8192];
    char hostport[96];
    if (strchr(p->host, ':') != NULL)
        snprintf(hostport, sizeof(hostport), "[%s]:%d", p->host, p->port);
    else
        snprintf(hostport, sizeof(hostport), "%s:%d", p->host, p->port);
    int n = snprintf(req, sizeof(req),
                     "PURGE %s HTTP/1.1\r\nHost: %s\r\n%s: %s\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n",
                     p->path, hostport, p->header, tags);
    if (n < 0 || (size_t)n >= sizeof(req))
        return -1;
    tc_deadline deadline = tc_deadline_in_ms(p->cfg.timeout_ms);
    int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int status = -1;
    if (connect(fd, (struct sockaddr *)&p->addr, p->addrlen) != 0) {
        if (errno != EINPROGRESS || !wait_fd(fd, POLLOUT, deadline))
            goto done;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0)
            goto done;
    }
    for (size_t off = 0; off < (size_t)n;) {
        ssize_t w = send(fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_fd(fd, POLLOUT, deadline))
                goto done;
        } else {
            goto done;
        }
    }
    char resp[256];
    size_t got = 0;
    while (got < sizeof(resp) - 1 && memchr(resp, '\n', got) == NULL) {
        ssize_t r = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
        if (r > 0) {
            got += (size_t)r;
        } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_fd(fd, POLLIN, deadline))
                goto done;
        } else {
            break;
        }
    }
    resp[got] = '\0';
    int code;
    if (sscanf(resp, "HTTP/1.%*d %3d", &code) == 1)
        status = code;
done:
    close(fd);
    return status;
}

/* ---- the thread ------------------------------------------------------------------------------ */

/* The index of the second purge due first, or -1. */
static int next_again(const tc_purger *p)
{
    int best = -1;
    for (int i = 0; i < p->nagain; i++)
        if (best < 0 || p->again_at[i].us < p->again_at[best].us)
            best = i;
    return best;
}

/* Waits, with the lock held, for queued tags, a stop, or a second purge that is due;
 * returns the index of the due second purge, or -1 for the other two. */
static int wait_work(tc_purger *p)
{
    for (;;) {
        if (p->count > 0 || p->stop)
            return -1;
        int i = next_again(p);
        if (i < 0) {
            tc_cond_wait(&p->cond, &p->lock);
            continue;
        }
        if (tc_deadline_expired(p->again_at[i]))
            return i;
        tc_cond_wait_until(&p->cond, &p->lock, p->again_at[i]);
    }
}

/* Sends the second purge at index i (one try); called and returns with the lock held. */
static void send_again(tc_purger *p, int i)
{
    char *tags = p->again[i];
    p->again[i] = p->again[--p->nagain];
    p->again_at[i] = p->again_at[p->nagain];
    pthread_mutex_unlock(&p->lock);
    send_purge(p, tags); /* best effort: the first purge already succeeded */
    free(tags);
    pthread_mutex_lock(&p->lock);
    p->st.requests++;
    p->st.repurges++;
}

static void *purge_main(void *arg)
{
    tc_purger *p = arg;
    char tags[7000];
    for (;;) {
        pthread_mutex_lock(&p->lock);
        int due = wait_work(p);
        if (due >= 0) {
            send_again(p, due);
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        if (p->count == 0) { /* stopping, nothing left */
            pthread_mutex_unlock(&p->lock);
            break;
        }
        bool stopping = p->stop;
        size_t n = 0, seplen = strlen(p->sep);
        int taken = 0;
        while (p->count > 0 && taken < p->cfg.batch_max) {
            char *t = p->ring[p->head];
            size_t len = strlen(t);
            if (n > 0 && n + seplen + len + 1 > sizeof(tags))
                break;
            if (n > 0) {
                memcpy(tags + n, p->sep, seplen);
                n += seplen;
            }
            memcpy(tags + n, t, len);
            n += len;
            free(t);
            p->ring[p->head] = NULL;
            p->head = (p->head + 1) % p->cfg.queue_max;
            p->count--;
            taken++;
        }
        tags[n] = '\0';
        p->in_flight = taken;
        pthread_mutex_unlock(&p->lock);

        static const int backoff_ms[] = {0, 100, 400};
        int status = -1, tries = stopping ? 1 : 3, tried = 0;
        for (int i = 0; i < tries && !(status >= 200 && status < 300); i++, tried++) {
            if (backoff_ms[i] > 0)
                tc_sleep_ms((uint64_t)backoff_ms[i]);
            status = send_purge(p, tags);
        }
        bool ok = status >= 200 && status < 300;

        pthread_mutex_lock(&p->lock);
        p->in_flight = 0;
        p->st.requests += (uint64_t)tried;
        if (ok)
            p->st.sent += (uint64_t)taken;
        else
            p->st.failed += (uint64_t)taken;
        bool was_failing = p->failing;
        p->failing = !ok;
        if (ok && !p->stop && p->cfg.repurge_ms > 0 && p->nagain < AGAIN_MAX &&
            (p->again[p->nagain] = strdup(tags)) != NULL)
            p->again_at[p->nagain++] = tc_deadline_in_ms(p->cfg.repurge_ms);
        bool give_up = !ok && p->stop;
        if (give_up) { /* stopping and the cache does not answer: drop the rest */
            while (p->count > 0) {
                free(p->ring[p->head]);
                p->ring[p->head] = NULL;
                p->head = (p->head + 1) % p->cfg.queue_max;
                p->count--;
                p->st.failed++;
            }
        }
        pthread_mutex_unlock(&p->lock);
        if (!ok && !was_failing)
            plog(p,
                 "purge %s:%d%s (%s: %s): %s; responses stay in the shared cache until "
                 "their s-maxage (logged once until a purge succeeds)",
                 p->host, p->port, p->path, p->header, tags, status < 0 ? "no answer" : "refused");
        else if (ok && was_failing)
            plog(p, "purge %s:%d%s: answering again", p->host, p->port, p->path);
    }
    return NULL;
}

tc_purger *tc_purger_start(const tc_purge_config *cfg, int *err)
{
    int e = TC_HTTP_EINVAL;
    tc_purger *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        e = TC_HTTP_ENOMEM;
        goto fail;
    }
    p->cfg = *cfg;
    if (p->cfg.header == NULL)
        p->cfg.header = "xkey";
    if (p->cfg.sep == NULL)
        p->cfg.sep = " ";
    if (p->cfg.queue_max <= 0)
        p->cfg.queue_max = 1024;
    if (p->cfg.batch_max <= 0)
        p->cfg.batch_max = 32;
    if (p->cfg.timeout_ms <= 0)
        p->cfg.timeout_ms = 1000;
    if (tc_purge_parse_url(cfg->url, p->host, sizeof(p->host), &p->port, p->path,
                           sizeof(p->path)) != 0 ||
        !header_token(p->cfg.header) || strlen(p->cfg.header) >= sizeof(p->header) ||
        p->cfg.sep[0] == '\0' || strlen(p->cfg.sep) >= sizeof(p->sep))
        goto fail;
    snprintf(p->header, sizeof(p->header), "%s", p->cfg.header);
    snprintf(p->sep, sizeof(p->sep), "%s", p->cfg.sep);
    p->cfg.url = NULL; /* copied apart; the caller's strings need not outlive us */
    p->cfg.header = p->header;
    p->cfg.sep = p->sep;
    memset(&p->addr, 0, sizeof(p->addr));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&p->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&p->addr;
    if (inet_pton(AF_INET, p->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p->port);
        p->addrlen = sizeof(*a4);
    } else if (inet_pton(AF_INET6, p->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p->port);
        p->addrlen = sizeof(*a6);
    } else {
        goto fail;
    }
    e = TC_HTTP_ENOMEM;
    if ((p->ring = calloc((size_t)p->cfg.queue_max, sizeof(char *))) == NULL)
        goto fail;
    pthread_mutex_init(&p->lock, NULL);
    tc_cond_init(&p->cond);
    if (tc_thread_start(&p->thread, purge_main, p) != 0) {
        pthread_mutex_destroy(&p->lock);
        tc_cond_destroy(&p->cond);
        e = TC_HTTP_ESTART;
        goto fail;
    }
    return p;
fail:
    if (p != NULL)
        free(p->ring);
    free(p);
    if (err != NULL)
        *err = e;
    return NULL;
}

int tc_purger_tag(tc_purger *p, const char *tag)
{
    if (p == NULL)
        return 0;
    size_t len = strlen(tag);
    if (len == 0 || len > TAG_MAX || strstr(tag, p->sep) != NULL)
        return TC_HTTP_EINVAL;
    for (const char *c = tag; *c != '\0'; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return TC_HTTP_EINVAL;
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    bool dup = false;
    for (int i = 0; i < p->count && !dup; i++)
        dup = strcmp(p->ring[(p->head + i) % p->cfg.queue_max], tag) == 0;
    if (dup) {
        rc = 0;
    } else if (p->count == p->cfg.queue_max) {
        p->st.dropped++;
        rc = TC_HTTP_ETOOBIG;
    } else {
        char *copy = strdup(tag);
        if (copy == NULL) {
            p->st.dropped++;
            rc = TC_HTTP_ENOMEM;
        } else {
            p->ring[(p->head + p->count) % p->cfg.queue_max] = copy;
            p->count++;
            p->st.queued++;
            tc_cond_signal(&p->cond);
        }
    }
    bool log_drop = rc != 0 && (p->st.dropped & (p->st.dropped - 1)) == 0; /* 1, 2, 4, 8, ... */
    uint64_t dropped = p->st.dropped;
    pthread_mutex_unlock(&p->lock);
    if (log_drop)
        plog(p, "purge queue full: tag %s dropped (%llu dropped so far)", tag,
             (unsigned long long)dropped);
    return rc;
}

void tc_purger_stats(tc_purger *p, tc_purge_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    *out = p->st;
    out->waiting = (uint64_t)(p->count + p->in_flight);
    pthread_mutex_unlock(&p->lock);
}

void tc_purger_stop(tc_purger *p)
{
    if (p == NULL)
        return;
    tc_thread_stop(&p->thread, &p->lock, &p->cond, &p->stop);
    for (int i = 0; i < p->nagain; i++) /* second purges not yet due are skipped */
        free(p->again[i]);
    pthread_mutex_destroy(&p->lock);
    tc_cond_destroy(&p->cond);
    free(p->ring);
    free(p);
}

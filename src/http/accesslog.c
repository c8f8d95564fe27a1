/*
 * The access log (see accesslog.h for the line and the buffering).
 *
 * DESIGN — two buffers, one writer. The event threads format a line on their
 * stack and copy it into the current buffer under `lock` (a memcpy: the lock is
 * never held across I/O). The writer thread wakes every FLUSH_MS, or when the
 * current buffer is half full, swaps the two buffers under the lock and writes
 * the full one with no lock held. While it writes, the event threads fill the
 * other buffer; if that one fills up too, lines are dropped and counted. A slow
 * disk or a stalled pipe therefore costs log lines, never request latency.
 */
#define _GNU_SOURCE /* gmtime_r */
#include "http/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "base/cond.h"
#include "base/thread.h"
#include "base/time.h"

#define FLUSH_MS 100
#define LINE_MAX_BYTES 2048
#define VALUE_MAX 512 /* bytes of one value, as written */

struct tc_access_log {
    int fd;        /* the writer thread's; replaced by it on a reopen */
    char *path;    /* NULL: stderr, never reopened */
    bool reopen;   /* under lock: a reopen was asked for */
    pthread_mutex_t lock;
    tc_cond wake;
    char *buf[2];
    size_t len[2];
    size_t cap;
    int cur;       /* the buffer being filled (under lock) */
    bool stopping; /* under lock */
    tc_thread writer;
    _Atomic uint64_t lines, dropped, write_errors;
};

/* ---- formatting ------------------------------------------------------------------- */

typedef struct out {
    char *p;
    size_t len, cap; /* cap excludes room kept for the final '\n' */
} out;

static void put(out *o, const char *s, size_t n)
{
    if (n > o->cap - o->len)
        n = o->cap - o->len;
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(out *o, const char *s)
{
    put(o, s, strlen(s));
}

static bool needs_quotes(const char *s, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
            return true;
    }
    return false;
}

/* key=value, quoted and escaped when needed; a value longer than VALUE_MAX
 * bytes (as written, escapes included) is cut and ends in "...", so that no
 * value can push the fields after it off the line. */
static void field(out *o, const char *key, const char *v, size_t n)
{
    if (o->len > 0)
        put(o, " ", 1);
    puts_(o, key);
    put(o, "=", 1);
    bool quoted = needs_quotes(v, n);
    if (!quoted && n <= VALUE_MAX) { /* the common case: as is */
        put(o, v, n);
        return;
    }
    size_t room = VALUE_MAX;
    if (quoted)
        put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        char esc[8];
        size_t k = 1;
        esc[0] = (char)c;
        if (!quoted) {
            /* as is */
        } else if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, k = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2), k = 2;
        } else if (c == '\r') {
            memcpy(esc, "\\r", 2), k = 2;
        } else if (c == '\t') {
            memcpy(esc, "\\t", 2), k = 2;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            k = 6;
        }
        if (k > room) {
            put(o, "...", 3);
            break;
        }
        put(o, esc, k);
        room -= k;
    }
    if (quoted)
        put(o, "\"", 1);
}

static void field_s(out *o, const char *key, const char *v)
{
    field(o, key, v, strlen(v));
}

/* v in decimal at p (no NUL); returns the length. Formatting every line with
 * snprintf was a tenth of a cached request's CPU. */
static size_t dec(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* d as exactly three digits at p */
static void dec3(char *p, unsigned d)
{
    p[0] = (char)('0' + d / 100 % 10), p[1] = (char)('0' + d / 10 % 10), p[2] = (char)('0' + d % 10);
}

static void field_u(out *o, const char *key, uint64_t v)
{
    char num[24];
    field(o, key, num, dec(num, v));
}

/* "2025-01-02T03:04:05.678Z" into t (25 bytes with the NUL); the part up to the
 * second is formatted once a second per thread. */
static void iso_time(char t[25], int64_t ms)
{
    static _Thread_local int64_t last_sec = -1;
    static _Thread_local char sec_text[20];
    if (ms < 0)
        ms = 0;
    int64_t secs = ms / 1000;
    if (secs != last_sec) {
        time_t tt = (time_t)secs;
        struct tm tm;
        if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999)
            memset(&tm, 0, sizeof(tm)); /* not a time this log can be read at */
        snprintf(sec_text, sizeof(sec_text), "%04u-%02u-%02uT%02u:%02u:%02u",
                 (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
                 (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
                 (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u);
        last_sec = secs;
    }
    memcpy(t, sec_text, 19);
    t[19] = '.';
    dec3(t + 20, (unsigned)(ms % 1000));
    t[23] = 'Z';
    t[24] = '\0';
}

size_t tc_access_log_format(char *buf, size_t cap, const tc_access_entry *e)
{
    out o = {buf, 0, cap - 1};
    char t[25], num[32];
    iso_time(t, e->time_ms);
    field_s(&o, "time", t);
    field_s(&o, "method", e->method != NULL && e->method[0] != '\0' ? e->method : "-");
    field(&o, "path", e->path != NULL ? e->path : "", e->path != NULL ? e->path_len : 0);
    field_u(&o, "status", (uint64_t)(e->status > 0 ? e->status : 0));
    size_t n = dec(num, e->duration_us / 1000);
    num[n] = '.';
    dec3(num + n + 1, (unsigned)(e->duration_us % 1000));
    field(&o, "duration_ms", num, n + 4);
    field_s(&o, "cache", e->cache != NULL && e->cache[0] != '\0' ? e->cache : "-");
    if (e->cache_detail != NULL && e->cache_detail[0] != '\0')
        field_s(&o, "cache_detail", e->cache_detail);
    field_u(&o, "bytes", e->bytes);
    field_s(&o, "route", e->route != NULL ? e->route : "-");
    field_s(&o, "client", e->client != NULL ? e->client : "-");
    if (e->request_id != NULL)
        field_s(&o, "request_id", e->request_id);
    if (e->aborted)
        field_s(&o, "aborted", "true");
    buf[o.len++] = '\n';
    return o.len;
}

/* ---- Cache-Status ----------------------------------------------------------------- */

static bool is_tok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~:/", c) != NULL);
}

/* Reads a token, integer or quoted string at *p into v (token characters only,
 * others dropped; cut at cap - 1). */
static void read_value(const char **p, char *v, size_t cap)
{
    size_t n = 0;
    const char *s = *p;
    if (*s == '"') {
        for (s++; *s != '\0' && *s != '"'; s++) {
            if (*s == '\\' && s[1] != '\0')
                s++;
            if (is_tok((unsigned char)*s) && n + 1 < cap)
                v[n++] = *s;
        }
        if (*s == '"')
            s++;
    } else {
        for (; is_tok((unsigned char)*s); s++)
            if (n + 1 < cap)
                v[n++] = *s;
    }
    v[n] = '\0';
    *p = s;
}

static void skip_ows(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

tc_cstat tc_cache_status_parse(const char *h, char *word, size_t wcap, char *detail, size_t dcap)
{
    snprintf(word, wcap, "-");
    detail[0] = '\0';
    if (h == NULL)
        return TC_CSTAT_NONE;
    const char *p = h;
    char v[64];
    skip_ows(&p);
    read_value(&p, v, sizeof(v)); /* the cache's name */
    bool hit = false, fwd = false;
    char fwd_v[32] = "";
    long long ttl = 0;
    for (;;) {
        skip_ows(&p);
        if (*p != ';')
            break; /* ',' ends the first member; anything else ends the parse */
        p++;
        skip_ows(&p);
        char key[16];
        size_t k = 0;
        for (; (*p >= 'a' && *p <= 'z') || *p == '-' || *p == '_' || (*p >= '0' && *p <= '9'); p++)
            if (k + 1 < sizeof(key))
                key[k++] = *p;
        key[k] = '\0';
        v[0] = '\0';
        bool has_value = *p == '=';
        if (has_value) {
            p++;
            read_value(&p, v, sizeof(v));
        }
        if (strcmp(key, "hit") == 0) {
            hit = !has_value || strcmp(v, "?0") != 0;
        } else if (strcmp(key, "fwd") == 0 && has_value) {
            fwd = true;
            snprintf(fwd_v, sizeof(fwd_v), "%s", v);
        } else if (strcmp(key, "ttl") == 0 && has_value) {
            ttl = strtoll(v, NULL, 10);
        } else if (strcmp(key, "detail") == 0 && has_value) {
            snprintf(detail, dcap, "%s", v);
        }
    }
    if (hit) {
        /* stale: a negative ttl (RFC 9211), or a detail that says so ("l1-stale"): a
         * value less than a second past its fresh time still shows ttl=0 */
        size_t dl = strlen(detail);
        bool stale = ttl < 0 || (dl >= 5 && strcmp(detail + dl - 5, "stale") == 0);
        snprintf(word, wcap, "%s", stale ? "stale" : "hit");
        return stale ? TC_CSTAT_STALE : TC_CSTAT_HIT;
    }
    if (fwd) {
        snprintf(word, wcap, "%s", fwd_v[0] != '\0' ? fwd_v : "fwd");
        return strcmp(fwd_v, "miss") == 0 ? TC_CSTAT_MISS : TC_CSTAT_FWD;
    }
    return TC_CSTAT_NONE;
}

/* ---- the writer --------------------------------------------------------------------- */

static void write_all(tc_access_log *l, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(l->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            atomic_fetch_add_explicit(&l->write_errors, 1, memory_order_relaxed);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* A reopen (log rotation): the new file first, so that a failure keeps the old
 * one and loses nothing. Called by the writer thread without the lock. */
static void reopen_file(tc_access_log *l)
{
    int fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        fprintf(stderr, "tiercache: access log %s: cannot reopen (%s); still writing to the old file\n",
                l->path, strerror(errno));
        atomic_fetch_add_explicit(&l->write_errors, 1, memory_order_relaxed);
        return;
    }
    close(l->fd);
    l->fd = fd;
}

static void *writer_main(void *arg)
{
    tc_access_log *l = arg;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        if (l->reopen) {
            /* what was queued before the signal goes to the old file */
            int full = l->cur;
            size_t n = l->len[full];
            l->reopen = false;
            l->cur ^= 1;
            pthread_mutex_unlock(&l->lock);
            write_all(l, l->buf[full], n);
            reopen_file(l);
            pthread_mutex_lock(&l->lock);
            l->len[full] = 0;
            continue;
        }
        /* nothing to write, or nothing urgent (let more lines join it): wait a while */
        if (!l->stopping && l->len[l->cur] < l->cap / 2)
            tc_cond_wait_ms(&l->wake, &l->lock, FLUSH_MS);
        int full = l->cur;
        size_t n = l->len[full];
        bool stop = l->stopping;
        if (n > 0) {
            l->cur ^= 1; /* the event threads fill the other one meanwhile */
            pthread_mutex_unlock(&l->lock);
            write_all(l, l->buf[full], n);
            pthread_mutex_lock(&l->lock);
            l->len[full] = 0;
        } else if (stop) {
            break;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

tc_access_log *tc_access_log_open(const char *dest, size_t buffer_bytes, char *err, size_t errlen)
{
    tc_access_log *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->cap = buffer_bytes > 0 ? buffer_bytes : 256u * 1024;
    if (l->cap < 2 * LINE_MAX_BYTES)
        l->cap = 2 * LINE_MAX_BYTES;
    l->buf[0] = malloc(l->cap);
    l->buf[1] = malloc(l->cap);
    if (l->buf[0] == NULL || l->buf[1] == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (strcmp(dest, "stderr") == 0) {
        l->fd = STDERR_FILENO;
    } else {
        l->fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (l->fd < 0) {
            snprintf(err, errlen, "access log %s: %s", dest, strerror(errno));
            goto fail;
        }
        if ((l->path = strdup(dest)) == NULL) {
            snprintf(err, errlen, "out of memory");
            close(l->fd);
            goto fail;
        }
    }
    pthread_mutex_init(&l->lock, NULL);
    tc_cond_init(&l->wake);
    if (tc_thread_start(&l->writer, writer_main, l) != 0) {
        snprintf(err, errlen, "access log: cannot start its thread");
        tc_cond_destroy(&l->wake);
        pthread_mutex_destroy(&l->lock);
        if (l->path != NULL)
            close(l->fd);
        goto fail;
    }
    return l;
fail:
    free(l->path);
    free(l->buf[0]);
    free(l->buf[1]);
    free(l);
    return NULL;
}

void tc_access_log_close(tc_access_log *l)
{
    if (l == NULL)
        return;
    tc_thread_stop(&l->writer, &l->lock, &l->wake, &l->stopping);
    if (l->path != NULL)
        close(l->fd);
    free(l->path);
    tc_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->lock);
    free(l->buf[0]);
    free(l->buf[1]);
    free(l);
}

void tc_access_log_reopen(tc_access_log *l)
{
    if (l == NULL || l->path == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    l->reopen = true;
    tc_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
}

static void queue(tc_access_log *l, const char *line, size_t n)
{
    pthread_mutex_lock(&l->lock);
    size_t *len = &l->len[l->cur];
    if (l->stopping || n > l->cap - *len) {
        pthread_mutex_unlock(&l->lock);
        atomic_fetch_add_explicit(&l->dropped, 1, memory_order_relaxed);
        return;
    }
    memcpy(l->buf[l->cur] + *len, line, n);
    *len += n;
    bool urge = *len >= l->cap / 2 && *len - n < l->cap / 2;
    if (urge)
        tc_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
    atomic_fetch_add_explicit(&l->lines, 1, memory_order_relaxed);
}

void tc_access_log_request(tc_access_log *l, tc_http_exchange *x, int status, uint64_t duration_us,
                           const char *cache, const char *cache_detail)
{
    if (l == NULL)
        return;
    size_t plen;
    const char *path = tc_http_raw_path(x, &plen);
    tc_access_entry e = {
        .time_ms = tc_wall_ms(), /* a log line's time is the wall clock's */
        .method = tc_http_method(x),
        .path = path,
        .path_len = path != NULL ? plen : 0,
        .status = status,
        .duration_us = duration_us,
        .cache = cache,
        .cache_detail = cache_detail,
        .bytes = tc_http_response_bytes(x),
        .route = tc_http_route(x),
        /* status 0: a worker may still hold x, and the address is allocated on demand */
        .client = status != 0 ? tc_http_client_addr(x) : NULL,
        .request_id = tc_http_request_id(x),
        .aborted = !tc_http_response_complete(x),
    };
    tc_access_log_write(l, &e);
}

void tc_access_log_write(tc_access_log *l, const tc_access_entry *e)
{
    if (l == NULL)
        return;
    char line[LINE_MAX_BYTES];
    queue(l, line, tc_access_log_format(line, sizeof(line), e));
}

void tc_access_log_get_stats(tc_access_log *l, tc_access_log_stats *o)
{
    memset(o, 0, sizeof(*o));
    if (l == NULL)
        return;
    o->lines = atomic_load_explicit(&l->lines, memory_order_relaxed);
    o->dropped = atomic_load_explicit(&l->dropped, memory_order_relaxed);
    o->write_errors = atomic_load_explicit(&l->write_errors, memory_order_relaxed);
}

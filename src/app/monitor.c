/*
 * The monitor (see monitor.h for the routes, the access rules and the label
 * bounds): request counting on the server's on_done hook, the once-a-second
 * sampler, /metrics, the monitoring page and its JSON feed.
 *
 * Threads. The on_done hook runs on the event threads: it bumps relaxed
 * atomics and hands a line to the access log, nothing else. The sampler thread
 * reads every counter once a second into a ring of RING samples (under
 * ring_lock, held for a memcpy). The access checks run on the event thread;
 * /metrics (a millisecond or so of formatting) and the feed (which may need
 * the database for a session) are built on a worker.
 *
 * DESIGN — the histograms. Request latencies go into fixed buckets (bounds
 * below, one relaxed fetch_add each), so a scrape needs no lock and two
 * scrapes subtract. The cache engine's and the database's histograms use
 * power-of-two microsecond buckets; /metrics converts those to cumulative
 * `le` buckets in seconds (bucket i ends at 2^i us), and the feed estimates
 * percentiles by interpolating inside a bucket — an estimate within the
 * bucket's width, which is what an operator needs to see a trend.
 */
#define _GNU_SOURCE /* strcasecmp in strings.h is POSIX */
#include "app/monitor.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/internal.h"
#include "base/cond.h"
#include "base/thread.h"
#include "db/db.h"
#include "http/accesslog.h"

#define RING 61        /* samples: one a second, the last minute */
#define SAMPLE_MS 1000 /* between samples */
#define SMOOTH 5       /* latency series: each point covers the last SMOOTH seconds */
#define ROUTES_MAX 48
#define TAGNS_MAX 24
#define CODES 500 /* status 100..599 */
#define NB (TC_MON_HIST_BOUNDS + 1)

const uint64_t tc_app__mon_bounds_us[TC_MON_HIST_BOUNDS] = {
    50,    100,    250,    500,    1000,    2500,    5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

enum { OUT_HIT = 0, OUT_STALE, OUT_MISS, OUTCOMES };
static const char *const OUTCOME_NAMES[OUTCOMES] = {"hit", "stale", "miss"};

/* ---- lock-free histograms --------------------------------------------------------- */

typedef struct hist {
    _Atomic uint64_t b[NB];
    _Atomic uint64_t sum_us;
} hist;

int tc_app__mon_bucket(uint64_t us)
{
    int i = 0;
    while (i < TC_MON_HIST_BOUNDS && us > tc_app__mon_bounds_us[i])
        i++;
    return i;
}

static void hist_add(hist *h, uint64_t us)
{
    atomic_fetch_add_explicit(&h->b[tc_app__mon_bucket(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

static void hist_read(hist *h, uint64_t out[NB], uint64_t *sum_us)
{
    for (int i = 0; i < NB; i++)
        out[i] = atomic_load_explicit(&h->b[i], memory_order_relaxed);
    if (sum_us)
        *sum_us = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
}

double tc_app__mon_percentile(const uint64_t *b, int n, int log2, double pct)
{
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += b[i];
    if (total == 0)
        return -1;
    double want = pct / 100.0 * (double)total, seen = 0;
    for (int i = 0; i < n; i++) {
        if (b[i] == 0)
            continue;
        double lo, hi;
        if (log2) {
            lo = i == 0 ? 0 : (double)(1ull << (i - 1));
            hi = (double)(1ull << i);
        } else {
            lo = i == 0 ? 0 : (double)tc_app__mon_bounds_us[i - 1];
            /* the +Inf bucket: its floor */
            hi = i < TC_MON_HIST_BOUNDS ? (double)tc_app__mon_bounds_us[i] : lo;
        }
        if (seen + (double)b[i] >= want)
            return lo + (hi - lo) * ((want - seen) / (double)b[i]);
        seen += (double)b[i];
    }
    return log2 ? (double)(1ull << (n - 1)) : (double)tc_app__mon_bounds_us[TC_MON_HIST_BOUNDS - 1];
}

/* ---- bounded label sets ------------------------------------------------------------ */

typedef struct route_stats {
    const char *name; /* written once, under labels_lock, before nroutes covers it */
    _Atomic uint64_t codes[CODES];
    hist lat;
} route_stats;

typedef struct tagns {
    char name[TC_NS_NAME_MAX];
    _Atomic uint64_t n;
} tagns;

/* A sample: what the feed needs of every counter, once a second. */
typedef struct ns_sample {
    char name[TC_NS_NAME_MAX];
    uint64_t l1, l2, miss, coalesced, stale, refresh, dropped, load_errors, invalidations;
} ns_sample;

typedef struct sample {
    int64_t t_ms;
    int nns;
    ns_sample ns[TC_NS_MAX];
    uint64_t l1_entries, l1_bytes, l1_evictions;
    uint64_t redis_errors, breaker_opens, bus_reconnects, pending;
    int breaker_open, bus_connected;
    uint64_t redis[TC_HIST_BUCKETS];
    uint64_t requests, errors;
    uint64_t out[OUTCOMES][NB];
    bool have_http;
    tc_http_stats http;
    uint64_t db[TC_DB_HIST_BUCKETS];
    int ntags; /* tag invalidations by the tag's namespace; clears */
    char tag_name[TAGNS_MAX][TC_NS_NAME_MAX];
    uint64_t tag_n[TAGNS_MAX], clears;
} sample;

struct tc_monitor {
    tc_app *app;
    tc_monitor_config cfg;
    char *token; /* copy of cfg.metrics_token, or NULL */
    int64_t started_ms;
    tc_access_log *log;

    /* routes and tag namespaces: slot 0 is "other"; claimed under labels_lock */
    pthread_mutex_t labels_lock;
    route_stats *routes; /* ROUTES_MAX */
    _Atomic int nroutes;
    tagns tags[TAGNS_MAX];
    _Atomic int ntags;

    /* request totals for the feed */
    _Atomic uint64_t requests, errors, unanswered;
    hist out[OUTCOMES];

    /* the server, for its counters */
    pthread_mutex_t srv_lock;
    tc_http_server *srv;

    /* the sampler */
    pthread_mutex_t ring_lock;
    tc_cond ring_cond;
    bool stop;
    tc_thread sampler;
    sample *ring; /* RING */
    int head, count;

    /* embedded assets and their ETags */
    const tc_app__asset *html, *js, *css;
    char etag_js[24], etag_css[24];
};

static route_stats *route_get(tc_monitor *m, const char *name)
{
    int n = atomic_load_explicit(&m->nroutes, memory_order_acquire);
    for (int i = 0; i < n; i++) /* labels are static strings: the same pointer, mostly */
        if (m->routes[i].name == name)
            return &m->routes[i];
    for (int i = 0; i < n; i++)
        if (strcmp(m->routes[i].name, name) == 0)
            return &m->routes[i];
    pthread_mutex_lock(&m->labels_lock);
    n = atomic_load_explicit(&m->nroutes, memory_order_relaxed);
    route_stats *r = &m->routes[0]; /* "other" */
    for (int i = 0; i < n; i++)
        if (strcmp(m->routes[i].name, name) == 0)
            r = &m->routes[i];
    if (r == &m->routes[0] && n < ROUTES_MAX) {
        r = &m->routes[n];
        r->name = name;
        atomic_store_explicit(&m->nroutes, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&m->labels_lock);
    return r;
}

static bool tag_name_ok(const char *s, size_t n)
{
    if (n == 0 || n >= TC_NS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

void tc_app__monitor_tag_invalidated(tc_monitor *m, const char *tag)
{
    if (m == NULL || tag == NULL)
        return;
    const char *colon = strchr(tag, ':');
    size_t len = colon != NULL ? (size_t)(colon - tag) : strlen(tag);
    if (!tag_name_ok(tag, len)) {
        atomic_fetch_add_explicit(&m->tags[0].n, 1, memory_order_relaxed);
        return;
    }
    int n = atomic_load_explicit(&m->ntags, memory_order_acquire);
    for (int i = 1; i < n; i++)
        if (strncmp(m->tags[i].name, tag, len) == 0 && m->tags[i].name[len] == '\0') {
            atomic_fetch_add_explicit(&m->tags[i].n, 1, memory_order_relaxed);
            return;
        }
    pthread_mutex_lock(&m->labels_lock);
    n = atomic_load_explicit(&m->ntags, memory_order_relaxed);
    tagns *t = &m->tags[0];
    for (int i = 1; i < n; i++)
        if (strncmp(m->tags[i].name, tag, len) == 0 && m->tags[i].name[len] == '\0')
            t = &m->tags[i];
    if (t == &m->tags[0] && n < TAGNS_MAX) {
        t = &m->tags[n];
        memcpy(t->name, tag, len);
        t->name[len] = '\0';
        atomic_store_explicit(&m->ntags, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&m->labels_lock);
    atomic_fetch_add_explicit(&t->n, 1, memory_order_relaxed);
}

static bool path_eq(const char *raw, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(raw, want, len) == 0;
}

const char *tc_app__mon_route_of_path(const char *raw, size_t len)
{
    static const char *const fixed[] = {"/healthz",
                                        "/readyz",
                                        "/metrics",
                                        "/webhooks/billing",
                                        "/admin/cache",
                                        "/admin/cache.json",
                                        "/admin/cache.js",
                                        "/admin/cache.css",
                                        "/",
                                        "/login",
                                        "/dashboard"};
    if (len >= 6 && memcmp(raw, "/trpc/", 6) == 0)
        return "unknown";
    if (len > 6 && memcmp(raw, "/blog/", 6) == 0)
        return "/blog/:slug";
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (path_eq(raw, len, fixed[i]))
            return fixed[i];
    if (len >= 8 && memcmp(raw, "/static/", 8) == 0)
        return "/static/*";
    return "other";
}

/* ---- the on_done hook -------------------------------------------------------------- */

void tc_app__monitor_done(void *ctx, tc_http_exchange *x, int status, uint64_t us)
{
    tc_app *app = ctx;
    tc_monitor *m = app->monitor;
    if (m == NULL)
        return;
    char word[16] = "-", detail[16] = ""; /* for the metrics and the access log */
    if (status == 0) {
        atomic_fetch_add_explicit(&m->unanswered, 1, memory_order_relaxed);
    } else {
        const char *label = tc_http_route(x);
        if (label == NULL) {
            size_t len;
            const char *raw = tc_http_raw_path(x, &len);
            label = tc_app__mon_route_of_path(raw, len);
            tc_http_set_route(x, label); /* for the access log too */
        }
        route_stats *r = route_get(m, label);
        if (status >= 100 && status < 100 + CODES)
            atomic_fetch_add_explicit(&r->codes[status - 100], 1, memory_order_relaxed);
        hist_add(&r->lat, us);
        atomic_fetch_add_explicit(&m->requests, 1, memory_order_relaxed);
        if (status >= 500)
            atomic_fetch_add_explicit(&m->errors, 1, memory_order_relaxed);
        switch (tc_cache_status_parse(tc_http_response_header(x, "Cache-Status"), word,
                                      sizeof(word), detail, sizeof(detail))) {
        case TC_CSTAT_HIT:
            hist_add(&m->out[OUT_HIT], us);
            break;
        case TC_CSTAT_STALE:
            hist_add(&m->out[OUT_STALE], us);
            break;
        case TC_CSTAT_MISS:
        case TC_CSTAT_FWD:
            hist_add(&m->out[OUT_MISS], us);
            break;
        default:
            break;
        }
    }
    tc_access_log_request(m->log, x, status, us, word, detail);
}

/* ---- the sampler ------------------------------------------------------------------- */

static void take_sample(tc_monitor *m, sample *s, tc_metrics *cm)
{
    memset(s, 0, sizeof(*s));
    s->t_ms = tc_wall_ms();
    if (m->app->cache != NULL) {
        tc_metrics_snapshot(m->app->cache, cm);
        s->nns = cm->nns;
        for (int i = 0; i < cm->nns; i++) {
            const tc_ns_metrics *n = &cm->ns[i];
            ns_sample *d = &s->ns[i];
            snprintf(d->name, sizeof(d->name), "%s", n->name);
            d->l1 = n->l1_hits, d->l2 = n->l2_hits, d->miss = n->misses;
            d->coalesced = n->coalesced, d->stale = n->stale_served;
            d->refresh = n->refreshes, d->dropped = n->refresh_dropped;
            d->load_errors = n->load_errors, d->invalidations = n->invalidations;
        }
        s->l1_entries = cm->l1_entries, s->l1_bytes = cm->l1_bytes;
        s->l1_evictions = cm->l1_evictions, s->redis_errors = cm->redis_errors;
        s->breaker_opens = cm->breaker_opens, s->bus_reconnects = cm->bus_reconnects;
        s->pending = cm->pending_invalidations, s->breaker_open = cm->breaker_open;
        s->bus_connected = cm->bus_connected;
        memcpy(s->redis, cm->redis_latency.buckets, sizeof(s->redis));
        s->clears = cm->clears;
    }
    s->ntags = atomic_load_explicit(&m->ntags, memory_order_acquire);
    for (int i = 0; i < s->ntags; i++) {
        memcpy(s->tag_name[i], m->tags[i].name, TC_NS_NAME_MAX);
        s->tag_n[i] = atomic_load_explicit(&m->tags[i].n, memory_order_relaxed);
    }
    s->requests = atomic_load_explicit(&m->requests, memory_order_relaxed);
    s->errors = atomic_load_explicit(&m->errors, memory_order_relaxed);
    for (int k = 0; k < OUTCOMES; k++)
        hist_read(&m->out[k], s->out[k], NULL);
    pthread_mutex_lock(&m->srv_lock);
    if (m->srv != NULL) {
        tc_http_get_stats(m->srv, &s->http);
        s->have_http = true;
    }
    pthread_mutex_unlock(&m->srv_lock);
    for (int d = TC_DB_SQLITE; d <= TC_DB_POSTGRES; d++) {
        tc_db_latency l;
        tc_db_latency_get((tc_db_dialect)d, TC_DB_OP_QUERY, &l);
        for (int i = 0; i < TC_DB_HIST_BUCKETS; i++)
            s->db[i] += l.buckets[i];
    }
}

static void *sampler_main(void *arg)
{
    tc_monitor *m = arg;
    sample *s = malloc(sizeof(*s));
    tc_metrics *cm = malloc(sizeof(*cm));
    if (s == NULL || cm == NULL) {
        free(s);
        free(cm);
        tc_app__log("monitor: out of memory: the monitoring page will stay empty");
        return NULL;
    }
    pthread_mutex_lock(&m->ring_lock);
    while (!m->stop) {
        pthread_mutex_unlock(&m->ring_lock);
        take_sample(m, s, cm);
        pthread_mutex_lock(&m->ring_lock);
        m->ring[m->head] = *s;
        m->head = (m->head + 1) % RING;
        if (m->count < RING)
            m->count++;
        tc_deadline next = tc_deadline_in_ms(SAMPLE_MS);
        while (!m->stop && tc_cond_wait_until(&m->ring_cond, &m->ring_lock, next) == 0)
            ;
    }
    pthread_mutex_unlock(&m->ring_lock);
    free(s);
    free(cm);
    return NULL;
}

/* ---- access ------------------------------------------------------------------------ */

bool tc_app__mon_is_loopback(const char *a)
{
    if (a == NULL)
        return false;
    if (strncmp(a, "::ffff:", 7) == 0)
        a += 7;
    return strncmp(a, "127.", 4) == 0 || strcmp(a, "::1") == 0;
}

static bool token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

/* The monitoring credential: the bearer token when one is configured, else a
 * loopback peer that no proxy forwarded. */
static bool monitoring_access(tc_monitor *m, tc_http_exchange *x)
{
    if (m->token != NULL) {
        const char *v = tc_http_header(x, "Authorization");
        if (v == NULL || strncasecmp(v, "Bearer ", 7) != 0)
            return false;
        v += 7;
        while (*v == ' ')
            v++;
        return token_equal(v, m->token);
    }
    static const char *const proxy[] = {"Forwarded", "X-Forwarded-For", "X-Real-IP", "Via"};
    for (size_t i = 0; i < sizeof(proxy) / sizeof(proxy[0]); i++)
        if (tc_http_header(x, proxy[i]) != NULL)
            return false;
    return tc_app__mon_is_loopback(tc_http_client_addr(x));
}

enum { S_ADMIN, S_USER, S_ANON, S_BLOCK, S_ERROR };

static int session_kind(tc_app *app, tc_http_exchange *x, bool may_block)
{
    tc_call probe = {.app = app, .x = x, .may_block = may_block};
    tc_session s;
    tc_call_status st = tc_app__auth_session(&probe, &s);
    if (st == CALL_NEED_BLOCK)
        return S_BLOCK;
    if (st != CALL_OK)
        return S_ERROR;
    if (s.user_id == 0)
        return S_ANON;
    return s.role == ROLE_ADMIN ? S_ADMIN : S_USER;
}

static void respond(tc_http_exchange *x, int status, const char *ctype, const char *body)
{
    tc_http_add_header(x, "Cache-Control", "no-store");
    tc_http_add_header(x, "X-Content-Type-Options", "nosniff");
    tc_http_respond(x, status, ctype, body, strlen(body));
}

static bool method_ok(tc_http_exchange *x)
{
    tc_http_method_id m = tc_http_method_id_of(x);
    if (m == TC_HTTP_M_GET || m == TC_HTTP_M_HEAD)
        return true;
    tc_http_add_header(x, "Allow", "GET, HEAD");
    respond(x, 405, "text/plain; charset=utf-8", "GET or HEAD only\n");
    return false;
}

/* ---- /metrics ---------------------------------------------------------------------- */

#define P(...) tc_buf_printf(b, __VA_ARGS__)

static void family(tc_buf *b, const char *name, const char *type, const char *help)
{
    P("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* labels: `a="x",b="y"` or "". */
static void series(tc_buf *b, const char *name, const char *labels, uint64_t v)
{
    if (labels[0] != '\0')
        P("%s{%s} %llu\n", name, labels, (unsigned long long)v);
    else
        P("%s %llu\n", name, (unsigned long long)v);
}

/* A family with one unlabelled series. */
static void single(tc_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    family(b, name, type, help);
    series(b, name, "", v);
}

static void hist_tail(tc_buf *b, const char *name, const char *labels, uint64_t cum,
                      uint64_t sum_us)
{
    const char *sep = labels[0] != '\0' ? "," : "";
    P("%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
    if (labels[0] != '\0') {
        P("%s_sum{%s} %llu.%06llu\n", name, labels, (unsigned long long)(sum_us / 1000000),
          (unsigned long long)(sum_us % 1000000));
        P("%s_count{%s} %llu\n", name, labels, (unsigned long long)cum);
    } else {
        P("%s_sum %llu.%06llu\n", name, (unsigned long long)(sum_us / 1000000),
          (unsigned long long)(sum_us % 1000000));
        P("%s_count %llu\n", name, (unsigned long long)cum);
    }
}

/* Power-of-two microsecond buckets (engine, database) as cumulative seconds. */
static void hist_log2(tc_buf *b, const char *name, const char *labels, const uint64_t *bk, int n,
                      uint64_t sum_us)
{
    const char *sep = labels[0] != '\0' ? "," : "";
    uint64_t cum = 0;
    for (int i = 0; i < n - 1; i++) {
        cum += bk[i];
        P("%s_bucket{%s%sle=\"%.9g\"} %llu\n", name, labels, sep, (double)(1ull << i) / 1e6,
          (unsigned long long)cum);
    }
    hist_tail(b, name, labels, cum + bk[n - 1], sum_us);
}

static void hist_fixed(tc_buf *b, const char *name, const char *labels, const uint64_t bk[NB],
                       uint64_t sum_us)
{
    const char *sep = labels[0] != '\0' ? "," : "";
    uint64_t cum = 0;
    for (int i = 0; i < TC_MON_HIST_BOUNDS; i++) {
        cum += bk[i];
        P("%s_bucket{%s%sle=\"%.9g\"} %llu\n", name, labels, sep,
          (double)tc_app__mon_bounds_us[i] / 1e6, (unsigned long long)cum);
    }
    hist_tail(b, name, labels, cum + bk[NB - 1], sum_us);
}

void tc_app__mon_label_escape(const char *v, char *out, size_t cap)
{
    size_t n = 0;
    for (; *v != '\0' && n + 3 < cap; v++) {
        if (*v == '\\' || *v == '"') {
            out[n++] = '\\';
            out[n++] = *v;
        } else if (*v == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *v;
        }
    }
    out[n] = '\0';
}

/* One counter per namespace, from the snapshot. */
#define NS_COUNTER(metric, field, help)                                                            \
    do {                                                                                           \
        family(b, metric, "counter", help);                                                        \
        for (int i = 0; i < cm->nns; i++) {                                                        \
            tc_app__mon_label_escape(cm->ns[i].name, esc, sizeof(esc));                            \
            snprintf(lab, sizeof(lab), "namespace=\"%s\"", esc);                                   \
            series(b, metric, lab, cm->ns[i].field);                                               \
        }                                                                                          \
    } while (0)

static void render_cache(tc_monitor *m, tc_buf *b, tc_metrics *cm)
{
    char lab[160], esc[80];
    tc_metrics_snapshot(m->app->cache, cm);
    family(b, "tiercache_cache_hits_total", "counter",
           "Cache answers from a layer (l1: in-process, l2: Redis), stale ones included.");
    for (int i = 0; i < cm->nns; i++) {
        tc_app__mon_label_escape(cm->ns[i].name, esc, sizeof(esc));
        snprintf(lab, sizeof(lab), "namespace=\"%s\",layer=\"l1\"", esc);
        series(b, "tiercache_cache_hits_total", lab, cm->ns[i].l1_hits);
        snprintf(lab, sizeof(lab), "namespace=\"%s\",layer=\"l2\"", esc);
        series(b, "tiercache_cache_hits_total", lab, cm->ns[i].l2_hits);
    }
    NS_COUNTER("tiercache_cache_misses_total", misses,
               "Lookups that ran the loader (the database) for their caller.");
    NS_COUNTER("tiercache_cache_coalesced_total", coalesced,
               "Lookups that waited for another caller's load of the same key (single-flight).");
    NS_COUNTER("tiercache_cache_stale_served_total", stale_served,
               "Answers past their fresh time (stale-while-revalidate, stale-if-error).");
    NS_COUNTER("tiercache_cache_refreshes_total", refreshes, "Background refreshes run.");
    NS_COUNTER("tiercache_cache_refresh_dropped_total", refresh_dropped,
               "Background refreshes not queued: the refresh queue was full.");
    NS_COUNTER("tiercache_cache_load_errors_total", load_errors,
               "Loader failures, foreground or background.");

    family(b, "tiercache_cache_invalidations_total", "counter",
           "Invalidations by reason: key (one key, by the key's namespace), tag (one tag, by "
           "the tag's namespace), clear (everything; namespace \"*\").");
    for (int i = 0; i < cm->nns; i++) {
        tc_app__mon_label_escape(cm->ns[i].name, esc, sizeof(esc));
        snprintf(lab, sizeof(lab), "namespace=\"%s\",reason=\"key\"", esc);
        series(b, "tiercache_cache_invalidations_total", lab, cm->ns[i].invalidations);
    }
    int nt = atomic_load_explicit(&m->ntags, memory_order_acquire);
    for (int i = 0; i < nt; i++) {
        uint64_t v = atomic_load_explicit(&m->tags[i].n, memory_order_relaxed);
        if (i == 0 && v == 0)
            continue; /* "other" unused */
        snprintf(lab, sizeof(lab), "namespace=\"%s\",reason=\"tag\"", m->tags[i].name);
        series(b, "tiercache_cache_invalidations_total", lab, v);
    }
    series(b, "tiercache_cache_invalidations_total", "namespace=\"*\",reason=\"clear\"",
           cm->clears);

    family(b, "tiercache_cache_hit_duration_seconds", "histogram",
           "L1 hit latency inside the engine; one hit in 16 per thread is timed.");
    for (int i = 0; i < cm->nns; i++) {
        tc_app__mon_label_escape(cm->ns[i].name, esc, sizeof(esc));
        snprintf(lab, sizeof(lab), "namespace=\"%s\"", esc);
        hist_log2(b, "tiercache_cache_hit_duration_seconds", lab, cm->ns[i].hit_latency.buckets,
                  TC_HIST_BUCKETS, cm->ns[i].hit_latency.sum_us);
    }
    family(b, "tiercache_cache_load_duration_seconds", "histogram",
           "Loader (database) run time, foreground and background.");
    for (int i = 0; i < cm->nns; i++) {
        tc_app__mon_label_escape(cm->ns[i].name, esc, sizeof(esc));
        snprintf(lab, sizeof(lab), "namespace=\"%s\"", esc);
        hist_log2(b, "tiercache_cache_load_duration_seconds", lab, cm->ns[i].load_latency.buckets,
                  TC_HIST_BUCKETS, cm->ns[i].load_latency.sum_us);
    }

    family(b, "tiercache_cache_l1_entries", "gauge", "Entries in the in-process cache.");
    series(b, "tiercache_cache_l1_entries", "", cm->l1_entries);
    family(b, "tiercache_cache_l1_bytes", "gauge", "Bytes held by the in-process cache.");
    series(b, "tiercache_cache_l1_bytes", "", cm->l1_bytes);
    family(b, "tiercache_cache_l1_max_bytes", "gauge", "The in-process cache's byte limit.");
    series(b, "tiercache_cache_l1_max_bytes", "", m->cfg.l1_max_bytes);
    family(b, "tiercache_cache_l1_evictions_total", "counter",
           "Entries evicted from the in-process cache to stay under its limit.");
    series(b, "tiercache_cache_l1_evictions_total", "", cm->l1_evictions);
    single(b, "tiercache_cache_pending_invalidations", "gauge",
           "Invalidations applied here but not yet delivered to Redis (replayed when it answers).",
           cm->pending_invalidations);

    single(b, "tiercache_redis_errors_total", "counter",
           "Redis commands that failed, timed out or could not be sent.", cm->redis_errors);
    single(b, "tiercache_redis_breaker_open", "gauge",
           "1 while the circuit breaker is open (Redis is skipped), else 0.",
           (uint64_t)cm->breaker_open);
    single(b, "tiercache_redis_breaker_opens_total", "counter", "Times the breaker opened.",
           cm->breaker_opens);
    family(b, "tiercache_redis_command_duration_seconds", "histogram",
           "Redis round trips (command sent to reply read).");
    hist_log2(b, "tiercache_redis_command_duration_seconds", "", cm->redis_latency.buckets,
              TC_HIST_BUCKETS, cm->redis_latency.sum_us);
    single(b, "tiercache_bus_connected", "gauge",
           "1 while subscribed to the invalidation bus, else 0 (L1 is bypassed meanwhile).",
           (uint64_t)cm->bus_connected);
    single(b, "tiercache_bus_reconnects_total", "counter",
           "Times the invalidation bus subscription was re-established.", cm->bus_reconnects);
    single(b, "tiercache_bus_messages_total", "counter",
           "Invalidation messages received on the bus (this process's own included).",
           cm->bus_messages);
    single(b, "tiercache_cache_l1_trusted", "gauge",
           "1 while this instance's lease holds: the bus proved within the lease that every "
           "invalidation has arrived, so L1 may answer; 0: L1 is bypassed.",
           (uint64_t)cm->l1_trusted);
    single(b, "tiercache_cache_lease_lapses_total", "counter",
           "Times the lease ran out while subscribed (Redis slow or cut off).", cm->lease_lapses);
    single(b, "tiercache_cache_ack_timeouts_total", "counter",
           "Invalidations that waited out the lease of an instance that did not acknowledge.",
           cm->ack_timeouts);
    single(b, "tiercache_redis_incarnations_total", "counter",
           "Times a different Redis process answered (restart, restore, failover): nothing "
           "cached before was trusted.",
           cm->incarnations);
    family(b, "tiercache_cache_invalidate_duration_seconds", "histogram",
           "An invalidation from this instance until every instance applied it (or its lease ran "
           "out).");
    hist_log2(b, "tiercache_cache_invalidate_duration_seconds", "",
              cm->invalidate_latency.buckets, TC_HIST_BUCKETS, cm->invalidate_latency.sum_us);
}

static void render_http(tc_monitor *m, tc_buf *b)
{
    char lab[200], esc[140];
    int nr = atomic_load_explicit(&m->nroutes, memory_order_acquire);
    family(b, "tiercache_http_requests_total", "counter",
           "Responses sent, by route (procedure name, batch, unknown, or path) and status code.");
    for (int i = 0; i < nr; i++) {
        tc_app__mon_label_escape(m->routes[i].name, esc, sizeof(esc));
        for (int c = 0; c < CODES; c++) {
            uint64_t v = atomic_load_explicit(&m->routes[i].codes[c], memory_order_relaxed);
            if (v == 0)
                continue;
            snprintf(lab, sizeof(lab), "route=\"%s\",code=\"%d\"", esc, c + 100);
            series(b, "tiercache_http_requests_total", lab, v);
        }
    }
    family(b, "tiercache_http_request_duration_seconds", "histogram",
           "Request line read to response sent, by route.");
    for (int i = 0; i < nr; i++) {
        uint64_t bk[NB], sum, n = 0;
        hist_read(&m->routes[i].lat, bk, &sum);
        for (int k = 0; k < NB; k++)
            n += bk[k];
        if (n == 0)
            continue; /* "other", before anything counted there */
        tc_app__mon_label_escape(m->routes[i].name, esc, sizeof(esc));
        snprintf(lab, sizeof(lab), "route=\"%s\"", esc);
        hist_fixed(b, "tiercache_http_request_duration_seconds", lab, bk, sum);
    }
    family(b, "tiercache_http_request_duration_by_cache_seconds", "histogram",
           "Request duration by the Cache-Status of the response: hit, stale (a hit past its "
           "fresh time) or miss.");
    for (int k = 0; k < OUTCOMES; k++) {
        uint64_t bk[NB], sum;
        hist_read(&m->out[k], bk, &sum);
        snprintf(lab, sizeof(lab), "cache=\"%s\"", OUTCOME_NAMES[k]);
        hist_fixed(b, "tiercache_http_request_duration_by_cache_seconds", lab, bk, sum);
    }
    family(b, "tiercache_http_unanswered_requests_total", "counter",
           "Requests whose connection ended before a response was sent.");
    series(b, "tiercache_http_unanswered_requests_total", "",
           atomic_load_explicit(&m->unanswered, memory_order_relaxed));

    pthread_mutex_lock(&m->srv_lock);
    bool have = m->srv != NULL;
    tc_http_stats st;
    if (have)
        tc_http_get_stats(m->srv, &st);
    pthread_mutex_unlock(&m->srv_lock);
    if (!have)
        return;
    single(b, "tiercache_http_connections", "gauge", "Open client connections.", st.connections);
    single(b, "tiercache_http_in_flight_requests", "gauge",
           "Requests between request line and response sent.", st.in_flight);
    single(b, "tiercache_http_queued_requests", "gauge",
           "Requests waiting for a worker thread now.", st.queued);
    single(b, "tiercache_http_handler_calls_total", "counter",
           "Requests that reached the application's handler.", st.requests);
    single(b, "tiercache_http_offloaded_total", "counter",
           "Requests run on a worker thread (could block: cache miss, database, mutation).",
           st.offloaded);
    single(b, "tiercache_http_parked_total", "counter",
           "Offloaded requests that gave their worker back while another request loaded "
           "the same key, and ran again after it.",
           st.parked);
    family(b, "tiercache_http_rejected_total", "counter",
           "Requests the server refused by itself: busy (503, worker queue full), too_large "
           "(413), bad_request (400, framing).");
    series(b, "tiercache_http_rejected_total", "reason=\"busy\"", st.rejected_busy);
    series(b, "tiercache_http_rejected_total", "reason=\"too_large\"", st.rejected_large);
    series(b, "tiercache_http_rejected_total", "reason=\"bad_request\"", st.rejected_bad);
    family(b, "tiercache_http_closed_total", "counter",
           "Connections the server closed: deadline (request too slow), idle (keep-alive idle).");
    series(b, "tiercache_http_closed_total", "reason=\"deadline\"", st.closed_deadline);
    series(b, "tiercache_http_closed_total", "reason=\"idle\"", st.closed_idle);
}

static void render_db(tc_buf *b)
{
    char lab[96];
    family(b, "tiercache_db_query_duration_seconds", "histogram",
           "Database statements by dialect and operation (query: the call plus each row "
           "stepped).");
    for (int d = TC_DB_SQLITE; d <= TC_DB_POSTGRES; d++)
        for (int op = 0; op < TC_DB_OP_POOL_WAIT; op++) {
            tc_db_latency l;
            tc_db_latency_get((tc_db_dialect)d, (tc_db_op)op, &l);
            if (l.count == 0)
                continue;
            snprintf(lab, sizeof(lab), "dialect=\"%s\",operation=\"%s\"",
                     tc_db_dialect_name((tc_db_dialect)d), tc_db_op_name((tc_db_op)op));
            hist_log2(b, "tiercache_db_query_duration_seconds", lab, l.buckets, TC_DB_HIST_BUCKETS,
                      l.sum_us);
        }
    family(b, "tiercache_db_errors_total", "counter",
           "Database calls that returned an error, by dialect and operation.");
    for (int d = TC_DB_SQLITE; d <= TC_DB_POSTGRES; d++)
        for (int op = 0; op < TC_DB_OPS; op++) {
            tc_db_latency l;
            tc_db_latency_get((tc_db_dialect)d, (tc_db_op)op, &l);
            if (l.count == 0)
                continue;
            snprintf(lab, sizeof(lab), "dialect=\"%s\",operation=\"%s\"",
                     tc_db_dialect_name((tc_db_dialect)d), tc_db_op_name((tc_db_op)op));
            series(b, "tiercache_db_errors_total", lab, l.errors);
        }
    family(b, "tiercache_db_pool_wait_seconds", "histogram",
           "Time spent waiting for a free pooled connection.");
    for (int d = TC_DB_SQLITE; d <= TC_DB_POSTGRES; d++) {
        tc_db_latency l;
        tc_db_latency_get((tc_db_dialect)d, TC_DB_OP_POOL_WAIT, &l);
        if (l.count == 0)
            continue;
        snprintf(lab, sizeof(lab), "dialect=\"%s\"", tc_db_dialect_name((tc_db_dialect)d));
        hist_log2(b, "tiercache_db_pool_wait_seconds", lab, l.buckets, TC_DB_HIST_BUCKETS,
                  l.sum_us);
    }
}

static char *render_metrics(tc_monitor *m, size_t *len)
{
    tc_buf buf = {0}, *b = &buf;
    tc_metrics *cm = malloc(sizeof(*cm));
    if (cm == NULL)
        return NULL;
    single(b, "tiercache_cache_enabled", "gauge",
           "1 when reads go through the cache, 0 when it is turned off (--no-cache).",
           m->app->cache != NULL);
    if (m->app->cache != NULL)
        render_cache(m, b, cm);
    free(cm);
    render_http(m, b);
    render_db(b);
    tc_access_log_stats ls;
    tc_access_log_get_stats(m->log, &ls);
    single(b, "tiercache_access_log_lines_total", "counter", "Access log lines queued.", ls.lines);
    single(b, "tiercache_access_log_dropped_total", "counter",
           "Access log lines dropped: the destination was slower than the traffic.", ls.dropped);
    single(b, "tiercache_access_log_write_errors_total", "counter",
           "Failed writes of the access log (their lines are lost).", ls.write_errors);
    family(b, "process_start_time_seconds", "gauge",
           "Start time of the process since the unix epoch in seconds.");
    P("process_start_time_seconds %lld.%03lld\n", (long long)(m->started_ms / 1000),
      (long long)(m->started_ms % 1000));
    if (b->data == NULL) { /* out of memory along the way */
        return NULL;
    }
    *len = b->len;
    return b->data;
}

#undef P

static void blocking_metrics(void *ctx, tc_http_exchange *x)
{
    tc_monitor *m = ((tc_app *)ctx)->monitor;
    size_t len = 0;
    char *text = render_metrics(m, &len);
    if (text == NULL) {
        respond(x, 500, "text/plain; charset=utf-8", "out of memory\n");
        return;
    }
    tc_http_set_status(x, 200);
    tc_http_add_header(x, "Cache-Control", "no-store");
    tc_http_set_content_type(x, "text/plain; version=0.0.4; charset=utf-8");
    tc_http_take_body(x, text, len);
}

static tc_http_action serve_metrics(tc_monitor *m, tc_http_exchange *x)
{
    if (!method_ok(x))
        return TC_HTTP_DONE;
    if (!monitoring_access(m, x)) {
        if (m->token != NULL) {
            tc_http_add_header(x, "WWW-Authenticate", "Bearer realm=\"metrics\"");
            respond(x, 401, "text/plain; charset=utf-8", "a bearer token is required\n");
        } else {
            respond(x, 403, "text/plain; charset=utf-8",
                    "metrics are served to loopback peers only (or set a metrics token)\n");
        }
        return TC_HTTP_DONE;
    }
    /* a millisecond of formatting: not on the thread that answers cached requests */
    if (tc_http_offload(x, blocking_metrics) == 0)
        return TC_HTTP_OFFLOAD;
    respond(x, 500, "text/plain; charset=utf-8", "could not offload the request\n");
    return TC_HTTP_DONE;
}

/* ---- the feed ---------------------------------------------------------------------- */

static const ns_sample *ns_find(const sample *s, const char *name)
{
    for (int i = 0; i < s->nns; i++)
        if (strcmp(s->ns[i].name, name) == 0)
            return &s->ns[i];
    return NULL;
}

static uint64_t tag_count(const sample *s, const char *name)
{
    for (int i = 0; i < s->ntags; i++)
        if (strcmp(s->tag_name[i], name) == 0)
            return s->tag_n[i];
    return 0;
}

static json_t *num(double v)
{
    return json_real(v);
}

static json_t *num_or_null(double v, bool ok)
{
    return ok ? json_real(v) : json_null();
}

static json_t *ratio(uint64_t hits, uint64_t lookups)
{
    return lookups > 0 ? json_real((double)hits / (double)lookups) : json_null();
}

static void sub_hist(const uint64_t *a, const uint64_t *b, uint64_t *d, int n)
{
    for (int i = 0; i < n; i++)
        d[i] = a[i] >= b[i] ? a[i] - b[i] : 0;
}

static uint64_t dsub(uint64_t a, uint64_t b)
{
    return a >= b ? a - b : 0;
}

/* Percentiles (ms) of the requests answered from the cache (hit + stale) or
 * not (miss), between samples a (older) and b. */
static json_t *pcts(const sample *a, const sample *b, bool cached, uint64_t *count)
{
    uint64_t d[NB], tmp[NB];
    if (cached) {
        sub_hist(b->out[OUT_HIT], a->out[OUT_HIT], d, NB);
        sub_hist(b->out[OUT_STALE], a->out[OUT_STALE], tmp, NB);
        for (int i = 0; i < NB; i++)
            d[i] += tmp[i];
    } else {
        sub_hist(b->out[OUT_MISS], a->out[OUT_MISS], d, NB);
    }
    uint64_t n = 0;
    for (int i = 0; i < NB; i++)
        n += d[i];
    if (count)
        *count = n;
    json_t *o = json_object();
    static const double which[] = {50, 95, 99};
    static const char *const names[] = {"p50", "p95", "p99"};
    for (int i = 0; i < 3; i++) {
        double us = tc_app__mon_percentile(d, NB, 0, which[i]);
        json_object_set_new(o, names[i], num_or_null(us / 1000.0, us >= 0));
    }
    return o;
}

static void add_point(json_t *series, const char *key, json_t *v)
{
    json_array_append_new(json_object_get(series, key), v);
}

static json_t *build_feed(tc_monitor *m)
{
    sample *r = malloc(sizeof(sample) * RING);
    if (r == NULL)
        return NULL;
    pthread_mutex_lock(&m->ring_lock);
    int n = m->count;
    for (int i = 0; i < n; i++)
        r[i] = m->ring[(m->head - n + i + RING) % RING];
    pthread_mutex_unlock(&m->ring_lock);

    json_t *feed = json_object(), *s = json_object(), *sum = json_object();
    json_object_set_new(feed, "version", json_integer(1));
    json_object_set_new(feed, "time", json_integer(tc_wall_ms()));
    json_object_set_new(feed, "started", json_integer(m->started_ms));
    json_object_set_new(feed, "interval_ms", json_integer(SAMPLE_MS));
    json_object_set_new(feed, "cache", json_boolean(m->app->cache != NULL));
    json_object_set_new(feed, "redis", json_boolean(m->app->cfg.redis_host != NULL));
    static const char *const keys[] = {
        "t",          "rps",      "errors_ps",  "hit_ratio",       "lookups_ps",  "l1_bytes",
        "l1_entries", "stale_ps", "refresh_ps", "redis_errors_ps", "redis_p99_ms"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        json_object_set_new(s, keys[i], json_array());
    json_t *nsr = json_object(), *cached = json_object(), *uncached = json_object();
    json_object_set_new(s, "ns_hit_ratio", nsr);
    json_object_set_new(s, "cached_ms", cached);
    json_object_set_new(s, "uncached_ms", uncached);
    static const char *const pk[] = {"p50", "p95", "p99"};
    for (int i = 0; i < 3; i++) {
        json_object_set_new(cached, pk[i], json_array());
        json_object_set_new(uncached, pk[i], json_array());
    }
    const sample *last = n > 0 ? &r[n - 1] : NULL;
    if (last != NULL)
        for (int k = 0; k < last->nns; k++)
            json_object_set_new(nsr, last->ns[k].name, json_array());

    for (int i = 1; i < n; i++) {
        const sample *a = &r[i - 1], *b = &r[i];
        double secs = (double)(b->t_ms - a->t_ms) / 1000.0;
        if (secs <= 0)
            secs = 1;
        add_point(s, "t", json_integer(b->t_ms));
        add_point(s, "rps", num((double)dsub(b->requests, a->requests) / secs));
        add_point(s, "errors_ps", num((double)dsub(b->errors, a->errors) / secs));
        uint64_t hits = 0, lookups = 0, stale = 0, refresh = 0;
        for (int k = 0; k < b->nns; k++) {
            const ns_sample *nb = &b->ns[k], *na = ns_find(a, nb->name);
            static const ns_sample zero;
            if (na == NULL)
                na = &zero;
            uint64_t h = dsub(nb->l1 + nb->l2, na->l1 + na->l2);
            uint64_t l = h + dsub(nb->miss, na->miss);
            hits += h, lookups += l;
            stale += dsub(nb->stale, na->stale);
            refresh += dsub(nb->refresh, na->refresh);
            json_t *arr = json_object_get(nsr, nb->name);
            if (arr != NULL)
                json_array_append_new(arr, ratio(h, l));
        }
        /* namespaces that appeared later: pad so every series lines up with t */
        json_t *arr;
        const char *nm;
        json_object_foreach(nsr, nm, arr)
        {
            while (json_array_size(arr) < (size_t)i)
                json_array_insert_new(arr, 0, json_null());
        }
        add_point(s, "hit_ratio", ratio(hits, lookups));
        add_point(s, "lookups_ps", num((double)lookups / secs));
        add_point(s, "l1_bytes", json_integer((json_int_t)b->l1_bytes));
        add_point(s, "l1_entries", json_integer((json_int_t)b->l1_entries));
        add_point(s, "stale_ps", num((double)stale / secs));
        add_point(s, "refresh_ps", num((double)refresh / secs));
        add_point(s, "redis_errors_ps", num((double)dsub(b->redis_errors, a->redis_errors) / secs));
        uint64_t rd[TC_HIST_BUCKETS];
        sub_hist(b->redis, a->redis, rd, TC_HIST_BUCKETS);
        double rp = tc_app__mon_percentile(rd, TC_HIST_BUCKETS, 1, 99);
        add_point(s, "redis_p99_ms", num_or_null(rp / 1000.0, rp >= 0));
        const sample *w = &r[i > SMOOTH ? i - SMOOTH : 0];
        json_t *pc = pcts(w, b, true, NULL), *pu = pcts(w, b, false, NULL);
        for (int k = 0; k < 3; k++) {
            json_array_append(json_object_get(cached, pk[k]), json_object_get(pc, pk[k]));
            json_array_append(json_object_get(uncached, pk[k]), json_object_get(pu, pk[k]));
        }
        json_decref(pc);
        json_decref(pu);
    }
    json_object_set_new(feed, "series", s);

    /* the summary: the whole ring (up to a minute), and the latest gauges */
    json_object_set_new(feed, "summary", sum);
    if (n == 0)
        goto done;
    const sample *a = &r[0], *b = last;
    double secs = (double)(b->t_ms - a->t_ms) / 1000.0;
    json_object_set_new(sum, "window_s", num(secs));
    double per = secs > 0 ? secs : 1;
    uint64_t reqs = dsub(b->requests, a->requests);
    json_object_set_new(sum, "requests", json_integer((json_int_t)reqs));
    json_object_set_new(sum, "rps", num((double)reqs / per));
    json_object_set_new(sum, "errors_ps", num((double)dsub(b->errors, a->errors) / per));
    uint64_t cnt;
    json_t *pc = pcts(a, b, true, &cnt);
    json_object_set_new(pc, "count", json_integer((json_int_t)cnt));
    json_object_set_new(sum, "cached_ms", pc);
    json_t *pu = pcts(a, b, false, &cnt);
    json_object_set_new(pu, "count", json_integer((json_int_t)cnt));
    json_object_set_new(sum, "uncached_ms", pu);

    json_t *nss = json_array();
    uint64_t hits = 0, misses = 0, stale = 0, refresh = 0, dropped = 0, lerr = 0, nkeys = 0;
    for (int k = 0; k < b->nns; k++) {
        const ns_sample *nb = &b->ns[k], *na = ns_find(a, nb->name);
        static const ns_sample zero;
        if (na == NULL)
            na = &zero;
        uint64_t l1 = dsub(nb->l1, na->l1), l2 = dsub(nb->l2, na->l2),
                 mi = dsub(nb->miss, na->miss);
        hits += l1 + l2, misses += mi;
        stale += dsub(nb->stale, na->stale), refresh += dsub(nb->refresh, na->refresh);
        dropped += dsub(nb->dropped, na->dropped), lerr += dsub(nb->load_errors, na->load_errors);
        nkeys += dsub(nb->invalidations, na->invalidations);
        /* this namespace's keys, and the tags named like it ("user:42" for user:42) */
        uint64_t inval = dsub(nb->invalidations, na->invalidations) +
                         dsub(tag_count(b, nb->name), tag_count(a, nb->name));
        json_t *o = json_pack(
            "{s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:{s:I,s:I,s:I,s:I,s:I}}", "name",
            nb->name, "hit_ratio", ratio(l1 + l2, l1 + l2 + mi), "l1_hits", (json_int_t)l1,
            "l2_hits", (json_int_t)l2, "misses", (json_int_t)mi, "coalesced",
            (json_int_t)dsub(nb->coalesced, na->coalesced), "stale_served",
            (json_int_t)dsub(nb->stale, na->stale), "refreshes",
            (json_int_t)dsub(nb->refresh, na->refresh), "refresh_dropped",
            (json_int_t)dsub(nb->dropped, na->dropped), "load_errors",
            (json_int_t)dsub(nb->load_errors, na->load_errors), "invalidations", (json_int_t)inval,
            "lookups_ps", num((double)(l1 + l2 + mi) / per), "totals", "l1_hits",
            (json_int_t)nb->l1, "l2_hits", (json_int_t)nb->l2, "misses", (json_int_t)nb->miss,
            "stale_served", (json_int_t)nb->stale, "refreshes", (json_int_t)nb->refresh);
        if (o != NULL)
            json_array_append_new(nss, o);
    }
    json_object_set_new(sum, "namespaces", nss);
    uint64_t tags = 0;
    for (int i = 0; i < b->ntags; i++)
        tags += dsub(b->tag_n[i], tag_count(a, b->tag_name[i]));
    json_object_set_new(sum, "invalidations",
                        json_pack("{s:I,s:I,s:I}", "tag", (json_int_t)tags, "key",
                                  (json_int_t)nkeys, "clear",
                                  (json_int_t)dsub(b->clears, a->clears)));
    json_object_set_new(sum, "hit_ratio", ratio(hits, hits + misses));
    json_object_set_new(sum, "hits", json_integer((json_int_t)hits));
    json_object_set_new(sum, "misses", json_integer((json_int_t)misses));
    json_object_set_new(sum, "stale_served", json_integer((json_int_t)stale));
    json_object_set_new(sum, "refreshes", json_integer((json_int_t)refresh));
    json_object_set_new(sum, "refresh_dropped", json_integer((json_int_t)dropped));
    json_object_set_new(sum, "load_errors", json_integer((json_int_t)lerr));
    json_object_set_new(sum, "l1",
                        json_pack("{s:I,s:I,s:I,s:I,s:I}", "entries", (json_int_t)b->l1_entries,
                                  "bytes", (json_int_t)b->l1_bytes, "max_bytes",
                                  (json_int_t)m->cfg.l1_max_bytes, "evictions",
                                  (json_int_t)b->l1_evictions, "evictions_window",
                                  (json_int_t)dsub(b->l1_evictions, a->l1_evictions)));
    uint64_t rd[TC_HIST_BUCKETS];
    sub_hist(b->redis, a->redis, rd, TC_HIST_BUCKETS);
    double r50 = tc_app__mon_percentile(rd, TC_HIST_BUCKETS, 1, 50);
    double r99 = tc_app__mon_percentile(rd, TC_HIST_BUCKETS, 1, 99);
    json_object_set_new(sum, "redis",
                        json_pack("{s:b,s:b,s:I,s:b,s:I,s:I,s:I,s:o,s:o,s:I}", "configured",
                                  m->app->cache != NULL && m->app->cfg.redis_host != NULL,
                                  "breaker_open", b->breaker_open, "breaker_opens",
                                  (json_int_t)b->breaker_opens, "bus_connected", b->bus_connected,
                                  "bus_reconnects", (json_int_t)b->bus_reconnects, "errors",
                                  (json_int_t)b->redis_errors, "errors_window",
                                  (json_int_t)dsub(b->redis_errors, a->redis_errors), "p50_ms",
                                  num_or_null(r50 / 1000.0, r50 >= 0), "p99_ms",
                                  num_or_null(r99 / 1000.0, r99 >= 0), "pending_invalidations",
                                  (json_int_t)b->pending));
    if (b->have_http)
        json_object_set_new(sum, "http",
                            json_pack("{s:I,s:I,s:I,s:I,s:I}", "connections",
                                      (json_int_t)b->http.connections, "in_flight",
                                      (json_int_t)b->http.in_flight, "queued",
                                      (json_int_t)b->http.queued, "offloaded",
                                      (json_int_t)b->http.offloaded, "rejected",
                                      (json_int_t)(b->http.rejected_busy + b->http.rejected_large +
                                                   b->http.rejected_bad)));
    uint64_t dd[TC_DB_HIST_BUCKETS], dn = 0;
    sub_hist(b->db, a->db, dd, TC_DB_HIST_BUCKETS);
    for (int i = 0; i < TC_DB_HIST_BUCKETS; i++)
        dn += dd[i];
    double d50 = tc_app__mon_percentile(dd, TC_DB_HIST_BUCKETS, 1, 50);
    double d99 = tc_app__mon_percentile(dd, TC_DB_HIST_BUCKETS, 1, 99);
    json_object_set_new(
        sum, "db",
        json_pack("{s:s,s:I,s:o,s:o}", "dialect",
                  strncmp(m->app->cfg.db_url, "sqlite:", 7) == 0 ? "sqlite" : "postgresql",
                  "queries", (json_int_t)dn, "p50_ms", num_or_null(d50 / 1000.0, d50 >= 0),
                  "p99_ms", num_or_null(d99 / 1000.0, d99 >= 0)));
    tc_access_log_stats ls;
    tc_access_log_get_stats(m->log, &ls);
    json_object_set_new(sum, "access_log",
                        json_pack("{s:b,s:I,s:I}", "on", m->log != NULL, "lines",
                                  (json_int_t)ls.lines, "dropped", (json_int_t)ls.dropped));
done:
    free(r);
    return feed;
}

static void blocking_feed(void *ctx, tc_http_exchange *x)
{
    tc_app *app = ctx;
    tc_monitor *m = app->monitor;
    if (!monitoring_access(m, x)) {
        int k = session_kind(app, x, true);
        if (k == S_ANON) {
            tc_http_add_header(x, "WWW-Authenticate", "Bearer realm=\"tiercache\"");
            respond(x, 401, "application/json", "{\"error\":\"sign in as an administrator\"}");
            return;
        }
        if (k == S_USER) {
            respond(x, 403, "application/json", "{\"error\":\"for administrators only\"}");
            return;
        }
        if (k != S_ADMIN) {
            respond(x, 503, "application/json", "{\"error\":\"could not check the session\"}");
            return;
        }
    }
    json_t *feed = build_feed(m);
    char *text = feed != NULL ? json_dumps(feed, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(feed);
    if (text == NULL) {
        respond(x, 500, "application/json", "{\"error\":\"out of memory\"}");
        return;
    }
    tc_http_set_status(x, 200);
    tc_http_add_header(x, "Cache-Control", "no-store");
    tc_http_add_header(x, "X-Content-Type-Options", "nosniff");
    tc_http_set_content_type(x, "application/json");
    tc_http_take_body(x, text, strlen(text));
}

/* ---- the page and its assets --------------------------------------------------------- */

static const char PAGE_CSP[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static const char FORBIDDEN_HTML[] =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Forbidden</title>"
    "</head><body><h1>403 Forbidden</h1><p>The cache monitor is for administrators. "
    "<a href=\"/login?next=/admin/cache\">Sign in as another user</a>.</p></body></html>\n";

static tc_http_action serve_page(tc_app *app, tc_http_exchange *x, bool may_block);

static void blocking_page(void *ctx, tc_http_exchange *x)
{
    serve_page(ctx, x, true);
}

static tc_http_action serve_page(tc_app *app, tc_http_exchange *x, bool may_block)
{
    tc_monitor *m = app->monitor;
    int k = session_kind(app, x, may_block);
    if (k == S_BLOCK) {
        if (tc_http_offload(x, blocking_page) == 0)
            return TC_HTTP_OFFLOAD;
        respond(x, 500, "text/plain; charset=utf-8", "could not offload the request\n");
        return TC_HTTP_DONE;
    }
    tc_http_add_header(x, "X-Frame-Options", "DENY");
    tc_http_add_header(x, "Referrer-Policy", "no-referrer");
    if (k == S_ANON) {
        tc_http_add_header(x, "Location", "/login?next=/admin/cache");
        respond(x, 302, "text/plain; charset=utf-8", "sign in first: /login\n");
    } else if (k == S_USER) {
        respond(x, 403, "text/html; charset=utf-8", FORBIDDEN_HTML);
    } else if (k != S_ADMIN || m->html == NULL) {
        respond(x, k == S_ADMIN ? 500 : 503, "text/plain; charset=utf-8",
                k == S_ADMIN ? "the page was not built into this binary\n"
                             : "could not check the session\n");
    } else {
        tc_http_set_status(x, 200);
        tc_http_add_header(x, "Cache-Control", "no-store");
        tc_http_add_header(x, "X-Content-Type-Options", "nosniff");
        tc_http_add_header(x, "Content-Security-Policy", PAGE_CSP);
        tc_http_set_content_type(x, "text/html; charset=utf-8");
        tc_http_set_body_static(x, m->html->data, m->html->len);
    }
    return TC_HTTP_DONE;
}

/* If-None-Match against a strong ETag (RFC 9110 13.1.2: weak comparison). */
static bool etag_matches(const char *inm, const char *etag)
{
    size_t el = strlen(etag);
    for (const char *p = inm; *p != '\0';) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (strncmp(p, etag, el) == 0 && (p[el] == '\0' || p[el] == ',' || p[el] == ' '))
            return true;
        while (*p != '\0' && *p != ',')
            p++;
    }
    return false;
}

static tc_http_action serve_asset(tc_http_exchange *x, const tc_app__asset *a, const char *etag,
                                  const char *ctype)
{
    if (a == NULL) {
        respond(x, 404, "text/plain; charset=utf-8", "not found\n");
        return TC_HTTP_DONE;
    }
    tc_http_add_header(x, "Cache-Control", "no-cache");
    tc_http_add_header(x, "ETag", etag);
    tc_http_add_header(x, "X-Content-Type-Options", "nosniff");
    const char *inm = tc_http_header(x, "If-None-Match");
    if (inm != NULL && etag_matches(inm, etag)) {
        tc_http_set_status(x, 304);
        return TC_HTTP_DONE;
    }
    tc_http_set_status(x, 200);
    tc_http_set_content_type(x, ctype);
    tc_http_set_body_static(x, a->data, a->len);
    return TC_HTTP_DONE;
}

bool tc_app__monitor_route(tc_app *app, tc_http_exchange *x, tc_http_action *act)
{
    tc_monitor *m = app->monitor;
    size_t len;
    const char *raw = tc_http_raw_path(x, &len);
    if (m == NULL || len < 8 || (raw[1] != 'm' && raw[1] != 'a'))
        return false;
    if (path_eq(raw, len, "/metrics")) {
        tc_http_set_route(x, "/metrics");
        *act = serve_metrics(m, x);
    } else if (path_eq(raw, len, "/admin/cache")) {
        tc_http_set_route(x, "/admin/cache");
        *act = method_ok(x) ? serve_page(app, x, false) : TC_HTTP_DONE;
    } else if (path_eq(raw, len, "/admin/cache.json")) {
        tc_http_set_route(x, "/admin/cache.json");
        if (!method_ok(x)) {
            *act = TC_HTTP_DONE;
        } else if (tc_http_offload(x, blocking_feed) == 0) {
            *act = TC_HTTP_OFFLOAD;
        } else {
            respond(x, 500, "text/plain; charset=utf-8", "could not offload the request\n");
            *act = TC_HTTP_DONE;
        }
    } else if (path_eq(raw, len, "/admin/cache.js")) {
        tc_http_set_route(x, "/admin/cache.js");
        *act = method_ok(x) ? serve_asset(x, m->js, m->etag_js, "text/javascript; charset=utf-8")
                            : TC_HTTP_DONE;
    } else if (path_eq(raw, len, "/admin/cache.css")) {
        tc_http_set_route(x, "/admin/cache.css");
        *act = method_ok(x) ? serve_asset(x, m->css, m->etag_css, "text/css; charset=utf-8")
                            : TC_HTTP_DONE;
    } else {
        return false;
    }
    return true;
}

/* ---- life cycle -------------------------------------------------------------------- */

static const tc_app__asset *asset(const char *name)
{
    for (const tc_app__asset *a = tc_app__admin_assets; a->name != NULL; a++)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

static void etag_of(const tc_app__asset *a, char out[24])
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; a != NULL && i < a->len; i++)
        h = (h ^ a->data[i]) * 1099511628211ULL;
    snprintf(out, 24, "\"%016llx\"", (unsigned long long)h);
}

tc_monitor *tc_app__monitor_new(tc_app *app, const tc_monitor_config *cfg, char *err, size_t errlen)
{
    tc_monitor *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->routes = calloc(ROUTES_MAX, sizeof(*m->routes))) == NULL ||
        (m->ring = calloc(RING, sizeof(*m->ring))) == NULL) {
        if (m != NULL)
            free(m->routes);
        free(m);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->app = app;
    m->cfg = *cfg;
    m->started_ms = tc_wall_ms();
    m->routes[0].name = "other";
    atomic_init(&m->nroutes, 1);
    snprintf(m->tags[0].name, sizeof(m->tags[0].name), "other");
    atomic_init(&m->ntags, 1);
    m->html = asset("cache.html");
    m->js = asset("cache.js");
    m->css = asset("cache.css");
    etag_of(m->js, m->etag_js);
    etag_of(m->css, m->etag_css);
    pthread_mutex_init(&m->labels_lock, NULL);
    pthread_mutex_init(&m->srv_lock, NULL);
    pthread_mutex_init(&m->ring_lock, NULL);
    tc_cond_init(&m->ring_cond);
    if (cfg->metrics_token != NULL && cfg->metrics_token[0] != '\0' &&
        (m->token = strdup(cfg->metrics_token)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    const char *dest = cfg->access_log != NULL ? cfg->access_log : "stderr";
    if (strcmp(dest, "off") != 0 && (m->log = tc_access_log_open(dest, 0, err, errlen)) == NULL)
        goto fail;
    if (tc_thread_start(&m->sampler, sampler_main, m) != 0) {
        snprintf(err, errlen, "monitor: cannot start the sampler thread");
        goto fail;
    }
    return m;
fail:
    tc_access_log_close(m->log);
    m->log = NULL;
    tc_cond_destroy(&m->ring_cond);
    pthread_mutex_destroy(&m->ring_lock);
    pthread_mutex_destroy(&m->srv_lock);
    pthread_mutex_destroy(&m->labels_lock);
    free(m->token);
    free(m->ring);
    free(m->routes);
    free(m);
    return NULL;
}

void tc_app__monitor_free(tc_monitor *m)
{
    if (m == NULL)
        return;
    tc_thread_stop(&m->sampler, &m->ring_lock, &m->ring_cond, &m->stop);
    tc_access_log_close(m->log);
    tc_cond_destroy(&m->ring_cond);
    pthread_mutex_destroy(&m->ring_lock);
    pthread_mutex_destroy(&m->srv_lock);
    pthread_mutex_destroy(&m->labels_lock);
    free(m->token);
    free(m->ring);
    free(m->routes);
    free(m);
}

void tc_app__monitor_attach(tc_monitor *m, tc_http_server *srv)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->srv_lock);
    m->srv = srv;
    pthread_mutex_unlock(&m->srv_lock);
}

void tc_app__monitor_reopen_log(tc_monitor *m)
{
    if (m != NULL)
        tc_access_log_reopen(m->log);
}

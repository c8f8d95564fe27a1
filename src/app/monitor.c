/*
 * The monitor's registry and front door (see monitor.h for the routes, the
 * access rules and the label bounds; monitor_internal.h for how its files
 * divide the work): the lock-free histograms and bounded label sets that
 * requests are counted in, the server's on_done hook that counts them, who
 * may read what, the routing of the monitor's paths, and its life cycle.
 *
 * Threads. The on_done hook runs on the event threads: it bumps relaxed
 * atomics and hands a line to the access log, nothing else. The access checks
 * run on the event thread; /metrics (a millisecond or so of formatting) and the
 * feed (which may need the database for a session) are built on a worker; the
 * sampler (monitor_feed.c) reads the counters once a second on its own thread.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/monitor_internal.h"

const uint64_t tc_app__mon_bounds_us[TC_MON_HIST_BOUNDS] = {
    50,    100,    250,    500,    1000,    2500,    5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

/* ---- lock-free histograms --------------------------------------------------------- */

int tc_app__mon_bucket(uint64_t us)
{
    int i = 0;
    while (i < TC_MON_HIST_BOUNDS && us > tc_app__mon_bounds_us[i])
        i++;
    return i;
}

static void hist_add(mon_hist *h, uint64_t us)
{
    atomic_fetch_add_explicit(&h->b[tc_app__mon_bucket(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
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

static mon_route *route_get(tc_monitor *m, const char *name)
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
    mon_route *r = &m->routes[0]; /* "other" */
    for (int i = 0; i < n; i++)
        if (strcmp(m->routes[i].name, name) == 0)
            r = &m->routes[i];
    if (r == &m->routes[0] && n < MON_ROUTES_MAX) {
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

/* The slot of tag's namespace (its text before ':'; len: that length), claimed
 * on first use; slot 0, "other", when the name is not one or the table is full. */
static mon_tagns *tagns_get(tc_monitor *m, const char *tag, size_t len)
{
    if (!tag_name_ok(tag, len))
        return &m->tags[0];
    int n = atomic_load_explicit(&m->ntags, memory_order_acquire);
    for (int i = 1; i < n; i++)
        if (strncmp(m->tags[i].name, tag, len) == 0 && m->tags[i].name[len] == '\0')
            return &m->tags[i];
    pthread_mutex_lock(&m->labels_lock);
    n = atomic_load_explicit(&m->ntags, memory_order_relaxed);
    mon_tagns *t = &m->tags[0];
    for (int i = 1; i < n; i++)
        if (strncmp(m->tags[i].name, tag, len) == 0 && m->tags[i].name[len] == '\0')
            t = &m->tags[i];
    if (t == &m->tags[0] && n < MON_TAGNS_MAX) {
        t = &m->tags[n];
        memcpy(t->name, tag, len);
        t->name[len] = '\0';
        atomic_store_explicit(&m->ntags, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&m->labels_lock);
    return t;
}

static size_t tagns_len(const char *tag)
{
    return strcspn(tag, ":");
}

void tc_app__monitor_tag_invalidated(tc_monitor *m, const char *tag)
{
    if (m == NULL || tag == NULL)
        return;
    atomic_fetch_add_explicit(&tagns_get(m, tag, tagns_len(tag))->n, 1, memory_order_relaxed);
}

void tc_app__monitor_lookup(tc_monitor *m, const char *const *tags, int ntags, const tc_result *r)
{
    if (m == NULL)
        return;
    int k = r->source == TC_SRC_LOADER ? MON_MISS : r->stale ? MON_STALE : MON_HIT;
    mon_tagns *seen[TC_TAGS_MAX];
    int nseen = 0;
    for (int i = 0; i < ntags && i < TC_TAGS_MAX; i++) {
        mon_tagns *t = tagns_get(m, tags[i], tagns_len(tags[i]));
        bool again = false; /* "blog" and "blog:x": one answer, counted once under blog */
        for (int j = 0; j < nseen && !again; j++)
            again = seen[j] == t;
        if (again)
            continue;
        seen[nseen++] = t;
        atomic_fetch_add_explicit(&t->lookups[k], 1, memory_order_relaxed);
    }
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
        mon_route *r = route_get(m, label);
        if (status >= 100 && status < 100 + MON_CODES)
            atomic_fetch_add_explicit(&r->codes[status - 100], 1, memory_order_relaxed);
        hist_add(&r->lat, us);
        atomic_fetch_add_explicit(&m->requests, 1, memory_order_relaxed);
        if (status >= 500)
            atomic_fetch_add_explicit(&m->errors, 1, memory_order_relaxed);
        int k = -1;
        switch (tc_cache_status_parse(tc_http_response_header(x, "Cache-Status"), word,
                                      sizeof(word), detail, sizeof(detail))) {
        case TC_CSTAT_HIT:
            k = MON_HIT;
            break;
        case TC_CSTAT_STALE:
            k = MON_STALE;
            break;
        case TC_CSTAT_MISS:
        case TC_CSTAT_FWD:
            k = MON_MISS;
            break;
        default:
            break;
        }
        if (k >= 0) { /* by outcome, and the route's hit ratio */
            hist_add(&m->out[k], us);
            atomic_fetch_add_explicit(&r->cache[k], 1, memory_order_relaxed);
        }
    }
    tc_access_log_request(m->log, x, status, us, word, detail);
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

bool tc_app__mon_access(tc_monitor *m, tc_http_exchange *x)
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

int tc_app__mon_session(tc_app *app, tc_http_exchange *x, bool may_block)
{
    tc_call probe = {.app = app, .x = x, .may_block = may_block};
    tc_session s;
    tc_call_status st = tc_app__auth_session(&probe, &s);
    if (st == CALL_NEED_BLOCK)
        return MON_BLOCK;
    if (st != CALL_OK)
        return MON_ERROR;
    if (s.user_id == 0)
        return MON_ANON;
    return s.role == ROLE_ADMIN ? MON_ADMIN : MON_USER;
}

void tc_app__mon_respond(tc_http_exchange *x, int status, const char *ctype, const char *body)
{
    tc_cachehdr_simple(x, status < 300 ? TC_ROUTE_NO_STORE : TC_ROUTE_ERROR);
    tc_http_add_header(x, "X-Content-Type-Options", "nosniff");
    tc_http_respond(x, status, ctype, body, strlen(body));
}

static bool method_ok(tc_http_exchange *x)
{
    tc_http_method_id m = tc_http_method_id_of(x);
    if (m == TC_HTTP_M_GET || m == TC_HTTP_M_HEAD)
        return true;
    tc_http_add_header(x, "Allow", "GET, HEAD");
    tc_app__mon_respond(x, 405, "text/plain; charset=utf-8", "GET or HEAD only\n");
    return false;
}

bool tc_app__mon_server_stats(tc_monitor *m, tc_http_stats *st)
{
    pthread_mutex_lock(&m->srv_lock);
    bool have = m->srv != NULL;
    if (have)
        tc_http_get_stats(m->srv, st);
    pthread_mutex_unlock(&m->srv_lock);
    return have;
}

/* ---- the routes ---------------------------------------------------------------------- */

bool tc_app__monitor_route(tc_app *app, tc_http_exchange *x, tc_http_action *act)
{
    tc_monitor *m = app->monitor;
    size_t len;
    const char *raw = tc_http_raw_path(x, &len);
    if (m == NULL || len < 8 || (raw[1] != 'm' && raw[1] != 'a'))
        return false;
    if (path_eq(raw, len, "/metrics")) {
        tc_http_set_route(x, "/metrics");
        *act = method_ok(x) ? tc_app__mon_metrics(app, x) : TC_HTTP_DONE;
    } else if (path_eq(raw, len, "/admin/cache")) {
        tc_http_set_route(x, "/admin/cache");
        *act = method_ok(x) ? tc_app__mon_page(app, x, false) : TC_HTTP_DONE;
    } else if (path_eq(raw, len, "/admin/cache.json")) {
        tc_http_set_route(x, "/admin/cache.json");
        *act = method_ok(x) ? tc_app__mon_feed(app, x) : TC_HTTP_DONE;
    } else if (path_eq(raw, len, "/admin/cache.js")) {
        tc_http_set_route(x, "/admin/cache.js");
        *act = method_ok(x) ? tc_app__mon_asset(x, &m->page, true) : TC_HTTP_DONE;
    } else if (path_eq(raw, len, "/admin/cache.css")) {
        tc_http_set_route(x, "/admin/cache.css");
        *act = method_ok(x) ? tc_app__mon_asset(x, &m->page, false) : TC_HTTP_DONE;
    } else {
        return false;
    }
    return true;
}

/* ---- life cycle -------------------------------------------------------------------- */

tc_monitor *tc_app__monitor_new(tc_app *app, const tc_monitor_config *cfg, char *err, size_t errlen)
{
    tc_monitor *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->routes = calloc(MON_ROUTES_MAX, sizeof(*m->routes))) == NULL) {
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
    tc_app__mon_page_init(&m->page);
    pthread_mutex_init(&m->labels_lock, NULL);
    pthread_mutex_init(&m->srv_lock, NULL);
    if (cfg->metrics_token != NULL && cfg->metrics_token[0] != '\0' &&
        (m->token = strdup(cfg->metrics_token)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    const char *dest = cfg->access_log != NULL ? cfg->access_log : "stderr";
    if (strcmp(dest, "off") != 0 && (m->log = tc_access_log_open(dest, 0, err, errlen)) == NULL)
        goto fail;
    if ((m->sampler = tc_app__mon_sampler_start(m, err, errlen)) == NULL)
        goto fail;
    return m;
fail:
    tc_app__monitor_free(m);
    return NULL;
}

void tc_app__monitor_free(tc_monitor *m)
{
    if (m == NULL)
        return;
    tc_app__mon_sampler_stop(m->sampler);
    tc_access_log_close(m->log);
    pthread_mutex_destroy(&m->srv_lock);
    pthread_mutex_destroy(&m->labels_lock);
    free(m->token);
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

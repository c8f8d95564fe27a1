/*
 * What the monitor's files share; monitor.h is what the rest of the app sees
 * of them. One job a file:
 *
 *   monitor.c        the registry (lock-free histograms, bounded route and tag
 *                    labels), the on_done hook, who may read what, the routes,
 *                    life cycle
 *   monitor_prom.c   GET /metrics: the Prometheus text
 *   monitor_feed.c   the sampler thread and its ring; GET /admin/cache.json,
 *                    the feed built from that ring
 *   monitor_page.c   GET /admin/cache and its assets (.js, .css)
 *
 * Nothing here is for files outside the monitor.
 */
#ifndef TC_APP_MONITOR_INTERNAL_H
#define TC_APP_MONITOR_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "app/internal.h"
#include "app/monitor.h"
#include "http/accesslog.h"

#define MON_ROUTES_MAX 48
#define MON_TAGNS_MAX 24
#define MON_CODES 500 /* status 100..599 */
#define MON_NB (TC_MON_HIST_BOUNDS + 1)

/* Request outcomes by the response's Cache-Status. */
enum { MON_HIT = 0, MON_STALE, MON_MISS, MON_OUTCOMES };

/* A latency histogram: tc_app__mon_bounds_us buckets and +Inf, relaxed atomics. */
typedef struct mon_hist {
    _Atomic uint64_t b[MON_NB];
    _Atomic uint64_t sum_us;
} mon_hist;

static inline void mon_hist_read(mon_hist *h, uint64_t out[MON_NB], uint64_t *sum_us)
{
    for (int i = 0; i < MON_NB; i++)
        out[i] = atomic_load_explicit(&h->b[i], memory_order_relaxed);
    if (sum_us)
        *sum_us = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
}

typedef struct mon_route {
    const char *name; /* written once, under labels_lock, before nroutes covers it */
    _Atomic uint64_t codes[MON_CODES];
    mon_hist lat;
    _Atomic uint64_t cache[MON_OUTCOMES]; /* responses by their Cache-Status */
} mon_route;

/* A tag family (the text of a tag before ':', "user" for user:42): its tag
 * invalidations, and the cached queries answered for entries carrying one of
 * its tags, by outcome (tc_app__monitor_lookup). */
typedef struct mon_tagns {
    char name[TC_NS_NAME_MAX];
    _Atomic uint64_t n;
    _Atomic uint64_t lookups[MON_OUTCOMES];
} mon_tagns;

/* The monitoring page's embedded files and their validators (monitor_page.c). */
typedef struct mon_page {
    const tc_app__asset *html, *js, *css;
    char etag_js[TC_ETAG_MAX], etag_css[TC_ETAG_MAX];
} mon_page;

typedef struct mon_sampler mon_sampler; /* monitor_feed.c */

struct tc_monitor {
    tc_app *app;
    tc_monitor_config cfg;
    char *token; /* copy of cfg.metrics_token, or NULL */
    int64_t started_ms;
    tc_access_log *log;

    /* routes and tag namespaces: slot 0 is "other"; claimed under labels_lock */
    pthread_mutex_t labels_lock;
    mon_route *routes; /* MON_ROUTES_MAX */
    _Atomic int nroutes;
    mon_tagns tags[MON_TAGNS_MAX];
    _Atomic int ntags;

    /* request totals for the feed */
    _Atomic uint64_t requests, errors, unanswered;
    mon_hist out[MON_OUTCOMES];

    /* the server, for its counters */
    pthread_mutex_t srv_lock;
    tc_http_server *srv;

    mon_sampler *sampler;
    mon_page page;
};

/* ---- monitor.c ------------------------------------------------------------------------ */

/* The monitoring credential: the bearer token when one is configured, else a
 * loopback peer that no proxy forwarded. */
bool tc_app__mon_access(tc_monitor *m, tc_http_exchange *x);

/* Who the request's session is. */
enum { MON_ADMIN, MON_USER, MON_ANON, MON_BLOCK, MON_ERROR };
int tc_app__mon_session(tc_app *app, tc_http_exchange *x, bool may_block);

/* A response of the monitor's own, never stored (no-store), nosniff. */
void tc_app__mon_respond(tc_http_exchange *x, int status, const char *ctype, const char *body);

/* The attached server's counters into *st: false when none is attached. */
bool tc_app__mon_server_stats(tc_monitor *m, tc_http_stats *st);

/* ---- monitor_prom.c ------------------------------------------------------------------- */

/* GET /metrics (the method checked): access, then the text on a worker. */
tc_http_action tc_app__mon_metrics(tc_app *app, tc_http_exchange *x);

/* ---- monitor_feed.c ------------------------------------------------------------------- */

/* Starts the thread that reads every counter into the ring once a second.
 * NULL on failure, message in err. */
mon_sampler *tc_app__mon_sampler_start(tc_monitor *m, char *err, size_t errlen);
void tc_app__mon_sampler_stop(mon_sampler *s); /* NULL is a no-op */

/* GET /admin/cache.json (the method checked): built on a worker. */
tc_http_action tc_app__mon_feed(tc_app *app, tc_http_exchange *x);

/* ---- monitor_page.c ------------------------------------------------------------------- */

void tc_app__mon_page_init(mon_page *p);
/* GET /admin/cache (the method checked): for administrators. */
tc_http_action tc_app__mon_page(tc_app *app, tc_http_exchange *x, bool may_block);
/* GET /admin/cache.js, /admin/cache.css (the method checked). */
tc_http_action tc_app__mon_asset(tc_http_exchange *x, const mon_page *p, bool js);

#endif

/*
 * The monitor: what an operator sees of a running server.
 *
 *   GET /metrics            Prometheus text format 0.0.4: cache, Redis, bus, HTTP
 *                           routes, database, access log (docs/monitoring.md lists
 *                           every family)
 *   GET /admin/cache        the live monitoring page (web/admin/, embedded at build)
 *   GET /admin/cache.json   its feed: the last minute, one sample a second
 *   GET /admin/cache.js|.css  the page's assets
 *   on_done hook            per-route request counts and latency, the access log
 *
 * It is for: counting (lock-free, on the request path), sampling once a second
 * (a thread of its own keeps a ring of 61 samples), and rendering those. It is
 * not for: the cache's own counting (the engine's tc_metrics_snapshot) or the
 * database's (tc_db_latency_get), which it reads.
 *
 * Access. /metrics and the feed are monitoring data, not user data:
 *   - with a metrics token configured, `Authorization: Bearer <token>` opens both;
 *   - without one, a loopback peer whose request carries no proxy header
 *     (Forwarded, X-Forwarded-For, X-Real-IP, Via) may read both;
 *   - the feed and the page also open to an admin's session (cookie or bearer).
 * The page itself needs an admin session: anonymous visitors are sent to
 * /login, other users get 403.
 *
 * Bounded label sets: routes are the labels the app sets with
 * tc_http_set_route (procedure names, "batch", "unknown") or a fixed set of
 * paths; anything else counts as "other". At most MON_ROUTES_MAX routes and
 * MON_TAGNS_MAX tag namespaces (families); past that, "other". Both are fixed by
 * the code (the procedure table's names and tags), so in practice every one
 * gets its own series; the cap keeps a future tag scheme from making one per
 * user. A series, once made, stays (Prometheus counters must not move between
 * labels): the page and `tiercache stats` rank them by traffic.
 *
 * The files: monitor.c (the registry, the hook, access, routes), monitor_prom.c
 * (/metrics), monitor_feed.c (the sampler and the feed), monitor_page.c (the page
 * and its assets); monitor_internal.h is what they share.
 */
#ifndef TC_APP_MONITOR_H
#define TC_APP_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/server.h"

typedef struct tc_app tc_app;
typedef struct tc_monitor tc_monitor;

typedef struct tc_monitor_config {
    const char *access_log;    /* "off", "stderr" (default) or a file path */
    const char *metrics_token; /* NULL or "": loopback only (see above) */
    size_t l1_max_bytes;       /* shown beside L1 use */
} tc_monitor_config;

/* Starts the sampler and the access log. NULL on failure, message in err. */
tc_monitor *tc_app__monitor_new(tc_app *app, const tc_monitor_config *cfg, char *err,
                                size_t errlen);
void tc_app__monitor_free(tc_monitor *m); /* NULL is a no-op */

/* The HTTP server whose counters /metrics shows (NULL: none; set NULL before
 * stopping it). */
void tc_app__monitor_attach(tc_monitor *m, tc_http_server *srv);

/* Reopens the access log file (SIGHUP, after a rotation); NULL is a no-op. */
void tc_app__monitor_reopen_log(tc_monitor *m);

/* The routes above: true when path is one of them, with the action in *act. */
bool tc_app__monitor_route(tc_app *app, tc_http_exchange *x, tc_http_action *act);

/* The server's on_done hook (ctx: the app). */
void tc_app__monitor_done(void *app, tc_http_exchange *x, int status, uint64_t duration_us);

/* A tag invalidation, counted by the tag's namespace (the text before ':'). */
void tc_app__monitor_tag_invalidated(tc_monitor *m, const char *tag);

/* A cached query answered (r: where from; hit, stale or miss), counted once
 * under each namespace among the entry's tags (the tag families). */
struct tc_result;
void tc_app__monitor_lookup(tc_monitor *m, const char *const *tags, int ntags,
                            const struct tc_result *r);

/* ---- pure helpers (unit-tested) ----------------------------------------------------- */

/* HTTP latency buckets (upper bounds, microseconds); the last bucket is +Inf. */
#define TC_MON_HIST_BOUNDS 17
extern const uint64_t tc_app__mon_bounds_us[TC_MON_HIST_BOUNDS];
int tc_app__mon_bucket(uint64_t us); /* 0 .. TC_MON_HIST_BOUNDS (the +Inf bucket) */
/* Estimated percentile (0..100) in microseconds of per-bucket counts, -1 when
 * empty. log2: the cache engine's layout (bucket i is [2^(i-1), 2^i) us), else
 * tc_app__mon_bounds_us. */
double tc_app__mon_percentile(const uint64_t *buckets, int nbuckets, int log2, double pct);
/* A Prometheus label value, escaped (\\, \", \n) into out (cap >= 4); cut if long. */
void tc_app__mon_label_escape(const char *v, char *out, size_t cap);
/* The route label of an unlabelled request from its raw path. */
const char *tc_app__mon_route_of_path(const char *raw, size_t len);
/* True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
bool tc_app__mon_is_loopback(const char *addr);

/* An embedded file of web/admin (the table is generated by cmake/embed.cmake). */
typedef struct tc_app__asset {
    const char *name;
    const unsigned char *data;
    size_t len;
} tc_app__asset;
extern const tc_app__asset tc_app__admin_assets[]; /* ends with {NULL, NULL, 0} */

#endif

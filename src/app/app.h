/*
 * The application: the SaaS product's procedures (users, subscriptions,
 * dashboard, blog), auth, and billing webhooks, served over tRPC through the
 * cache engine. main.c builds a tc_app from its configuration and hands its
 * handler to the HTTP server; this header is all of the app that is visible
 * outside src/app/ (the build shows main.c no other header of src/app/).
 */
#ifndef TC_APP_APP_H
#define TC_APP_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/server.h"

typedef struct tc_app_config {
    const char *db_url; /* "sqlite:tiercache.db" or "postgresql://..." */
    int db_pool;        /* connections; default 8 (one per HTTP worker) */
    int db_timeout_ms;  /* per statement; default 5000 */

    bool cache;             /* false: every read goes to the database (for comparison) */
    const char *redis_host; /* NULL: L1 only (unless sentinels or cluster_nodes) */
    const char *sentinels;       /* "host:port,..." of Redis Sentinel, or NULL */
    const char *sentinel_master; /* the master's name for the sentinels */
    const char *cluster_nodes;   /* "host:port,..." of a Redis Cluster's nodes, or NULL */
    int redis_port, redis_db;
    const char *redis_password;
    const char *prefix; /* Redis key prefix; default "tc:" */
    size_t l1_bytes;    /* default 64 MiB */
    size_t page_cache_bytes; /* the rendered pages' store (pages.c); default 16 MiB; 0: none */
    int lease_ms;           /* L1 trust lease (tc_config.lease_ms); default 250 */
    uint64_t l2_budget_bytes, l2_budget_keys; /* what this instance may hold in Redis;
                                                 default 256 MiB, 500,000 keys; 0: no limit */
    int invalidate_wait_ms; /* how long a write waits for Redis to take its
                               invalidations (a stall, a failover); default 5000 */
    bool l1_admission;      /* TinyLFU admission in front of L1 (tc_config.l1_admission);
                               default true */
    size_t l2_compress_min_bytes; /* values this large or larger stored compressed in
                                     Redis (tc_config); default 1024; 0: never */

    const char *webhook_secret;        /* NULL: /webhooks/billing answers 503 */
    int webhook_tolerance_s;           /* default 300 */
    int session_ttl_s;                 /* default 30 days */
    bool cookie_secure;                /* add Secure to the session cookie */
    int login_burst, login_per_minute; /* per client address and per email; default 10, 10 */
    bool pwhash_fast;                  /* argon2id at its minimum cost: for tests only */
    const char *access_log;            /* "off", "stderr" (default) or a file (monitor.h) */
    const char *metrics_token;         /* bearer token for /metrics; NULL: loopback only */
    uint32_t test_fresh_ms;            /* > 0: every cached query is fresh this long (tests) */
    uint32_t test_db_delay_ms;         /* > 0: every database use first waits this long (tests,
                                          benchmarks: a slow database) */

    const char *web_dir;    /* templates/ and static/; required */
    const char *purge_url;  /* shared cache to purge by tag ("http://127.0.0.1:6081/"), or NULL */
    const char *tag_header; /* response header carrying a public response's tags; default "xkey" */
    const char *tag_sep;    /* between tags; default " " */
    int cdn_max_age_s;      /* CDN-Cache-Control's max-age on public responses (seconds);
                               0: none; -1 (default): TC_CDN_MAX_AGE with purge_url, else 0 */
} tc_app_config;

void tc_app_config_init(tc_app_config *cfg);

/* A line of the operator's log (src/app/log.c: time, level, component,
 * rate-limited per call site): for main.c. level: TC_LOG_INFO, WARN, ERROR
 * (tiercache/cache.h). */
void tc_app_log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef struct tc_app tc_app;

/* The process is stopping: /readyz answers 503 from now on (load balancers
 * stop sending new work) while what is in flight finishes. */
void tc_app_draining(tc_app *app);

/* Opens the database pool (migrating it), the cache and the rest. NULL on
 * failure with a message in err. */
tc_app *tc_app_new(const tc_app_config *cfg, char *err, size_t errlen);
void tc_app_free(tc_app *app); /* NULL is a no-op; stop the HTTP server first */

/* Sets handler, body_limit, reject, on_done and ctx of an HTTP server configuration. */
void tc_app_http_config(tc_app *app, tc_http_config *hc);

/* The server whose counters /metrics shows: after tc_http_start, and NULL
 * again before tc_http_stop. */
void tc_app_attach_server(tc_app *app, tc_http_server *srv);

/* SIGHUP: reopen the access log file (after a rotation). Safe from any thread. */
void tc_app_reopen_logs(tc_app *app);

/* An argon2id hash of password, as the users table stores it, into out
 * (outlen >= 128); fast: the minimum cost, for tests only. 0, or -1. */
int tc_app_hash_password(const char *password, bool fast, char *out, size_t outlen);

/* The `tiercache stats` command (stats.c): argv[0] is "stats". */
int tc_stats_main(int argc, char **argv);

#endif

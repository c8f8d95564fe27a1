/*
 * What the app's files share: the app itself, the per-call context, the
 * procedure table's types, the request cycle's outcomes, and the error
 * convention of handlers. docs/architecture.md has the files, one job each:
 *
 *   app.c       life cycle, routing, the tRPC cycle and what every cycle shares,
 *               a write's invalidations
 *   procs.c     THE procedure table, the loaders of cached queries, mutations
 *   pages.c     the server-rendered pages (the same cycle, with templates)
 *   auth.c      sessions, login/logout, password hashing
 *   billing.c   the billing webhook
 *   static.c    fingerprinted static files
 *   monitor*.c  /metrics, the monitoring page and its feed (monitor.h)
 *   input.c, sig.c, ratelimit.c, billing_event.c, token.c, paths.c   pure helpers
 */
#ifndef TC_APP_INTERNAL_H
#define TC_APP_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "app/app.h"
#include "app/input.h"
#include "app/monitor.h"
#include "app/pagecache.h"
#include "app/ratelimit.h"
#include "base/time.h"
#include "db/db.h"
#include "http/cachehdr.h"
#include "http/purge.h"
#include "http/trpc.h"
#include "tiercache/cache.h"

/* Loader result codes (passed through the cache engine as negative errors). */
#define APP_ENOTFOUND (-1000) /* the row does not exist: NOT_FOUND */
#define APP_EDB (-1001)       /* the database failed (not unavailable: a bug's error): 500 */
#define APP_EDOWN TC_EUNAVAILABLE /* the database is unavailable (cannot connect, timed out): 503;
                                     the cache serves an entry's grace (tc_policy.grace_ms) */
#define APP_EINPUT (-1002)    /* the input is well-formed but names nothing real: BAD_REQUEST */

struct tc_app {
    tc_app_config cfg;
    tc_db_pool *db;
    tc_cache *cache; /* NULL when cfg.cache is false */
    tc_ratelimit *login_by_addr, *login_by_email;
    char dummy_hash[128];     /* verified against when an email is unknown: same cost */
    tc_monitor *monitor;      /* metrics, the monitoring page, the access log (monitor.c) */
    struct tc_assets *assets; /* web/static, fingerprinted (static.c) */
    struct tc_pages *pages;   /* web/templates (pages.c) */
    tc_purger *purger;        /* tag purges to a shared cache, or NULL */
    tc_tag_header tag_header; /* how public responses carry their tags */
    uint32_t cdn_max_age_s;   /* CDN-Cache-Control on public responses; 0: none */
    struct tc_app__neg *neg;  /* session tokens that match nothing, lately (auth.c) */
    /* health.c: the database's state as the calls see it; the stop */
    pthread_mutex_t health_lock;
    _Atomic bool db_down;
    uint64_t db_down_since, db_failures; /* under health_lock */
    _Atomic bool draining;
};

typedef enum { ROLE_NONE = 0, ROLE_USER, ROLE_ADMIN } tc_role;

typedef struct tc_session {
    int64_t user_id;
    tc_role role;
    int64_t expires_ms;
    char token_hash[65]; /* hex SHA-256 of the token */
} tc_session;

/* A handler's outcome. */
typedef enum {
    CALL_OK = 0,
    CALL_ERROR,      /* code + message are set */
    CALL_NEED_BLOCK, /* would block: run the request again on a worker */
    CALL_PARKED,     /* waits for another request's load: the worker is given back and
                        the request runs again once it is over (tc_http_park) */
} tc_call_status;

/* The cache tags a write invalidates, collected while it runs and invalidated
 * together once it is done (tc_app__inval_commit): one round trip, one wait for
 * the fleet. "#<key>" names the one entry under key. */
typedef struct tc_inval {
    char tags[TC_TAGS_MAX][TC_TAG_MAX + 1];
    int n;
} tc_inval;

/* One procedure call in progress. */
typedef struct tc_call {
    tc_app *app;
    tc_http_exchange *x;
    bool may_block;            /* false on the event thread */
    bool may_park;             /* on a worker: may answer CALL_PARKED */
    const tc_session *session; /* NULL: anonymous */
    const char *path;
    json_t *input;
    /* results */
    tc_trpc_code code;
    char message[256];
    const tc_value *value; /* a query's data (a reference), or NULL */
    json_t *data;          /* a mutation's data, or NULL */
    tc_result cache;       /* where a query's value came from (value in .value) */
    bool from_cache;
    char set_cookie[256]; /* a Set-Cookie to send, or "" */
    tc_inval inval;       /* a mutation's invalidations, made after it (tc_app__call_run) */
} tc_call;

typedef enum { AUTH_PUBLIC, AUTH_USER, AUTH_ADMIN } tc_auth_rule;

typedef struct tc_proc {
    const char *path;
    tc_trpc_kind kind;
    tc_auth_rule auth;
    const tc_in_field *fields;
    int nfields;
    /* queries: the cache key and tags, with {uid} (the signed-in user's id) and
     * {input.NAME} (an input field, "-" when absent) filled in; the times; the
     * loader, which rebuilds the value from the key alone. */
    const char *key;
    const char *tags[TC_TAGS_MAX];
    uint32_t fresh_ms, stale_ms;
    /* how much longer than fresh + stale this instance keeps a value in L1, to
     * serve it when the loader fails — through a database outage
     * (stale-if-error; tc_policy.grace_ms). Neither the Redis TTL nor
     * what clients are told changes. An invalidated value is never served. */
    uint32_t grace_ms;
    tc_loader_fn load;
    /* mutations: run on a worker; fill c->data or return CALL_ERROR */
    tc_call_status (*mutate)(tc_call *c, tc_db *db);
    /* the mutation changes what cached queries answer: it runs only when its
     * invalidations can reach the whole fleet (tc_app__write_ready) */
    bool invalidates;
    /* a sign-out: its answer tells the browser to forget this site's cache and
     * cookies (Clear-Site-Data) when it ended the session or there was none
     * (UNAUTHORIZED); not when it failed, so that it can be tried again */
    bool clears_site;
} tc_proc;

/* procs.c */
const tc_proc *tc_app__proc_find(const char *path);
tc_call_status tc_app__call_run(tc_call *c, const tc_proc *p);
tc_call_status tc_app__call_fail(tc_call *c, tc_trpc_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A database connection for a request (worker threads only): the pool's, after
 * --test-db-delay-ms if set (a slow database, for tests and benchmarks). 0 or a
 * tc_db error; release it with tc_db_pool_release. */
int tc_app__db_acquire(tc_app *app, tc_db **db);
/* A loader's body: runs fn(db, key, out) with a pooled connection; APP_EDB when
 * none is free within the database timeout. */
int tc_app__with_db(tc_app *app, int (*fn)(tc_db *, const char *, tc_buf *), const char *key,
                    tc_buf *out);
/* The shared-cache tags of a call of public query p, expanded ("blog:hello");
 * 0 for anything else. */
int tc_app__call_tags(const tc_call *c, const tc_proc *p, char tags[TC_TAGS_MAX][TC_TAG_MAX + 1]);
/* true when tag is one a public query's response carries (so a shared cache
 * holds responses with it, and invalidating it must purge them there). */
bool tc_app__tag_is_public(const char *tag);
/* The JSON of user id's profile, as user.me returns it; APP_ENOTFOUND, APP_EDB. */
int tc_app__user_json(tc_db *db, int64_t id, tc_buf *out);

/* auth.c */
/* Finds the session of the request's bearer token or session cookie.
 * Returns CALL_OK with *s filled (user_id 0: no or unknown token),
 * CALL_NEED_BLOCK, or CALL_ERROR. */
tc_call_status tc_app__auth_session(tc_call *c, tc_session *s);
tc_call_status tc_app__auth_login(tc_call *c, tc_db *db);
tc_call_status tc_app__auth_logout(tc_call *c, tc_db *db);
int tc_app__auth_init(tc_app *app);
void tc_app__auth_free(tc_app *app);

/* billing.c */
void tc_app__billing_webhook(void *app, tc_http_exchange *x); /* a blocking function */

/* static.c: the files of <web>/static, loaded at start-up under content-hashed
 * names (app.css -> /static/app.3f9a1c2b.css), with gzip variants. */
typedef struct tc_assets tc_assets;
tc_assets *tc_app__assets_load(const char *dir, char *err, size_t errlen);
/* The same table from files in memory (copied): for tests and fuzzing. */
typedef struct tc_asset_file {
    const char *name; /* "app.css" */
    const void *data;
    size_t len;
    int64_t mtime;
} tc_asset_file;
tc_assets *tc_app__assets_from(const tc_asset_file *files, int n, char *err, size_t errlen);
/* The name of the asset whose URL is exactly raw[0..len) ("app.css" for
 * "/static/app.3f9a1c2b.css"), or NULL: the lookup of every /static/ request. Pure. */
const char *tc_app__asset_find(const tc_assets *a, const char *raw, size_t len);
void tc_app__assets_free(tc_assets *a); /* NULL is a no-op */
/* "/static/app.3f9a1c2b.css" for "app.css", or NULL when there is no such file. */
const char *tc_app__asset_url(const tc_assets *a, const char *name);
/* A hash of every asset's hashed name: changes when any asset does. */
uint64_t tc_app__assets_hash(const tc_assets *a);
/* Serves GET/HEAD /static/<hashed name> (from memory, on the event thread). */
tc_http_action tc_app__static_serve(tc_app *app, tc_http_exchange *x);

/* pages.c: the server-rendered pages, from <web>/templates. Every public page
 * carries this shared-cache tag too: its bytes also depend on the templates and
 * assets, which change with a deploy and not through an invalidation, so each
 * instance purges it when it starts (app.c). */
#define TC_APP_PAGE_TAG "page"
typedef struct tc_pages tc_pages;
/* store_bytes: the page store's budget (pagecache.h); 0: none, every 200 is rendered. */
tc_pages *tc_app__pages_load(const char *dir, const tc_assets *assets, size_t store_bytes,
                             char *err, size_t errlen);
void tc_app__pages_free(tc_pages *p); /* NULL is a no-op */
/* Renders by page (indexed by tc_page_kind, paths.h: home, login, dashboard,
 * post; [0] unused) and the page store's counters, for the monitor. */
#define TC_APP_PAGE_KINDS 5
typedef struct tc_app__page_stats {
    uint64_t renders[TC_APP_PAGE_KINDS];
    tc_pagecache_stats store;
} tc_app__page_stats;
void tc_app__pages_stats(tc_pages *p, tc_app__page_stats *out);
const char *tc_app__page_name(int kind); /* "home", "login", "dashboard", "post"; NULL else */
tc_http_action tc_app__page_serve(tc_app *app, tc_http_exchange *x, bool may_block);

/* app.c: what every request cycle shares (tRPC, pages, the monitor) */
/* What a step of a request cycle says comes next (app.c's tRPC cycle and
 * pages.c's run the same steps: resolve, run, validators, body). */
typedef enum {
    STEP_NEXT,      /* go on to the next step */
    STEP_ANSWER,    /* no more steps: the answer is made (or ready to send) */
    STEP_HAND_OVER, /* the request runs again elsewhere: tc_app__offload */
} tc_step;
/* A procedure call of the request, ready to run (session NULL: anonymous). The
 * tRPC cycle and the pages make theirs alike, so they share cache entries. */
void tc_app__call_init(tc_call *c, tc_app *app, tc_http_exchange *x, bool may_block,
                       const tc_session *session, const char *path, json_t *input);
/* Gives back what the calls hold (their values and data): on every way out of a
 * cycle, handed over or answered. calls may be NULL. */
void tc_app__calls_release(tc_call *calls, size_t n);
/* The end of a cycle that cannot finish where it runs. st CALL_PARKED: nothing
 * is answered; the request runs again once the load it waits for is over
 * (tc_http_park). Otherwise fn runs it again on a worker (tc_http_offload);
 * should that fail (only a handler may offload: a bug) it is answered 500.
 * Returns what the handler returns. */
tc_http_action tc_app__offload(tc_http_exchange *x, tc_call_status st, tc_http_blocking_fn fn);

/* app.c: writes and their invalidations */
/* Adds a tag to inv (a full set collapses into "*", everything). */
void tc_app__inval_add(tc_inval *inv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Before a write that will invalidate: 0 when its invalidations can reach the
 * fleet (Redis answers, waiting up to cfg.invalidate_wait_ms), else an error:
 * refuse the write then (503), so that none is made that another instance
 * could keep serving the old value of. 0 without a cache or Redis. */
int tc_app__write_ready(tc_app *app);
/* Invalidates inv's tags everywhere, and purges the public ones from the
 * shared cache; returns once every instance has them (tc_invalidate_tags):
 * 0. TC_EREDIS when Redis did not take them within cfg.invalidate_wait_ms
 * (logged; the engine keeps and replays them): the write has happened, but
 * another instance may serve what it replaced until then, so the caller must
 * not answer it as done. */
int tc_app__inval_commit(tc_app *app, tc_inval *inv);
/* log.c: the operator's log (stderr), rate-limited per call site. level is
 * TC_LOG_INFO/WARN/ERROR; component names the part ("db", "billing", ...);
 * a line written while this thread runs a request ends in "(request <id>)"
 * (tc_http_current_request_id). */
void tc_app__log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* health.c: after a use of the database that succeeded; after one that failed
 * with err (a tc_db code), cause (tc_db_errmsg), what ("load user:42"): logs
 * it (unavailable: once per outage; else rate-limited) and returns err. */
void tc_app__db_ok(tc_app *app);
int tc_app__db_error(tc_app *app, int err, const char *cause, const char *what);
/* No pooled connection was free in time (the pool exhausted): logged. */
void tc_app__db_busy(tc_app *app, const char *what);
/* The answer to a failed database call: 503 + Retry-After when it is
 * unavailable, 500 otherwise; logged through tc_app__db_error. */
tc_call_status tc_app__db_fail(tc_call *c, int err, tc_db *db, const char *what);
/* /readyz: the database probed on a worker, Redis's state, the stop (health.c). */
tc_http_action tc_app__readyz(tc_app *app, tc_http_exchange *x);

/* A line another layer formatted (the cache engine's, the HTTP server's),
 * rate-limited per kind (its text without digits). */
void tc_app__log_line(int level, const char *component, const char *msg);

#endif

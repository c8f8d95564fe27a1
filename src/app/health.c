/*
 * Health: what the server knows about the parts it depends on, for the
 * operator's log and for /readyz.
 *
 * The database. Every use of it ends in tc_app__db_ok or tc_app__db_error.
 * An error that means it cannot be reached or did not answer in time
 * (tc_db_unavailable) marks it down: one line with the cause the first time,
 * then the failures are counted, not written; the next success marks it back:
 * one line, how long it was down and how many calls failed meanwhile. Any
 * other database error is a bug's: written (rate-limited), with its cause and
 * the request. Callers answer "down" 503 + Retry-After, a bug 500.
 *
 * /readyz (GET): 200 when this instance can serve — the database answers a
 * SELECT 1 now (on a worker, within READY_DB_MS) and it is not stopping;
 * else 503. Redis is a cache, not a dependency: an instance that cannot reach
 * it still serves reads (from the database) and says so in the body
 * ("redis: unreachable ..."), with 200 — unless the probe asks for
 * /readyz?strict, for a load balancer that would rather drop such an instance
 * (it refuses writes) and fails open when all are dropped. /healthz is
 * liveness only: 200 while the process answers.
 */
#include <stdio.h>
#include <string.h>

#include "app/internal.h"

#define READY_DB_MS 1000 /* the readiness probe's wait for a connection and its SELECT */

void tc_app__db_ok(tc_app *app)
{
    if (!atomic_load_explicit(&app->db_down, memory_order_relaxed))
        return; /* the common case: one load */
    pthread_mutex_lock(&app->health_lock);
    if (app->db_down) {
        app->db_down = false;
        tc_app__log(TC_LOG_INFO, "db",
                    "the database answers again after %.1f s (%llu calls failed meanwhile)",
                    (double)(tc_mono_ms() - app->db_down_since) / 1000.0,
                    (unsigned long long)app->db_failures);
    }
    pthread_mutex_unlock(&app->health_lock);
}

int tc_app__db_error(tc_app *app, int err, const char *cause, const char *what)
{
    if (!tc_db_unavailable(err)) {
        tc_app__log(TC_LOG_ERROR, "db", "%s failed: %s: %s", what, tc_db_strerror(err),
                    cause != NULL ? cause : "");
        return err;
    }
    pthread_mutex_lock(&app->health_lock);
    app->db_failures++;
    if (!app->db_down) {
        app->db_down = true;
        app->db_down_since = tc_mono_ms();
        app->db_failures = 1;
        tc_app__log(TC_LOG_ERROR, "db",
                    "the database is unavailable (%s: %s), seen by %s: reads are served from the "
                    "cache where they can be, the rest and writes get 503",
                    tc_db_strerror(err), cause != NULL ? cause : "", what);
    }
    pthread_mutex_unlock(&app->health_lock);
    return err;
}

void tc_app__db_busy(tc_app *app, const char *what)
{
    tc_app__log(TC_LOG_WARN, "db",
                "pool exhausted: no connection of %d free within %d ms for %s (slow queries, or "
                "too few connections for the load: --db-pool)",
                app->cfg.db_pool, app->cfg.db_timeout_ms, what);
}

/* ---- /readyz ------------------------------------------------------------------------ */

static void ready_probe(void *ctx, tc_http_exchange *x)
{
    tc_app *app = ctx;
    char body[512];
    int n = 0, status;
    tc_db *db = NULL;
    int rc = tc_db_pool_acquire(app->db, READY_DB_MS, &db);
    int64_t one = 0;
    if (rc == 0) {
        rc = tc_db_query_int64(db, "SELECT 1", NULL, 0, &one);
        if (rc != 0)
            tc_app__db_error(app, rc, tc_db_errmsg(db), "the readiness probe");
        else
            tc_app__db_ok(app);
        tc_db_pool_release(app->db, db);
    }
    if (rc == TC_DB_ETIMEOUT && db == NULL)
        n += snprintf(body + n, sizeof(body) - (size_t)n,
                      "database: busy (no connection free within %d ms)\n", READY_DB_MS);
    else if (rc != 0)
        n += snprintf(body + n, sizeof(body) - (size_t)n, "database: unavailable (%s)\n",
                      tc_db_strerror(rc));
    else
        n += snprintf(body + n, sizeof(body) - (size_t)n, "database: ok\n");
    status = rc == 0 ? 200 : 503; /* the database decides first */

    bool redis_ok = true;
    if (app->cache != NULL && app->cfg.redis_host == NULL && app->cfg.sentinels == NULL &&
        app->cfg.cluster_nodes == NULL) {
        n += snprintf(body + n, sizeof(body) - (size_t)n, "redis: none (L1 only)\n");
    } else if (app->cache != NULL) {
        tc_metrics m;
        tc_metrics_snapshot(app->cache, &m);
        redis_ok = !m.breaker_open && m.bus_connected && m.l1_trusted;
        n += snprintf(body + n, sizeof(body) - (size_t)n, "redis: %s\n",
                      redis_ok ? "ok"
                      : m.breaker_open
                          ? "unreachable (reads from the database; writes refused until it answers)"
                      : !m.bus_connected ? "invalidation bus down (L1 bypassed)"
                                         : "slow (L1 bypassed until the bus catches up)");
    }
    size_t qlen;
    const char *q = tc_http_raw_query(x, &qlen);
    if (!redis_ok && q != NULL && qlen >= 6 && memcmp(q, "strict", 6) == 0)
        status = 503;
    if (atomic_load(&app->draining)) {
        n += snprintf(body + n, sizeof(body) - (size_t)n, "stopping\n");
        status = 503;
    }
    tc_cachehdr_simple(x, status == 200 ? TC_ROUTE_NO_STORE : TC_ROUTE_ERROR);
    if (status == 503)
        tc_http_add_header(x, "Retry-After", "1");
    tc_http_respond(x, status, "text/plain; charset=utf-8", body, (size_t)n);
}

tc_http_action tc_app__readyz(tc_app *app, tc_http_exchange *x)
{
    (void)app;
    return tc_app__offload(x, CALL_NEED_BLOCK, ready_probe);
}

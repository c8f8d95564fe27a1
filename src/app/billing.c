/*
 * POST /webhooks/billing: signed subscription events from the billing
 * provider.
 *
 *   Billing-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *   {"id":"evt_1","type":"subscription.updated","created":<unix s>,
 *    "data":{"userId":42,"planId":"pro","status":"active",
 *            "currentPeriodEnd":<ms>,"seats":5}}
 *
 * Types: subscription.created / .updated (userId, planId, status,
 * currentPeriodEnd, seats optional), subscription.canceled (userId),
 * invoice.paid (userId, currentPeriodEnd). Other types are acknowledged and
 * recorded but change nothing, so the provider does not retry them forever.
 * The body is parsed and checked by billing_event.c (pure, fuzzed); this file
 * verifies the signature, then records and applies the event.
 *
 * Exactly once: the event id is inserted into billing_events in the same
 * transaction that applies it; a replay hits the primary key and is
 * acknowledged as a duplicate without applying anything. Out of order: an
 * event older (by "created") than what the subscription already reflects
 * does not overwrite it. After commit, the user's subscription and dashboard
 * entries are invalidated.
 *
 * Answers: 200 applied or duplicate; 400 malformed (header, JSON, fields);
 * 401 signature mismatch or timestamp outside the tolerance; 415 not JSON;
 * 422 a user or plan that does not exist (not recorded: a retry may succeed);
 * 503 no secret configured or database unavailable. Every answer is
 * Cache-Control: no-store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/billing_event.h"
#include "app/internal.h"
#include "app/sig.h"

#define MAX_EVENT_AGE_MS (7 * 24 * 3600 * 1000LL) /* older events: 400 */

static void answer(tc_http_exchange *x, int status, const char *fmt, const char *arg)
{
    char body[512];
    if (status == 200)
        snprintf(body, sizeof(body), fmt, arg);
    else {
        char msg[300];
        snprintf(msg, sizeof(msg), fmt, arg);
        json_t *j = json_pack("{s:s}", "error", msg);
        char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
        snprintf(body, sizeof(body), "%s", s != NULL ? s : "{\"error\":\"internal\"}");
        free(s);
        json_decref(j);
    }
    tc_cachehdr_simple(x, status == 200 ? TC_ROUTE_NO_STORE : TC_ROUTE_ERROR);
    tc_http_respond(x, status, "application/json", body, strlen(body));
}

static bool is_json(const char *ct)
{
    return ct != NULL && strncasecmp(ct, "application/json", 16) == 0 &&
           (ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ');
}

/* Applies ev inside the open transaction; returns 0, APP_ENOTFOUND (unknown
 * user or plan: 422, with what in *what) or a TC_DB code. */
static int apply(tc_db *db, const tc_bill_event *ev, const char **what)
{
    int64_t one = 0, at = ev->created_ms;
    tc_db_param u[] = {tc_db_int64(ev->user_id)};
    int err = tc_db_query_int64(db, "SELECT id FROM users WHERE id = ?", u, 1, &one);
    if (err == TC_DB_ENOTFOUND) {
        *what = "unknown user";
        return APP_ENOTFOUND;
    }
    if (err != 0)
        return err;
    switch (ev->kind) {
    case TC_BILL_UPSERT: {
        tc_db_param p[] = {tc_db_int64(ev->user_id),
                           tc_db_text(ev->plan_id),
                           tc_db_text(ev->status),
                           tc_db_int64(ev->period_end_ms),
                           ev->seats > 0 ? tc_db_int64(ev->seats) : tc_db_null(),
                           tc_db_text(ev->plan_id),
                           tc_db_int64(at)};
        err =
            tc_db_exec(db,
                       "INSERT INTO subscriptions (user_id, plan_id, status, current_period_end,"
                       " seats, updated_at) VALUES (?, ?, ?, ?, COALESCE(CAST(? AS BIGINT), "
                       "(SELECT seats FROM plans WHERE id = ?)), ?) "
                       "ON CONFLICT (user_id) DO UPDATE SET plan_id = excluded.plan_id, "
                       "status = excluded.status, current_period_end = excluded.current_period_end,"
                       " seats = excluded.seats, updated_at = excluded.updated_at "
                       "WHERE subscriptions.updated_at <= excluded.updated_at",
                       p, 7, NULL);
        if (err == TC_DB_EINTEGRITY) {
            *what = "unknown plan";
            return APP_ENOTFOUND;
        }
        return err;
    }
    case TC_BILL_CANCEL: {
        tc_db_param p[] = {tc_db_int64(at), tc_db_int64(ev->user_id), tc_db_int64(at)};
        return tc_db_exec(db,
                          "UPDATE subscriptions SET status = 'canceled', updated_at = ? "
                          "WHERE user_id = ? AND updated_at <= ?",
                          p, 3, NULL);
    }
    case TC_BILL_PAID: {
        tc_db_param p[] = {tc_db_int64(ev->period_end_ms), tc_db_int64(at),
                           tc_db_int64(ev->user_id), tc_db_int64(at)};
        return tc_db_exec(db,
                          "UPDATE subscriptions SET status = 'active', current_period_end = ?, "
                          "updated_at = ? WHERE user_id = ? AND updated_at <= ?",
                          p, 4, NULL);
    }
    case TC_BILL_OTHER:
        break;
    }
    return 0; /* recorded, nothing to apply */
}

/* Verifies and parses the request: 0 with *ev filled, or -1 after answering. */
static int read_event(tc_app *app, tc_http_exchange *x, tc_bill_event *ev)
{
    size_t len;
    const char *body = tc_http_body(x, &len);
    if (app->cfg.webhook_secret == NULL) {
        answer(x, 503, "%s", "billing webhooks are not configured");
        return -1;
    }
    if (!is_json(tc_http_header(x, "Content-Type"))) {
        answer(x, 415, "%s", "Content-Type must be application/json");
        return -1;
    }
    int sig =
        tc_sig_verify(tc_http_header(x, "Billing-Signature"), body, len, app->cfg.webhook_secret,
                      tc_wall_ms() / 1000, app->cfg.webhook_tolerance_s);
    if (sig != TC_SIG_OK) {
        answer(x, sig == TC_SIG_EMALFORMED ? 400 : 401, "%s", tc_sig_strerror(sig));
        return -1;
    }
    char msg[300];
    if (tc_bill_event_parse(ev, body, len, msg, sizeof(msg)) != 0) {
        answer(x, 400, "%s", msg);
        return -1;
    }
    /* "created" orders the events of a subscription (an older one never overwrites a
     * newer state): one dated in the future would freeze it against every real event
     * to come. The signature's time is now (within the tolerance), so: not later than
     * that, and not older than a provider's retries reach (a week). */
    int64_t now = tc_wall_ms(), skew = (int64_t)app->cfg.webhook_tolerance_s * 1000;
    const char *when = ev->created_ms > now + skew ? "created is later than the signature's time"
                       : ev->created_ms < now - MAX_EVENT_AGE_MS
                           ? "created is more than a week before the signature's time"
                           : NULL;
    if (when != NULL) {
        tc_bill_event_free(ev);
        answer(x, 400, "%s", when);
        return -1;
    }
    return 0;
}

void tc_app__billing_webhook(void *ctx, tc_http_exchange *x)
{
    tc_app *app = ctx;
    tc_bill_event ev;
    if (read_event(app, x, &ev) != 0)
        return;
    const char *what = NULL;
    int64_t uid = ev.user_id; /* 0: a type that changes nothing */
    tc_db *db = NULL;
    if (uid != 0 && tc_app__write_ready(app) != 0) { /* as tc_app__call_run's */
        answer(x, 503, "%s", "cache unreachable, nothing was changed; retry later");
    } else if (tc_app__db_acquire(app, &db) != 0) {
        tc_app__db_busy(app, "a billing event");
        answer(x, 503, "%s", "database busy, retry later");
    } else {
        size_t len;
        const char *body = tc_http_body(x, &len);
        tc_db_param rec[] = {tc_db_text(ev.id), tc_db_text(ev.type), tc_db_int64(tc_wall_ms()),
                             tc_db_textn(body, len)};
        int err = tc_db_begin(db);
        if (err == 0)
            err = tc_db_exec(db,
                             "INSERT INTO billing_events (event_id, type, received_at, payload) "
                             "VALUES (?, ?, ?, ?)",
                             rec, 4, NULL);
        if (err == 0 && uid != 0)
            err = apply(db, &ev, &what);
        if (err == 0)
            err = tc_db_commit(db);
        else
            tc_db_rollback(db);
        if (err == 0 || err == TC_DB_ECONSTRAINT || err == APP_ENOTFOUND)
            tc_app__db_ok(app);
        else
            tc_app__db_error(app, err, tc_db_errmsg(db), "a billing event");
        tc_db_pool_release(app->db, db);
        /* A duplicate too: it may be the provider's retry of an event whose
         * invalidation did not go through the first time (503 below). */
        bool unconfirmed = false;
        if ((err == 0 || err == TC_DB_ECONSTRAINT) && uid != 0) {
            tc_inval inv = {.n = 0};
            tc_app__inval_add(&inv, "sub:%lld", (long long)uid);
            tc_app__inval_add(&inv, "dash:%lld", (long long)uid);
            unconfirmed = tc_app__inval_commit(app, &inv) != 0;
        }
        if (unconfirmed) /* the provider retries: as a duplicate, it completes the invalidation */
            answer(x, 503, "%s", "saved, but not yet visible on every server; retry later");
        else if (err == 0)
            answer(x, 200, "%s", "{\"received\":true}");
        else if (err == TC_DB_ECONSTRAINT)
            answer(x, 200, "%s", "{\"received\":true,\"duplicate\":true}");
        else if (err == APP_ENOTFOUND)
            answer(x, 422, "%s", what);
        else /* logged above (tc_app__db_error); the provider retries */
            answer(x, tc_db_unavailable(err) ? 503 : 500, "%s", "database error, retry later");
    }
    tc_bill_event_free(&ev);
}

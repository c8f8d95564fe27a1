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

#include "app/internal.h"
#include "app/sig.h"

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

static bool valid_status(const char *s)
{
    return s != NULL && (strcmp(s, "active") == 0 || strcmp(s, "trialing") == 0 ||
                         strcmp(s, "past_due") == 0 || strcmp(s, "canceled") == 0);
}

/* Applies ev inside the open transaction; returns 0, APP_ENOTFOUND (unknown
 * user or plan: 422, with what in *what) or a TC_DB code. */
static int apply(tc_db *db, const char *type, const json_t *data, int64_t uid, int64_t at,
                 const char **what)
{
    int64_t one = 0;
    tc_db_param u[] = {tc_db_int64(uid)};
    int err = tc_db_query_int64(db, "SELECT id FROM users WHERE id = ?", u, 1, &one);
    if (err == TC_DB_ENOTFOUND) {
        *what = "unknown user";
        return APP_ENOTFOUND;
    }
    if (err != 0)
        return err;
    const json_t *end = json_object_get(data, "currentPeriodEnd"),
                 *seats = json_object_get(data, "seats");
    if (strcmp(type, "subscription.created") == 0 || strcmp(type, "subscription.updated") == 0) {
        const char *plan = json_string_value(json_object_get(data, "planId"));
        tc_db_param p[] = {tc_db_int64(uid),
                           tc_db_text(plan),
                           tc_db_text(json_string_value(json_object_get(data, "status"))),
                           tc_db_int64(json_integer_value(end)),
                           json_is_integer(seats) ? tc_db_int64(json_integer_value(seats))
                                                  : tc_db_null(),
                           tc_db_text(plan),
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
    if (strcmp(type, "subscription.canceled") == 0) {
        tc_db_param p[] = {tc_db_int64(at), tc_db_int64(uid), tc_db_int64(at)};
        return tc_db_exec(db,
                          "UPDATE subscriptions SET status = 'canceled', updated_at = ? "
                          "WHERE user_id = ? AND updated_at <= ?",
                          p, 3, NULL);
    }
    if (strcmp(type, "invoice.paid") == 0) {
        tc_db_param p[] = {tc_db_int64(json_integer_value(end)), tc_db_int64(at), tc_db_int64(uid),
                           tc_db_int64(at)};
        return tc_db_exec(db,
                          "UPDATE subscriptions SET status = 'active', current_period_end = ?, "
                          "updated_at = ? WHERE user_id = ? AND updated_at <= ?",
                          p, 4, NULL);
    }
    return 0; /* recorded, nothing to apply */
}

/* What is wrong with the event's fields, or NULL. */
static const char *check_event(const json_t *ev, const char **type, const json_t **data,
                               int64_t *uid)
{
    *type = json_string_value(json_object_get(ev, "type"));
    *data = json_object_get(ev, "data");
    const char *id = json_string_value(json_object_get(ev, "id"));
    if (!json_is_object(ev))
        return "the body must be a JSON object";
    if (id == NULL || id[0] == '\0' || strlen(id) > 255)
        return "id: a string of 1 to 255 characters is required";
    if (*type == NULL || (*type)[0] == '\0' || strlen(*type) > 100)
        return "type: a string is required";
    if (!json_is_integer(json_object_get(ev, "created")) ||
        json_integer_value(json_object_get(ev, "created")) <= 0)
        return "created: a positive integer (unix seconds) is required";
    bool sub = strncmp(*type, "subscription.", 13) == 0, paid = strcmp(*type, "invoice.paid") == 0;
    bool known = strcmp(*type, "subscription.created") == 0 ||
                 strcmp(*type, "subscription.updated") == 0 ||
                 strcmp(*type, "subscription.canceled") == 0 || paid;
    if (!known)
        return NULL; /* acknowledged, ignored */
    if (!json_is_object(*data))
        return "data: an object is required";
    const json_t *u = json_object_get(*data, "userId");
    if (!json_is_integer(u) || json_integer_value(u) <= 0)
        return "data.userId: a positive integer is required";
    *uid = json_integer_value(u);
    const json_t *end = json_object_get(*data, "currentPeriodEnd"),
                 *seats = json_object_get(*data, "seats");
    bool upsert = sub && strcmp(*type, "subscription.canceled") != 0;
    if ((upsert || paid) && (!json_is_integer(end) || json_integer_value(end) <= 0))
        return "data.currentPeriodEnd: a positive integer (unix ms) is required";
    if (upsert) {
        const char *plan = json_string_value(json_object_get(*data, "planId"));
        if (plan == NULL || plan[0] == '\0' || strlen(plan) > 64)
            return "data.planId: a string is required";
        if (!valid_status(json_string_value(json_object_get(*data, "status"))))
            return "data.status: one of active, trialing, past_due, canceled";
        if (seats != NULL && (!json_is_integer(seats) || json_integer_value(seats) < 1 ||
                              json_integer_value(seats) > 100000))
            return "data.seats: an integer from 1 to 100000";
    }
    return NULL;
}

/* Verifies and parses the request; returns the event, or NULL after answering. */
static json_t *read_event(tc_app *app, tc_http_exchange *x)
{
    size_t len;
    const char *body = tc_http_body(x, &len);
    if (app->cfg.webhook_secret == NULL) {
        answer(x, 503, "%s", "billing webhooks are not configured");
        return NULL;
    }
    if (!is_json(tc_http_header(x, "Content-Type"))) {
        answer(x, 415, "%s", "Content-Type must be application/json");
        return NULL;
    }
    int sig =
        tc_sig_verify(tc_http_header(x, "Billing-Signature"), body, len, app->cfg.webhook_secret,
                      tc_wall_ms() / 1000, app->cfg.webhook_tolerance_s);
    if (sig != TC_SIG_OK) {
        answer(x, sig == TC_SIG_EMALFORMED ? 400 : 401, "%s", tc_sig_strerror(sig));
        return NULL;
    }
    json_error_t jerr;
    json_t *ev = json_loadb(body, len, 0, &jerr);
    if (ev == NULL)
        answer(x, 400, "invalid JSON: %s", jerr.text);
    return ev;
}

void tc_app__billing_webhook(void *ctx, tc_http_exchange *x)
{
    tc_app *app = ctx;
    json_t *ev = read_event(app, x);
    if (ev == NULL)
        return;
    const char *type, *what = NULL;
    const json_t *data;
    int64_t uid = 0;
    const char *bad = check_event(ev, &type, &data, &uid);
    tc_db *db = NULL;
    if (bad != NULL) {
        answer(x, 400, "%s", bad);
    } else if (uid != 0 && tc_app__write_ready(app) != 0) { /* as tc_app__call_run's */
        answer(x, 503, "%s", "cache unreachable, nothing was changed; retry later");
    } else if (tc_app__db_acquire(app, &db) != 0) {
        tc_app__db_busy(app, "a billing event", NULL);
        answer(x, 503, "%s", "database busy, retry later");
    } else {
        size_t len;
        const char *body = tc_http_body(x, &len);
        const char *id = json_string_value(json_object_get(ev, "id"));
        int64_t at = json_integer_value(json_object_get(ev, "created")) * 1000;
        tc_db_param rec[] = {tc_db_text(id), tc_db_text(type), tc_db_int64(tc_wall_ms()),
                             tc_db_textn(body, len)};
        int err = tc_db_begin(db);
        if (err == 0)
            err = tc_db_exec(db,
                             "INSERT INTO billing_events (event_id, type, received_at, payload) "
                             "VALUES (?, ?, ?, ?)",
                             rec, 4, NULL);
        if (err == 0 && uid != 0)
            err = apply(db, type, data, uid, at, &what);
        if (err == 0)
            err = tc_db_commit(db);
        else
            tc_db_rollback(db);
        if (err == 0 || err == TC_DB_ECONSTRAINT || err == APP_ENOTFOUND)
            tc_app__db_ok(app);
        else
            tc_app__db_error(app, err, tc_db_errmsg(db), "a billing event", NULL);
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
    json_decref(ev);
}

/*
 * THE procedure table — every tRPC procedure with its kind, auth rule, input,
 * cache key, tags and times — and the code behind each row: the loaders of
 * the cached queries (each rebuilds its value from the cache key alone, since
 * a background refresh runs it with no request at hand) and the mutations
 * (each invalidates exactly what it changed).
 *
 * The C counterpart of the seed's cachedProcedure: a query row is all it
 * takes to cache a new read path; tc_app__call_run applies auth, input checks and
 * the cache to every row the same way.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/internal.h"

#define MIN_MS (60u * 1000u)
#define DAY_MS (24ll * 3600 * 1000)

/* ---- helpers -------------------------------------------------------------- */

tc_call_status tc_app__call_fail(tc_call *c, tc_trpc_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof(c->message), fmt, ap);
    va_end(ap);
    c->code = code;
    return CALL_ERROR;
}

/* Serializes j (stolen) onto out. */
static int put_json(tc_buf *out, json_t *j)
{
    if (j == NULL)
        return TC_ENOMEM;
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (s == NULL)
        return TC_ENOMEM;
    int err = tc_buf_append(out, s, strlen(s));
    free(s);
    return err;
}

static json_t *text_or_null(const tc_db_rows *r, int col)
{
    const char *s = tc_db_col_text(r, col, NULL);
    return s != NULL ? json_string(s) : json_null();
}

/* The id after the last ':' of a key ("user:42" -> 42), or 0. */
static int64_t key_id(const char *key)
{
    const char *p = strrchr(key, ':');
    char *end;
    long long v = p != NULL ? strtoll(p + 1, &end, 10) : 0;
    return p != NULL && *end == '\0' && v > 0 ? v : 0;
}

int tc_app__db_acquire(tc_app *app, tc_db **db)
{
    int rc = tc_db_pool_acquire(app->db, app->cfg.db_timeout_ms, db);
    if (rc == 0 && app->cfg.test_db_delay_ms > 0) {
        tc_sleep_ms(app->cfg.test_db_delay_ms);
    }
    return rc;
}

int tc_app__with_db(tc_app *app, int (*fn)(tc_db *, const char *, tc_buf *), const char *key,
                    tc_buf *out)
{
    tc_db *db;
    char what[TC_KEY_MAX + 8];
    if (tc_app__db_acquire(app, &db) != 0) {
        snprintf(what, sizeof(what), "load %s", strncmp(key, "session:", 8) == 0 ? "a session" : key);
        tc_app__db_busy(app, what);
        return APP_EDOWN;
    }
    int err = fn(db, key, out);
    if (err == APP_EDB) { /* what kind of failure, and why, while db still holds it */
        int code = tc_db_errcode(db);
        /* a session's key names its token's hash: not for a log */
        snprintf(what, sizeof(what), "load %s", strncmp(key, "session:", 8) == 0 ? "a session" : key);
        tc_app__db_error(app, code != 0 ? code : TC_DB_ERROR, tc_db_errmsg(db), what);
        if (tc_db_unavailable(code))
            err = APP_EDOWN;
    } else {
        tc_app__db_ok(app);
    }
    tc_db_pool_release(app->db, db);
    return err;
}

tc_call_status tc_app__db_fail(tc_call *c, int err, tc_db *db, const char *what)
{
    tc_app__db_error(c->app, err, db != NULL ? tc_db_errmsg(db) : NULL, what);
    if (tc_db_unavailable(err)) {
        tc_http_add_header(c->x, "Retry-After", "1");
        return tc_app__call_fail(c, TC_TRPC_SERVICE_UNAVAILABLE,
                                 "the database is unavailable, try again");
    }
    return tc_app__call_fail(c, TC_TRPC_INTERNAL_SERVER_ERROR, "database error");
}

/* ---- user.me ------------------------------------------------------------------ */

int tc_app__user_json(tc_db *db, int64_t id, tc_buf *out)
{
    tc_db_param p[] = {tc_db_int64(id)};
    tc_db_rows *r;
    if (tc_db_query(db,
                    "SELECT id, email, name, bio, avatar_url, role, created_at, updated_at "
                    "FROM users WHERE id = ?",
                    p, 1, &r) != 0)
        return APP_EDB;
    int rc = tc_db_rows_next(r), err = APP_ENOTFOUND;
    if (rc == 1)
        err = put_json(
            out,
            json_pack("{s:I,s:s,s:s,s:o,s:o,s:s,s:I,s:I}", "id", (json_int_t)tc_db_col_int64(r, 0),
                      "email", tc_db_col_text(r, 1, NULL), "name", tc_db_col_text(r, 2, NULL),
                      "bio", text_or_null(r, 3), "avatarUrl", text_or_null(r, 4), "role",
                      tc_db_col_text(r, 5, NULL), "createdAt", (json_int_t)tc_db_col_int64(r, 6),
                      "updatedAt", (json_int_t)tc_db_col_int64(r, 7)));
    else if (rc < 0)
        err = APP_EDB;
    tc_db_rows_free(r);
    return err;
}

static int user_me_db(tc_db *db, const char *key, tc_buf *out)
{
    return tc_app__user_json(db, key_id(key), out);
}

static int load_user(void *app, const char *key, tc_buf *out)
{
    return tc_app__with_db(app, user_me_db, key, out);
}

/* ---- subscription.get --------------------------------------------------------- */

/* The user's plan and subscription; a user without one is on the free plan. */
static json_t *subscription_json(tc_db *db, int64_t uid, int *err)
{
    tc_db_param p[] = {tc_db_int64(uid)};
    tc_db_rows *r;
    *err = 0;
    if (tc_db_query(db,
                    "SELECT p.id, p.name, p.seats, p.monthly_events_limit, p.projects_limit, "
                    "p.price_cents, s.status, s.current_period_end, s.seats "
                    "FROM plans p LEFT JOIN subscriptions s ON s.plan_id = p.id AND s.user_id = ? "
                    "WHERE p.id = COALESCE((SELECT plan_id FROM subscriptions WHERE user_id = ?), "
                    "'free')",
                    (tc_db_param[]){p[0], p[0]}, 2, &r) != 0) {
        *err = APP_EDB;
        return NULL;
    }
    json_t *j = NULL;
    int rc = tc_db_rows_next(r);
    if (rc == 1) {
        bool has = !tc_db_col_is_null(r, 6);
        j = json_pack(
            "{s:{s:s,s:s,s:I,s:I,s:{s:I,s:I}},s:s,s:o,s:I}", "plan", "id",
            tc_db_col_text(r, 0, NULL), "name", tc_db_col_text(r, 1, NULL), "seats",
            (json_int_t)tc_db_col_int64(r, 2), "priceCents", (json_int_t)tc_db_col_int64(r, 5),
            "limits", "monthlyEvents", (json_int_t)tc_db_col_int64(r, 3), "projects",
            (json_int_t)tc_db_col_int64(r, 4), "status", has ? tc_db_col_text(r, 6, NULL) : "none",
            "currentPeriodEnd", has ? json_integer(tc_db_col_int64(r, 7)) : json_null(), "seats",
            (json_int_t)(has ? tc_db_col_int64(r, 8) : tc_db_col_int64(r, 2)));
        if (j == NULL)
            *err = TC_ENOMEM;
    } else {
        *err = rc < 0 ? APP_EDB : APP_ENOTFOUND;
    }
    tc_db_rows_free(r);
    return j;
}

static int subscription_db(tc_db *db, const char *key, tc_buf *out)
{
    int err;
    json_t *j = subscription_json(db, key_id(key), &err);
    return j != NULL ? put_json(out, j) : err;
}

static int load_subscription(void *app, const char *key, tc_buf *out)
{
    return tc_app__with_db(app, subscription_db, key, out);
}

/* ---- dashboard.summary ------------------------------------------------------------ */

/*
 * A real aggregation over the user's activity: counts by kind over 7 and 30
 * days, a daily series for 30 days, usage against the plan's limit, and the
 * latest items. Milliseconds of database work for a busy user — which is why
 * it is cached, and served stale while it refreshes.
 */
static int dashboard_db(tc_db *db, const char *key, tc_buf *out)
{
    int64_t uid = key_id(key), now = tc_wall_ms(), since30 = now - 30 * DAY_MS,
            since7 = now - 7 * DAY_MS;
    int err;
    json_t *sub = subscription_json(db, uid, &err);
    if (sub == NULL)
        return err;
    json_t *kinds7 = json_object(), *kinds30 = json_object(), *daily = json_array(),
           *recent = json_array();
    int64_t total7 = 0, total30 = 0;
    tc_db_rows *r = NULL;
    tc_db_param p[] = {tc_db_int64(since7), tc_db_int64(uid), tc_db_int64(since30)};
    err = APP_EDB;
    if (tc_db_query(db,
                    "SELECT kind, COUNT(*), SUM(CASE WHEN created_at >= ? THEN 1 ELSE 0 END) "
                    "FROM activity WHERE user_id = ? AND created_at >= ? GROUP BY kind "
                    "ORDER BY kind",
                    p, 3, &r) != 0)
        goto done;
    int rc;
    while ((rc = tc_db_rows_next(r)) == 1) {
        const char *kind = tc_db_col_text(r, 0, NULL);
        int64_t n30 = tc_db_col_int64(r, 1), n7 = tc_db_col_int64(r, 2);
        json_object_set_new(kinds30, kind, json_integer(n30));
        if (n7 > 0)
            json_object_set_new(kinds7, kind, json_integer(n7));
        total30 += n30;
        total7 += n7;
    }
    tc_db_rows_free(r);
    r = NULL;
    if (rc < 0)
        goto done;
    int64_t days[30] = {0};
    tc_db_param q[] = {tc_db_int64(since30), tc_db_int64(uid), tc_db_int64(since30)};
    if (tc_db_query(db,
                    "SELECT (created_at - ?) / 86400000, COUNT(*) FROM activity "
                    "WHERE user_id = ? AND created_at >= ? GROUP BY 1",
                    q, 3, &r) != 0)
        goto done;
    while ((rc = tc_db_rows_next(r)) == 1) {
        int64_t d = tc_db_col_int64(r, 0);
        if (d >= 0 && d < 30)
            days[d] = tc_db_col_int64(r, 1);
    }
    tc_db_rows_free(r);
    r = NULL;
    if (rc < 0)
        goto done;
    for (int d = 0; d < 30; d++)
        json_array_append_new(daily, json_integer(days[d]));
    tc_db_param u[] = {tc_db_int64(uid)};
    if (tc_db_query(db,
                    "SELECT kind, meta, created_at FROM activity WHERE user_id = ? "
                    "ORDER BY created_at DESC LIMIT 10",
                    u, 1, &r) != 0)
        goto done;
    while ((rc = tc_db_rows_next(r)) == 1) {
        json_t *meta = json_loads(tc_db_col_text(r, 1, NULL), JSON_DECODE_ANY, NULL);
        json_array_append_new(recent, json_pack("{s:s,s:o,s:I}", "kind", tc_db_col_text(r, 0, NULL),
                                                "meta", meta != NULL ? meta : json_object(),
                                                "createdAt", (json_int_t)tc_db_col_int64(r, 2)));
    }
    tc_db_rows_free(r);
    r = NULL;
    if (rc < 0)
        goto done;
    json_int_t limit = json_integer_value(
        json_object_get(json_object_get(json_object_get(sub, "plan"), "limits"), "monthlyEvents"));
    err = put_json(out, json_pack("{s:I,s:{s:I,s:I,s:f},s:{s:{s:I,s:O},s:{s:I,s:O},s:O},s:O,s:O}",
                                  "userId", (json_int_t)uid, "usage", "events30d",
                                  (json_int_t)total30, "limit", limit, "percent",
                                  limit > 0 ? (double)total30 * 100.0 / (double)limit : 0.0,
                                  "activity", "last7d", "total", (json_int_t)total7, "byKind",
                                  kinds7, "last30d", "total", (json_int_t)total30, "byKind",
                                  kinds30, "daily", daily, "recent", recent, "subscription", sub));
done:
    tc_db_rows_free(r);
    json_decref(kinds7);
    json_decref(kinds30);
    json_decref(daily);
    json_decref(recent);
    json_decref(sub);
    return err;
}

static int load_dashboard(void *app, const char *key, tc_buf *out)
{
    return tc_app__with_db(app, dashboard_db, key, out);
}

/* ---- blog.list / blog.bySlug ---------------------------------------------------- */

/* "blog:list:<cursor>:<limit>", cursor "-" or "<published_at>.<id>" (checked
 * by tc_in_cursor on the way in). A cursor must name a published post — one
 * blog.list returned: any other would be a page of its own in the cache, and
 * anyone can make up cursors (each page is kilobytes in Redis for an hour).
 * So the number of pages the cache can hold is bounded by the posts. */
static int blog_list_db(tc_db *db, const char *key, tc_buf *out)
{
    long long pub = INT64_MAX, id = INT64_MAX;
    int limit = 10;
    char cur[48];
    const char *start = key + strlen("blog:list:"), *colon = strrchr(key, ':');
    if (colon == NULL || colon < start || (size_t)(colon - start) >= sizeof(cur))
        return APP_EINPUT;
    memcpy(cur, start, (size_t)(colon - start));
    cur[colon - start] = '\0';
    if (strcmp(cur, "-") != 0 && tc_in_cursor(cur, &pub, &id) != 0)
        return APP_EINPUT;
    if (strcmp(colon + 1, "-") != 0)
        limit = atoi(colon + 1);
    tc_db_rows *r;
    if (strcmp(cur, "-") != 0) {
        tc_db_param q[] = {tc_db_int64(id), tc_db_int64(pub)};
        int64_t n = 0;
        if (tc_db_query_int64(db,
                              "SELECT count(*) FROM blog_posts WHERE id = ? AND published_at = ?",
                              q, 2, &n) != 0)
            return APP_EDB;
        if (n == 0)
            return APP_EINPUT;
    }
    tc_db_param p[] = {tc_db_int64(pub), tc_db_int64(pub), tc_db_int64(id), tc_db_int64(limit + 1)};
    if (tc_db_query(db,
                    "SELECT slug, title, substr(body, 1, 200), published_at, id FROM blog_posts "
                    "WHERE published_at IS NOT NULL AND (published_at < ? OR "
                    "(published_at = ? AND id < ?)) ORDER BY published_at DESC, id DESC LIMIT ?",
                    p, 4, &r) != 0)
        return APP_EDB;
    json_t *items = json_array(), *next = json_null();
    int rc, n = 0;
    while ((rc = tc_db_rows_next(r)) == 1) {
        if (n++ == limit) { /* one more than asked: there is a next page */
            char c[48];
            json_t *last = json_array_get(items, json_array_size(items) - 1);
            snprintf(c, sizeof(c), "%lld.%lld",
                     (long long)json_integer_value(json_object_get(last, "publishedAt")),
                     (long long)json_integer_value(json_object_get(last, "id")));
            json_decref(next);
            next = json_string(c);
            break;
        }
        json_array_append_new(
            items, json_pack("{s:I,s:s,s:s,s:s,s:I}", "id", (json_int_t)tc_db_col_int64(r, 4),
                             "slug", tc_db_col_text(r, 0, NULL), "title",
                             tc_db_col_text(r, 1, NULL), "excerpt", tc_db_col_text(r, 2, NULL),
                             "publishedAt", (json_int_t)tc_db_col_int64(r, 3)));
    }
    tc_db_rows_free(r);
    if (rc < 0) {
        json_decref(items);
        json_decref(next);
        return APP_EDB;
    }
    return put_json(out, json_pack("{s:o,s:o}", "items", items, "nextCursor", next));
}

static int load_blog_list(void *app, const char *key, tc_buf *out)
{
    return tc_app__with_db(app, blog_list_db, key, out);
}

static int blog_post_db(tc_db *db, const char *key, tc_buf *out)
{
    const char *slug = key + strlen("blog:");
    tc_db_param p[] = {tc_db_text(slug)};
    tc_db_rows *r;
    if (tc_db_query(db,
                    "SELECT p.id, p.slug, p.title, p.body, p.published_at, p.updated_at, u.id, "
                    "u.name FROM blog_posts p JOIN users u ON u.id = p.author_id "
                    "WHERE p.slug = ? AND p.published_at IS NOT NULL",
                    p, 1, &r) != 0)
        return APP_EDB;
    int rc = tc_db_rows_next(r), err = rc < 0 ? APP_EDB : APP_ENOTFOUND;
    if (rc == 1)
        err = put_json(
            out, json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:{s:I,s:s}}", "id",
                           (json_int_t)tc_db_col_int64(r, 0), "slug", tc_db_col_text(r, 1, NULL),
                           "title", tc_db_col_text(r, 2, NULL), "body", tc_db_col_text(r, 3, NULL),
                           "publishedAt", (json_int_t)tc_db_col_int64(r, 4), "updatedAt",
                           (json_int_t)tc_db_col_int64(r, 5), "author", "id",
                           (json_int_t)tc_db_col_int64(r, 6), "name", tc_db_col_text(r, 7, NULL)));
    tc_db_rows_free(r);
    return err;
}

static int load_blog_post(void *app, const char *key, tc_buf *out)
{
    return tc_app__with_db(app, blog_post_db, key, out);
}

/* ---- mutations -------------------------------------------------------------------- */

static const char *str_field(const json_t *in, const char *name)
{
    return json_string_value(json_object_get(in, name));
}

/* The answer of a mutation made of what it read back on db (after a write: a
 * failure here is the database's, or out of memory). */
static tc_call_status data_from_buf(tc_call *c, tc_db *db, int err, tc_buf *b)
{
    if (err == 0 && (c->data = json_loadb(b->data, b->len, JSON_DECODE_ANY, NULL)) == NULL)
        err = TC_ENOMEM;
    free(b->data);
    if (err == 0)
        return CALL_OK;
    if (err == APP_ENOTFOUND)
        return tc_app__call_fail(c, TC_TRPC_NOT_FOUND, "not found");
    if (err == APP_EDB)
        return tc_app__db_fail(c, tc_db_errcode(db), db, c->path);
    return tc_app__call_fail(c, TC_TRPC_INTERNAL_SERVER_ERROR, "out of memory");
}

static tc_call_status user_update(tc_call *c, tc_db *db)
{
    const json_t *in = c->input;
    const json_t *name = json_object_get(in, "name"), *bio = json_object_get(in, "bio"),
                 *avatar = json_object_get(in, "avatarUrl");
    if (name == NULL && bio == NULL && avatar == NULL)
        return tc_app__call_fail(c, TC_TRPC_BAD_REQUEST, "input: nothing to update");
    int64_t uid = c->session->user_id;
    tc_db_param p[] = {tc_db_int64(name != NULL),   tc_db_text(json_string_value(name)),
                       tc_db_int64(bio != NULL),    tc_db_text(json_string_value(bio)),
                       tc_db_int64(avatar != NULL), tc_db_text(json_string_value(avatar)),
                       tc_db_int64(tc_wall_ms()),   tc_db_int64(uid)};
    if (tc_db_exec(db,
                   "UPDATE users SET "
                   "name = CASE WHEN CAST(? AS BIGINT) = 1 THEN CAST(? AS TEXT) ELSE name END, "
                   "bio = CASE WHEN CAST(? AS BIGINT) = 1 THEN CAST(? AS TEXT) ELSE bio END, "
                   "avatar_url = CASE WHEN CAST(? AS BIGINT) = 1 THEN CAST(? AS TEXT) "
                   "ELSE avatar_url END, updated_at = ? WHERE id = ?",
                   p, 8, NULL) != 0)
        return tc_app__db_fail(c, tc_db_errcode(db), db, "user.update");
    tc_app__inval_add(&c->inval, "user:%lld", (long long)uid);
    /* Posts show their author's name, and only administrators write posts. The tags of
     * a post are fixed before its loader learns the author, so an author's rename drops
     * every post: renames are rare, and stale bylines are wrong. */
    if (name != NULL && c->session->role == ROLE_ADMIN)
        tc_app__inval_add(&c->inval, "blog");
    tc_buf b = {0};
    return data_from_buf(c, db, tc_app__user_json(db, uid, &b), &b);
}

static tc_call_status activity_track(tc_call *c, tc_db *db)
{
    const json_t *meta = json_object_get(c->input, "meta");
    char *m = meta != NULL && !json_is_null(meta) ? json_dumps(meta, JSON_COMPACT) : strdup("{}");
    if (m == NULL)
        return tc_app__call_fail(c, TC_TRPC_INTERNAL_SERVER_ERROR, "out of memory");
    if (strlen(m) > 2048) {
        free(m);
        return tc_app__call_fail(c, TC_TRPC_BAD_REQUEST, "input.meta: at most 2048 bytes of JSON");
    }
    tc_db_param p[] = {tc_db_int64(c->session->user_id), tc_db_text(str_field(c->input, "kind")),
                       tc_db_text(m), tc_db_int64(tc_wall_ms())};
    int64_t id = 0;
    int err = tc_db_query_int64(db,
                                "INSERT INTO activity (user_id, kind, meta, created_at) "
                                "VALUES (?, ?, ?, ?) RETURNING id",
                                p, 4, &id);
    free(m);
    if (err != 0)
        return tc_app__db_fail(c, err, db, "activity.track");
    /* Nothing is invalidated: the dashboard catches up through stale-while-revalidate. */
    c->data = json_pack("{s:I}", "id", (json_int_t)id);
    return CALL_OK;
}

static tc_call_status post_result(tc_call *c, tc_db *db, const char *slug)
{
    char key[TC_KEY_MAX];
    snprintf(key, sizeof(key), "blog:%s", slug);
    tc_buf b = {0};
    return data_from_buf(c, db, blog_post_db(db, key, &b), &b);
}

static tc_call_status blog_publish(tc_call *c, tc_db *db)
{
    const char *slug = str_field(c->input, "slug");
    int64_t now = tc_wall_ms();
    tc_db_param p[] = {tc_db_text(slug),
                       tc_db_text(str_field(c->input, "title")),
                       tc_db_text(str_field(c->input, "body")),
                       tc_db_int64(c->session->user_id),
                       tc_db_int64(now),
                       tc_db_int64(now)};
    int err = tc_db_exec(db,
                         "INSERT INTO blog_posts (slug, title, body, author_id, published_at, "
                         "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                         p, 6, NULL);
    if (err == TC_DB_ECONSTRAINT)
        return tc_app__call_fail(c, TC_TRPC_CONFLICT, "a post with slug \"%s\" exists", slug);
    if (err != 0)
        return tc_app__db_fail(c, err, db, "blog.publish");
    tc_app__inval_add(&c->inval, "blog-list");
    tc_app__inval_add(&c->inval, "blog:%s", slug);
    return post_result(c, db, slug);
}

static tc_call_status blog_update(tc_call *c, tc_db *db)
{
    const char *slug = str_field(c->input, "slug"), *title = str_field(c->input, "title"),
               *body = str_field(c->input, "body");
    if (title == NULL && body == NULL)
        return tc_app__call_fail(c, TC_TRPC_BAD_REQUEST, "input: nothing to update");
    tc_db_param p[] = {tc_db_text(title), tc_db_text(body), tc_db_int64(tc_wall_ms()),
                       tc_db_text(slug)};
    int64_t changed = 0;
    if (tc_db_exec(db,
                   "UPDATE blog_posts SET title = COALESCE(CAST(? AS TEXT), title), "
                   "body = COALESCE(CAST(? AS TEXT), body), updated_at = ? WHERE slug = ?",
                   p, 4, &changed) != 0)
        return tc_app__db_fail(c, tc_db_errcode(db), db, "blog.update");
    if (changed == 0)
        return tc_app__call_fail(c, TC_TRPC_NOT_FOUND, "no post with slug \"%s\"", slug);
    tc_app__inval_add(&c->inval, "blog:%s", slug);
    tc_app__inval_add(&c->inval, "blog-list");
    return post_result(c, db, slug);
}

/* ---- the table ------------------------------------------------------------------- */

static const char *cursor_check(const char *s)
{
    long long pub, id;
    return tc_in_cursor(s, &pub, &id) == 0 ? NULL : "not a cursor returned by blog.list";
}

static const char *kind_check(const char *s)
{
    for (; *s != '\0'; s++)
        if (!islower((unsigned char)*s) && *s != '_')
            return "lower-case letters and '_' only";
    return NULL;
}

#define SLUG_FIELD                                                                                 \
    {                                                                                              \
        .name = "slug", .type = TC_IN_STRING, .required = true, .min_len = 1, .max_len = 100,      \
        .check = tc_in_slug                                                                        \
    }

static const tc_in_field LOGIN_IN[] = {
    {.name = "email",
     .type = TC_IN_STRING,
     .required = true,
     .min_len = 3,
     .max_len = 254,
     .check = tc_in_email},
    {.name = "password", .type = TC_IN_STRING, .required = true, .min_len = 1, .max_len = 256},
};
static const tc_in_field USER_UPDATE_IN[] = {
    {.name = "name", .type = TC_IN_STRING, .min_len = 1, .max_len = 100},
    {.name = "bio", .type = TC_IN_STRING, .nullable = true, .max_len = 1000},
    {.name = "avatarUrl",
     .type = TC_IN_STRING,
     .nullable = true,
     .min_len = 1,
     .max_len = 2000,
     .check = tc_in_url},
};
static const tc_in_field ACTIVITY_IN[] = {
    {.name = "kind",
     .type = TC_IN_STRING,
     .required = true,
     .min_len = 1,
     .max_len = 32,
     .check = kind_check},
    {.name = "meta", .type = TC_IN_OBJECT, .nullable = true},
};
static const tc_in_field BLOG_LIST_IN[] = {
    {.name = "cursor",
     .type = TC_IN_STRING,
     .nullable = true,
     .min_len = 3,
     .max_len = 41,
     .check = cursor_check},
    {.name = "limit", .type = TC_IN_INT, .min = 1, .max = 50},
};
static const tc_in_field SLUG_IN[] = {
    SLUG_FIELD,
};
static const tc_in_field BLOG_PUBLISH_IN[] = {
    SLUG_FIELD,
    {.name = "title", .type = TC_IN_STRING, .required = true, .min_len = 1, .max_len = 200},
    {.name = "body", .type = TC_IN_STRING, .required = true, .min_len = 1, .max_len = 100000},
};
static const tc_in_field BLOG_UPDATE_IN[] = {
    SLUG_FIELD,
    {.name = "title", .type = TC_IN_STRING, .min_len = 1, .max_len = 200},
    {.name = "body", .type = TC_IN_STRING, .min_len = 1, .max_len = 100000},
};

#define IN(a) a, (int)(sizeof(a) / sizeof(a[0]))
#define NO_IN NULL, 0

/* Every cached query keeps its value in L1 an hour past its times, to serve when
 * the database cannot answer: signed-in users keep reading what they read last
 * through a database outage of up to an hour (a value a write replaced was
 * invalidated: never served). */
#define GRACE_MS (60 * MIN_MS)

static const tc_proc PROCS[] = {
    {"auth.login", TC_TRPC_MUTATION, AUTH_PUBLIC, IN(LOGIN_IN), .mutate = tc_app__auth_login},
    {"auth.logout", TC_TRPC_MUTATION, AUTH_USER, NO_IN, .mutate = tc_app__auth_logout, .invalidates = true,
     .clears_site = true},
    {"user.me", TC_TRPC_QUERY, AUTH_USER, NO_IN, .key = "user:{uid}", .tags = {"user:{uid}"},
     .fresh_ms = 5 * MIN_MS, .grace_ms = GRACE_MS, .load = load_user},
    {"user.update", TC_TRPC_MUTATION, AUTH_USER, IN(USER_UPDATE_IN), .mutate = user_update, .invalidates = true},
    {"subscription.get", TC_TRPC_QUERY, AUTH_USER, NO_IN, .key = "sub:{uid}", .tags = {"sub:{uid}"},
     .fresh_ms = 1 * MIN_MS, .grace_ms = GRACE_MS, .load = load_subscription},
    {"dashboard.summary", TC_TRPC_QUERY, AUTH_USER, NO_IN, .key = "dash:{uid}",
     .tags = {"user:{uid}", "sub:{uid}", "dash:{uid}"}, .fresh_ms = 30 * 1000,
     .stale_ms = 5 * MIN_MS, .grace_ms = GRACE_MS, .load = load_dashboard},
    {"activity.track", TC_TRPC_MUTATION, AUTH_USER, IN(ACTIVITY_IN), .mutate = activity_track},
    {"blog.list", TC_TRPC_QUERY, AUTH_PUBLIC, IN(BLOG_LIST_IN),
     .key = "blog:list:{input.cursor|-}:{input.limit|10}", .tags = {"blog", "blog-list"},
     .fresh_ms = 60 * MIN_MS, .grace_ms = GRACE_MS, .load = load_blog_list},
    {"blog.bySlug", TC_TRPC_QUERY, AUTH_PUBLIC, IN(SLUG_IN), .key = "blog:{input.slug}",
     .tags = {"blog", "blog:{input.slug}"}, .fresh_ms = 60 * MIN_MS, .grace_ms = GRACE_MS,
     .load = load_blog_post},
    {"blog.publish", TC_TRPC_MUTATION, AUTH_ADMIN, IN(BLOG_PUBLISH_IN), .mutate = blog_publish, .invalidates = true},
    {"blog.update", TC_TRPC_MUTATION, AUTH_ADMIN, IN(BLOG_UPDATE_IN), .mutate = blog_update, .invalidates = true},
};

const tc_proc *tc_app__proc_find(const char *path)
{
    for (size_t i = 0; i < sizeof(PROCS) / sizeof(PROCS[0]); i++)
        if (strcmp(PROCS[i].path, path) == 0)
            return &PROCS[i];
    return NULL;
}

/* ---- running a call --------------------------------------------------------------- */

/* Fills {uid} and {input.NAME|DEFAULT} of a key or tag template. */
static int expand(const tc_call *c, const char *tmpl, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = tmpl; *p != '\0';) {
        char piece[TC_KEY_MAX], name[64];
        const char *add = piece;
        if (*p != '{') {
            const char *brace = strchr(p, '{');
            size_t len = brace != NULL ? (size_t)(brace - p) : strlen(p);
            if (len >= sizeof(piece))
                return -1;
            memcpy(piece, p, len);
            piece[len] = '\0';
            p += len;
        } else {
            const char *close = strchr(p, '}');
            if (close == NULL || (size_t)(close - p - 1) >= sizeof(name))
                return -1;
            memcpy(name, p + 1, (size_t)(close - p - 1));
            name[close - p - 1] = '\0';
            p = close + 1;
            if (strcmp(name, "uid") == 0) {
                snprintf(piece, sizeof(piece), "%lld", (long long)c->session->user_id);
            } else if (strncmp(name, "input.", 6) == 0) {
                char *bar = strchr(name, '|');
                if (bar != NULL)
                    *bar = '\0';
                const json_t *v = json_object_get(c->input, name + 6);
                if (json_is_string(v))
                    add = json_string_value(v);
                else if (json_is_integer(v))
                    snprintf(piece, sizeof(piece), "%lld", (long long)json_integer_value(v));
                else
                    add = bar != NULL ? bar + 1 : "-";
            } else {
                return -1;
            }
        }
        size_t len = strlen(add);
        if (n + len >= cap)
            return -1;
        memcpy(out + n, add, len);
        n += len;
    }
    out[n] = '\0';
    return 0;
}

int tc_app__call_tags(const tc_call *c, const tc_proc *p, char tags[TC_TAGS_MAX][TC_TAG_MAX + 1])
{
    if (p == NULL || p->kind != TC_TRPC_QUERY || p->auth != AUTH_PUBLIC || c->code != TC_TRPC_OK)
        return 0;
    int n = 0;
    for (int i = 0; i < TC_TAGS_MAX && p->tags[i] != NULL; i++)
        if (expand(c, p->tags[i], tags[n], TC_TAG_MAX + 1) == 0)
            n++;
    return n;
}

/* Does tag fit template t, each {...} standing for one or more bytes? */
static bool tag_fits(const char *t, const char *tag)
{
    if (*t == '\0')
        return *tag == '\0';
    if (*t != '{')
        return *t == *tag && tag_fits(t + 1, tag + 1);
    const char *close = strchr(t, '}');
    if (close == NULL)
        return false;
    for (const char *end = tag + 1; *(end - 1) != '\0'; end++)
        if (tag_fits(close + 1, end))
            return true;
    return false;
}

bool tc_app__tag_is_public(const char *tag)
{
    for (size_t i = 0; i < sizeof(PROCS) / sizeof(PROCS[0]); i++) {
        const tc_proc *p = &PROCS[i];
        for (int k = 0; p->kind == TC_TRPC_QUERY && p->auth == AUTH_PUBLIC && k < TC_TAGS_MAX &&
                        p->tags[k] != NULL;
             k++)
            if (tag_fits(p->tags[k], tag))
                return true;
    }
    return false;
}

/* tc_await_flight's callback: the load is over (its error is not ours to keep:
 * the request runs again and reads what it left, or loads once more). */
static void unpark(void *x, int err)
{
    (void)err;
    tc_http_unpark(x);
}

static tc_call_status run_query(tc_call *c, const tc_proc *p)
{
    char key[TC_KEY_MAX + 1], tags[TC_TAGS_MAX][TC_TAG_MAX + 1];
    tc_policy pol = {
        .fresh_ms = p->fresh_ms, .stale_ms = p->stale_ms, .loader = p->load, .loader_ctx = c->app};
    pol.grace_ms = p->grace_ms;
    if (c->app->cfg.test_fresh_ms > 0) /* --test-fresh-ms: tests only */
        pol.fresh_ms = c->app->cfg.test_fresh_ms;
    if (expand(c, p->key, key, sizeof(key)) != 0)
        return tc_app__call_fail(c, TC_TRPC_BAD_REQUEST, "input too long for a cache key");
    for (int i = 0; i < TC_TAGS_MAX && p->tags[i] != NULL; i++, pol.ntags++) {
        if (expand(c, p->tags[i], tags[i], sizeof(tags[i])) != 0)
            return tc_app__call_fail(c, TC_TRPC_BAD_REQUEST, "input too long for a cache tag");
        pol.tags[i] = tags[i];
    }
    int err;
    if (c->app->cache == NULL) { /* the cache turned off: straight to the database */
        if (!c->may_block)
            return CALL_NEED_BLOCK;
        tc_buf b = {0};
        err = p->load(c->app, key, &b);
        if (err == 0)
            c->data = json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL);
        free(b.data);
        if (err == 0 && c->data == NULL)
            err = TC_ENOMEM;
    } else if (!c->may_block) {
        err = tc_peek(c->app->cache, key, &pol, &c->cache);
        if (err == TC_ENOTFOUND)
            return CALL_NEED_BLOCK;
    } else {
        /* Another request is loading this key: rather than hold a worker to wait
         * for it, give the worker back and run again when it is over. */
        if (c->may_park && tc_http_park(c->x) == 0) {
            if (tc_await_flight(c->app->cache, key, unpark, c->x) == 0)
                return CALL_PARKED;
            tc_http_park_cancel(c->x);
        }
        err = tc_get_or_load(c->app->cache, key, &pol, &c->cache);
    }
    if (err == 0) {
        c->from_cache = c->app->cache != NULL;
        c->value = c->cache.value;
        if (c->from_cache) /* the hit ratio by tag family */
            tc_app__monitor_lookup(c->app->monitor, pol.tags, pol.ntags, &c->cache);
        return CALL_OK;
    }
    if (err == APP_ENOTFOUND)
        return tc_app__call_fail(c, TC_TRPC_NOT_FOUND, "%s: not found", c->path);
    if (err == APP_EINPUT)
        return tc_app__call_fail(c, TC_TRPC_BAD_REQUEST, "%s: the input points at nothing that exists",
                                 c->path);
    if (err == APP_EDOWN || err == TC_ETIMEDOUT) { /* logged where it happened (with_db) */
        tc_http_add_header(c->x, "Retry-After", "1");
        return tc_app__call_fail(c, TC_TRPC_SERVICE_UNAVAILABLE,
                                 "the database is unavailable: could not load %s, try again",
                                 c->path);
    }
    if (err != APP_EDB) /* APP_EDB is logged where it happened, with its cause */
        tc_app__log(TC_LOG_ERROR, "app", "load %s failed: %s", key, tc_strerror(err));
    return tc_app__call_fail(c, TC_TRPC_INTERNAL_SERVER_ERROR, "could not load %s", c->path);
}

tc_call_status tc_app__call_run(tc_call *c, const tc_proc *p)
{
    if (p->auth != AUTH_PUBLIC && c->session == NULL)
        return tc_app__call_fail(c, TC_TRPC_UNAUTHORIZED, "sign in to call %s", p->path);
    if (p->auth == AUTH_ADMIN && c->session->role != ROLE_ADMIN)
        return tc_app__call_fail(c, TC_TRPC_FORBIDDEN, "%s is for administrators", p->path);
    char msg[200];
    if (tc_input_check(c->input, p->fields, p->nfields, msg, sizeof(msg)) != 0)
        return tc_app__call_fail(c, TC_TRPC_BAD_REQUEST, "%s", msg);
    if (p->kind == TC_TRPC_QUERY)
        return run_query(c, p);
    if (!c->may_block)
        return CALL_NEED_BLOCK;
    /* A write whose invalidations could not reach every instance is refused
     * before it is made: no instance may keep serving what it replaces. */
    if (p->invalidates && tc_app__write_ready(c->app) != 0) {
        tc_http_add_header(c->x, "Retry-After", "1");
        return tc_app__call_fail(c, TC_TRPC_SERVICE_UNAVAILABLE,
                                 "the cache cannot be reached, so the change could not be made "
                                 "visible everywhere; nothing was changed, try again");
    }
    tc_db *db;
    if (tc_app__db_acquire(c->app, &db) != 0) {
        tc_app__db_busy(c->app, p->path);
        tc_http_add_header(c->x, "Retry-After", "1");
        return tc_app__call_fail(c, TC_TRPC_SERVICE_UNAVAILABLE, "database busy, try again");
    }
    tc_call_status st = p->mutate(c, db);
    if (st == CALL_OK)
        tc_app__db_ok(c->app);
    tc_db_pool_release(c->app->db, db);
    /* whatever the answer: what the database took must not be served stale */
    if (tc_app__inval_commit(c->app, &c->inval) != 0) {
        /* made, but not yet visible everywhere: it is not answered as done */
        json_decref(c->data);
        c->data = NULL;
        c->set_cookie[0] = '\0';
        tc_http_add_header(c->x, "Retry-After", "1");
        return tc_app__call_fail(c, TC_TRPC_SERVICE_UNAVAILABLE,
                                 "the change was saved, but the cache could not confirm it on "
                                 "every server yet; it will be once the cache answers again");
    }
    return st;
}

/* Round trips on SQLite and PostgreSQL with the same SQL: every parameter type including
 * NULL and UTF-8, extremes of int64 and double, `?` inside string literals, RETURNING ids,
 * change counts, booleans, unique violations (TC_DB_ECONSTRAINT) and other integrity
 * errors, and rollback leaving nothing behind. */
#include <math.h>

#include "both.h"

static const char utf8[] = "Zoë · Łódź · 東京 · 😀 · it's \"quoted\" ? \\ back";

static void types(tc_db *db)
{
    tc_db_rows *rows = NULL;
    size_t len = 0;
    int64_t n = -1;
    tc_db_param p[4];

    CHECK_RC(db,
             tc_db_exec_script(db, "CREATE TABLE t_types (k BIGINT PRIMARY KEY, i BIGINT, "
                                   "d DOUBLE PRECISION, t TEXT)"),
             0);
    const struct {
        int64_t i;
        double d;
        const char *t;
    } vals[] = {{INT64_MIN, -1e300, utf8},
                {INT64_MAX, 0.1, ""},
                {0, -0.0, "plain"},
                {-1, 1.0 / 3.0, "multi\nline\ttext"},
                {42, INFINITY, "x"}};
    for (int k = 0; k < 5; k++) {
        p[0] = tc_db_int64(k);
        p[1] = tc_db_int64(vals[k].i);
        p[2] = tc_db_double(vals[k].d);
        p[3] = tc_db_text(vals[k].t);
        CHECK_RC(db,
                 tc_db_exec(db, "INSERT INTO t_types (k, i, d, t) VALUES (?, ?, ?, ?)", p, 4, &n),
                 0);
        CHECK_EQ_INT(n, 1);
    }
    p[0] = tc_db_int64(5);
    p[1] = tc_db_null();
    p[2] = tc_db_null();
    p[3] = tc_db_null();
    CHECK_RC(db, tc_db_exec(db, "INSERT INTO t_types (k, i, d, t) VALUES (?, ?, ?, ?)", p, 4, NULL),
             0);

    CHECK_RC(db, tc_db_query(db, "SELECT k, i, d, t FROM t_types ORDER BY k", NULL, 0, &rows), 0);
    REQUIRE(rows);
    CHECK_EQ_INT(tc_db_col_count(rows), 4);
    CHECK_EQ_STR(tc_db_col_name(rows, 3), "t");
    for (int k = 0; k < 5; k++) {
        CHECK_EQ_INT(tc_db_rows_next(rows), 1);
        CHECK_EQ_INT(tc_db_col_int64(rows, 0), k);
        CHECK(tc_db_col_int64(rows, 1) == vals[k].i);
        if (!CHECK(tc_db_col_double(rows, 2) == vals[k].d))
            fprintf(stderr, "    row %d: %.17g != %.17g\n", k, tc_db_col_double(rows, 2),
                    vals[k].d);
        CHECK_EQ_STR(tc_db_col_text(rows, 3, &len), vals[k].t);
        CHECK_EQ_INT(len, strlen(vals[k].t));
        CHECK(!tc_db_col_is_null(rows, 1));
    }
    CHECK_EQ_INT(tc_db_rows_next(rows), 1);
    for (int c = 1; c < 4; c++)
        CHECK(tc_db_col_is_null(rows, c));
    CHECK(tc_db_col_text(rows, 3, NULL) == NULL);
    CHECK_EQ_INT(tc_db_col_int64(rows, 1), 0);
    CHECK_EQ_INT(tc_db_rows_next(rows), 0);
    tc_db_rows_free(rows);

    /* parameters in WHERE, NULL-safe lookups, text with a length (not NUL-terminated) */
    p[0] = tc_db_textn("plainXYZ", 5);
    CHECK_RC(db, tc_db_query_int64(db, "SELECT k FROM t_types WHERE t = ?", p, 1, &n), 0);
    CHECK_EQ_INT(n, 2);
    p[0] = tc_db_text(utf8);
    CHECK_RC(db, tc_db_query_int64(db, "SELECT k FROM t_types WHERE t = ?", p, 1, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_RC(db, tc_db_query_int64(db, "SELECT count(*) FROM t_types WHERE t IS NULL", NULL, 0, &n),
             0);
    CHECK_EQ_INT(n, 1);

    /* `?` inside literals is not a placeholder; CAST gives PostgreSQL the type */
    p[0] = tc_db_text("x");
    CHECK_RC(db, tc_db_query(db, "SELECT 'a?b' || CAST(? AS TEXT), 'it''s ?' /* ? */", p, 1, &rows),
             0);
    CHECK_EQ_INT(tc_db_rows_next(rows), 1);
    CHECK_EQ_STR(tc_db_col_text(rows, 0, NULL), "a?bx");
    CHECK_EQ_STR(tc_db_col_text(rows, 1, NULL), "it's ?");
    tc_db_rows_free(rows);

    /* booleans read as 1/0 on both */
    p[0] = tc_db_int64(3);
    CHECK_RC(db,
             tc_db_query(db, "SELECT k = ?, k <> ? FROM t_types WHERE k = 3",
                         (tc_db_param[]){p[0], p[0]}, 2, &rows),
             0);
    CHECK_EQ_INT(tc_db_rows_next(rows), 1);
    CHECK_EQ_INT(tc_db_col_int64(rows, 0), 1);
    CHECK_EQ_INT(tc_db_col_int64(rows, 1), 0);
    tc_db_rows_free(rows);

    /* UPDATE / DELETE change counts */
    p[0] = tc_db_int64(2);
    CHECK_RC(db, tc_db_exec(db, "UPDATE t_types SET i = i + 1 WHERE k >= ?", p, 1, &n), 0);
    CHECK_EQ_INT(n, 4); /* k = 2, 3, 4, 5 (NULL + 1 is NULL, still a changed row) */
    CHECK_RC(db, tc_db_exec(db, "DELETE FROM t_types WHERE k > ?", p, 1, &n), 0);
    CHECK_EQ_INT(n, 3);
    CHECK_RC(db, tc_db_exec(db, "DELETE FROM t_types WHERE k > ?", p, 1, &n), 0);
    CHECK_EQ_INT(n, 0);
}

static int64_t count(tc_db *db, const char *table)
{
    char sql[96];
    int64_t n = -1;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    CHECK_RC(db, tc_db_query_int64(db, sql, NULL, 0, &n), 0);
    return n;
}

#define INSERT_USER                                                                                \
    "INSERT INTO users (email, password_hash, name, bio, avatar_url, role, created_at, "           \
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"

static int insert_user(tc_db *db, const char *email, const char *role, int64_t *id)
{
    tc_db_param p[8] = {tc_db_text(email),
                        tc_db_text("$argon2id$v=19$m=65536,t=2,p=1$x$y"),
                        tc_db_text(utf8),
                        tc_db_null(),
                        tc_db_null(),
                        tc_db_text(role),
                        tc_db_int64(1700000000123LL),
                        tc_db_int64(1700000000456LL)};
    return tc_db_query_int64(db, INSERT_USER, p, 8, id);
}

static void domain(tc_db *db)
{
    int64_t id1 = 0, id2 = 0, id3 = 0, n = -1;
    tc_db_rows *rows = NULL;
    tc_db_param p[4];

    CHECK_RC(db, insert_user(db, "ann@example.com", "user", &id1), 0);
    CHECK_RC(db, insert_user(db, "bob@example.com", "admin", &id2), 0);
    CHECK(id1 > 0);
    CHECK(id2 > id1);

    p[0] = tc_db_int64(id1);
    CHECK_RC(db,
             tc_db_query(db,
                         "SELECT email, name, bio, avatar_url, role, created_at "
                         "FROM users WHERE id = ?",
                         p, 1, &rows),
             0);
    CHECK_EQ_INT(tc_db_rows_next(rows), 1);
    CHECK_EQ_STR(tc_db_col_text(rows, 0, NULL), "ann@example.com");
    CHECK_EQ_STR(tc_db_col_text(rows, 1, NULL), utf8);
    CHECK(tc_db_col_is_null(rows, 2));
    CHECK(tc_db_col_is_null(rows, 3));
    CHECK_EQ_STR(tc_db_col_text(rows, 4, NULL), "user");
    CHECK(tc_db_col_int64(rows, 5) == 1700000000123LL);
    CHECK_EQ_INT(tc_db_rows_next(rows), 0);
    tc_db_rows_free(rows);

    /* unique violation: TC_DB_ECONSTRAINT, nothing inserted, connection fine after */
    CHECK_RC(db, insert_user(db, "ann@example.com", "user", &id3), TC_DB_ECONSTRAINT);
    CHECK(strlen(tc_db_errmsg(db)) > 0);
    CHECK_EQ_INT(count(db, "users"), 2);
    p[0] = tc_db_text("s1");
    p[1] = tc_db_int64(id1);
    p[2] = tc_db_int64(1);
    CHECK_RC(db,
             tc_db_exec(db,
                        "INSERT INTO sessions (token_hash, user_id, expires_at, created_at) "
                        "VALUES (?, ?, ?, ?)",
                        (tc_db_param[]){p[0], p[1], p[2], p[2]}, 4, NULL),
             0);
    CHECK_RC(db,
             tc_db_exec(db,
                        "INSERT INTO sessions (token_hash, user_id, expires_at, created_at) "
                        "VALUES (?, ?, ?, ?)",
                        (tc_db_param[]){p[0], p[1], p[2], p[2]}, 4, NULL),
             TC_DB_ECONSTRAINT); /* primary key */
    /* other integrity errors */
    CHECK_RC(db, insert_user(db, "carl@example.com", "root", &id3), TC_DB_EINTEGRITY); /* CHECK */
    p[0] = tc_db_int64(id2 + 1000);
    CHECK_RC(db,
             tc_db_exec(db, "INSERT INTO activity (user_id, kind, created_at) VALUES (?, 'x', 1)",
                        p, 1, NULL),
             TC_DB_EINTEGRITY); /* foreign key */
    CHECK_RC(db,
             tc_db_exec(db,
                        "INSERT INTO plans (id, name, seats, monthly_events_limit, "
                        "projects_limit, price_cents) VALUES ('x', NULL, 1, 1, 1, 1)",
                        NULL, 0, NULL),
             TC_DB_EINTEGRITY); /* NOT NULL */

    /* rollback leaves nothing: a user, its subscription and activity */
    CHECK_RC(db, tc_db_begin(db), 0);
    CHECK_RC(db, insert_user(db, "dora@example.com", "user", &id3), 0);
    p[0] = tc_db_int64(id3);
    CHECK_RC(db,
             tc_db_exec(db,
                        "INSERT INTO subscriptions (user_id, plan_id, status, "
                        "current_period_end, seats, updated_at) "
                        "VALUES (?, 'pro', 'active', 1, 1, 1)",
                        p, 1, NULL),
             0);
    CHECK_RC(db,
             tc_db_exec(db,
                        "INSERT INTO activity (user_id, kind, meta, created_at) "
                        "VALUES (?, 'login', '{}', 1)",
                        p, 1, NULL),
             0);
    CHECK_EQ_INT(count(db, "users"), 3); /* visible inside */
    CHECK_RC(db, tc_db_rollback(db), 0);
    CHECK_EQ_INT(count(db, "users"), 2);
    CHECK_EQ_INT(count(db, "subscriptions"), 0);
    CHECK_EQ_INT(count(db, "activity"), 0);

    /* an error inside a transaction, then rollback: nothing of it stays */
    CHECK_RC(db, tc_db_begin(db), 0);
    CHECK_RC(db, insert_user(db, "erin@example.com", "user", &id3), 0);
    CHECK_RC(db, insert_user(db, "ann@example.com", "user", &id3), TC_DB_ECONSTRAINT);
    CHECK_RC(db, tc_db_rollback(db), 0);
    CHECK(strstr(tc_db_errmsg(db), "") != NULL);
    CHECK_EQ_INT(count(db, "users"), 2);

    /* PostgreSQL aborts the transaction on an error: COMMIT then reports it */
    if (tc_db_dialect_of(db) == TC_DB_POSTGRES) {
        CHECK_RC(db, tc_db_begin(db), 0);
        CHECK_RC(db, insert_user(db, "ann@example.com", "user", &id3), TC_DB_ECONSTRAINT);
        CHECK_RC(db, insert_user(db, "fred@example.com", "user", &id3), TC_DB_ERROR);
        CHECK_RC(db, tc_db_commit(db), TC_DB_ERROR);
        CHECK(!tc_db_in_transaction(db));
        CHECK_EQ_INT(count(db, "users"), 2);
    }

    /* commit keeps; ON DELETE CASCADE removes dependants */
    CHECK_RC(db, tc_db_begin(db), 0);
    CHECK_RC(db, insert_user(db, "gus@example.com", "user", &id3), 0);
    p[0] = tc_db_int64(id3);
    CHECK_RC(db,
             tc_db_exec(db,
                        "INSERT INTO activity (user_id, kind, meta, created_at) "
                        "VALUES (?, 'login', '{}', 1)",
                        p, 1, NULL),
             0);
    CHECK_RC(db, tc_db_commit(db), 0);
    CHECK_EQ_INT(count(db, "activity"), 1);
    CHECK_RC(db, tc_db_exec(db, "DELETE FROM users WHERE id = ?", p, 1, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(count(db, "activity"), 0);
    CHECK_RC(db, tc_db_query_int64(db, "SELECT id FROM users WHERE id = ?", p, 1, &n),
             TC_DB_ENOTFOUND);
}

static void body(const backend *b)
{
    tc_db *db = backend_open_migrated(b);
    REQUIRE(db);
    CHECK_EQ_INT(tc_db_dialect_of(db), b->dialect);
    types(db);
    domain(db);
    tc_db_close(db);
}

int main(void)
{
    return run_both(body);
}

/* Tests src/db/sqlite.c on a private in-memory database: binding of every parameter type
 * (what SQLite stores, via typeof), reading columns back, argument checks, error codes,
 * cursors (nested on the same SQL), the statement cache past its limit, transactions. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "db/internal.h"

static tc_db *open_mem(void)
{
    char err[256];
    tc_db *db = tc_db_open("sqlite::memory:", 1000, err, sizeof(err));
    if (!db)
        fprintf(stderr, "open: %s\n", err);
    return db;
}

/* typeof(?) for one parameter */
static void check_typeof(tc_db *db, tc_db_param p, const char *want)
{
    tc_db_rows *rows = NULL;
    CHECK_EQ_INT(tc_db_query(db, "SELECT typeof(?)", &p, 1, &rows), 0);
    CHECK_EQ_INT(tc_db_rows_next(rows), 1);
    CHECK_EQ_STR(tc_db_col_text(rows, 0, NULL), want);
    CHECK_EQ_INT(tc_db_rows_next(rows), 0);
    CHECK_EQ_INT(tc_db_rows_next(rows), 0); /* stays done, does not restart */
    tc_db_rows_free(rows);
}

static void test_binding(tc_db *db)
{
    tc_db_rows *rows = NULL;
    size_t len = 0;
    tc_db_param p[] = {tc_db_int64(INT64_MAX), tc_db_double(-0.25), tc_db_textn("héllo✓xyz", 9),
                       tc_db_null(),           tc_db_textn("", 0),  tc_db_double(INFINITY)};

    check_typeof(db, tc_db_int64(1), "integer");
    check_typeof(db, tc_db_double(1.5), "real");
    check_typeof(db, tc_db_text("1"), "text");
    check_typeof(db, tc_db_null(), "null");
    check_typeof(db, tc_db_textn(NULL, 0), "null");

    CHECK_EQ_INT(tc_db_query(db, "SELECT ?, ?, ?, ?, ?, ?", p, 6, &rows), 0);
    REQUIRE(rows);
    CHECK_EQ_INT(tc_db_col_count(rows), 6);
    CHECK_EQ_INT(tc_db_rows_next(rows), 1);
    CHECK(tc_db_col_int64(rows, 0) == INT64_MAX);
    CHECK(tc_db_col_double(rows, 1) == -0.25);
    CHECK_EQ_STR(tc_db_col_text(rows, 2, &len), "héllo✓"); /* 9 bytes: é and ✓ are 2 + 3 */
    CHECK_EQ_INT(len, 9);
    CHECK(tc_db_col_is_null(rows, 3));
    CHECK(tc_db_col_text(rows, 3, &len) == NULL);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(tc_db_col_int64(rows, 3), 0);
    CHECK(!tc_db_col_is_null(rows, 4));
    CHECK_EQ_STR(tc_db_col_text(rows, 4, NULL), "");
    CHECK(isinf(tc_db_col_double(rows, 5)));
    /* out of range columns */
    CHECK(tc_db_col_is_null(rows, 6));
    CHECK(tc_db_col_text(rows, -1, NULL) == NULL);
    CHECK(tc_db_col_name(rows, 9) == NULL);
    CHECK_EQ_INT(tc_db_rows_next(rows), 0);
    tc_db_rows_free(rows);
    tc_db_rows_free(NULL);
}

static void test_checks(tc_db *db)
{
    tc_db_param p[2] = {tc_db_int64(1), tc_db_textn("a\0b", 3)};
    tc_db_rows *rows = (tc_db_rows *)1;
    int64_t changes = 99;

    CHECK_EQ_INT(tc_db_exec(db, "SELECT ?", p, 2, NULL), TC_DB_EINVAL); /* count mismatch */
    CHECK_EQ_INT(tc_db_exec(db, "SELECT ?, ?", p, 1, NULL), TC_DB_EINVAL);
    CHECK(strstr(tc_db_errmsg(db), "placeholder") != NULL);
    CHECK_EQ_INT(tc_db_exec(db, "SELECT ?", &p[1], 1, NULL), TC_DB_EINVAL); /* NUL byte */
    CHECK(strstr(tc_db_errmsg(db), "NUL") != NULL);
    p[0] = tc_db_double(NAN);
    CHECK_EQ_INT(tc_db_exec(db, "SELECT ?", p, 1, NULL), TC_DB_EINVAL);
    CHECK_EQ_INT(tc_db_exec(db, "SELECT 1", NULL, 1, NULL), TC_DB_EINVAL);
    CHECK_EQ_INT(tc_db_exec(db, NULL, NULL, 0, &changes), TC_DB_EINVAL);
    CHECK_EQ_INT(changes, 0);
    CHECK_EQ_INT(tc_db_query(db, "SELEC 1", NULL, 0, &rows), TC_DB_ERROR);
    CHECK(rows == NULL);
    CHECK(strstr(tc_db_errmsg(db), "syntax") != NULL);
    CHECK_EQ_INT(tc_db_exec(db, "SELECT * FROM no_such_table", NULL, 0, NULL), TC_DB_ERROR);
    CHECK_EQ_INT(tc_db_exec(db, "  -- nothing\n", NULL, 0, NULL), TC_DB_EINVAL);
    CHECK_EQ_INT(tc_db_exec(db, "SELECT 1", NULL, 0, NULL), 0);
    CHECK_EQ_STR(tc_db_errmsg(db), ""); /* cleared by a good call */
}

static void test_errors_and_changes(tc_db *db)
{
    int64_t changes = -1, id = 0;
    tc_db_param p[2];

    CHECK_EQ_INT(tc_db_exec_script(db, "CREATE TABLE p (id INTEGER PRIMARY KEY, k TEXT UNIQUE);"
                                       "CREATE TABLE c (pid BIGINT NOT NULL REFERENCES p(id),"
                                       " n BIGINT CHECK (n > 0))"),
                 0);
    p[0] = tc_db_text("a");
    CHECK_EQ_INT(tc_db_query_int64(db, "INSERT INTO p (k) VALUES (?) RETURNING id", p, 1, &id), 0);
    CHECK_EQ_INT(id, 1);
    CHECK_EQ_INT(tc_db_query_int64(db, "INSERT INTO p (k) VALUES (?) RETURNING id", p, 1, &id),
                 TC_DB_ECONSTRAINT);
    CHECK_EQ_INT(tc_db_exec(db, "INSERT INTO p (id, k) VALUES (1, 'b')", NULL, 0, NULL),
                 TC_DB_ECONSTRAINT); /* primary key */
    p[0] = tc_db_int64(7);
    p[1] = tc_db_int64(1);
    CHECK_EQ_INT(tc_db_exec(db, "INSERT INTO c (pid, n) VALUES (?, ?)", p, 2, NULL),
                 TC_DB_EINTEGRITY); /* foreign keys are on */
    p[0] = tc_db_int64(1);
    p[1] = tc_db_int64(0);
    CHECK_EQ_INT(tc_db_exec(db, "INSERT INTO c (pid, n) VALUES (?, ?)", p, 2, NULL),
                 TC_DB_EINTEGRITY); /* check */
    p[1] = tc_db_null();
    CHECK_EQ_INT(tc_db_exec(db, "INSERT INTO c (pid, n) VALUES (?, ?)", p, 2, &changes), 0);
    CHECK_EQ_INT(changes, 1);
    CHECK_EQ_INT(tc_db_exec(db, "INSERT INTO c (pid, n) SELECT pid, 5 FROM c", NULL, 0, &changes),
                 0);
    CHECK_EQ_INT(changes, 1);
    CHECK_EQ_INT(tc_db_exec(db, "UPDATE c SET n = 3", NULL, 0, &changes), 0);
    CHECK_EQ_INT(changes, 2);
    CHECK_EQ_INT(tc_db_exec(db, "SELECT * FROM c", NULL, 0, &changes), 0);
    CHECK_EQ_INT(changes, 0); /* not DML */
    CHECK_EQ_INT(tc_db_query_int64(db, "SELECT id FROM p WHERE k = 'zz'", NULL, 0, &id),
                 TC_DB_ENOTFOUND);
}

static void test_cursors(tc_db *db)
{
    const char *sql = "SELECT value FROM json_each('[1,2,3]') WHERE value >= ?";
    tc_db_param one = tc_db_int64(1);
    tc_db_rows *outer = NULL, *inner = NULL;
    int64_t sum = 0;

    /* the same SQL nested: the inner cursor gets its own statement */
    CHECK_EQ_INT(tc_db_query(db, sql, &one, 1, &outer), 0);
    while (tc_db_rows_next(outer) == 1) {
        tc_db_param from = tc_db_int64(tc_db_col_int64(outer, 0));
        CHECK_EQ_INT(tc_db_query(db, sql, &from, 1, &inner), 0);
        while (tc_db_rows_next(inner) == 1)
            sum += tc_db_col_int64(inner, 0);
        tc_db_rows_free(inner);
        CHECK_EQ_INT(tc_db_exec(db, sql, &from, 1, NULL), 0);
    }
    tc_db_rows_free(outer);
    CHECK_EQ_INT(sum, (1 + 2 + 3) + (2 + 3) + 3);
    CHECK(tc_db_col_name(NULL, 0) == NULL);
}

static void test_cache_limit(tc_db *db)
{
    char sql[64];
    int64_t v = 0;
    /* more distinct statements than the cache holds: old ones are finalized, all still run */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < TC_DB__CACHE_MAX + 50; i++) {
            snprintf(sql, sizeof(sql), "SELECT %d + ?", i);
            tc_db_param p = tc_db_int64(round);
            CHECK_EQ_INT(tc_db_query_int64(db, sql, &p, 1, &v), 0);
            if (v != i + round)
                CHECK_EQ_INT(v, i + round);
        }
    }
    CHECK(db->ncached <= TC_DB__CACHE_MAX);
}

static void test_transactions(tc_db *db)
{
    int64_t n = -1;
    CHECK_EQ_INT(tc_db_exec_script(db, "CREATE TABLE tx (v BIGINT)"), 0);
    CHECK_EQ_INT(tc_db_commit(db), TC_DB_ESTATE);
    CHECK_EQ_INT(tc_db_rollback(db), 0); /* no-op */
    CHECK_EQ_INT(tc_db_begin(db), 0);
    CHECK(tc_db_in_transaction(db));
    CHECK_EQ_INT(tc_db_begin(db), TC_DB_ESTATE);
    CHECK_EQ_INT(tc_db_exec(db, "INSERT INTO tx VALUES (1)", NULL, 0, NULL), 0);
    CHECK_EQ_INT(tc_db_rollback(db), 0);
    CHECK(!tc_db_in_transaction(db));
    CHECK_EQ_INT(tc_db_query_int64(db, "SELECT count(*) FROM tx", NULL, 0, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(tc_db_begin(db), 0);
    CHECK_EQ_INT(tc_db_exec(db, "INSERT INTO tx VALUES (1)", NULL, 0, NULL), 0);
    CHECK_EQ_INT(tc_db_commit(db), 0);
    CHECK_EQ_INT(tc_db_query_int64(db, "SELECT count(*) FROM tx", NULL, 0, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(tc_db_dialect_of(db), TC_DB_SQLITE);
}

int main(void)
{
    tc_db *db = open_mem();
    REQUIRE(db);
    test_binding(db);
    test_checks(db);
    test_errors_and_changes(db);
    test_cursors(db);
    test_cache_limit(db);
    test_transactions(db);
    tc_db_close(db);
    return check_report();
}

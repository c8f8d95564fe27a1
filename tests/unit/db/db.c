/* Tests src/db/db.c without a server: `?` -> $n rewriting (string literals, quoted
 * identifiers, comments, dollar quotes), parameter constructors and checks, parameters
 * as PostgreSQL text, error names, url dispatch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "db/internal.h"

static void check_rewrite(const char *in, const char *want, int want_n)
{
    char *out = NULL;
    int n = -1;
    CHECK_EQ_INT(tc_db__rewrite_placeholders(in, &out, &n), 0);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(n, want_n);
    free(out);
}

static void test_rewrite(void)
{
    check_rewrite("", "", 0);
    check_rewrite("SELECT 1", "SELECT 1", 0);
    check_rewrite("SELECT ?", "SELECT $1", 1);
    check_rewrite("INSERT INTO t (a, b, c) VALUES (?, ?,?)",
                  "INSERT INTO t (a, b, c) VALUES ($1, $2,$3)", 3);
    /* inside string literals, with doubled quotes */
    check_rewrite("SELECT '?', ? , 'it''s ?', ?", "SELECT '?', $1 , 'it''s ?', $2", 2);
    check_rewrite("SELECT '''?'''||?", "SELECT '''?'''||$1", 1);
    /* E'' strings: a backslash escapes the quote */
    check_rewrite("SELECT E'\\'?', ?", "SELECT E'\\'?', $1", 1);
    check_rewrite("SELECT e'a\\\\', ?", "SELECT e'a\\\\', $1", 1);
    /* an identifier ending in e before a quote is not an E string: 'x\' ends at the \' */
    check_rewrite("SELECT name'x\\', ?", "SELECT name'x\\', $1", 1);
    /* quoted identifiers */
    check_rewrite("SELECT \"we?ird\"\"?\" FROM t WHERE a = ?",
                  "SELECT \"we?ird\"\"?\" FROM t WHERE a = $1", 1);
    /* comments */
    check_rewrite("SELECT ? -- what?\n, ?", "SELECT $1 -- what?\n, $2", 2);
    check_rewrite("SELECT ? -- what?", "SELECT $1 -- what?", 1);
    check_rewrite("SELECT /* a ? /* nested ? */ still ? */ ?",
                  "SELECT /* a ? /* nested ? */ still ? */ $1", 1);
    check_rewrite("SELECT 10 / ?", "SELECT 10 / $1", 1);
    check_rewrite("SELECT 10 - ?", "SELECT 10 - $1", 1);
    /* dollar quotes */
    check_rewrite("SELECT $$a ? b$$, ?", "SELECT $$a ? b$$, $1", 1);
    check_rewrite("SELECT $fn$ ? $$ ? $fn$, ?", "SELECT $fn$ ? $$ ? $fn$, $1", 1);
    check_rewrite("SELECT a$b, ?", "SELECT a$b, $1", 1); /* $ inside an identifier */
    /* unterminated runs swallow the rest (the server reports the syntax error) */
    check_rewrite("SELECT 'abc ?", "SELECT 'abc ?", 0);
    check_rewrite("SELECT ? /* ?", "SELECT $1 /* ?", 1);
    /* UTF-8 around placeholders is copied byte for byte */
    check_rewrite("SELECT 'héllo ?', ? AS \"naïve\"", "SELECT 'héllo ?', $1 AS \"naïve\"", 1);

    /* many placeholders: numbering goes past one digit */
    {
        char sql[4096] = "VALUES ", want[8192] = "VALUES ";
        for (int i = 1; i <= 120; i++) {
            strcat(sql, i > 1 ? ",?" : "?");
            sprintf(want + strlen(want), i > 1 ? ",$%d" : "$%d", i);
        }
        check_rewrite(sql, want, 120);
    }
    /* over PostgreSQL's 65535 parameters */
    {
        char *sql = malloc(70000), *out;
        int n;
        memset(sql, '?', 69999);
        sql[69999] = '\0';
        CHECK_EQ_INT(tc_db__rewrite_placeholders(sql, &out, &n), TC_DB_EINVAL);
        CHECK(out == NULL);
        free(sql);
    }
}

static void test_params(void)
{
    tc_db_param p = tc_db_int64(-42);
    CHECK_EQ_INT(p.type, TC_DB_INT64);
    CHECK_EQ_INT(p.v.i, -42);
    p = tc_db_double(2.5);
    CHECK_EQ_INT(p.type, TC_DB_DOUBLE);
    CHECK(p.v.d == 2.5);
    p = tc_db_text("héllo");
    CHECK_EQ_INT(p.type, TC_DB_TEXT);
    CHECK_EQ_INT(p.v.s.len, strlen("héllo"));
    p = tc_db_text(NULL);
    CHECK_EQ_INT(p.type, TC_DB_NULL);
    p = tc_db_textn("abcdef", 3);
    CHECK_EQ_INT(p.type, TC_DB_TEXT);
    CHECK_EQ_INT(p.v.s.len, 3);
    p = tc_db_null();
    CHECK_EQ_INT(p.type, TC_DB_NULL);
}

/* Parameters as PostgreSQL text need only a tc_db's scratch space: no server. */
static void test_params_to_text(void)
{
    tc_db db;
    const char *const *v = NULL;
    char big[5000];
    memset(&db, 0, sizeof(db));
    memset(big, 'x', sizeof(big));
    tc_db_param p[] = {tc_db_int64(INT64_MIN),       tc_db_int64(0),         tc_db_double(0.1),
                       tc_db_double(-INFINITY),      tc_db_double(INFINITY), tc_db_null(),
                       tc_db_textn("abc\xff", 3),    tc_db_textn("", 0),     tc_db_double(1e300),
                       tc_db_textn(big, sizeof(big))};
    CHECK_EQ_INT(tc_db__params_to_text(&db, p, 10, &v), 0);
    REQUIRE(v != NULL);
    CHECK_EQ_STR(v[0], "-9223372036854775808");
    CHECK_EQ_STR(v[1], "0");
    CHECK(strtod(v[2], NULL) == 0.1); /* round-trips exactly */
    CHECK_EQ_STR(v[3], "-Infinity");
    CHECK_EQ_STR(v[4], "Infinity");
    CHECK(v[5] == NULL);
    CHECK_EQ_STR(v[6], "abc");
    CHECK_EQ_STR(v[7], "");
    CHECK(strtod(v[8], NULL) == 1e300);
    CHECK_EQ_INT(strlen(v[9]), sizeof(big));
    free(db.scratch);
    free(db.values);

    /* only NULLs: no scratch space needed (none allocated) */
    memset(&db, 0, sizeof(db));
    tc_db_param nulls[2] = {tc_db_null(), tc_db_null()};
    CHECK_EQ_INT(tc_db__params_to_text(&db, nulls, 2, &v), 0);
    CHECK(v[0] == NULL && v[1] == NULL);
    free(db.scratch);
    free(db.values);
}

static void test_strerror_and_open(void)
{
    char err[256];
    int codes[] = {TC_DB_OK,          TC_DB_ERROR,      TC_DB_ENOMEM,   TC_DB_EINVAL,
                   TC_DB_ECONSTRAINT, TC_DB_EINTEGRITY, TC_DB_ETIMEOUT, TC_DB_ECONN,
                   TC_DB_ENOTFOUND,   TC_DB_ESCHEMA,    TC_DB_EEXIST,   TC_DB_ESTATE};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        CHECK(strcmp(tc_db_strerror(codes[i]), "unknown database error code") != 0);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(tc_db_strerror(codes[i]), tc_db_strerror(codes[j])) != 0);
    }
    CHECK_EQ_STR(tc_db_strerror(-1), "unknown database error code");

    tc_db_close(NULL); /* a no-op */
    CHECK(tc_db_open(NULL, 0, err, sizeof(err)) == NULL);
    CHECK(tc_db_open("mysql://user:secret@host/db", 0, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "secret") == NULL); /* never echo a url: it may hold a password */
    CHECK(strstr(err, "sqlite:") != NULL);
    CHECK(tc_db_open("sqlite:", 0, err, sizeof(err)) == NULL);
    CHECK(tc_db_open("sqlite:/nonexistent-dir/x/y.db", 0, err, sizeof(err)) == NULL);
    CHECK(strlen(err) > 0);
    CHECK(tc_db_open("sqlite:/nonexistent-dir/x/y.db", 0, NULL, 0) == NULL); /* err optional */
}

int main(void)
{
    test_rewrite();
    test_params();
    test_params_to_text();
    test_strerror_and_open();
    return check_report();
}

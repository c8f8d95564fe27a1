/*
 * pg.c — the PostgreSQL backend of db.h over libpq: one blocking PGconn with
 * statement_timeout and UTF-8 set on connect, statements prepared once per connection
 * (names tc1, tc2, ...) from the portable `?` SQL rewritten to $1..$n, parameters sent as
 * text (the server infers their types), results read whole in text format.
 * Not for: asynchronous or pipelined use; COPY; binary results.
 *
 * A connection found broken before a call outside a transaction is reset once (PQreset):
 * broken as libpq says, or as its socket says while it sat idle in the pool (the server
 * closed it: a restart). So a restarted server costs no failed call, not even one per
 * pooled connection; a read (SELECT) outside a transaction whose connection dies under
 * it is sent once more on the reset connection. Its prepared statements died with the
 * old session: the cache is emptied and statement_timeout set again.
 */
#define _GNU_SOURCE /* POLLRDHUP */
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include "db/internal.h"

typedef struct pg_rows {
    tc_db_rows base;
    PGresult *res;
    int row, nrows; /* row: the current row, -1 before the first */
} pg_rows;

static PGconn *conn_of(tc_db *db)
{
    return db->conn;
}

int tc_db__pg_code_for_sqlstate(const char *s)
{
    if (!s || strlen(s) != 5)
        return TC_DB_ERROR;
    if (strcmp(s, "23505") == 0) /* unique_violation */
        return TC_DB_ECONSTRAINT;
    if (strncmp(s, "23", 2) == 0) /* integrity_constraint_violation: fk, not null, check */
        return TC_DB_EINTEGRITY;
    if (strcmp(s, "57014") == 0 || /* query_canceled: statement_timeout */
        strcmp(s, "55P03") == 0 || /* lock_not_available: lock_timeout */
        strcmp(s, "25P03") == 0)   /* idle_in_transaction_session_timeout */
        return TC_DB_ETIMEOUT;
    if (strncmp(s, "08", 2) == 0 || /* connection_exception */
        strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0)
        return TC_DB_ECONN;      /* server shutting down or starting */
    if (strcmp(s, "53200") == 0) /* out_of_memory */
        return TC_DB_ENOMEM;
    return TC_DB_ERROR;
}

/* Records the error of res (or of the connection when res has none) and returns its code.
 * Clears res. */
static int pg_fail(tc_db *db, PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : "";
    int code;
    size_t len;

    if (!msg || !*msg)
        msg = PQerrorMessage(conn_of(db));
    if (state)
        code = tc_db__pg_code_for_sqlstate(state);
    else
        code = PQstatus(conn_of(db)) == CONNECTION_OK ? TC_DB_ERROR : TC_DB_ECONN;
    tc_db__fail(db, code, "postgres: %s", msg);
    /* libpq messages are multi-line ("ERROR: ...\nDETAIL: ...\n"): make them one line */
    for (char *p = db->errmsg; *p; p++)
        if (*p == '\n')
            *p = ' ';
    len = strlen(db->errmsg);
    while (len && db->errmsg[len - 1] == ' ')
        db->errmsg[--len] = '\0';
    if (state)
        snprintf(db->errmsg + len, sizeof(db->errmsg) - len, " [SQLSTATE %s]", state);
    PQclear(res);
    return code;
}

static int simple(tc_db *db, const char *sql)
{
    PGresult *res = PQexec(conn_of(db), sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY)
        return pg_fail(db, res);
    PQclear(res);
    return 0;
}

static int set_timeout(tc_db *db)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "SET statement_timeout = %d", db->timeout_ms);
    return simple(db, sql);
}

/* Whether an idle connection's socket says the server went away: it closed or
 * reset the connection (a restart, a terminated backend), or sent something
 * while we were not asking (the FATAL message of a shutting-down server), which
 * libpq takes in and then reports as a bad connection. One poll(2), no wait. */
static bool gone_while_idle(PGconn *c)
{
    struct pollfd p = {PQsocket(c), POLLIN | POLLRDHUP, 0};
    if (p.fd < 0 || poll(&p, 1, 0) < 0)
        return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL))
        return true;
    return (p.revents & POLLIN) && (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK);
}

/* Before a call: a broken connection outside a transaction is reset once, and a
 * pooled one that went away while idle is found so before it is used. */
static int ensure_conn(tc_db *db)
{
    PGconn *c = conn_of(db);
    if (PQstatus(c) == CONNECTION_OK && (db->in_tx || !gone_while_idle(c)))
        return 0;
    if (db->in_tx)
        return tc_db__fail(db, TC_DB_ECONN, "postgres: connection lost inside a transaction");
    db->forget_stmts = true;
    tc_db__stmt_clear(db);
    db->forget_stmts = false;
    PQreset(c);
    if (PQstatus(c) != CONNECTION_OK)
        return pg_fail(db, NULL);
    return set_timeout(db);
}

/* ---- statements -------------------------------------------------------------------- */

static int pg_prepare(tc_db *db, tc_db__stmt *st)
{
    char name[32], *sql;
    PGresult *res;
    int rc, n;

    if ((rc = tc_db__rewrite_placeholders(st->sql, &sql, &n)) != 0)
        return tc_db__fail(db, rc, "cannot rewrite placeholders: %s", tc_db_strerror(rc));
    snprintf(name, sizeof(name), "tc%llu", (unsigned long long)++db->next_name);
    res = PQprepare(conn_of(db), name, sql, n, NULL);
    free(sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return pg_fail(db, res);
    PQclear(res);
    if (!(st->handle = strdup(name)))
        return tc_db__fail(db, TC_DB_ENOMEM, "out of memory");
    st->nparams = n;
    return 0;
}

static void pg_finalize(tc_db *db, tc_db__stmt *st)
{
    if (!db->forget_stmts && PQstatus(conn_of(db)) == CONNECTION_OK) {
        char sql[48];
        snprintf(sql, sizeof(sql), "DEALLOCATE %s", (const char *)st->handle);
        PQclear(PQexec(conn_of(db), sql));
    }
    free(st->handle);
    st->handle = NULL;
}

static int pg_can_evict(tc_db *db)
{
    return PQtransactionStatus(conn_of(db)) == PQTRANS_IDLE;
}

/* Prepares (once) and runs sql; on success *out holds the result (caller clears). */
static int run(tc_db *db, const char *sql, const tc_db_param *params, int n, PGresult **out)
{
    const char *const *values = NULL;
    tc_db__stmt *st;
    PGresult *res;
    ExecStatusType s;
    int rc;

    *out = NULL;
    if ((rc = ensure_conn(db)) != 0)
        return rc;
    if (!(st = tc_db__stmt_get(db, sql, &rc)))
        return rc;
    if (n != st->nparams)
        return tc_db__fail(db, TC_DB_EINVAL, "statement has %d placeholder(s), %d param(s) given",
                           st->nparams, n);
    if (n && (rc = tc_db__params_to_text(db, params, n, &values)) != 0)
        return rc;
    res = PQexecPrepared(conn_of(db), st->handle, n, values, NULL, NULL, 0);
    s = PQresultStatus(res);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        return pg_fail(db, res);
    *out = res;
    return 0;
}

static int pg_exec(tc_db *db, const char *sql, const tc_db_param *params, int n, int64_t *changes)
{
    PGresult *res;
    int rc = run(db, sql, params, n, &res);
    if (rc == 0 && changes)
        *changes = strtoll(PQcmdTuples(res), NULL, 10); /* "" for non-DML: 0 */
    PQclear(res);
    return rc;
}

/* A read that changes nothing: safe to send again if the connection died under it. */
static bool plain_read(const char *sql)
{
    while (*sql == ' ' || *sql == '\n' || *sql == '\t')
        sql++;
    return strncasecmp(sql, "SELECT", 6) == 0;
}

static int pg_query(tc_db *db, const char *sql, const tc_db_param *params, int n, tc_db_rows **out)
{
    pg_rows *r;
    PGresult *res;
    int rc = run(db, sql, params, n, &res);
    /* The connection died between the check and the call (or the check could not
     * tell): a read outside a transaction goes once more, on the connection reset. */
    if (rc == TC_DB_ECONN && !db->in_tx && plain_read(sql))
        rc = run(db, sql, params, n, &res);
    if (rc != 0)
        return rc;
    if (!(r = calloc(1, sizeof(*r)))) {
        PQclear(res);
        return tc_db__fail(db, TC_DB_ENOMEM, "out of memory");
    }
    r->base.db = db;
    r->res = res;
    r->row = -1;
    r->nrows = PQntuples(res);
    *out = &r->base;
    return 0;
}

static int pg_rows_next(tc_db_rows *rows)
{
    pg_rows *r = (pg_rows *)rows;
    if (r->row < r->nrows)
        r->row++;
    return r->row < r->nrows ? 1 : 0;
}

/* The current row's value of col, or NULL when there is no current row. */
static const char *value(const tc_db_rows *rows, int col)
{
    const pg_rows *r = (const pg_rows *)rows;
    if (r->row < 0 || r->row >= r->nrows || PQgetisnull(r->res, r->row, col))
        return NULL;
    return PQgetvalue(r->res, r->row, col);
}

static int pg_col_count(const tc_db_rows *rows)
{
    return PQnfields(((const pg_rows *)rows)->res);
}

static const char *pg_col_name(const tc_db_rows *rows, int col)
{
    return PQfname(((const pg_rows *)rows)->res, col);
}

static int pg_col_is_null(const tc_db_rows *rows, int col)
{
    return value(rows, col) == NULL;
}

static int64_t pg_col_int64(const tc_db_rows *rows, int col)
{
    const char *v = value(rows, col);
    if (!v)
        return 0;
    if (v[0] == 't' && v[1] == '\0') /* boolean */
        return 1;
    return strtoll(v, NULL, 10);
}

static double pg_col_double(const tc_db_rows *rows, int col)
{
    const char *v = value(rows, col);
    return v ? strtod(v, NULL) : 0.0;
}

static const char *pg_col_text(const tc_db_rows *rows, int col, size_t *len)
{
    const pg_rows *r = (const pg_rows *)rows;
    const char *v = value(rows, col);
    if (v && len)
        *len = (size_t)PQgetlength(r->res, r->row, col);
    return v;
}

static void pg_rows_free(tc_db_rows *rows)
{
    pg_rows *r = (pg_rows *)rows;
    PQclear(r->res);
    free(r);
}

/* ---- scripts and transactions ------------------------------------------------------ */

static int pg_script(tc_db *db, const char *sql)
{
    int rc = ensure_conn(db);
    return rc ? rc : simple(db, sql);
}

static int pg_begin(tc_db *db)
{
    int rc = ensure_conn(db);
    return rc ? rc : simple(db, "BEGIN");
}

static int pg_rollback(tc_db *db)
{
    PGTransactionStatusType t = PQtransactionStatus(conn_of(db));
    if (t == PQTRANS_IDLE || t == PQTRANS_UNKNOWN) /* nothing open, or the session is gone */
        return 0;
    return simple(db, "ROLLBACK");
}

static int pg_commit(tc_db *db)
{
    PGresult *res = PQexec(conn_of(db), "COMMIT");
    int rc;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        char keep[sizeof(db->errmsg)];
        rc = pg_fail(db, res);
        memcpy(keep, db->errmsg, sizeof(keep));
        pg_rollback(db);
        memcpy(db->errmsg, keep, sizeof(keep));
        return rc;
    }
    /* COMMIT of a transaction aborted by an earlier error succeeds as "ROLLBACK" */
    rc = strcmp(PQcmdStatus(res), "ROLLBACK") == 0
             ? tc_db__fail(db, TC_DB_ERROR,
                           "postgres: transaction was aborted by an earlier error; rolled back")
             : 0;
    PQclear(res);
    return rc;
}

static void pg_close(tc_db *db)
{
    PQfinish(conn_of(db));
    db->conn = NULL;
}

static const tc_db__ops pg_ops = {
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .can_evict = pg_can_evict,
    .exec = pg_exec,
    .query = pg_query,
    .script = pg_script,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .rows_next = pg_rows_next,
    .col_count = pg_col_count,
    .col_name = pg_col_name,
    .col_is_null = pg_col_is_null,
    .col_int64 = pg_col_int64,
    .col_double = pg_col_double,
    .col_text = pg_col_text,
    .rows_free = pg_rows_free,
    .close = pg_close,
};

/* ---- open -------------------------------------------------------------------------- */

static void quiet_notices(void *arg, const char *message)
{
    /* NOTICEs ("relation already exists, skipping") are not errors: not printed */
}

int tc_db__pg_open(tc_db *db, const char *url, char *err, size_t errlen)
{
    char connect_timeout[16];
    /* Settings before "dbname" are defaults that the url may override. */
    const char *keys[] = {"connect_timeout", "client_encoding", "dbname", NULL};
    const char *vals[] = {connect_timeout, "UTF8", url, NULL};
    PGconn *c;
    int secs = (db->timeout_ms + 999) / 1000, rc;

    snprintf(connect_timeout, sizeof(connect_timeout), "%d", secs < 2 ? 2 : secs);
    c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        tc_db__set_err(err, errlen, "postgres: out of memory");
        return TC_DB_ENOMEM;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        tc_db__set_err(err, errlen, "postgres: %s", PQerrorMessage(c));
        if (err && errlen && strlen(err) && err[strlen(err) - 1] == '\n')
            err[strlen(err) - 1] = '\0';
        PQfinish(c);
        return TC_DB_ECONN;
    }
    PQsetNoticeProcessor(c, quiet_notices, NULL);
    db->conn = c;
    db->ops = &pg_ops;
    if ((rc = set_timeout(db)) != 0) {
        tc_db__set_err(err, errlen, "%s", db->errmsg);
        PQfinish(c);
        db->conn = NULL;
        return rc;
    }
    return 0;
}

/*
 * sqlite.c — the SQLite backend of db.h: one sqlite3 connection in WAL mode with
 * foreign keys on, synchronous=NORMAL and a busy timeout, cached prepared statements,
 * and lazily stepped cursors. Not for: anything the engine-neutral db.c already checks.
 *
 * A connection is opened in SQLite's multi-thread mode (SQLITE_OPEN_NOMUTEX): db.h promises
 * one thread at a time per connection, so SQLite's own per-connection mutex is not needed.
 * A cached statement that an open cursor is still stepping is "busy"; running the same SQL
 * meanwhile (a nested query) prepares a private statement, finalized after use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "db/internal.h"

typedef struct sq_rows {
    tc_db_rows base;
    sqlite3_stmt *stmt;
    tc_db__stmt *entry; /* the cached entry it borrows (marked busy), or NULL: private */
    bool pending;       /* the first row was stepped by tc_db_query and not yet returned */
    bool done;          /* SQLITE_DONE seen: stepping again would restart the statement */
} sq_rows;

static sqlite3 *conn_of(tc_db *db)
{
    return db->conn;
}

/* Maps the connection's last error to a TC_DB_E* code and records its message. */
static int sq_fail(tc_db *db, int rc)
{
    sqlite3 *c = conn_of(db);
    int ext = c ? sqlite3_extended_errcode(c) : rc;
    int code;

    if ((ext & 0xff) != (rc & 0xff))
        ext = rc; /* the connection's last error is not this one (e.g. from a reset) */
    switch (ext & 0xff) {
    case SQLITE_CONSTRAINT:
        code = (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY ||
                ext == SQLITE_CONSTRAINT_ROWID)
                   ? TC_DB_ECONSTRAINT
                   : TC_DB_EINTEGRITY;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        code = TC_DB_ETIMEOUT;
        break;
    case SQLITE_NOMEM:
        code = TC_DB_ENOMEM;
        break;
    case SQLITE_RANGE:
    case SQLITE_MISUSE:
        code = TC_DB_EINVAL;
        break;
    default:
        code = TC_DB_ERROR;
        break;
    }
    return tc_db__fail(db, code, "sqlite: %s (%d)", c ? sqlite3_errmsg(c) : sqlite3_errstr(rc),
                       ext);
}

/* ---- statements -------------------------------------------------------------------- */

static int sq_prepare(tc_db *db, tc_db__stmt *st)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v3(conn_of(db), st->sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
    if (rc != SQLITE_OK)
        return sq_fail(db, rc);
    if (!stmt) /* only whitespace or a comment */
        return tc_db__fail(db, TC_DB_EINVAL, "sqlite: empty statement");
    st->handle = stmt;
    st->nparams = sqlite3_bind_parameter_count(stmt);
    return 0;
}

static void sq_finalize(tc_db *db, tc_db__stmt *st)
{
    sqlite3_finalize(st->handle);
    st->handle = NULL;
}

static int sq_can_evict(tc_db *db)
{
    return 1;
}

/* The statement to run sql with: the cached one, or a private one if the cached one is
 * busy under an open cursor (*entry is then NULL). */
static int get_stmt(tc_db *db, const char *sql, sqlite3_stmt **stmt, tc_db__stmt **entry)
{
    int rc;
    tc_db__stmt *st = tc_db__stmt_get(db, sql, &rc);

    *stmt = NULL;
    *entry = NULL;
    if (!st)
        return rc;
    if (!st->busy) {
        *stmt = st->handle;
        *entry = st;
        return 0;
    }
    if ((rc = sqlite3_prepare_v2(conn_of(db), sql, -1, stmt, NULL)) != SQLITE_OK)
        return sq_fail(db, rc);
    return 0;
}

static void put_stmt(sqlite3_stmt *stmt, tc_db__stmt *entry)
{
    if (entry) {
        sqlite3_reset(stmt);
        entry->busy = false;
    } else {
        sqlite3_finalize(stmt);
    }
}

static int bind(tc_db *db, sqlite3_stmt *stmt, const tc_db_param *params, int n)
{
    int want = sqlite3_bind_parameter_count(stmt), rc = SQLITE_OK;
    if (n != want)
        return tc_db__fail(db, TC_DB_EINVAL, "statement has %d placeholder(s), %d param(s) given",
                           want, n);
    for (int i = 0; i < n && rc == SQLITE_OK; i++) {
        const tc_db_param *p = &params[i];
        switch (p->type) {
        case TC_DB_INT64:
            rc = sqlite3_bind_int64(stmt, i + 1, p->v.i);
            break;
        case TC_DB_DOUBLE:
            rc = sqlite3_bind_double(stmt, i + 1, p->v.d);
            break;
        case TC_DB_TEXT:
            rc = sqlite3_bind_text64(stmt, i + 1, p->v.s.p ? p->v.s.p : "", p->v.s.len,
                                     SQLITE_TRANSIENT, SQLITE_UTF8);
            break;
        default:
            rc = sqlite3_bind_null(stmt, i + 1);
            break;
        }
    }
    return rc == SQLITE_OK ? 0 : sq_fail(db, rc);
}

static int sq_exec(tc_db *db, const char *sql, const tc_db_param *params, int n, int64_t *changes)
{
    sqlite3_stmt *stmt;
    tc_db__stmt *entry;
    int rc;

    if ((rc = get_stmt(db, sql, &stmt, &entry)) != 0)
        return rc;
    if ((rc = bind(db, stmt, params, n)) == 0) {
        int s;
        while ((s = sqlite3_step(stmt)) == SQLITE_ROW) {
        }
        if (s != SQLITE_DONE)
            rc = sq_fail(db, s);
        else if (changes)
            *changes = sqlite3_stmt_readonly(stmt) ? 0 : sqlite3_changes64(conn_of(db));
    }
    put_stmt(stmt, entry);
    return rc;
}

static int sq_query(tc_db *db, const char *sql, const tc_db_param *params, int n, tc_db_rows **out)
{
    sq_rows *r;
    int rc, s;

    if (!(r = calloc(1, sizeof(*r))))
        return tc_db__fail(db, TC_DB_ENOMEM, "out of memory");
    r->base.db = db;
    if ((rc = get_stmt(db, sql, &r->stmt, &r->entry)) != 0) {
        free(r);
        return rc;
    }
    if ((rc = bind(db, r->stmt, params, n)) != 0) {
        put_stmt(r->stmt, r->entry);
        free(r);
        return rc;
    }
    /* Step once now so that errors (a constraint on INSERT ... RETURNING) surface here. */
    s = sqlite3_step(r->stmt);
    if (s != SQLITE_ROW && s != SQLITE_DONE) {
        rc = sq_fail(db, s);
        put_stmt(r->stmt, r->entry);
        free(r);
        return rc;
    }
    r->pending = s == SQLITE_ROW;
    r->done = s == SQLITE_DONE;
    if (r->entry)
        r->entry->busy = true;
    *out = &r->base;
    return 0;
}

static int sq_rows_next(tc_db_rows *rows)
{
    sq_rows *r = (sq_rows *)rows;
    int s;
    if (r->pending) {
        r->pending = false;
        return 1;
    }
    if (r->done)
        return 0;
    s = sqlite3_step(r->stmt);
    if (s == SQLITE_ROW)
        return 1;
    r->done = true;
    return s == SQLITE_DONE ? 0 : sq_fail(rows->db, s);
}

static int sq_col_count(const tc_db_rows *rows)
{
    return sqlite3_column_count(((const sq_rows *)rows)->stmt);
}

static const char *sq_col_name(const tc_db_rows *rows, int col)
{
    return sqlite3_column_name(((const sq_rows *)rows)->stmt, col);
}

static int sq_col_is_null(const tc_db_rows *rows, int col)
{
    return sqlite3_column_type(((const sq_rows *)rows)->stmt, col) == SQLITE_NULL;
}

static int64_t sq_col_int64(const tc_db_rows *rows, int col)
{
    return sqlite3_column_int64(((const sq_rows *)rows)->stmt, col);
}

static double sq_col_double(const tc_db_rows *rows, int col)
{
    return sqlite3_column_double(((const sq_rows *)rows)->stmt, col);
}

static const char *sq_col_text(const tc_db_rows *rows, int col, size_t *len)
{
    sqlite3_stmt *stmt = ((const sq_rows *)rows)->stmt;
    const char *s = (const char *)sqlite3_column_text(stmt, col);
    if (s && len)
        *len = (size_t)sqlite3_column_bytes(stmt, col);
    return s;
}

static void sq_rows_free(tc_db_rows *rows)
{
    sq_rows *r = (sq_rows *)rows;
    put_stmt(r->stmt, r->entry);
    free(r);
}

/* ---- scripts and transactions ------------------------------------------------------ */

static int sq_script(tc_db *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(conn_of(db), sql, NULL, NULL, &msg);
    sqlite3_free(msg);
    return rc == SQLITE_OK ? 0 : sq_fail(db, rc);
}

static int sq_begin(tc_db *db)
{
    return sq_script(db, "BEGIN IMMEDIATE");
}

static int sq_rollback(tc_db *db)
{
    if (sqlite3_get_autocommit(conn_of(db)))
        return 0; /* SQLite already rolled back (some errors do that by themselves) */
    return sq_script(db, "ROLLBACK");
}

static int sq_commit(tc_db *db)
{
    int rc = sq_script(db, "COMMIT");
    if (rc != 0 && !sqlite3_get_autocommit(conn_of(db))) {
        char keep[sizeof(db->errmsg)];
        memcpy(keep, db->errmsg, sizeof(keep));
        sqlite3_exec(conn_of(db), "ROLLBACK", NULL, NULL, NULL);
        memcpy(db->errmsg, keep, sizeof(keep));
    }
    return rc;
}

static void sq_close(tc_db *db)
{
    sqlite3_close_v2(conn_of(db));
    db->conn = NULL;
}

static const tc_db__ops sqlite_ops = {
    .prepare = sq_prepare,
    .finalize = sq_finalize,
    .can_evict = sq_can_evict,
    .exec = sq_exec,
    .query = sq_query,
    .script = sq_script,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .rows_next = sq_rows_next,
    .col_count = sq_col_count,
    .col_name = sq_col_name,
    .col_is_null = sq_col_is_null,
    .col_int64 = sq_col_int64,
    .col_double = sq_col_double,
    .col_text = sq_col_text,
    .rows_free = sq_rows_free,
    .close = sq_close,
};

/* ---- open -------------------------------------------------------------------------- */

/* Runs a PRAGMA that answers one row; copies the answer (lowercase expected) to out. */
static int pragma(tc_db *db, const char *sql, char *out, size_t outlen)
{
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(conn_of(db), sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return sq_fail(db, rc);
    rc = sqlite3_step(stmt);
    if (out && outlen) {
        const char *v = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(stmt, 0) : NULL;
        snprintf(out, outlen, "%s", v ? v : "");
    }
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        sqlite3_finalize(stmt);
        return 0;
    }
    sqlite3_finalize(stmt);
    return sq_fail(db, rc);
}

int tc_db__sqlite_open(tc_db *db, const char *path, char *err, size_t errlen)
{
    sqlite3 *c = NULL;
    char mode[32];
    int rc;

    if (sqlite3_libversion_number() < 3035000) { /* RETURNING */
        tc_db__set_err(err, errlen, "sqlite: version %s is too old, 3.35 or newer needed",
                       sqlite3_libversion());
        return TC_DB_EINVAL;
    }
    if (!sqlite3_threadsafe()) {
        tc_db__set_err(err, errlen, "sqlite: library built without thread support");
        return TC_DB_EINVAL;
    }
    if (!*path) {
        tc_db__set_err(err, errlen, "sqlite: empty path");
        return TC_DB_EINVAL;
    }
    rc = sqlite3_open_v2(path, &c, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        tc_db__set_err(err, errlen, "sqlite: cannot open %s: %s", path,
                       c ? sqlite3_errmsg(c) : sqlite3_errstr(rc));
        sqlite3_close_v2(c);
        return rc == SQLITE_NOMEM ? TC_DB_ENOMEM : TC_DB_ECONN;
    }
    db->conn = c;
    db->ops = &sqlite_ops;
    sqlite3_extended_result_codes(c, 1);
    sqlite3_busy_timeout(c, db->timeout_ms);
    rc = pragma(db, "PRAGMA journal_mode=WAL", mode, sizeof(mode));
    if (rc == 0 && strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)
        rc = tc_db__fail(db, TC_DB_ERROR, "sqlite: cannot switch %s to WAL (journal_mode=%s)", path,
                         mode);
    if (rc == 0)
        rc = pragma(db, "PRAGMA foreign_keys=ON", NULL, 0);
    if (rc == 0)
        rc = pragma(db, "PRAGMA synchronous=NORMAL", NULL, 0);
    if (rc != 0) {
        tc_db__set_err(err, errlen, "%s", db->errmsg);
        sqlite3_close_v2(c);
        db->conn = NULL;
        return rc;
    }
    return 0;
}

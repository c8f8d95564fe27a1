/*
 * What the database layer's files share with each other and with nobody else (the app
 * includes db.h). Tests may include this header to reach the pure parts directly.
 *
 *   db.c       open/close dispatch, parameter checks, placeholder rewriting, the per-
 *              connection statement cache, errors, transactions, the pool
 *   sqlite.c   the SQLite backend
 *   pg.c       the PostgreSQL backend (libpq)
 *   migrate.c  versioned schema migrations
 *   seed.c     the demo-data generator
 *
 * A backend fills a tc_db__ops table; db.c calls it after checking arguments. A backend
 * never sees a NULL db, a negative n, or an invalid parameter.
 */
#ifndef TC_DB_INTERNAL_H
#define TC_DB_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>

#include "db/db.h"

/* A prepared statement kept by a connection, keyed by its portable SQL text. */
typedef struct tc_db__stmt {
    char *sql;     /* the key: the SQL as the caller wrote it (with `?`) */
    uint64_t hash; /* of sql */
    void *handle;  /* sqlite3_stmt *, or the PostgreSQL statement name (malloc'd) */
    int nparams;   /* number of `?` */
    bool busy;     /* an open cursor is stepping it (SQLite): not reusable, not evictable */
    uint64_t used; /* LRU clock value of the last use */
    struct tc_db__stmt *next;
} tc_db__stmt;

#define TC_DB__CACHE_BUCKETS 256
#define TC_DB__CACHE_MAX 256 /* statements kept per connection before the LRU one goes */

typedef struct tc_db__ops {
    /* Prepare st->sql into st->handle and st->nparams. */
    int (*prepare)(tc_db *db, tc_db__stmt *st);
    /* Release st->handle (the entry itself is freed by db.c). */
    void (*finalize)(tc_db *db, tc_db__stmt *st);
    /* 1 if a statement may be finalized now (PostgreSQL: not inside a transaction). */
    int (*can_evict)(tc_db *db);
    int (*exec)(tc_db *db, const char *sql, const tc_db_param *params, int n, int64_t *changes);
    int (*query)(tc_db *db, const char *sql, const tc_db_param *params, int n, tc_db_rows **out);
    int (*script)(tc_db *db, const char *sql);
    /* BEGIN / COMMIT / ROLLBACK; on a failed COMMIT the backend rolls back. */
    int (*begin)(tc_db *db);
    int (*commit)(tc_db *db);
    int (*rollback)(tc_db *db);
    int (*rows_next)(tc_db_rows *rows);
    int (*col_count)(const tc_db_rows *rows);
    const char *(*col_name)(const tc_db_rows *rows, int col);
    int (*col_is_null)(const tc_db_rows *rows, int col);
    int64_t (*col_int64)(const tc_db_rows *rows, int col);
    double (*col_double)(const tc_db_rows *rows, int col);
    const char *(*col_text)(const tc_db_rows *rows, int col, size_t *len);
    void (*rows_free)(tc_db_rows *rows);
    void (*close)(tc_db *db);
} tc_db__ops;

struct tc_db {
    const tc_db__ops *ops;
    tc_db_dialect dialect;
    int timeout_ms;
    bool in_tx;
    bool forget_stmts; /* finalize without telling the server: closing, or it forgot them */
    void *conn;        /* sqlite3 * or PGconn * */
    char errmsg[512];
    int errcode; /* the code of the last error (tc_db_errcode), 0 after success */
    /* statement cache */
    tc_db__stmt *buckets[TC_DB__CACHE_BUCKETS];
    int ncached;
    uint64_t clock;
    uint64_t next_name; /* PostgreSQL statement names tc1, tc2, ... */
    /* PostgreSQL: scratch space for parameters as text, reused by every call */
    char *scratch;
    size_t scratch_cap;
    const char **values;
    int values_cap;
};

/* A cursor: each backend allocates its own struct that starts with this header. */
struct tc_db_rows {
    tc_db *db;
    uint64_t busy_us; /* time in tc_db_query and tc_db_rows_next, recorded at free */
    bool failed;      /* a step failed: the query counts as an error */
};

/* ---- db.c ---------------------------------------------------------------------------- */

/* Records a message on db (printf-style) and returns code. */
int tc_db__fail(tc_db *db, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void tc_db__clear_error(tc_db *db);
/* Writes a message to err (if not NULL). */
void tc_db__set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The cached statement for sql, prepared now if new (may evict the least recently used).
 * On error returns NULL with *rc set (the message on db). */
tc_db__stmt *tc_db__stmt_get(tc_db *db, const char *sql, int *rc);
/* Finalizes and forgets every cached statement (connection closed or reset). */
void tc_db__stmt_clear(tc_db *db);

/*
 * Rewrites `?` placeholders to $1..$n outside '...' and E'...' literals, "..." identifiers,
 * -- and (nested) block comments, and $tag$...$tag$ quotes. *out gets a malloc'd string
 * (caller frees), *nparams the count. Returns 0, TC_DB_ENOMEM, or TC_DB_EINVAL for more
 * than 65535 placeholders (PostgreSQL's limit).
 */
int tc_db__rewrite_placeholders(const char *sql, char **out, int *nparams);

/* Parameters as PostgreSQL text: values[i] is NULL for SQL NULL, else a NUL-terminated
 * string in db->scratch. The pointers stay valid until the next call. */
int tc_db__params_to_text(tc_db *db, const tc_db_param *params, int n, const char *const **values);

/* ---- backends -------------------------------------------------------------------------- */

/* Each fills db->ops, db->conn; on failure returns a code with the message in err. */
int tc_db__sqlite_open(tc_db *db, const char *path, char *err, size_t errlen);
int tc_db__pg_open(tc_db *db, const char *url, char *err, size_t errlen);

/* PostgreSQL SQLSTATE -> TC_DB_E* code (pure; unit-tested). */
int tc_db__pg_code_for_sqlstate(const char *sqlstate);

#endif

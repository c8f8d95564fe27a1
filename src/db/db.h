/*
 * db.h — the one database interface of tiercache, over SQLite and PostgreSQL.
 *
 * What it is for: the app layer writes each query ONCE, with `?` placeholders, and runs it
 * on either engine: SQLite (embedded default, `sqlite:<path>`) or PostgreSQL (libpq,
 * `postgres://...` / `postgresql://...`). Prepared statements are cached per connection,
 * keyed by the SQL text. Plus: transactions, a connection pool for worker threads,
 * versioned migrations (migrate.c) and the demo-data generator (seed.c).
 * What it is not: an ORM or a query builder. SQL that differs between the engines stays
 * the caller's business (tc_db_dialect() tells which one it talks to).
 *
 * Portable SQL, in short:
 *   - placeholders are `?` only (no ?NNN, :name, $n); the PostgreSQL backend rewrites them
 *     to $1..$n outside string literals, quoted identifiers, comments and dollar quotes.
 *     PostgreSQL's jsonb `?`, `?|`, `?&` operators therefore cannot be written; use
 *     jsonb_exists() and friends.
 *   - integers are 64-bit (BIGINT), times are integer unix milliseconds, booleans are
 *     read with tc_db_col_int64 (PostgreSQL's 't'/'f' read as 1/0).
 *   - PostgreSQL infers each parameter's type from where it is used; where it cannot
 *     (`SELECT ?`, `? IS NULL`) write CAST(? AS BIGINT) / CAST(? AS TEXT).
 *   - new ids: `INSERT ... RETURNING id` with tc_db_query_int64() (SQLite >= 3.35).
 *   - after any error inside a transaction, roll it back: PostgreSQL refuses every further
 *     statement of an aborted transaction, SQLite would go on; do the portable thing.
 *   - integer constants in SQL are 32-bit on PostgreSQL: 60 * 86400000 overflows there;
 *     pass big numbers as parameters.
 *   - PostgreSQL statements are named server-side prepared statements: a pooler in front
 *     of the server must keep sessions (PgBouncer session mode, not transaction mode).
 *
 * Threads: a tc_db is ONE connection, used by one thread at a time (it may move between
 * threads, e.g. through the pool). tc_db_pool is thread-safe.
 *
 * Errors: functions return 0 (or a count) on success, or a negative TC_DB_E* code;
 * tc_db_strerror() names the code, tc_db_errmsg() holds the engine's message of the last
 * error on that connection. The codes live in -200..-299: distinct from the cache
 * engine's TC_E* (-1..-99) and the HTTP layer's TC_HTTP_E* (-100..-199), so a caller
 * holding several can tell them apart.
 */
#ifndef TC_DB_DB_H
#define TC_DB_DB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    TC_DB_OK = 0,
    TC_DB_ERROR = -200,       /* any other engine error (syntax, missing table, ...) */
    TC_DB_ENOMEM = -201,      /* out of memory */
    TC_DB_EINVAL = -202,      /* bad argument: param count, NUL byte in text, NaN, bad url */
    TC_DB_ECONSTRAINT = -203, /* unique or primary-key violation */
    TC_DB_EINTEGRITY = -204,  /* another constraint failed: foreign key, NOT NULL, CHECK */
    TC_DB_ETIMEOUT = -205,    /* SQLite busy timeout, PostgreSQL statement/lock timeout,
                                 or no pooled connection free in time */
    TC_DB_ECONN = -206,       /* cannot connect, or the connection was lost */
    TC_DB_ENOTFOUND = -207,   /* tc_db_query_int64/_text: the query returned no row */
    TC_DB_ESCHEMA = -208,     /* the database's schema is newer than this build knows */
    TC_DB_EEXIST = -209,      /* tc_db_seed: the database already holds users */
    TC_DB_ESTATE = -210,      /* call out of order: begin inside a transaction, ... */
};

/* A static string naming the code ("unique constraint violation", ...). */
const char *tc_db_strerror(int err);

typedef struct tc_db tc_db;
typedef struct tc_db_rows tc_db_rows;
typedef struct tc_db_pool tc_db_pool;

typedef enum tc_db_dialect { TC_DB_SQLITE = 1, TC_DB_POSTGRES = 2 } tc_db_dialect;

#define TC_DB_DEFAULT_TIMEOUT_MS 5000

/* ---- connections ------------------------------------------------------------------- */

/*
 * Opens one connection.
 *   url: "sqlite:<path>" (also "sqlite://<path>"; "sqlite::memory:" for a private in-memory
 *        database): WAL journal, foreign_keys=ON, synchronous=NORMAL, busy_timeout.
 *        "postgres://..." or "postgresql://..." (any libpq URI): client_encoding UTF8,
 *        statement_timeout set on connect.
 *   timeout_ms: SQLite's busy timeout / PostgreSQL's statement_timeout (and, rounded up to
 *        seconds, at least 2, libpq's connect_timeout unless the url sets one).
 *        <= 0 means TC_DB_DEFAULT_TIMEOUT_MS.
 * Returns the connection (the caller closes it with tc_db_close), or NULL with a message
 * in err (err may be NULL).
 */
tc_db *tc_db_open(const char *url, int timeout_ms, char *err, size_t errlen);
/* Closes the connection and finalizes its cached statements. NULL is a no-op. Open
 * cursors (tc_db_rows) of this connection must have been freed before. */
void tc_db_close(tc_db *db);

tc_db_dialect tc_db_dialect_of(const tc_db *db);
/* The engine's message for the last error on this connection ("" if none). Owned by db,
 * valid until the next call on db. */
const char *tc_db_errmsg(const tc_db *db);
/* The code of the last error on db (what the failing call returned), or 0. */
int tc_db_errcode(const tc_db *db);
/* Whether err means the database cannot be reached or did not answer in time
 * (TC_DB_ECONN, TC_DB_ETIMEOUT): "unavailable, try again", not a bug. */
static inline int tc_db_unavailable(int err)
{
    return err == TC_DB_ECONN || err == TC_DB_ETIMEOUT;
}

/* ---- parameters -------------------------------------------------------------------- */

typedef enum tc_db_type { TC_DB_NULL = 0, TC_DB_INT64, TC_DB_DOUBLE, TC_DB_TEXT } tc_db_type;

/* One bound value. Text is not copied by these constructors: it must stay valid until the
 * call that takes the params returns (the backends copy what they keep). Text must not
 * contain NUL bytes (PostgreSQL cannot store them; TC_DB_EINVAL) and should be UTF-8
 * (PostgreSQL rejects invalid UTF-8, SQLite does not check). A double must not be NaN. */
typedef struct tc_db_param {
    tc_db_type type;
    union {
        int64_t i;
        double d;
        struct {
            const char *p;
            size_t len;
        } s;
    } v;
} tc_db_param;

static inline tc_db_param tc_db_null(void)
{
    tc_db_param p = {TC_DB_NULL, {0}};
    return p;
}
static inline tc_db_param tc_db_int64(int64_t i)
{
    tc_db_param p = {TC_DB_INT64, {0}};
    p.v.i = i;
    return p;
}
static inline tc_db_param tc_db_double(double d)
{
    tc_db_param p = {TC_DB_DOUBLE, {0}};
    p.v.d = d;
    return p;
}
/* Text of len bytes (need not be NUL-terminated). A NULL pointer gives SQL NULL. */
static inline tc_db_param tc_db_textn(const char *s, size_t len)
{
    tc_db_param p = {s ? TC_DB_TEXT : TC_DB_NULL, {0}};
    p.v.s.p = s;
    p.v.s.len = s ? len : 0;
    return p;
}
/* NUL-terminated text; NULL gives SQL NULL. */
tc_db_param tc_db_text(const char *s);

/* ---- statements -------------------------------------------------------------------- */

/*
 * Runs one statement to completion (its rows, if any, are discarded).
 * n must equal the number of `?` in sql (TC_DB_EINVAL otherwise). changes (may be NULL)
 * gets the number of rows an INSERT/UPDATE/DELETE changed, 0 for other statements.
 * The statement is prepared once per connection and kept (keyed by sql).
 */
int tc_db_exec(tc_db *db, const char *sql, const tc_db_param *params, int n, int64_t *changes);

/*
 * Runs a query and returns a cursor in *out (the caller frees it with tc_db_rows_free,
 * before closing db). On error *out is NULL. PostgreSQL results are read whole into
 * memory; SQLite's are stepped lazily. Several cursors may be open on one connection.
 */
int tc_db_query(tc_db *db, const char *sql, const tc_db_param *params, int n, tc_db_rows **out);

/* Advances to the next row: returns 1 (a row is current), 0 (no more rows) or a negative
 * code. Column accessors read the current row. */
int tc_db_rows_next(tc_db_rows *rows);
int tc_db_col_count(const tc_db_rows *rows);
/* Column name, owned by rows. */
const char *tc_db_col_name(const tc_db_rows *rows, int col);
int tc_db_col_is_null(const tc_db_rows *rows, int col);
/* Value of a column of the current row; 0 for NULL or a column out of range. */
int64_t tc_db_col_int64(const tc_db_rows *rows, int col);
double tc_db_col_double(const tc_db_rows *rows, int col);
/* Text of a column (NUL-terminated; its length in *len if len is not NULL), or NULL for
 * SQL NULL. Owned by rows: valid until the next tc_db_rows_next or tc_db_rows_free. */
const char *tc_db_col_text(const tc_db_rows *rows, int col, size_t *len);
/* Frees the cursor (NULL is a no-op). */
void tc_db_rows_free(tc_db_rows *rows);

/* The first column of the first row as an integer, e.g. for `INSERT ... RETURNING id` or
 * `SELECT count(*)`. TC_DB_ENOTFOUND if there is no row; *out is 0 for SQL NULL. */
int tc_db_query_int64(tc_db *db, const char *sql, const tc_db_param *params, int n, int64_t *out);

/* One or more `;`-separated statements without parameters (DDL, scripts). Not prepared,
 * not cached, no placeholder rewriting. */
int tc_db_exec_script(tc_db *db, const char *sql);

/* ---- transactions ------------------------------------------------------------------ */

/* BEGIN (SQLite: BEGIN IMMEDIATE, so the write lock is taken now, waiting up to the busy
 * timeout). Transactions do not nest: TC_DB_ESTATE inside one. */
int tc_db_begin(tc_db *db);
/* COMMIT. On failure the transaction is rolled back and the error returned (also when
 * PostgreSQL turned the COMMIT into a ROLLBACK after an earlier error). */
int tc_db_commit(tc_db *db);
/* ROLLBACK; a no-op (0) outside a transaction. Keeps tc_db_errmsg() of the error that
 * led to it (unless the rollback fails itself). */
int tc_db_rollback(tc_db *db);
/* 1 inside a transaction begun with tc_db_begin, else 0. */
int tc_db_in_transaction(const tc_db *db);

/* ---- pool -------------------------------------------------------------------------- */

/*
 * size connections to url, all opened now (fails if any fails: NULL, message in err).
 * For SQLite use a file: each ":memory:" connection would be a separate database.
 * The caller closes the pool with tc_db_pool_close.
 */
tc_db_pool *tc_db_pool_open(const char *url, int size, int timeout_ms, char *err, size_t errlen);
/* Takes a free connection into *out, waiting up to wait_ms (0: don't wait; < 0: wait as
 * long as it takes). TC_DB_ETIMEOUT if none became free. The connection belongs to the
 * caller until tc_db_pool_release. */
int tc_db_pool_acquire(tc_db_pool *pool, int wait_ms, tc_db **out);
/* Gives a connection back (NULL is a no-op). A transaction left open is rolled back. */
void tc_db_pool_release(tc_db_pool *pool, tc_db *db);
int tc_db_pool_size(const tc_db_pool *pool);
/* Closes every connection. All must have been released. NULL is a no-op. */
void tc_db_pool_close(tc_db_pool *pool);

/* ---- latency ----------------------------------------------------------------------- */

/*
 * Every statement is timed, process-wide, into one histogram per dialect and operation
 * (lock-free counters; two clock reads per call and per row stepped). A query's time is
 * tc_db_query plus each tc_db_rows_next (SQLite steps lazily), recorded when the cursor is
 * freed. pool_wait is the time tc_db_pool_acquire waited for a free connection.
 */
typedef enum tc_db_op {
    TC_DB_OP_QUERY = 0,
    TC_DB_OP_EXEC,
    TC_DB_OP_SCRIPT,
    TC_DB_OP_BEGIN,
    TC_DB_OP_COMMIT,
    TC_DB_OP_ROLLBACK,
    TC_DB_OP_POOL_WAIT,
    TC_DB_OPS
} tc_db_op;

/* Bucket i counts durations in [2^(i-1), 2^i) microseconds (bucket 0: under 1 us); the
 * last bucket has no upper bound. The same layout as the cache engine's histograms. */
#define TC_DB_HIST_BUCKETS 24

typedef struct tc_db_latency {
    uint64_t buckets[TC_DB_HIST_BUCKETS];
    uint64_t count, sum_us;
    uint64_t errors; /* calls that returned an error (timeouts included) */
} tc_db_latency;

/* Static names: "query", "exec", ...; "sqlite", "postgresql". */
const char *tc_db_op_name(tc_db_op op);
const char *tc_db_dialect_name(tc_db_dialect d);
/* Copies the counters of one dialect and operation (each read atomically). */
void tc_db_latency_get(tc_db_dialect d, tc_db_op op, tc_db_latency *out);

/* ---- migrations (migrate.c) -------------------------------------------------------- */

/* The newest schema version this build knows. */
int tc_db_schema_latest(void);
/*
 * Brings the schema up to tc_db_schema_latest(): each missing migration is applied once,
 * in its own transaction, recorded in schema_migrations(version, applied_at). Safe to run
 * again (a no-op) and from several processes at once (SQLite's write lock, PostgreSQL's
 * advisory lock). applied (may be NULL) gets how many migrations ran now.
 * TC_DB_ESCHEMA if the database has a version this build does not know (it is newer).
 */
int tc_db_migrate(tc_db *db, int *applied);
/* The highest applied version in *version (0 for an empty database). */
int tc_db_schema_version(tc_db *db, int64_t *version);

/* ---- demo data (seed.c) ------------------------------------------------------------ */

typedef struct tc_seed_opts {
    int users;                 /* regular demo users user<N>@example.com; 0: 10000 */
    int activity_per_user;     /* mean activity rows per user; 0: 100 (10k users: ~1M rows) */
    int posts;                 /* blog posts (about 9 in 10 published); 0: 50; < 0: none */
    uint64_t seed;             /* RNG seed; the same seed gives the same data; 0: 42 */
    int64_t now_ms;            /* "now" for timestamps; 0: the current time */
    const char *password_hash; /* REQUIRED: one precomputed hash stored for every user */
} tc_seed_opts;

/* Called after each batch: done rows of total so far (done == total at the end). */
typedef void (*tc_seed_progress_fn)(int64_t done, int64_t total, void *arg);

/*
 * Fills a migrated, EMPTY database with demo data, in one transaction (all or nothing):
 *   - users: admin@example.com (role admin), demo@example.com, and opts->users regular
 *     users, all with opts->password_hash;
 *   - a subscription for every user (demo: pro/active; admin: team/active; the others
 *     mostly free, some pro/team, some trialing/past_due/canceled);
 *   - activity: opts->activity_per_user * opts->users rows over the regular users,
 *     skewed (a few heavy users, many light ones), plus exactly 2 * activity_per_user rows
 *     for the demo user; kinds page_view, api_call, login, export, project_created,
 *     settings_changed; spread over the 60 days before now, with small JSON meta;
 *   - opts->posts blog posts by the admin (the first one: slug "welcome-to-tiercache").
 * Then ANALYZE (SQLite: and a WAL checkpoint). On PostgreSQL the activity table is
 * exclusively locked for the duration (its foreign keys and secondary indexes are dropped
 * and re-created around the load, inside the transaction).
 * Seeding twice is REFUSED: TC_DB_EEXIST if the users table is not empty (nothing is
 * changed). progress (may be NULL) is called with arg.
 */
int tc_db_seed(tc_db *db, const tc_seed_opts *opts, tc_seed_progress_fn progress, void *arg);

#ifdef __cplusplus
}
#endif

#endif

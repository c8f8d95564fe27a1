/*
 * db.c — the engine-neutral half of the database layer: opening a url, checking
 * arguments, errors, the statement cache, `?` -> $n rewriting, transactions and the
 * connection pool. Everything engine-specific is behind tc_db__ops (sqlite.c, pg.c).
 *
 * DESIGN (statement cache): each connection keeps up to TC_DB__CACHE_MAX prepared
 * statements in a small hash table keyed by the caller's SQL text. Queries are written as
 * string constants, so the set is small and fixed in practice; a program that builds SQL
 * dynamically gets the least recently used statement finalized when the cache is full.
 * PostgreSQL statements are deallocated by a round trip, which an aborted transaction
 * would refuse, so inside a transaction the PostgreSQL cache grows past its limit instead.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cond.h"
#include "base/time.h"
#include "db/internal.h"

const char *tc_db_strerror(int err)
{
    switch (err) {
    case TC_DB_OK:
        return "ok";
    case TC_DB_ERROR:
        return "database error";
    case TC_DB_ENOMEM:
        return "out of memory";
    case TC_DB_EINVAL:
        return "invalid argument";
    case TC_DB_ECONSTRAINT:
        return "unique constraint violation";
    case TC_DB_EINTEGRITY:
        return "integrity constraint violation";
    case TC_DB_ETIMEOUT:
        return "database timeout";
    case TC_DB_ECONN:
        return "database connection failed";
    case TC_DB_ENOTFOUND:
        return "no row";
    case TC_DB_ESCHEMA:
        return "database schema is newer than this program";
    case TC_DB_EEXIST:
        return "database already holds data";
    case TC_DB_ESTATE:
        return "call out of order";
    default:
        return "unknown database error code";
    }
}

/* ---- latency ------------------------------------------------------------------------ */

typedef struct lat_hist {
    _Atomic uint64_t buckets[TC_DB_HIST_BUCKETS];
    _Atomic uint64_t count, sum_us, errors;
} lat_hist;

static lat_hist latency[2][TC_DB_OPS]; /* [dialect - 1][op] */

static void lat_record(tc_db_dialect d, tc_db_op op, uint64_t us, bool failed)
{
    if (d != TC_DB_SQLITE && d != TC_DB_POSTGRES)
        return;
    lat_hist *h = &latency[d - 1][op];
    int b = us == 0 ? 0 : 64 - __builtin_clzll(us); /* us < 2^b */
    if (b >= TC_DB_HIST_BUCKETS)
        b = TC_DB_HIST_BUCKETS - 1;
    atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
    if (failed)
        atomic_fetch_add_explicit(&h->errors, 1, memory_order_relaxed);
}

const char *tc_db_op_name(tc_db_op op)
{
    static const char *const names[TC_DB_OPS] = {"query",  "exec",     "script",   "begin",
                                                 "commit", "rollback", "pool_wait"};
    return op >= 0 && op < TC_DB_OPS ? names[op] : "unknown";
}

const char *tc_db_dialect_name(tc_db_dialect d)
{
    return d == TC_DB_SQLITE ? "sqlite" : d == TC_DB_POSTGRES ? "postgresql" : "unknown";
}

void tc_db_latency_get(tc_db_dialect d, tc_db_op op, tc_db_latency *out)
{
    memset(out, 0, sizeof(*out));
    if ((d != TC_DB_SQLITE && d != TC_DB_POSTGRES) || op < 0 || op >= TC_DB_OPS)
        return;
    lat_hist *h = &latency[d - 1][op];
    for (int i = 0; i < TC_DB_HIST_BUCKETS; i++)
        out->buckets[i] = atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    out->count = atomic_load_explicit(&h->count, memory_order_relaxed);
    out->sum_us = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    out->errors = atomic_load_explicit(&h->errors, memory_order_relaxed);
}

tc_db_param tc_db_text(const char *s)
{
    return tc_db_textn(s, s ? strlen(s) : 0);
}

/* ---- errors ------------------------------------------------------------------------ */

int tc_db__fail(tc_db *db, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
    va_end(ap);
    db->errcode = code;
    return code;
}

void tc_db__clear_error(tc_db *db)
{
    db->errmsg[0] = '\0';
    db->errcode = 0;
}

void tc_db__set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int tc_db_errcode(const tc_db *db)
{
    return db != NULL ? db->errcode : TC_DB_ECONN;
}

const char *tc_db_errmsg(const tc_db *db)
{
    return db ? db->errmsg : "no connection";
}

/* ---- open / close ------------------------------------------------------------------ */

static int has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

tc_db *tc_db_open(const char *url, int timeout_ms, char *err, size_t errlen)
{
    tc_db *db;
    int rc;

    tc_db__set_err(err, errlen, "%s", "");
    if (!url) {
        tc_db__set_err(err, errlen, "no database url");
        return NULL;
    }
    if (!(db = calloc(1, sizeof(*db)))) {
        tc_db__set_err(err, errlen, "out of memory");
        return NULL;
    }
    db->timeout_ms = timeout_ms > 0 ? timeout_ms : TC_DB_DEFAULT_TIMEOUT_MS;
    if (has_prefix(url, "sqlite:")) {
        const char *path = url + strlen("sqlite:");
        if (has_prefix(path, "//"))
            path += 2;
        db->dialect = TC_DB_SQLITE;
        rc = tc_db__sqlite_open(db, path, err, errlen);
    } else if (has_prefix(url, "postgres://") || has_prefix(url, "postgresql://")) {
        db->dialect = TC_DB_POSTGRES;
        rc = tc_db__pg_open(db, url, err, errlen);
    } else {
        /* never echo the url: it may hold a password */
        tc_db__set_err(err, errlen,
                       "database url must start with sqlite:, postgres:// or postgresql://");
        rc = TC_DB_EINVAL;
    }
    if (rc != 0) {
        free(db);
        return NULL;
    }
    return db;
}

void tc_db_close(tc_db *db)
{
    if (!db)
        return;
    db->forget_stmts = true; /* the server drops them with the session */
    tc_db__stmt_clear(db);
    db->ops->close(db);
    free(db->scratch);
    free(db->values);
    free(db);
}

tc_db_dialect tc_db_dialect_of(const tc_db *db)
{
    return db->dialect;
}

/* ---- argument checks --------------------------------------------------------------- */

static int check_call(tc_db *db, const char *sql, const tc_db_param *params, int n)
{
    if (!db)
        return TC_DB_EINVAL;
    tc_db__clear_error(db);
    if (!sql)
        return tc_db__fail(db, TC_DB_EINVAL, "sql is NULL");
    if (n < 0 || (n > 0 && !params))
        return tc_db__fail(db, TC_DB_EINVAL, "bad parameter array (n=%d)", n);
    for (int i = 0; i < n; i++) {
        const tc_db_param *p = &params[i];
        switch (p->type) {
        case TC_DB_NULL:
        case TC_DB_INT64:
            break;
        case TC_DB_DOUBLE:
            if (isnan(p->v.d))
                return tc_db__fail(db, TC_DB_EINVAL, "parameter %d is NaN", i + 1);
            break;
        case TC_DB_TEXT:
            if (!p->v.s.p && p->v.s.len)
                return tc_db__fail(db, TC_DB_EINVAL, "parameter %d: NULL text", i + 1);
            if (p->v.s.len && memchr(p->v.s.p, '\0', p->v.s.len))
                return tc_db__fail(db, TC_DB_EINVAL, "parameter %d: text holds a NUL byte", i + 1);
            break;
        default:
            return tc_db__fail(db, TC_DB_EINVAL, "parameter %d: unknown type %d", i + 1,
                               (int)p->type);
        }
    }
    return 0;
}

/* ---- statements -------------------------------------------------------------------- */

int tc_db_exec(tc_db *db, const char *sql, const tc_db_param *params, int n, int64_t *changes)
{
    int rc;
    if (changes)
        *changes = 0;
    if ((rc = check_call(db, sql, params, n)) != 0)
        return rc;
    uint64_t t0 = tc_mono_us();
    rc = db->ops->exec(db, sql, params, n, changes);
    lat_record(db->dialect, TC_DB_OP_EXEC, tc_mono_us() - t0, rc < 0);
    return rc;
}

int tc_db_query(tc_db *db, const char *sql, const tc_db_param *params, int n, tc_db_rows **out)
{
    int rc;
    if (!out)
        return TC_DB_EINVAL;
    *out = NULL;
    if ((rc = check_call(db, sql, params, n)) != 0)
        return rc;
    uint64_t t0 = tc_mono_us();
    rc = db->ops->query(db, sql, params, n, out);
    if (rc != 0 || *out == NULL) /* timed at tc_db_rows_free when it succeeded */
        lat_record(db->dialect, TC_DB_OP_QUERY, tc_mono_us() - t0, true);
    else
        (*out)->busy_us = tc_mono_us() - t0;
    return rc;
}

int tc_db_exec_script(tc_db *db, const char *sql)
{
    int rc;
    if ((rc = check_call(db, sql, NULL, 0)) != 0)
        return rc;
    uint64_t t0 = tc_mono_us();
    rc = db->ops->script(db, sql);
    lat_record(db->dialect, TC_DB_OP_SCRIPT, tc_mono_us() - t0, rc < 0);
    return rc;
}

int tc_db_rows_next(tc_db_rows *rows)
{
    if (!rows)
        return TC_DB_EINVAL;
    uint64_t t0 = tc_mono_us();
    int rc = rows->db->ops->rows_next(rows);
    rows->busy_us += tc_mono_us() - t0;
    rows->failed |= rc < 0;
    return rc;
}

int tc_db_col_count(const tc_db_rows *rows)
{
    return rows ? rows->db->ops->col_count(rows) : 0;
}

static int col_ok(const tc_db_rows *rows, int col)
{
    return rows && col >= 0 && col < rows->db->ops->col_count(rows);
}

const char *tc_db_col_name(const tc_db_rows *rows, int col)
{
    return col_ok(rows, col) ? rows->db->ops->col_name(rows, col) : NULL;
}

int tc_db_col_is_null(const tc_db_rows *rows, int col)
{
    return col_ok(rows, col) ? rows->db->ops->col_is_null(rows, col) : 1;
}

int64_t tc_db_col_int64(const tc_db_rows *rows, int col)
{
    return col_ok(rows, col) ? rows->db->ops->col_int64(rows, col) : 0;
}

double tc_db_col_double(const tc_db_rows *rows, int col)
{
    return col_ok(rows, col) ? rows->db->ops->col_double(rows, col) : 0.0;
}

const char *tc_db_col_text(const tc_db_rows *rows, int col, size_t *len)
{
    if (len)
        *len = 0;
    return col_ok(rows, col) ? rows->db->ops->col_text(rows, col, len) : NULL;
}

void tc_db_rows_free(tc_db_rows *rows)
{
    if (rows) {
        lat_record(rows->db->dialect, TC_DB_OP_QUERY, rows->busy_us, rows->failed);
        rows->db->ops->rows_free(rows);
    }
}

int tc_db_query_int64(tc_db *db, const char *sql, const tc_db_param *params, int n, int64_t *out)
{
    tc_db_rows *rows;
    int rc;
    *out = 0;
    if ((rc = tc_db_query(db, sql, params, n, &rows)) != 0)
        return rc;
    rc = tc_db_rows_next(rows);
    if (rc == 1) {
        *out = tc_db_col_int64(rows, 0);
        rc = 0;
    } else if (rc == 0) {
        rc = tc_db__fail(db, TC_DB_ENOTFOUND, "query returned no row");
    }
    tc_db_rows_free(rows);
    return rc;
}

/* ---- transactions ------------------------------------------------------------------ */

int tc_db_begin(tc_db *db)
{
    int rc;
    if (!db)
        return TC_DB_EINVAL;
    tc_db__clear_error(db);
    if (db->in_tx)
        return tc_db__fail(db, TC_DB_ESTATE, "already in a transaction");
    uint64_t t0 = tc_mono_us();
    if ((rc = db->ops->begin(db)) == 0)
        db->in_tx = true;
    lat_record(db->dialect, TC_DB_OP_BEGIN, tc_mono_us() - t0, rc < 0);
    return rc;
}

int tc_db_commit(tc_db *db)
{
    if (!db)
        return TC_DB_EINVAL;
    tc_db__clear_error(db);
    if (!db->in_tx)
        return tc_db__fail(db, TC_DB_ESTATE, "commit outside a transaction");
    db->in_tx = false; /* committed, or rolled back by the backend on failure */
    uint64_t t0 = tc_mono_us();
    int rc = db->ops->commit(db);
    lat_record(db->dialect, TC_DB_OP_COMMIT, tc_mono_us() - t0, rc < 0);
    return rc;
}

int tc_db_rollback(tc_db *db)
{
    if (!db)
        return TC_DB_EINVAL;
    /* the message of the error that led here is kept, unless rolling back fails too */
    if (!db->in_tx)
        return 0;
    db->in_tx = false;
    uint64_t t0 = tc_mono_us();
    int rc = db->ops->rollback(db);
    lat_record(db->dialect, TC_DB_OP_ROLLBACK, tc_mono_us() - t0, rc < 0);
    return rc;
}

int tc_db_in_transaction(const tc_db *db)
{
    return db && db->in_tx;
}

/* ---- statement cache --------------------------------------------------------------- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void stmt_free(tc_db *db, tc_db__stmt *st)
{
    db->ops->finalize(db, st);
    free(st->sql);
    free(st);
}

/* Finalizes the least recently used statement that no cursor is using. */
static void evict_one(tc_db *db)
{
    tc_db__stmt **victim = NULL;
    for (int b = 0; b < TC_DB__CACHE_BUCKETS; b++)
        for (tc_db__stmt **pp = &db->buckets[b]; *pp; pp = &(*pp)->next)
            if (!(*pp)->busy && (!victim || (*pp)->used < (*victim)->used))
                victim = pp;
    if (victim) {
        tc_db__stmt *st = *victim;
        *victim = st->next;
        db->ncached--;
        stmt_free(db, st);
    }
}

tc_db__stmt *tc_db__stmt_get(tc_db *db, const char *sql, int *rc)
{
    uint64_t h = fnv1a(sql);
    tc_db__stmt **bucket = &db->buckets[h % TC_DB__CACHE_BUCKETS], *st;

    for (st = *bucket; st; st = st->next) {
        if (st->hash == h && strcmp(st->sql, sql) == 0) {
            st->used = ++db->clock;
            return st;
        }
    }
    if (db->ncached >= TC_DB__CACHE_MAX && db->ops->can_evict(db))
        evict_one(db);
    if (!(st = calloc(1, sizeof(*st))) || !(st->sql = strdup(sql))) {
        free(st);
        *rc = tc_db__fail(db, TC_DB_ENOMEM, "out of memory");
        return NULL;
    }
    st->hash = h;
    if ((*rc = db->ops->prepare(db, st)) != 0) {
        free(st->sql);
        free(st);
        return NULL;
    }
    st->used = ++db->clock;
    st->next = *bucket;
    *bucket = st;
    db->ncached++;
    return st;
}

void tc_db__stmt_clear(tc_db *db)
{
    for (int b = 0; b < TC_DB__CACHE_BUCKETS; b++) {
        while (db->buckets[b]) {
            tc_db__stmt *st = db->buckets[b];
            db->buckets[b] = st->next;
            stmt_free(db, st);
        }
    }
    db->ncached = 0;
}

/* ---- placeholder rewriting --------------------------------------------------------- */

static int ident_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || c >= 0x80;
}

/* Length of the quoted run starting at s[0] == q, through its closing quote (or to the
 * end of the string if unterminated). Doubled quotes stay inside; backslash escapes too
 * when backslashes is set (E'...'). */
static size_t quoted_len(const char *s, char q, int backslashes)
{
    size_t j = 1;
    while (s[j]) {
        if (backslashes && s[j] == '\\' && s[j + 1]) {
            j += 2;
        } else if (s[j] == q) {
            if (s[j + 1] != q)
                return j + 1;
            j += 2;
        } else {
            j++;
        }
    }
    return j;
}

/* Length of a `$tag$ ... $tag$` run at s (s[0] == '$'), or 0 if s is not a dollar quote. */
static size_t dollar_len(const char *s)
{
    size_t t = 1;
    const char *end;
    if (s[t] >= '0' && s[t] <= '9')
        return 0; /* $1: a positional parameter, not a quote */
    while (s[t] && s[t] != '$' && ident_char((unsigned char)s[t]))
        t++;
    if (s[t] != '$')
        return 0;
    t++; /* s[0..t) is the tag, "$" "name" "$" */
    for (end = s + t; (end = strchr(end, '$')) != NULL; end++)
        if (strncmp(end, s, t) == 0)
            return (size_t)(end - s) + t;
    return strlen(s);
}

/* One pass: counts placeholders, and writes the rewritten SQL to out when not NULL. */
static int rewrite_pass(const char *sql, char *out)
{
    size_t i = 0, o = 0, run;
    int n = 0;

    while (sql[i]) {
        unsigned char c = (unsigned char)sql[i];
        unsigned char prev = i ? (unsigned char)sql[i - 1] : 0;
        run = 1;
        if (c == '\'') {
            int e =
                (prev == 'E' || prev == 'e') && (i < 2 || !ident_char((unsigned char)sql[i - 2]));
            run = quoted_len(sql + i, '\'', e);
        } else if (c == '"') {
            run = quoted_len(sql + i, '"', 0);
        } else if (c == '-' && sql[i + 1] == '-') {
            const char *nl = strchr(sql + i, '\n');
            run = nl ? (size_t)(nl - (sql + i)) + 1 : strlen(sql + i);
        } else if (c == '/' && sql[i + 1] == '*') {
            int depth = 1;
            run = 2;
            while (sql[i + run] && depth > 0) {
                if (sql[i + run] == '/' && sql[i + run + 1] == '*') {
                    depth++;
                    run += 2;
                } else if (sql[i + run] == '*' && sql[i + run + 1] == '/') {
                    depth--;
                    run += 2;
                } else {
                    run++;
                }
            }
        } else if (c == '$' && !ident_char(prev)) {
            size_t d = dollar_len(sql + i);
            run = d ? d : 1;
        } else if (c == '?') {
            if (++n > 65535)
                return -1;
            if (out)
                o += (size_t)sprintf(out + o, "$%d", n);
            i++;
            continue;
        }
        if (out)
            memcpy(out + o, sql + i, run);
        o += run;
        i += run;
    }
    if (out)
        out[o] = '\0';
    return n;
}

int tc_db__rewrite_placeholders(const char *sql, char **out, int *nparams)
{
    int n = rewrite_pass(sql, NULL);
    *out = NULL;
    *nparams = 0;
    if (n < 0)
        return TC_DB_EINVAL;
    /* each `?` (1 byte) becomes at most "$65535" (6 bytes) */
    if (!(*out = malloc(strlen(sql) + (size_t)n * 5 + 1)))
        return TC_DB_ENOMEM;
    rewrite_pass(sql, *out);
    *nparams = n;
    return 0;
}

/* ---- parameters as text (PostgreSQL) ----------------------------------------------- */

int tc_db__params_to_text(tc_db *db, const tc_db_param *params, int n, const char *const **values)
{
    size_t need = 0, o = 0;

    for (int i = 0; i < n; i++) {
        switch (params[i].type) {
        case TC_DB_INT64:
            need += 24;
            break;
        case TC_DB_DOUBLE:
            need += 32;
            break;
        case TC_DB_TEXT:
            need += params[i].v.s.len + 1;
            break;
        default:
            break;
        }
    }
    if (need > db->scratch_cap) {
        size_t cap = need < 4096 ? 4096 : need + need / 2;
        char *p = realloc(db->scratch, cap);
        if (!p)
            return tc_db__fail(db, TC_DB_ENOMEM, "out of memory");
        db->scratch = p;
        db->scratch_cap = cap;
    }
    if (n > db->values_cap) {
        int cap = n < 64 ? 64 : n;
        const char **v = realloc(db->values, (size_t)cap * sizeof(*v));
        if (!v)
            return tc_db__fail(db, TC_DB_ENOMEM, "out of memory");
        db->values = v;
        db->values_cap = cap;
    }
    for (int i = 0; i < n; i++) {
        const tc_db_param *p = &params[i];
        char *dst = p->type == TC_DB_NULL ? NULL : db->scratch + o; /* scratch may be NULL */
        switch (p->type) {
        case TC_DB_INT64:
            o += (size_t)snprintf(dst, 24, "%lld", (long long)p->v.i) + 1;
            break;
        case TC_DB_DOUBLE:
            if (isinf(p->v.d))
                o += (size_t)snprintf(dst, 32, "%s", p->v.d > 0 ? "Infinity" : "-Infinity") + 1;
            else
                o += (size_t)snprintf(dst, 32, "%.17g", p->v.d) + 1;
            break;
        case TC_DB_TEXT:
            if (p->v.s.len)
                memcpy(dst, p->v.s.p, p->v.s.len);
            dst[p->v.s.len] = '\0';
            o += p->v.s.len + 1;
            break;
        default:
            break;
        }
        db->values[i] = dst;
    }
    *values = db->values;
    return 0;
}

/* ---- pool -------------------------------------------------------------------------- */

struct tc_db_pool {
    pthread_mutex_t lock;
    tc_cond freed; /* signalled when a connection comes back */
    int size, nfree;
    tc_db **all;  /* every connection, for close */
    tc_db **free; /* a stack of the free ones */
};

tc_db_pool *tc_db_pool_open(const char *url, int size, int timeout_ms, char *err, size_t errlen)
{
    tc_db_pool *pool;

    if (size < 1) {
        tc_db__set_err(err, errlen, "pool size must be at least 1");
        return NULL;
    }
    if (!(pool = calloc(1, sizeof(*pool))) ||
        !(pool->all = calloc((size_t)size, sizeof(tc_db *))) ||
        !(pool->free = calloc((size_t)size, sizeof(tc_db *)))) {
        if (pool)
            free(pool->all);
        free(pool);
        tc_db__set_err(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&pool->lock, NULL);
    tc_cond_init(&pool->freed);
    for (; pool->size < size; pool->size++) {
        tc_db *db = tc_db_open(url, timeout_ms, err, errlen);
        if (!db) {
            tc_db_pool_close(pool);
            return NULL;
        }
        pool->all[pool->size] = db;
        pool->free[pool->nfree++] = db;
    }
    return pool;
}

int tc_db_pool_size(const tc_db_pool *pool)
{
    return pool ? pool->size : 0;
}

int tc_db_pool_acquire(tc_db_pool *pool, int wait_ms, tc_db **out)
{
    int rc = 0;

    *out = NULL;
    if (!pool)
        return TC_DB_EINVAL;
    tc_deadline until = tc_deadline_in_ms(wait_ms); /* used when wait_ms > 0 */
    uint64_t t0 = tc_mono_us();
    pthread_mutex_lock(&pool->lock);
    while (pool->nfree == 0 && rc == 0) {
        if (wait_ms < 0)
            tc_cond_wait(&pool->freed, &pool->lock);
        else if (wait_ms == 0 || tc_cond_wait_until(&pool->freed, &pool->lock, until) == ETIMEDOUT)
            rc = pool->nfree == 0 ? TC_DB_ETIMEOUT : 0;
    }
    if (rc == 0)
        *out = pool->free[--pool->nfree];
    pthread_mutex_unlock(&pool->lock);
    lat_record(pool->all[0]->dialect, TC_DB_OP_POOL_WAIT, tc_mono_us() - t0, rc != 0);
    return rc;
}

void tc_db_pool_release(tc_db_pool *pool, tc_db *db)
{
    int known = 0;
    if (!pool || !db)
        return;
    if (db->in_tx && tc_db_rollback(db) != 0)
        fprintf(stderr, "tc_db_pool_release: rollback of an abandoned transaction failed: %s\n",
                tc_db_errmsg(db));
    pthread_mutex_lock(&pool->lock);
    for (int i = 0; i < pool->size; i++)
        known |= pool->all[i] == db;
    for (int i = 0; i < pool->nfree; i++)
        known &= pool->free[i] != db;
    if (known) {
        pool->free[pool->nfree++] = db;
        tc_cond_signal(&pool->freed);
    }
    pthread_mutex_unlock(&pool->lock);
    if (!known) /* a caller bug: say so once, do not corrupt the free stack */
        fprintf(stderr, "tc_db_pool_release: connection not from this pool, or released twice\n");
}

void tc_db_pool_close(tc_db_pool *pool)
{
    if (!pool)
        return;
    if (pool->nfree != pool->size)
        fprintf(stderr, "tc_db_pool_close: %d connection(s) still acquired\n",
                pool->size - pool->nfree);
    for (int i = 0; i < pool->size; i++)
        tc_db_close(pool->all[i]);
    tc_cond_destroy(&pool->freed);
    pthread_mutex_destroy(&pool->lock);
    free(pool->all);
    free(pool->free);
    free(pool);
}

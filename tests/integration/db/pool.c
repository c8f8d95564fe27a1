/* The connection pool on SQLite and PostgreSQL: more threads than connections write
 * concurrently (plain statements and transactions) and every write lands; never more
 * holders than connections; acquire gives up with TC_DB_ETIMEOUT when all are taken; a
 * connection released inside a transaction comes back rolled back. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "both.h"

#define CONNS 3
#define THREADS 8
#define ITERS 40

typedef struct shared {
    tc_db_pool *pool;
    atomic_int holders, max_holders, failures;
} shared;

typedef struct worker {
    shared *s;
    int id;
} worker;

static void note_holder(shared *s, int delta)
{
    int now = atomic_fetch_add(&s->holders, delta) + delta;
    int max = atomic_load(&s->max_holders);
    while (now > max && !atomic_compare_exchange_weak(&s->max_holders, &max, now)) {
    }
}

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < ITERS; i++) {
        tc_db *db = NULL;
        tc_db_param p[2] = {tc_db_int64(w->id), tc_db_int64(i)};
        int rc = tc_db_pool_acquire(w->s->pool, 20000, &db);
        if (rc != 0) {
            atomic_fetch_add(&w->s->failures, 1);
            continue;
        }
        note_holder(w->s, 1);
        if (i % 2) { /* odd: in a transaction with a read */
            int64_t n;
            rc = tc_db_begin(db);
            if (rc == 0)
                rc = tc_db_exec(db, "INSERT INTO hits (worker, i) VALUES (?, ?)", p, 2, NULL);
            if (rc == 0)
                rc = tc_db_query_int64(db, "SELECT count(*) FROM hits WHERE worker = ?", p, 1, &n);
            rc = rc == 0 ? tc_db_commit(db) : (tc_db_rollback(db), rc);
        } else {
            rc = tc_db_exec(db, "INSERT INTO hits (worker, i) VALUES (?, ?)", p, 2, NULL);
        }
        if (rc != 0) {
            fprintf(stderr, "worker %d: %s: %s\n", w->id, tc_db_strerror(rc), tc_db_errmsg(db));
            atomic_fetch_add(&w->s->failures, 1);
        }
        note_holder(w->s, -1);
        tc_db_pool_release(w->s->pool, db);
    }
    return NULL;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void body(const backend *b)
{
    char err[512];
    shared s = {0};
    worker w[THREADS];
    pthread_t th[THREADS];
    tc_db *held[CONNS], *extra = NULL, *db;
    int64_t n = -1;
    long t0;

    db = backend_open_migrated(b);
    REQUIRE(db);
    CHECK_RC(db,
             tc_db_exec_script(db, "CREATE TABLE hits (worker BIGINT NOT NULL, "
                                   "i BIGINT NOT NULL, PRIMARY KEY (worker, i))"),
             0);
    tc_db_close(db);

    CHECK(tc_db_pool_open(b->url, 0, 1000, err, sizeof(err)) == NULL);
    s.pool = tc_db_pool_open(b->url, CONNS, 10000, err, sizeof(err));
    if (!s.pool)
        fprintf(stderr, "pool: %s\n", err);
    REQUIRE(s.pool);
    CHECK_EQ_INT(tc_db_pool_size(s.pool), CONNS);

    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.s = &s, .id = i};
        REQUIRE(pthread_create(&th[i], NULL, work, &w[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(atomic_load(&s.failures), 0);
    CHECK(atomic_load(&s.max_holders) <= CONNS);
    CHECK(atomic_load(&s.max_holders) >= 1);
    printf("[%s] at most %d of %d connections held at once\n", b->name, atomic_load(&s.max_holders),
           CONNS);

    /* all taken: acquire times out */
    for (int i = 0; i < CONNS; i++)
        CHECK_EQ_INT(tc_db_pool_acquire(s.pool, 1000, &held[i]), 0);
    CHECK_EQ_INT(tc_db_pool_acquire(s.pool, 0, &extra), TC_DB_ETIMEOUT);
    CHECK(extra == NULL);
    t0 = now_ms();
    CHECK_EQ_INT(tc_db_pool_acquire(s.pool, 150, &extra), TC_DB_ETIMEOUT);
    CHECK(now_ms() - t0 >= 100);
    CHECK_RC(held[0], tc_db_query_int64(held[0], "SELECT count(*) FROM hits", NULL, 0, &n), 0);
    CHECK_EQ_INT(n, THREADS * ITERS);

    /* released inside a transaction: rolled back */
    tc_db_param p[2] = {tc_db_int64(999), tc_db_int64(0)};
    CHECK_RC(held[1], tc_db_begin(held[1]), 0);
    CHECK_RC(held[1], tc_db_exec(held[1], "INSERT INTO hits (worker, i) VALUES (?, ?)", p, 2, NULL),
             0);
    tc_db_pool_release(s.pool, held[1]);
    CHECK_EQ_INT(tc_db_pool_acquire(s.pool, 1000, &held[1]), 0);
    CHECK(!tc_db_in_transaction(held[1]));
    CHECK_RC(held[0], tc_db_query_int64(held[0], "SELECT count(*) FROM hits", NULL, 0, &n), 0);
    CHECK_EQ_INT(n, THREADS * ITERS);

    for (int i = 0; i < CONNS; i++)
        tc_db_pool_release(s.pool, held[i]);
    tc_db_pool_release(s.pool, NULL); /* no-op */
    tc_db_pool_close(s.pool);
    tc_db_pool_close(NULL);
}

int main(void)
{
    return run_both(body);
}

/* tests/unit/db/latency.c: the database layer's latency histograms (db.c) — every exec,
 * query (timed until its cursor is freed), transaction step and pool wait counts exactly
 * once, in its dialect and operation, errors are counted, and the buckets add up. SQLite in
 * memory: PostgreSQL goes through the same db.c wrappers. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "db/db.h"

static tc_db_latency get(tc_db_op op)
{
    tc_db_latency l;
    tc_db_latency_get(TC_DB_SQLITE, op, &l);
    return l;
}

static uint64_t bucket_sum(const tc_db_latency *l)
{
    uint64_t n = 0;
    for (int i = 0; i < TC_DB_HIST_BUCKETS; i++)
        n += l->buckets[i];
    return n;
}

int main(void)
{
    char err[256];
    tc_db *db = tc_db_open("sqlite::memory:", 1000, err, sizeof(err));
    REQUIRE(db != NULL);
    tc_db_latency e0 = get(TC_DB_OP_EXEC), q0 = get(TC_DB_OP_QUERY), b0 = get(TC_DB_OP_BEGIN),
                  c0 = get(TC_DB_OP_COMMIT), s0 = get(TC_DB_OP_SCRIPT);

    REQUIRE(tc_db_exec_script(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)") == 0);
    CHECK_EQ_INT(get(TC_DB_OP_SCRIPT).count - s0.count, 1);

    REQUIRE(tc_db_begin(db) == 0);
    for (int i = 1; i <= 5; i++) {
        tc_db_param p[] = {tc_db_int64(i), tc_db_text("x")};
        REQUIRE(tc_db_exec(db, "INSERT INTO t (id, v) VALUES (?, ?)", p, 2, NULL) == 0);
    }
    REQUIRE(tc_db_commit(db) == 0);
    CHECK_EQ_INT(get(TC_DB_OP_EXEC).count - e0.count, 5);
    CHECK_EQ_INT(get(TC_DB_OP_BEGIN).count - b0.count, 1);
    CHECK_EQ_INT(get(TC_DB_OP_COMMIT).count - c0.count, 1);

    /* a query counts once, when its cursor is freed, however many rows it stepped */
    tc_db_rows *r;
    REQUIRE(tc_db_query(db, "SELECT id FROM t ORDER BY id", NULL, 0, &r) == 0);
    CHECK_EQ_INT(get(TC_DB_OP_QUERY).count - q0.count, 0);
    int rows = 0;
    while (tc_db_rows_next(r) == 1)
        rows++;
    CHECK_EQ_INT(rows, 5);
    tc_db_rows_free(r);
    tc_db_latency q1 = get(TC_DB_OP_QUERY);
    CHECK_EQ_INT(q1.count - q0.count, 1);
    int64_t v = 0;
    REQUIRE(tc_db_query_int64(db, "SELECT count(*) FROM t", NULL, 0, &v) == 0);
    CHECK_EQ_INT(v, 5);
    CHECK_EQ_INT(get(TC_DB_OP_QUERY).count - q1.count, 1);

    /* errors: a failing statement counts, as an error */
    tc_db_param dup[] = {tc_db_int64(1), tc_db_text("y")};
    tc_db_latency e1 = get(TC_DB_OP_EXEC);
    CHECK(tc_db_exec(db, "INSERT INTO t (id, v) VALUES (?, ?)", dup, 2, NULL) == TC_DB_ECONSTRAINT);
    tc_db_latency e2 = get(TC_DB_OP_EXEC);
    CHECK_EQ_INT(e2.count - e1.count, 1);
    CHECK_EQ_INT(e2.errors - e1.errors, 1);
    tc_db_latency q2 = get(TC_DB_OP_QUERY);
    CHECK(tc_db_query(db, "SELECT nope FROM t", NULL, 0, &r) != 0);
    tc_db_latency q3 = get(TC_DB_OP_QUERY);
    CHECK_EQ_INT(q3.count - q2.count, 1);
    CHECK_EQ_INT(q3.errors - q2.errors, 1);

    /* the buckets add up to the count; the other dialect saw nothing */
    CHECK_EQ_INT(bucket_sum(&q3), q3.count);
    CHECK_EQ_INT(bucket_sum(&e2), e2.count);
    tc_db_latency pg;
    tc_db_latency_get(TC_DB_POSTGRES, TC_DB_OP_QUERY, &pg);
    CHECK_EQ_INT(pg.count, 0);
    CHECK_EQ_STR(tc_db_op_name(TC_DB_OP_POOL_WAIT), "pool_wait");
    CHECK_EQ_STR(tc_db_dialect_name(TC_DB_POSTGRES), "postgresql");
    tc_db_close(db);

    /* pool waits: one per acquire, a timeout is an error */
    char file[] = "/tmp/tc-latency-XXXXXX";
    int fd = mkstemp(file);
    REQUIRE(fd >= 0);
    close(fd);
    char url[300];
    snprintf(url, sizeof(url), "sqlite:%s", file);
    tc_db_pool *pool = tc_db_pool_open(url, 1, 1000, err, sizeof(err));
    REQUIRE(pool != NULL);
    tc_db_latency w0 = get(TC_DB_OP_POOL_WAIT);
    tc_db *c;
    REQUIRE(tc_db_pool_acquire(pool, 100, &c) == 0);
    tc_db *c2;
    CHECK(tc_db_pool_acquire(pool, 20, &c2) == TC_DB_ETIMEOUT);
    tc_db_pool_release(pool, c);
    tc_db_latency w1 = get(TC_DB_OP_POOL_WAIT);
    CHECK_EQ_INT(w1.count - w0.count, 2);
    CHECK_EQ_INT(w1.errors - w0.errors, 1);
    CHECK(w1.sum_us - w0.sum_us >= 15000); /* the timed-out wait took its 20 ms */
    tc_db_pool_close(pool);
    remove(file);
    char side[320];
    snprintf(side, sizeof(side), "%s-wal", file);
    remove(side);
    snprintf(side, sizeof(side), "%s-shm", file);
    remove(side);
    return check_report();
}

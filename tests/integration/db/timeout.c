/* Timeouts on SQLite and PostgreSQL: a second connection waiting for a write lock that
 * another holds gives up with TC_DB_ETIMEOUT after about its timeout (SQLite: the busy
 * timeout at BEGIN IMMEDIATE; PostgreSQL: statement_timeout on the blocked UPDATE), and a
 * slow statement on PostgreSQL (pg_sleep) is cancelled by statement_timeout. Both
 * connections stay usable afterwards. Timings are asserted loosely (slow CI machines).
 * PostgreSQL also: a connection the server terminates is found gone and reset before the
 * next call, which succeeds. */
#include <time.h>

#include "both.h"

#define SHORT_MS 200

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void body(const backend *b)
{
    tc_db *holder = backend_open_migrated(b), *waiter = backend_open(b, SHORT_MS);
    int64_t n = -1;
    long t0, took;
    int rc;

    REQUIRE(holder && waiter);
    CHECK_RC(holder,
             tc_db_exec_script(holder, "CREATE TABLE counter (k BIGINT PRIMARY KEY, "
                                       "v BIGINT NOT NULL);"
                                       "INSERT INTO counter VALUES (1, 0)"),
             0);

    /* holder takes the write lock (SQLite: the database; PostgreSQL: the row) */
    CHECK_RC(holder, tc_db_begin(holder), 0);
    CHECK_RC(holder, tc_db_exec(holder, "UPDATE counter SET v = v + 1 WHERE k = 1", NULL, 0, NULL),
             0);

    t0 = now_ms();
    rc = tc_db_begin(waiter);
    if (rc == 0)
        rc = tc_db_exec(waiter, "UPDATE counter SET v = v + 10 WHERE k = 1", NULL, 0, NULL);
    took = now_ms() - t0;
    if (rc != TC_DB_ETIMEOUT)
        fprintf(stderr, "    -> %s: %s\n", tc_db_strerror(rc), tc_db_errmsg(waiter));
    CHECK_EQ_INT(rc, TC_DB_ETIMEOUT);
    printf("[%s] write lock wait gave up after %ld ms (timeout %d ms): %s\n", b->name, took,
           SHORT_MS, tc_db_errmsg(waiter));
    CHECK(took >= SHORT_MS / 2);
    CHECK(took < 10 * SHORT_MS + 2000);
    CHECK_RC(waiter, tc_db_rollback(waiter), 0);
    CHECK(!tc_db_in_transaction(waiter));

    /* the lock goes away: the waiter writes */
    CHECK_RC(holder, tc_db_commit(holder), 0);
    CHECK_RC(waiter, tc_db_exec(waiter, "UPDATE counter SET v = v + 10 WHERE k = 1", NULL, 0, NULL),
             0);
    CHECK_RC(holder, tc_db_query_int64(holder, "SELECT v FROM counter WHERE k = 1", NULL, 0, &n),
             0);
    CHECK_EQ_INT(n, 11);

    if (b->dialect == TC_DB_POSTGRES) {
        /* a slow statement: cancelled by statement_timeout */
        t0 = now_ms();
        CHECK_RC(waiter, tc_db_exec(waiter, "SELECT pg_sleep(2)", NULL, 0, NULL), TC_DB_ETIMEOUT);
        took = now_ms() - t0;
        printf("[%s] pg_sleep(2) cancelled after %ld ms (timeout %d ms)\n", b->name, took,
               SHORT_MS);
        CHECK(took >= SHORT_MS / 2);
        CHECK(took < 1800);
        CHECK_RC(waiter, tc_db_query_int64(waiter, "SELECT 1", NULL, 0, &n), 0);
        CHECK_EQ_INT(n, 1);
        /* and inside a transaction: the transaction is aborted, rollback recovers */
        CHECK_RC(waiter, tc_db_begin(waiter), 0);
        CHECK_RC(waiter, tc_db_exec(waiter, "SELECT pg_sleep(2)", NULL, 0, NULL), TC_DB_ETIMEOUT);
        CHECK_RC(waiter, tc_db_rollback(waiter), 0);
        CHECK_RC(waiter, tc_db_query_int64(waiter, "SELECT 2", NULL, 0, &n), 0);
        CHECK_EQ_INT(n, 2);

        /* the server drops the connection (we wait up to 5 s until it is gone): the next
         * call finds it gone before using it (pg.c: gone_while_idle), reconnects, prepares
         * its statements again and has its statement_timeout again — no call fails */
        int64_t pid = 0;
        CHECK_RC(waiter, tc_db_query_int64(waiter, "SELECT pg_backend_pid()", NULL, 0, &pid), 0);
        tc_db_param p = tc_db_int64(pid);
        CHECK_RC(holder, tc_db_exec(holder, "SELECT pg_terminate_backend(?, 5000)", &p, 1, NULL),
                 0);
        CHECK_RC(waiter, tc_db_query_int64(waiter, "SELECT 2", NULL, 0, &n), 0);
        CHECK_EQ_INT(n, 2);
        CHECK_RC(waiter, tc_db_query_int64(waiter, "SELECT pg_backend_pid()", NULL, 0, &n), 0);
        CHECK(n != pid);
        CHECK_RC(waiter, tc_db_exec(waiter, "SELECT pg_sleep(2)", NULL, 0, NULL), TC_DB_ETIMEOUT);
    }
    tc_db_close(waiter);
    tc_db_close(holder);
}

int main(void)
{
    return run_both(body);
}

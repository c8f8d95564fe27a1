/* PostgreSQL restarted under a pool: a private cluster (tct_pg), a pool of CONNS
 * connections all used once, then a fast shutdown and a start on the same port — every
 * session is gone. Then every pooled connection is used again, reads and writes: not one
 * fails. A pooled connection that went away while idle is found so before it is used and
 * replaced (src/db/pg.c: gone_while_idle); before, each failed once, minutes later. */
#include "check.h"
#include "db/db.h"
#include "pg_server.h"

#include <stdio.h>

#define CONNS 4

static int use_all(tc_db_pool *pool, int round)
{
    tc_db *db[CONNS];
    int failures = 0;
    for (int i = 0; i < CONNS; i++) /* every connection of the pool at once */
        REQUIRE(tc_db_pool_acquire(pool, 5000, &db[i]) == 0);
    for (int i = 0; i < CONNS; i++) {
        tc_db_param p[2] = {tc_db_int64(round), tc_db_int64(i)};
        int64_t n = 0;
        int rc = tc_db_exec(db[i], "INSERT INTO hits (round, conn) VALUES (?, ?)", p, 2, NULL);
        if (rc == 0)
            rc = tc_db_query_int64(db[i], "SELECT count(*) FROM hits WHERE round = ?", p, 1, &n);
        if (rc != 0) {
            fprintf(stderr, "    round %d, connection %d: %s: %s\n", round, i, tc_db_strerror(rc),
                    tc_db_errmsg(db[i]));
            failures++;
        }
    }
    for (int i = 0; i < CONNS; i++)
        tc_db_pool_release(pool, db[i]);
    return failures;
}

int main(void)
{
    tct_pg pg;
    REQUIRE(tct_pg_start(&pg) == 0);
    char err[256];
    tc_db_pool *pool = tc_db_pool_open(pg.url, CONNS, 5000, err, sizeof(err));
    if (pool == NULL)
        fprintf(stderr, "pool: %s\n", err);
    REQUIRE(pool != NULL);
    tc_db *db;
    REQUIRE(tc_db_pool_acquire(pool, 5000, &db) == 0);
    REQUIRE(tc_db_exec(db, "CREATE TABLE hits (round BIGINT, conn BIGINT)", NULL, 0, NULL) == 0);
    tc_db_pool_release(pool, db);
    CHECK_EQ_INT(use_all(pool, 1), 0);

    REQUIRE(tct_pg_restart(&pg) == 0);
    CHECK_EQ_INT(use_all(pool, 2), 0); /* each connection replaced before its first use */
    CHECK_EQ_INT(use_all(pool, 3), 0);

    tc_db_pool_close(pool);
    tct_pg_stop(&pg);
    return check_report();
}

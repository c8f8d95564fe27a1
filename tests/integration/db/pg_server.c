/* Tests tests/support/pg_server.c: a private PostgreSQL cluster starts on a free loopback
 * port (as the postgres user when root), answers through tc_db, gives out fresh databases
 * and drops them, and is gone with its directory after tct_pg_stop. */
#include <sys/stat.h>

#include "both.h"

int main(void)
{
    tct_pg pg;
    char url[600], err[512], dir[sizeof(pg.dir)];
    struct stat st;
    tc_db *db;
    int64_t n = 0;

    REQUIRE(tct_pg_start(&pg) == 0);
    CHECK(pg.port > 0);
    CHECK(pg.pid > 0);
    CHECK(strstr(pg.url, "127.0.0.1") != NULL);
    snprintf(dir, sizeof(dir), "%s", pg.dir);

    db = tc_db_open(pg.url, 2000, err, sizeof(err));
    if (!db)
        fprintf(stderr, "open %s: %s\n", pg.url, err);
    CHECK(db != NULL);
    CHECK_RC(db, tc_db_query_int64(db, "SELECT 40 + 2", NULL, 0, &n), 0);
    CHECK_EQ_INT(n, 42);
    tc_db_close(db);

    REQUIRE(tct_pg_create_db(pg.url, url, sizeof(url)) == 0);
    CHECK(strstr(url, "/tct_") != NULL);
    db = tc_db_open(url, 2000, err, sizeof(err));
    CHECK(db != NULL);
    CHECK_RC(db, tc_db_exec_script(db, "CREATE TABLE t (x BIGINT)"), 0);
    /* drop forces this open connection out */
    CHECK_EQ_INT(tct_pg_drop_db(url), 0);
    CHECK(tc_db_exec(db, "SELECT count(*) FROM t", NULL, 0, NULL) < 0);
    tc_db_close(db);
    CHECK(tc_db_open(url, 2000, err, sizeof(err)) == NULL); /* gone */

    CHECK_EQ_INT(tct_pg_stop(&pg), 0);
    CHECK_EQ_INT(pg.pid, 0);
    CHECK(stat(dir, &st) != 0);
    CHECK(tc_db_open(pg.url, 2000, err, sizeof(err)) == NULL);
    CHECK_EQ_INT(tct_pg_stop(&pg), 0); /* safe when stopped */
    return check_report();
}

/* Tests the server-free parts of src/db/pg.c: SQLSTATE -> TC_DB_E* codes, and that a
 * PostgreSQL url with nobody listening fails fast with TC_DB_ECONN-style NULL + message
 * (no password echoed). The server-backed tests are in tests/integration/db/. */
#include <string.h>

#include "check.h"
#include "db/internal.h"
#include "redis_server.h" /* tct_free_port */

int main(void)
{
    char url[128], err[512];

    CHECK_EQ_INT(tc_db__pg_code_for_sqlstate("23505"), TC_DB_ECONSTRAINT);
    CHECK_EQ_INT(tc_db__pg_code_for_sqlstate("23503"), TC_DB_EINTEGRITY); /* foreign key */
    CHECK_EQ_INT(tc_db__pg_code_for_sqlstate("23502"), TC_DB_EINTEGRITY); /* not null */
    CHECK_EQ_INT(tc_db__pg_code_for_sqlstate("23514"), TC_DB_EINTEGRITY); /* check */
    CHECK_EQ_INT(tc_db__pg_code_for_sqlstate("57014"), TC_DB_ETIMEOUT);   /* statement_timeout */
    CHECK_EQ_INT(tc_db__pg_code_for_sqlstate("55P03"), TC_DB_ETIMEOUT);   /* lock_timeout */
    CHECK_EQ_INT(tc_db__pg_code_for_sqlstate("08006"), TC_DB_ECONN);
    CHECK_EQ_INT(tc_db__pg_code_for_sqlstate("57P01"), TC_DB_ECONN); /* admin shutdown */
    CHECK_EQ_INT(tc_db__pg_code_for_sqlstate("53200"), TC_DB_ENOMEM);
    CHECK_EQ_INT(tc_db__pg_code_for_sqlstate("42601"), TC_DB_ERROR); /* syntax error */
    CHECK_EQ_INT(tc_db__pg_code_for_sqlstate(NULL), TC_DB_ERROR);
    CHECK_EQ_INT(tc_db__pg_code_for_sqlstate("235"), TC_DB_ERROR);

    snprintf(url, sizeof(url), "postgresql://u:hunter2@127.0.0.1:%d/db", tct_free_port());
    CHECK(tc_db_open(url, 500, err, sizeof(err)) == NULL);
    CHECK(strlen(err) > 0);
    CHECK(strstr(err, "hunter2") == NULL);
    snprintf(url, sizeof(url), "postgres://127.0.0.1:%d/db?connect_timeout=2", tct_free_port());
    CHECK(tc_db_open(url, 500, err, sizeof(err)) == NULL);
    return check_report();
}

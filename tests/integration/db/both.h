/* both.h: runs one test body against each database engine, for the tests in tests/integration/db/.
 * SQLite: a fresh file in a temp dir. PostgreSQL: a fresh database (tct_pg_create_db) on
 * the server of $TC_PG_URL, which scripts/test.sh always sets: if it is unset the test
 * FAILS rather than skips, so a broken harness cannot pass silently.
 * Not a framework: a header of static helpers, included by one test file each. */
#ifndef TC_TEST_DB_BOTH_H
#define TC_TEST_DB_BOTH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "db/db.h"
#include "pg_server.h"

typedef struct backend {
    const char *name; /* "sqlite" or "postgres" */
    tc_db_dialect dialect;
    char url[600];
    char dir[300]; /* SQLite's temp dir */
} backend;

typedef void (*backend_body)(const backend *b);

static inline tc_db *backend_open(const backend *b, int timeout_ms)
{
    char err[512];
    tc_db *db = tc_db_open(b->url, timeout_ms, err, sizeof(err));
    if (!db)
        fprintf(stderr, "[%s] open: %s\n", b->name, err);
    return db;
}

/* A connection with the schema migrated; NULL (and a failed check) on error. */
static inline tc_db *backend_open_migrated(const backend *b)
{
    tc_db *db = backend_open(b, 5000);
    int rc;
    if (db && (rc = tc_db_migrate(db, NULL)) != 0) {
        fprintf(stderr, "[%s] migrate: %s: %s\n", b->name, tc_db_strerror(rc), tc_db_errmsg(db));
        CHECK_EQ_INT(rc, 0);
        tc_db_close(db);
        db = NULL;
    }
    return db;
}

static inline void run_sqlite(backend_body body)
{
    const char *tmp = getenv("TMPDIR");
    backend b = {.name = "sqlite", .dialect = TC_DB_SQLITE};
    char path[400];
    snprintf(b.dir, sizeof(b.dir), "%s/tct-db-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    REQUIRE(mkdtemp(b.dir) != NULL);
    snprintf(b.url, sizeof(b.url), "sqlite:%s/test.db", b.dir);
    printf("== %s (%s)\n", b.name, b.url);
    fflush(stdout);
    body(&b);
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/test.db%s", b.dir, suffixes[i]);
        unlink(path);
    }
    rmdir(b.dir);
}

static inline void run_postgres(backend_body body)
{
    const char *base = tct_env_pg_url();
    backend b = {.name = "postgres", .dialect = TC_DB_POSTGRES};
    if (!base) {
        fprintf(stderr, "TC_PG_URL is not set: run the tests with scripts/test.sh\n");
        CHECK(!"TC_PG_URL is set");
        return;
    }
    if (tct_pg_create_db(base, b.url, sizeof(b.url)) != 0) {
        CHECK(!"tct_pg_create_db");
        return;
    }
    printf("== %s (%s)\n", b.name, b.url);
    fflush(stdout);
    body(&b);
    CHECK_EQ_INT(tct_pg_drop_db(b.url), 0);
}

/* The body once per engine; returns check_report()'s exit code. */
static inline int run_both(backend_body body)
{
    run_sqlite(body);
    run_postgres(body);
    return check_report();
}

/* CHECK that a call returned rc, printing the connection's message if not. */
#define CHECK_RC(db, call, rc)                                                                     \
    do {                                                                                           \
        int check__rc = (call);                                                                    \
        if (check__rc != (rc))                                                                     \
            fprintf(stderr, "    -> %s: %s\n", tc_db_strerror(check__rc), tc_db_errmsg(db));       \
        CHECK_EQ_INT(check__rc, rc);                                                               \
    } while (0)

#endif

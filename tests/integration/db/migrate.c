/* Migrations on SQLite and PostgreSQL: several connections migrating one empty database
 * at once apply each migration exactly once; a re-run is a no-op; every table of schema v1
 * is there and the plans are seeded; a database newer than the build is refused. */
#include <pthread.h>

#include "both.h"

#define RACERS 4

typedef struct racer {
    const backend *b;
    int rc, applied;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    tc_db *db = backend_open(r->b, 10000);
    r->rc = db ? tc_db_migrate(db, &r->applied) : -1;
    if (r->rc != 0)
        fprintf(stderr, "[%s] racing migrate: %s\n", r->b->name, db ? tc_db_errmsg(db) : "");
    tc_db_close(db);
    return NULL;
}

static void body(const backend *b)
{
    const char *tables[] = {"users",    "sessions",   "plans",          "subscriptions",
                            "activity", "blog_posts", "billing_events", "schema_migrations"};
    pthread_t th[RACERS];
    racer r[RACERS];
    int64_t v = -1, n = -1;
    int applied = -1, total = 0;
    tc_db *db = backend_open(b, 5000);
    char sql[128];

    REQUIRE(db);
    CHECK(tc_db_schema_latest() >= 2);
    CHECK_RC(db, tc_db_schema_version(db, &v), 0);
    CHECK_EQ_INT(v, 0);

    /* racing first migrations: each version applied by exactly one of them */
    for (int i = 0; i < RACERS; i++) {
        r[i] = (racer){.b = b};
        REQUIRE(pthread_create(&th[i], NULL, race, &r[i]) == 0);
    }
    for (int i = 0; i < RACERS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(r[i].rc, 0);
        total += r[i].applied;
    }
    CHECK_EQ_INT(total, tc_db_schema_latest());

    CHECK_RC(db, tc_db_schema_version(db, &v), 0);
    CHECK_EQ_INT(v, tc_db_schema_latest());
    CHECK_RC(db, tc_db_migrate(db, &applied), 0); /* idempotent */
    CHECK_EQ_INT(applied, 0);
    CHECK_RC(db,
             tc_db_query_int64(db, "SELECT count(*) FROM schema_migrations WHERE applied_at > 0",
                               NULL, 0, &n),
             0);
    CHECK_EQ_INT(n, tc_db_schema_latest());
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", tables[i]);
        CHECK_RC(db, tc_db_query_int64(db, sql, NULL, 0, &n), 0);
    }
    CHECK_RC(db,
             tc_db_query_int64(db, "SELECT count(*) FROM plans WHERE id IN ('free','pro','team')",
                               NULL, 0, &n),
             0);
    CHECK_EQ_INT(n, 3);
    /* the index the dashboard needs */
    CHECK_RC(db,
             tc_db_query_int64(db,
                               b->dialect == TC_DB_SQLITE
                                   ? "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                                     "AND name = 'activity_user_created'"
                                   : "SELECT count(*) FROM pg_indexes "
                                     "WHERE indexname = 'activity_user_created'",
                               NULL, 0, &n),
             0);
    CHECK_EQ_INT(n, 1);

    /* a database migrated by a newer build is refused, and left alone */
    tc_db_param p = tc_db_int64(tc_db_schema_latest() + 1);
    CHECK_RC(db,
             tc_db_exec(db, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, 1)", &p,
                        1, NULL),
             0);
    CHECK_RC(db, tc_db_migrate(db, &applied), TC_DB_ESCHEMA);
    CHECK(strstr(tc_db_errmsg(db), "newer") != NULL);
    CHECK(!tc_db_in_transaction(db));
    CHECK_RC(db, tc_db_exec(db, "DELETE FROM schema_migrations WHERE version = ?", &p, 1, NULL), 0);
    CHECK_RC(db, tc_db_migrate(db, &applied), 0);
    CHECK_EQ_INT(applied, 0);
    tc_db_close(db);

    /* a second, new connection sees the same: nothing to do */
    db = backend_open(b, 5000);
    REQUIRE(db);
    CHECK_RC(db, tc_db_migrate(db, &applied), 0);
    CHECK_EQ_INT(applied, 0);
    tc_db_close(db);
}

int main(void)
{
    return run_both(body);
}

/* pg_server.h: PostgreSQL for tests. A private cluster (initdb + postgres) on a free
 * loopback port in its own temp dir, killed with the test if the test dies; and fresh,
 * uniquely named databases on any server (the shared one from scripts/test.sh is in
 * $TC_PG_URL), so that tests running in parallel never see each other's tables.
 * Not for production use. No libpq here: readiness is read from postmaster.pid, databases
 * are made with the createdb/dropdb programs.
 *
 * Binaries: $TC_PG_BINDIR, else the newest /usr/lib/postgresql/<N>/bin (Debian), else PATH.
 * As root the server runs as the "postgres" system user (initdb refuses root), which owns
 * the temp dir. Start it from the main thread: PR_SET_PDEATHSIG fires when the *thread*
 * that forked dies. All functions return 0 on success, -1 on error (message on stderr). */
#ifndef TC_TEST_PG_SERVER_H
#define TC_TEST_PG_SERVER_H

#include <stddef.h>
#include <sys/types.h>

typedef struct tct_pg {
    int port;      /* loopback port it listens on */
    pid_t pid;     /* the postmaster; 0 when not running */
    char dir[256]; /* temp dir: data/, the socket, postgres.log; removed by tct_pg_stop */
    char url[320]; /* postgresql://tiercache@127.0.0.1:<port>/postgres (superuser, trust) */
} tct_pg;

/* initdb (UTF8, C locale, trust auth, superuser "tiercache"; fsync off) and start
 * postgres on a free port; waits until it accepts connections. *pg is overwritten. */
int tct_pg_start(tct_pg *pg);
/* Fast shutdown (SIGINT), wait; SIGKILL after 5 s. Removes pg->dir. Safe when stopped. */
int tct_pg_stop(tct_pg *pg);

/* Fast shutdown (every session is closed, as in a real restart), then the same cluster
 * started again on the same port; waits until it accepts connections. */
int tct_pg_restart(tct_pg *pg);

/* $TC_PG_URL (the shared cluster of scripts/test.sh), or NULL if unset or empty. */
const char *tct_env_pg_url(void);

/* Creates a new empty database named tct_<pid>_<n> on the server of base_url (a
 * postgresql:// url of a superuser or a role with CREATEDB) and writes a url for it, the
 * same as base_url but for the database name, to out. */
int tct_pg_create_db(const char *base_url, char *out, size_t outlen);
/* Drops the database of url (as created above), forcing its connections closed. */
int tct_pg_drop_db(const char *url);

#endif

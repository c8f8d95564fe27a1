/* pg_server.c: start/stop a private PostgreSQL cluster for tests, and create/drop
 * per-test databases with createdb/dropdb (see pg_server.h). */
#define _GNU_SOURCE /* setgroups, nftw */
#include "pg_server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis_server.h" /* tct_free_port */

#define START_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS 5000

const char *tct_env_pg_url(void)
{
    const char *s = getenv("TC_PG_URL");
    return s && *s ? s : NULL;
}

/* Path of a PostgreSQL program: $TC_PG_BINDIR/name, the newest Debian bindir, or name. */
static void program(const char *name, char *out, size_t outlen)
{
    const char *bindir = getenv("TC_PG_BINDIR");
    int best = -1;
    DIR *d;
    struct dirent *e;

    if (bindir && *bindir) {
        snprintf(out, outlen, "%s/%s", bindir, name);
        return;
    }
    if ((d = opendir("/usr/lib/postgresql")) != NULL) {
        while ((e = readdir(d)) != NULL) {
            char path[512];
            int v = atoi(e->d_name);
            snprintf(path, sizeof(path), "/usr/lib/postgresql/%s/bin/%s", e->d_name, name);
            if (v > best && access(path, X_OK) == 0)
                best = v;
        }
        closedir(d);
    }
    if (best >= 0)
        snprintf(out, outlen, "/usr/lib/postgresql/%d/bin/%s", best, name);
    else
        snprintf(out, outlen, "%s", name);
}

/* The user the server runs as: "postgres" when we are root, else ourselves (NULL). */
static const struct passwd *server_user(void)
{
    const struct passwd *pw;
    if (geteuid() != 0)
        return NULL;
    if (!(pw = getpwnam("postgres")))
        fprintf(stderr, "tct_pg: running as root and there is no 'postgres' user\n");
    return pw;
}

/* In a forked child: become pw (if not NULL). 0 or -1. */
static int become(const struct passwd *pw)
{
    if (!pw)
        return 0;
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        fprintf(stderr, "tct_pg: cannot become %s: %s\n", pw->pw_name, strerror(errno));
        return -1;
    }
    return 0;
}

/* fork + exec argv as pw, stdout+stderr to logfile (or inherited if NULL); if pdeath,
 * the child is killed when this thread dies. Returns the pid or -1. */
static pid_t spawn(char *const argv[], const struct passwd *pw, const char *logfile, int pdeath)
{
    pid_t parent = getpid(), pid;
    fflush(NULL);
    if ((pid = fork()) < 0) {
        perror("tct_pg: fork");
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        if (logfile) {
            int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
        }
        if (become(pw) != 0)
            _exit(126);
        /* after the uid change: changing credentials clears the death signal */
        if (pdeath && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
            _exit(127);
        execv(argv[0], argv);
        fprintf(stderr, "tct_pg: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Waits for pid: its exit status, or -1 on a timeout (timeout_ms < 0: forever). */
static int reap(pid_t pid, long timeout_ms)
{
    long deadline = tct_now_ms() + timeout_ms;
    int status;
    for (;;) {
        pid_t w = waitpid(pid, &status, timeout_ms < 0 ? 0 : WNOHANG);
        if (w == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (w < 0 && errno != EINTR)
            return errno == ECHILD ? 0 : -1;
        if (timeout_ms >= 0 && tct_now_ms() >= deadline)
            return -1;
        if (timeout_ms >= 0)
            tct_sleep_ms(10);
    }
}

static int run(char *const argv[], const struct passwd *pw, const char *logfile)
{
    pid_t pid = spawn(argv, pw, logfile, 0);
    int rc = pid < 0 ? -1 : reap(pid, -1);
    if (rc != 0)
        fprintf(stderr, "tct_pg: %s exited with %d\n", argv[0], rc);
    return rc == 0 ? 0 : -1;
}

static void print_file(const char *path)
{
    char line[512];
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fprintf(stderr, "---- %s ----\n", path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

/* 1 once data/postmaster.pid names pid and says "ready" (its 8th line). */
static int ready(const tct_pg *pg)
{
    char path[320], line[256];
    int n = 0, ok = 0;
    long first = 0;
    FILE *f;
    snprintf(path, sizeof(path), "%s/data/postmaster.pid", pg->dir);
    if (!(f = fopen(path, "r")))
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (++n == 1)
            first = atol(line);
        if (n == 8)
            ok = strncmp(line, "ready", 5) == 0;
    }
    fclose(f);
    return ok && first == (long)pg->pid;
}

static int start_postgres(tct_pg *pg, const struct passwd *pw)
{
    char bin[300], data[300], port[16], log[300];
    long deadline;

    program("postgres", bin, sizeof(bin));
    snprintf(data, sizeof(data), "%s/data", pg->dir);
    snprintf(log, sizeof(log), "%s/postgres.log", pg->dir);
    snprintf(port, sizeof(port), "%d", pg->port);
    char *argv[] = {bin,
                    "-D",
                    data,
                    "-p",
                    port,
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    NULL};
    if ((pg->pid = spawn(argv, pw, log, 1)) < 0) {
        pg->pid = 0;
        return -1;
    }
    deadline = tct_now_ms() + START_TIMEOUT_MS;
    while (tct_now_ms() < deadline) {
        int status;
        if (ready(pg))
            return 0;
        if (waitpid(pg->pid, &status, WNOHANG) == pg->pid) { /* port taken, most likely */
            pg->pid = 0;
            return -1;
        }
        tct_sleep_ms(20);
    }
    fprintf(stderr, "tct_pg: postgres not ready on port %d after %d ms\n", pg->port,
            START_TIMEOUT_MS);
    kill(pg->pid, SIGKILL);
    reap(pg->pid, -1);
    pg->pid = 0;
    return -1;
}

int tct_pg_start(tct_pg *pg)
{
    const char *tmp = getenv("TMPDIR");
    const struct passwd *pw = server_user();
    char initdb[300], data[300], log[300];

    memset(pg, 0, sizeof(*pg));
    if (geteuid() == 0 && !pw)
        return -1;
    snprintf(pg->dir, sizeof(pg->dir), "%s/tct-pg-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(pg->dir)) {
        perror("tct_pg: mkdtemp");
        pg->dir[0] = '\0';
        return -1;
    }
    if (pw && chown(pg->dir, pw->pw_uid, pw->pw_gid) != 0) {
        perror("tct_pg: chown");
        tct_pg_stop(pg);
        return -1;
    }
    program("initdb", initdb, sizeof(initdb));
    snprintf(data, sizeof(data), "%s/data", pg->dir);
    snprintf(log, sizeof(log), "%s/initdb.log", pg->dir);
    char *argv[] = {initdb,  "-D", data,   "-U",         "tiercache", "-A",
                    "trust", "-E", "UTF8", "--locale=C", "--no-sync", NULL};
    if (run(argv, pw, log) != 0) {
        fprintf(stderr, "tct_pg: initdb failed (can the server user reach %s?)\n", pg->dir);
        print_file(log);
        tct_pg_stop(pg);
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) { /* the free port may be taken meanwhile */
        if ((pg->port = tct_free_port()) < 0)
            break;
        if (start_postgres(pg, pw) == 0) {
            snprintf(pg->url, sizeof(pg->url), "postgresql://tiercache@127.0.0.1:%d/postgres",
                     pg->port);
            return 0;
        }
    }
    fprintf(stderr, "tct_pg: could not start postgres\n");
    snprintf(log, sizeof(log), "%s/postgres.log", pg->dir);
    print_file(log);
    tct_pg_stop(pg);
    return -1;
}

int tct_pg_restart(tct_pg *pg)
{
    if (pg->pid <= 0 || !pg->dir[0]) {
        fprintf(stderr, "tct_pg_restart: not a running server\n");
        return -1;
    }
    kill(pg->pid, SIGINT);
    if (reap(pg->pid, STOP_TIMEOUT_MS) < 0) {
        kill(pg->pid, SIGKILL);
        reap(pg->pid, -1);
    }
    pg->pid = 0;
    for (int attempt = 0; attempt < 10; attempt++) { /* the old socket may linger */
        if (start_postgres(pg, server_user()) == 0)
            return 0;
        tct_sleep_ms(200);
    }
    fprintf(stderr, "tct_pg_restart: could not start postgres again on port %d\n", pg->port);
    return -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

int tct_pg_stop(tct_pg *pg)
{
    if (pg->pid > 0) {
        kill(pg->pid, SIGINT); /* fast shutdown: roll back sessions, close, exit */
        if (reap(pg->pid, STOP_TIMEOUT_MS) < 0) {
            kill(pg->pid, SIGKILL);
            reap(pg->pid, -1);
        }
        pg->pid = 0;
    }
    if (pg->dir[0]) {
        nftw(pg->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        pg->dir[0] = '\0';
    }
    return 0;
}

/* ---- per-test databases ------------------------------------------------------------- */

/* url with its database name replaced by name, into out. -1 if url is not a URI. */
static int with_dbname(const char *url, const char *name, char *out, size_t outlen)
{
    const char *auth = strstr(url, "://"), *path, *query;
    int n;
    if (!auth)
        return -1;
    auth += 3;
    query = strchr(auth, '?');
    path = strchr(auth, '/');
    if (path && query && path > query)
        path = NULL;
    if (!path)
        path = query ? query : auth + strlen(auth);
    n = snprintf(out, outlen, "%.*s/%s%s", (int)(path - url), url, name, query ? query : "");
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* The database name of url (up to '?'), into out. */
static int dbname_of(const char *url, char *out, size_t outlen)
{
    const char *auth = strstr(url, "://"), *path;
    size_t len;
    if (!auth || !(path = strchr(auth + 3, '/')))
        return -1;
    path++;
    len = strcspn(path, "?");
    if (len == 0 || len >= outlen)
        return -1;
    memcpy(out, path, len);
    out[len] = '\0';
    return 0;
}

int tct_pg_create_db(const char *base_url, char *out, size_t outlen)
{
    static atomic_int counter;
    char bin[300], name[64], maint[600];
    snprintf(name, sizeof(name), "tct_%ld_%d", (long)getpid(), atomic_fetch_add(&counter, 1));
    if (!base_url || with_dbname(base_url, name, out, outlen) != 0) {
        fprintf(stderr, "tct_pg_create_db: not a postgresql:// url\n");
        return -1;
    }
    program("createdb", bin, sizeof(bin));
    snprintf(maint, sizeof(maint), "--maintenance-db=%s", base_url);
    char *argv[] = {bin, maint, name, NULL};
    return run(argv, NULL, NULL);
}

int tct_pg_drop_db(const char *url)
{
    char bin[300], name[64], maint_url[600], maint[640];
    if (!url || dbname_of(url, name, sizeof(name)) != 0 ||
        with_dbname(url, "postgres", maint_url, sizeof(maint_url)) != 0) {
        fprintf(stderr, "tct_pg_drop_db: not a postgresql:// url with a database\n");
        return -1;
    }
    program("dropdb", bin, sizeof(bin));
    snprintf(maint, sizeof(maint), "--maintenance-db=%s", maint_url);
    char *argv[] = {bin, "--force", maint, name, NULL};
    return run(argv, NULL, NULL);
}

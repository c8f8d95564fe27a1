/*
 * tiercache's command line: configuration (flags, each with an environment
 * variable), start-up, graceful shutdown, and the seed and migrate commands.
 *
 *   tiercache [serve] [options]   run the server
 *   tiercache seed [options]      create the database if needed and fill it with demo data
 *   tiercache migrate [options]   bring the schema up to date
 *   tiercache stats --url URL     the cache monitor in a terminal (src/app/stats.c)
 *
 * A bad value is refused at start with a message naming the option, and exit
 * status 2. SIGTERM or SIGINT stops the server gracefully: no new
 * connections, in-flight requests finish, then exit 0; those still running at
 * --stop-timeout-ms are answered 503 or closed, and the process exits then. SIGHUP reopens the
 * access log file (after logrotate has renamed it).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "app/app.h"
#include "base/time.h"
#include "db/db.h"
#include "http/purge.h"
#include "tiercache/cache.h"
#include "http/server.h"

#ifndef TC_WEB_DIR /* CMake sets it to the source tree's web/ */
#define TC_WEB_DIR "web"
#endif

#define DEMO_PASSWORD "demo1234"

typedef struct options {
    tc_app_config app;
    tc_http_config http;
    char listen[128];
    char redis[1024];
    int seed_users, seed_activity;
} options;

static const char USAGE[] =
    "usage: tiercache [serve|seed|migrate] [options]\n"
    "       tiercache stats --url URL [--token T] [--watch]   (tiercache stats --help)\n"
    "\n"
    "  serve (default)  run the API server\n"
    "  seed             create the database if needed and fill it with demo data\n"
    "  migrate          bring the database schema up to date\n"
    "\n"
    "options (environment variable in brackets; flags win):\n"
    "  --listen ADDR:PORT     address to serve on [TIERCACHE_LISTEN] (127.0.0.1:8080)\n"
    "  --db URL               sqlite:PATH or postgresql://... [TIERCACHE_DB]\n"
    "                         (sqlite:tiercache.db)\n"
    "  --redis HOST:PORT|none Redis for L2 and the invalidation bus [TIERCACHE_REDIS]\n"
    "                         (127.0.0.1:6379; none: in-process L1 only), or Redis Sentinel:\n"
    "                         sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME, or a Redis\n"
    "                         Cluster (some of its nodes): cluster://HOST:PORT[,HOST:PORT...]\n"
    "  --redis-db N           Redis database index [TIERCACHE_REDIS_DB] (0)\n"
    "  --redis-password P     [TIERCACHE_REDIS_PASSWORD]\n"
    "  --prefix P             Redis key prefix [TIERCACHE_PREFIX] (tc:)\n"
    "  --l1-mb N              in-process cache size in MiB [TIERCACHE_L1_MB] (64)\n"
    "  --page-cache-mb N      rendered pages kept by their ETag, in MiB\n"
    "                         [TIERCACHE_PAGE_CACHE_MB] (16; 0: render every page)\n"
    "  --l2-budget-mb N       what this instance may hold in Redis, in MiB; past it, new\n"
    "                         entries are not stored there [TIERCACHE_L2_BUDGET_MB] (256; 0: none)\n"
    "  --l2-budget-keys N     the same in keys [TIERCACHE_L2_BUDGET_KEYS] (500000; 0: none)\n"
    "  --l1-admission on|off  let a new entry into a full L1 only if it was asked for more\n"
    "                         often than what it would evict, so a scan does not flush\n"
    "                         the hot set (TinyLFU) [TIERCACHE_L1_ADMISSION] (on)\n"
    "  --l2-compress-min-bytes N  store values of N bytes or more compressed in Redis\n"
    "                         (zstd) [TIERCACHE_L2_COMPRESS_MIN_BYTES] (1024; 0: never)\n"
    "  --lease-ms N           an instance trusts its L1 this long after the invalidation bus\n"
    "                         last proved it had every invalidation [TIERCACHE_LEASE_MS] (250)\n"
    "  --invalidate-wait-ms N how long a write waits for Redis to take its invalidations\n"
    "                         (a stall, a failover) before it is refused (503)\n"
    "                         [TIERCACHE_INVALIDATE_WAIT_MS] (5000)\n"
    "  --no-cache             read the database on every request [TIERCACHE_CACHE=off]\n"
    "  --event-threads N      HTTP event threads [TIERCACHE_EVENT_THREADS] (1)\n"
    "  --workers N            threads for blocking work [TIERCACHE_WORKERS] (8)\n"
    "  --stop-timeout-ms N    on SIGTERM, how long in-flight requests may still run;\n"
    "                         then they are answered 503 or closed and the process exits\n"
    "                         [TIERCACHE_STOP_TIMEOUT_MS] (10000)\n"
    "  --max-connections-per-addr N  open connections from one client address (IPv4, or\n"
    "                         an IPv6 /64); 0: a quarter of the 4096 connections; 4096: no cap\n"
    "                         (behind a proxy) [TIERCACHE_MAX_CONNECTIONS_PER_ADDR] (0)\n"
    "  --db-pool N            database connections [TIERCACHE_DB_POOL] (8)\n"
    "  --webhook-secret S     billing webhook secret [TIERCACHE_WEBHOOK_SECRET] (none: 503)\n"
    "  --cookie-secure        mark the session cookie Secure [TIERCACHE_COOKIE_SECURE=1]\n"
    "  --login-limit N        logins a minute per client address and per email\n"
    "                         [TIERCACHE_LOGIN_LIMIT] (10)\n"
    "  --seed-users N         seed: regular demo users (10000)\n"
    "  --seed-activity N      seed: mean activity rows per user (100)\n"
    "  --fast-password-hash   argon2id at minimum cost: tests only [TIERCACHE_FAST_HASH=1]\n"
    "  --access-log off|stderr|FILE  one logfmt line per request [TIERCACHE_ACCESS_LOG]\n"
    "                         (stderr); a FILE is reopened on SIGHUP (log rotation)\n"
    "  --metrics-token T      bearer token for /metrics and the monitoring feed\n"
    "                         [TIERCACHE_METRICS_TOKEN] (none: loopback peers only)\n"
    "  --test-fresh-ms N      tests only: every cached query and session is fresh N ms\n"
    "                         [TIERCACHE_TEST_FRESH_MS]\n"
    "  --test-db-delay-ms N   tests and benchmarks only: every database use first waits\n"
    "                         N ms, as a slow database would [TIERCACHE_TEST_DB_DELAY_MS]\n"
    "  --web-dir DIR          page templates and static files [TIERCACHE_WEB_DIR]\n"
    "                         (" TC_WEB_DIR ")\n"
    "  --purge-url URL        shared cache to purge by tag on invalidation, on this machine\n"
    "                         (http://127.0.0.1:6081/) [TIERCACHE_PURGE_URL] (none)\n"
    "  --tag-header NAME      header carrying a public response's cache tags, also on\n"
    "                         purges [TIERCACHE_TAG_HEADER] (xkey; or Surrogate-Key, Cache-Tag)\n"
    "  --tag-separator SEP    between tags: space, comma or the characters\n"
    "                         [TIERCACHE_TAG_SEPARATOR] (space)\n"
    "  --cdn-max-age N        CDN-Cache-Control max-age (seconds) on public responses and\n"
    "                         pages, for a CDN that is purged by tag [TIERCACHE_CDN_MAX_AGE]\n"
    "                         (3600 with --purge-url, else 0: none)\n"
    "  --help                 this text\n";

static void die(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "tiercache: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n(see tiercache --help)\n");
    exit(2);
}

static int to_int(const char *name, const char *v, int min, int max)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < min || n > max) {
        char range[64];
        snprintf(range, sizeof(range), "an integer from %d to %d", min, max);
        die("%s: expected %s", name, range);
    }
    return (int)n;
}

static void split_host_port(const char *name, const char *v, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(v, ':');
    if (colon == NULL || colon == v || (size_t)(colon - v) >= cap)
        die("%s: expected HOST:PORT, got '%s'", name, v);
    memcpy(host, v, (size_t)(colon - v));
    host[colon - v] = '\0';
    if (host[0] == '[') { /* [::1]:8080 */
        size_t n = strlen(host);
        if (host[n - 1] != ']')
            die("%s: bad IPv6 literal in '%s'", name, v);
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    *port = to_int(name, colon + 1, 0, 65535);
}

/* A list HOST:PORT[,HOST:PORT...] (sentinels, a cluster's nodes), each item checked; what
 * names the items in a message. */
static void check_nodes(const char *v, char *list, const char *what)
{
    char name[64];
    snprintf(name, sizeof(name), "--redis (a %s)", what);
    for (char *item = list; item != NULL;) {
        char *comma = strchr(item, ','), h[128];
        int port;
        if (comma != NULL)
            *comma = '\0';
        split_host_port(name, item, h, sizeof(h), &port);
        if (port == 0)
            die("--redis: a %s's port cannot be 0, in '%s'", what, v);
        if (comma != NULL)
            *comma = ',';
        item = comma != NULL ? comma + 1 : NULL;
    }
}

/* --redis: none, HOST:PORT, sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME, or
 * cluster://HOST:PORT[,HOST:PORT...]. Anything else stops the program: a value taken for a
 * host name would run without L2, silently. */
static void parse_redis(options *o, char *rhost, size_t cap, char *nodes)
{
    static const char FORMS[] = "expected HOST:PORT, sentinel://HOST:PORT[,HOST:PORT...]/"
                                "MASTER_NAME, cluster://HOST:PORT[,HOST:PORT...] or none";
    const char *v = o->redis;
    if (strcmp(v, "none") == 0)
        return;
    if (strncmp(v, "sentinel://", 11) == 0) {
        const char *list = v + 11, *slash = strchr(list, '/');
        if (slash == NULL || slash == list || slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
            die("--redis: %s, got '%s'", FORMS, v);
        memcpy(nodes, list, (size_t)(slash - list));
        nodes[slash - list] = '\0';
        check_nodes(v, nodes, "sentinel");
        o->app.sentinels = nodes;
        o->app.sentinel_master = slash + 1;
        return;
    }
    if (strncmp(v, "cluster://", 10) == 0) {
        const char *list = v + 10;
        if (*list == '\0' || strchr(list, '/') != NULL)
            die("--redis: %s, got '%s'", FORMS, v);
        if (o->app.redis_db != 0) { /* a cluster has database 0 only */
            char db[16];
            snprintf(db, sizeof(db), "%d", o->app.redis_db);
            die("--redis: a Redis Cluster has no database %s (--redis-db must be 0, in '%s')", db,
                v);
        }
        memcpy(nodes, list, strlen(list) + 1); /* nodes holds what o->redis holds */
        check_nodes(v, nodes, "cluster node");
        o->app.cluster_nodes = nodes;
        return;
    }
    if (strstr(v, "://") != NULL || strpbrk(v, ",/") != NULL)
        die("--redis: %s, got '%s'", FORMS, v);
    split_host_port("--redis", v, rhost, cap, &o->app.redis_port);
    o->app.redis_host = rhost;
}

/* Sets one option; name is the flag without "--". */
static void set(options *o, const char *name, const char *v)
{
    if (strcmp(name, "listen") == 0)
        snprintf(o->listen, sizeof(o->listen), "%s", v);
    else if (strcmp(name, "db") == 0)
        o->app.db_url = v;
    else if (strcmp(name, "redis") == 0) {
        if (strlen(v) >= sizeof(o->redis)) /* cut short, it would name other nodes */
            die("--redis: longer than 1023 characters: '%.40s...'%s", v, "");
        snprintf(o->redis, sizeof(o->redis), "%s", v);
    } else if (strcmp(name, "redis-db") == 0)
        o->app.redis_db = to_int("--redis-db", v, 0, 1000000);
    else if (strcmp(name, "redis-password") == 0)
        o->app.redis_password = v;
    else if (strcmp(name, "prefix") == 0) {
        if (v[0] == '\0' || strlen(v) > 64)
            die("--prefix: 1 to 64 characters%s%s", "", "");
        o->app.prefix = v;
    } else if (strcmp(name, "l1-mb") == 0)
        o->app.l1_bytes = (size_t)to_int("--l1-mb", v, 0, 1 << 20) << 20;
    else if (strcmp(name, "page-cache-mb") == 0)
        o->app.page_cache_bytes = (size_t)to_int("--page-cache-mb", v, 0, 1 << 16) << 20;
    else if (strcmp(name, "l2-budget-mb") == 0)
        o->app.l2_budget_bytes = (uint64_t)to_int("--l2-budget-mb", v, 0, 1 << 20) << 20;
    else if (strcmp(name, "l2-budget-keys") == 0)
        o->app.l2_budget_keys = (uint64_t)to_int("--l2-budget-keys", v, 0, 1000000000);
    else if (strcmp(name, "l1-admission") == 0) {
        if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
            die("--l1-admission: expected on or off, got '%s'%s", v, "");
        o->app.l1_admission = strcmp(v, "on") == 0;
    } else if (strcmp(name, "l2-compress-min-bytes") == 0)
        o->app.l2_compress_min_bytes = (size_t)to_int("--l2-compress-min-bytes", v, 0, 16 << 20);
    else if (strcmp(name, "lease-ms") == 0)
        o->app.lease_ms = to_int("--lease-ms", v, 5, 60000);
    else if (strcmp(name, "invalidate-wait-ms") == 0)
        o->app.invalidate_wait_ms = to_int("--invalidate-wait-ms", v, 0, 60000);
    else if (strcmp(name, "cache") == 0) {
        if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
            die("TIERCACHE_CACHE: expected on or off, got '%s'%s", v, "");
        o->app.cache = strcmp(v, "on") == 0;
    } else if (strcmp(name, "event-threads") == 0)
        o->http.event_threads = to_int("--event-threads", v, 1, 64);
    else if (strcmp(name, "workers") == 0)
        o->http.workers = to_int("--workers", v, 1, 1024);
    else if (strcmp(name, "stop-timeout-ms") == 0)
        o->http.stop_timeout_ms = to_int("--stop-timeout-ms", v, 0, 600000);
    else if (strcmp(name, "max-connections-per-addr") == 0)
        o->http.max_connections_per_addr = to_int("--max-connections-per-addr", v, 0, 1000000);
    else if (strcmp(name, "db-pool") == 0)
        o->app.db_pool = to_int("--db-pool", v, 1, 1024);
    else if (strcmp(name, "webhook-secret") == 0) {
        if (strlen(v) < 16)
            die("--webhook-secret: at least 16 characters%s%s", "", "");
        o->app.webhook_secret = v;
    } else if (strcmp(name, "cookie-secure") == 0)
        o->app.cookie_secure = strcmp(v, "0") != 0;
    else if (strcmp(name, "login-limit") == 0)
        o->app.login_burst = o->app.login_per_minute = to_int("--login-limit", v, 1, 1000000);
    else if (strcmp(name, "fast-password-hash") == 0)
        o->app.pwhash_fast = strcmp(v, "0") != 0;
    else if (strcmp(name, "access-log") == 0)
        o->app.access_log = v;
    else if (strcmp(name, "metrics-token") == 0) {
        if (strlen(v) < 16)
            die("--metrics-token: at least 16 characters%s%s", "", "");
        o->app.metrics_token = v;
    } else if (strcmp(name, "test-fresh-ms") == 0)
        o->app.test_fresh_ms = (uint32_t)to_int("--test-fresh-ms", v, 1, 86400000);
    else if (strcmp(name, "test-db-delay-ms") == 0)
        o->app.test_db_delay_ms = (uint32_t)to_int("--test-db-delay-ms", v, 0, 60000);
    else if (strcmp(name, "web-dir") == 0)
        o->app.web_dir = v;
    else if (strcmp(name, "purge-url") == 0) {
        char h[64], path[256];
        int port;
        if (strcmp(v, "none") == 0)
            o->app.purge_url = NULL;
        else if (tc_purge_parse_url(v, h, sizeof(h), &port, path, sizeof(path)) != 0)
            die("--purge-url: expected http://HOST:PORT/ with HOST 127.x.x.x, [::1] or "
                "localhost, got '%s'%s",
                v, "");
        else
            o->app.purge_url = v;
    } else if (strcmp(name, "tag-header") == 0) {
        if (v[0] == '\0' || strlen(v) > 63 ||
            strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLM"
                      "NOPQRSTUVWXYZ0123456789-_") != strlen(v))
            die("--tag-header: a header name (letters, digits, '-'), got '%s'%s", v, "");
        o->app.tag_header = v;
    } else if (strcmp(name, "tag-separator") == 0) {
        const char *sep = strcmp(v, "space") == 0 ? " " : strcmp(v, "comma") == 0 ? "," : v;
        if (sep[0] == '\0' || strlen(sep) > 3 || strspn(sep, " ,;|") != strlen(sep))
            die("--tag-separator: space, comma, or up to 3 of ' ,;|', got '%s'%s", v, "");
        o->app.tag_sep = sep;
    } else if (strcmp(name, "cdn-max-age") == 0)
        o->app.cdn_max_age_s = to_int("--cdn-max-age", v, 0, 31536000);
    else if (strcmp(name, "seed-users") == 0)
        o->seed_users = to_int("--seed-users", v, 1, 10000000);
    else if (strcmp(name, "seed-activity") == 0)
        o->seed_activity = to_int("--seed-activity", v, 1, 100000);
    else
        die("unknown option --%s%s", name, "");
}

static void from_env(options *o)
{
    static const char *const map[][2] = {
        {"TIERCACHE_LISTEN", "listen"},
        {"TIERCACHE_DB", "db"},
        {"TIERCACHE_REDIS", "redis"},
        {"TIERCACHE_REDIS_DB", "redis-db"},
        {"TIERCACHE_REDIS_PASSWORD", "redis-password"},
        {"TIERCACHE_PREFIX", "prefix"},
        {"TIERCACHE_L1_MB", "l1-mb"},
        {"TIERCACHE_PAGE_CACHE_MB", "page-cache-mb"},
        {"TIERCACHE_LEASE_MS", "lease-ms"},
        {"TIERCACHE_L2_BUDGET_MB", "l2-budget-mb"},
        {"TIERCACHE_L2_BUDGET_KEYS", "l2-budget-keys"},
        {"TIERCACHE_L1_ADMISSION", "l1-admission"},
        {"TIERCACHE_L2_COMPRESS_MIN_BYTES", "l2-compress-min-bytes"},
        {"TIERCACHE_INVALIDATE_WAIT_MS", "invalidate-wait-ms"},
        {"TIERCACHE_CACHE", "cache"},
        {"TIERCACHE_EVENT_THREADS", "event-threads"},
        {"TIERCACHE_WORKERS", "workers"},
        {"TIERCACHE_MAX_CONNECTIONS_PER_ADDR", "max-connections-per-addr"},
        {"TIERCACHE_STOP_TIMEOUT_MS", "stop-timeout-ms"},
        {"TIERCACHE_DB_POOL", "db-pool"},
        {"TIERCACHE_WEBHOOK_SECRET", "webhook-secret"},
        {"TIERCACHE_COOKIE_SECURE", "cookie-secure"},
        {"TIERCACHE_FAST_HASH", "fast-password-hash"},
        {"TIERCACHE_LOGIN_LIMIT", "login-limit"},
        {"TIERCACHE_WEB_DIR", "web-dir"},
        {"TIERCACHE_PURGE_URL", "purge-url"},
        {"TIERCACHE_TAG_HEADER", "tag-header"},
        {"TIERCACHE_TAG_SEPARATOR", "tag-separator"},
        {"TIERCACHE_CDN_MAX_AGE", "cdn-max-age"},
        {"TIERCACHE_ACCESS_LOG", "access-log"},
        {"TIERCACHE_METRICS_TOKEN", "metrics-token"},
        {"TIERCACHE_TEST_FRESH_MS", "test-fresh-ms"},
        {"TIERCACHE_TEST_DB_DELAY_MS", "test-db-delay-ms"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        const char *v = getenv(map[i][0]);
        if (v != NULL && v[0] != '\0')
            set(o, map[i][1], v);
    }
}

static const char *parse_args(options *o, int argc, char **argv)
{
    const char *cmd = "serve";
    int i = 1;
    if (argc > 1 && argv[1][0] != '-')
        cmd = argv[i++];
    if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "seed") != 0 && strcmp(cmd, "migrate") != 0)
        die("unknown command '%s'%s", cmd, "");
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(USAGE, stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0)
            die("unexpected argument '%s'%s", a, "");
        a += 2;
        const char *eq = strchr(a, '=');
        char name[64];
        size_t n = eq != NULL ? (size_t)(eq - a) : strlen(a);
        if (n >= sizeof(name))
            die("unknown option --%s%s", a, "");
        memcpy(name, a, n);
        name[n] = '\0';
        if (strcmp(name, "no-cache") == 0 && eq == NULL)
            set(o, "cache", "off");
        else if ((strcmp(name, "cookie-secure") == 0 || strcmp(name, "fast-password-hash") == 0) &&
                 eq == NULL)
            set(o, name, "1");
        else if (eq != NULL)
            set(o, name, eq + 1);
        else if (i + 1 < argc)
            set(o, name, argv[++i]);
        else
            die("--%s needs a value%s", name, "");
    }
    return cmd;
}

/* ---- seed ----------------------------------------------------------------------------- */

static void progress(int64_t done, int64_t total, void *arg)
{
    int *last = arg;
    int pct = total > 0 ? (int)(done * 100 / total) : 100;
    if (isatty(STDERR_FILENO)) {
        char bar[41];
        int fill = pct * 40 / 100;
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(40 - fill));
        bar[40] = '\0';
        fprintf(stderr, "\r  [%s] %3d%%  %lld / %lld rows", bar, pct, (long long)done,
                (long long)total);
        if (done == total)
            fputc('\n', stderr);
    } else if (pct / 10 != *last / 10 || done == total) {
        fprintf(stderr, "  %3d%%  %lld / %lld rows\n", pct, (long long)done, (long long)total);
    }
    *last = pct;
}

static int run_seed(options *o, bool seed)
{
    char err[256] = "";
    tc_db *db = tc_db_open(o->app.db_url, o->app.db_timeout_ms, err, sizeof(err));
    if (db == NULL) {
        fprintf(stderr, "tiercache: %s\n", err);
        return 1;
    }
    int applied = 0, rc = tc_db_migrate(db, &applied);
    if (rc != 0) {
        fprintf(stderr, "tiercache: migrate: %s: %s\n", tc_db_strerror(rc), tc_db_errmsg(db));
        tc_db_close(db);
        return 1;
    }
    fprintf(stderr, "tiercache: schema at version %d (%d migration(s) applied now)\n",
            tc_db_schema_latest(), applied);
    if (seed) {
        char hash[256];
        if (tc_app_hash_password(DEMO_PASSWORD, o->app.pwhash_fast, hash, sizeof(hash)) != 0) {
            fprintf(stderr, "tiercache: could not hash the demo password\n");
            tc_db_close(db);
            return 1;
        }
        tc_seed_opts so = {
            .users = o->seed_users, .activity_per_user = o->seed_activity, .password_hash = hash};
        int last = -1;
        fprintf(stderr, "tiercache: seeding %s\n", o->app.db_url);
        rc = tc_db_seed(db, &so, progress, &last);
        if (rc == TC_DB_EEXIST)
            fprintf(stderr, "tiercache: the database already has users; not seeding again\n");
        else if (rc != 0) {
            fprintf(stderr, "tiercache: seed: %s: %s\n", tc_db_strerror(rc), tc_db_errmsg(db));
            tc_db_close(db);
            return 1;
        } else
            fprintf(stderr,
                    "tiercache: demo users: demo@example.com and admin@example.com, "
                    "password %s\n",
                    DEMO_PASSWORD);
    }
    tc_db_close(db);
    return 0;
}

/* ---- serve ---------------------------------------------------------------------------- */

/* url with the password of its user info, if any, replaced by "***" (for a log line). */
static const char *redact(const char *url, char *out, size_t n)
{
    const char *scheme = strstr(url, "://"), *at = scheme != NULL ? strchr(scheme + 3, '@') : NULL;
    const char *colon = at != NULL ? memchr(scheme + 3, ':', (size_t)(at - (scheme + 3))) : NULL;
    if (colon == NULL) {
        snprintf(out, n, "%s", url);
        return out;
    }
    snprintf(out, n, "%.*s***%s", (int)(colon + 1 - url), url, at);
    return out;
}

/* Every connection is a descriptor. Below max_connections + room for the rest (database,
 * Redis, logs), accept(2) fails with EMFILE before the server's own limits act, and
 * libmicrohttpd then stops accepting from everyone: raise the soft limit toward the hard one,
 * and if that is not enough, serve fewer connections (the per-address cap and the shedding of
 * idle connections work below that number). */
static void fit_open_files(tc_http_config *h)
{
    const rlim_t room = 256;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)h->max_connections + room;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0)
            return;
    }
    if (rl.rlim_cur >= want)
        return;
    int fit = rl.rlim_cur > 2 * room ? (int)(rl.rlim_cur - room) : (int)(rl.rlim_cur / 2);
    tc_app_log(TC_LOG_WARN, "app",
               "%llu open files at most (ulimit -n): serving at most %d connections instead of %d",
               (unsigned long long)rl.rlim_cur, fit, h->max_connections);
    h->max_connections = fit > 0 ? fit : 1;
}

static int run_serve(options *o)
{
    char host[128];
    int port;
    split_host_port("--listen", o->listen, host, sizeof(host), &port);
    o->http.bind_address = host;
    o->http.port = port;
    fit_open_files(&o->http);
    char rhost[128], nodes[sizeof(o->redis)];
    parse_redis(o, rhost, sizeof(rhost), nodes);
    if (o->app.db_pool < o->http.workers)
        fprintf(stderr,
                "tiercache: note: --db-pool %d < --workers %d: workers may wait for a "
                "connection\n",
                o->app.db_pool, o->http.workers);

    /* Signals are taken by sigwait below; block them before any thread starts. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[256] = "";
    tc_app *app = tc_app_new(&o->app, err, sizeof(err));
    if (app == NULL) {
        fprintf(stderr, "tiercache: %s\n", err);
        return 1;
    }
    tc_app_http_config(app, &o->http);
    int herr;
    tc_http_server *srv = tc_http_start(&o->http, &herr);
    if (srv == NULL) {
        fprintf(stderr, "tiercache: cannot serve on %s: %s\n", o->listen, tc_http_strerror(herr));
        tc_app_free(app);
        return 1;
    }
    tc_app_attach_server(app, srv);
    char dburl[512];
    tc_app_log(TC_LOG_INFO, "app", "serving on http://%s:%d/ (database %s, cache %s%s%s)", host,
               tc_http_port(srv), redact(o->app.db_url, dburl, sizeof(dburl)),
               o->app.cache ? "on" : "off",
               o->app.cache && strcmp(o->redis, "none") != 0 ? ", redis " : "",
               o->app.cache && strcmp(o->redis, "none") != 0 ? o->redis : "");
    int sig;
    while (sigwait(&stop, &sig) == 0 && sig == SIGHUP)
        tc_app_reopen_logs(app); /* log rotation */
    tc_app_log(TC_LOG_INFO, "app", "%s: stopping (up to %d ms for what is in flight)",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", o->http.stop_timeout_ms);
    tc_app_draining(app); /* /readyz: 503 from now on */
    tc_app_attach_server(app, NULL);
    int running = 0, cut = tc_http_stop(srv, &running);
    if (cut > 0)
        tc_app_log(TC_LOG_WARN, "app",
                   "%d request(s) were still running at the stop deadline (%d ms): answered 503 "
                   "or closed",
                   cut, o->http.stop_timeout_ms);
    if (running > 0) {
        /* Their blocking functions are still inside the app (a database call, a load):
         * freeing it under them would be a use-after-free, and waiting for them is what the
         * deadline forbids. So the process ends here, without destructors or atexit
         * handlers either (OpenSSL's, under libpq), once the access log's writer has had
         * one flush period (100 ms) for the lines of the requests just cut. */
        tc_app_log(TC_LOG_WARN, "app", "exiting without waiting for %d of them", running);
        tc_sleep_ms(150);
        fflush(stdout);
        _exit(0);
    }
    tc_app_free(app);
    tc_app_log(TC_LOG_INFO, "app", "stopped");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "stats") == 0) /* a client: flags of its own */
        return tc_stats_main(argc - 1, argv + 1);
    options o;
    memset(&o, 0, sizeof(o));
    tc_app_config_init(&o.app);
    o.app.web_dir = TC_WEB_DIR;
    tc_http_config_init(&o.http);
    snprintf(o.listen, sizeof(o.listen), "127.0.0.1:8080");
    snprintf(o.redis, sizeof(o.redis), "127.0.0.1:6379");
    from_env(&o);
    const char *cmd = parse_args(&o, argc, argv);
    if (strcmp(cmd, "seed") == 0)
        return run_seed(&o, true);
    if (strcmp(cmd, "migrate") == 0)
        return run_seed(&o, false);
    return run_serve(&o);
}

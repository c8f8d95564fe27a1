/*
 * `tiercache stats`: the monitoring page's numbers in a terminal.
 *
 * It reads the same feed as the page (GET /admin/cache.json, see monitor_feed.c)
 * over plain HTTP/1.1 and prints its summary: the last minute of requests,
 * hit ratio, cached and uncached latency percentiles, L1 memory,
 * stale-while-revalidate activity, Redis and the database, then one line per
 * cache namespace, and the hit ratios of the busiest routes and tag families.
 * --watch redraws every --interval seconds.
 *
 * It is a client: no TLS (reach a remote server through an SSH tunnel, or
 * run it on the server's host), one request per redraw, bounded waits
 * (3 s to connect, 5 s for the answer) and a bounded answer (16 MiB).
 */
#define _GNU_SOURCE /* getaddrinfo, strcasestr */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "app/app.h"
#include "base/time.h"

#define CONNECT_MS 3000
#define ANSWER_MS 5000
#define ANSWER_MAX (16u << 20)

static const char USAGE[] =
    "usage: tiercache stats [--url URL] [--token T] [--watch] [--interval S] [--count N] "
    "[--json]\n"
    "\n"
    "Prints the cache monitor's numbers (the last minute) from a running server's feed,\n"
    "GET /admin/cache.json.\n"
    "\n"
    "  --url URL       the server [TIERCACHE_URL] (http://127.0.0.1:8080)\n"
    "  --token T       bearer token: the server's --metrics-token, or an administrator's\n"
    "                  session token [TIERCACHE_TOKEN]; none: the server answers loopback\n"
    "                  clients only when it has no metrics token\n"
    "  --watch         redraw every --interval seconds until interrupted\n"
    "  --interval S    seconds between redraws (1)\n"
    "  --count N       with --watch: stop after N redraws (0: never)\n"
    "  --json          print the feed itself and exit\n";

/* ---- a minimal HTTP/1.1 GET ------------------------------------------------------------ */

typedef struct url {
    char host[300], port[8], base[512];
} url;

static int parse_url(const char *s, url *u)
{
    if (strncmp(s, "http://", 7) != 0)
        return -1;
    s += 7;
    const char *slash = strchr(s, '/');
    size_t hp = slash != NULL ? (size_t)(slash - s) : strlen(s);
    snprintf(u->base, sizeof(u->base), "%s", slash != NULL ? slash : "");
    size_t bl = strlen(u->base);
    if (bl > 0 && u->base[bl - 1] == '/')
        u->base[bl - 1] = '\0';
    char hostport[300];
    if (hp == 0 || hp >= sizeof(hostport))
        return -1;
    memcpy(hostport, s, hp);
    hostport[hp] = '\0';
    char *port = NULL;
    if (hostport[0] == '[') {
        char *close = strchr(hostport, ']');
        if (close == NULL)
            return -1;
        *close = '\0';
        snprintf(u->host, sizeof(u->host), "%s", hostport + 1);
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return -1;
    } else {
        port = strrchr(hostport, ':');
        if (port != NULL)
            *port++ = '\0';
        snprintf(u->host, sizeof(u->host), "%s", hostport);
    }
    snprintf(u->port, sizeof(u->port), "%s", port != NULL && *port != '\0' ? port : "80");
    return u->host[0] != '\0' ? 0 : -1;
}

static int wait_fd(int fd, short ev, tc_deadline deadline)
{
    for (;;) {
        int left = tc_deadline_left_ms(deadline);
        if (left == 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

static int dial(const url *u, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *a;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%.100s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (a = res; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 &&
            (errno != EINPROGRESS || wait_fd(fd, POLLOUT, tc_deadline_in_ms(CONNECT_MS)) != 0)) {
            close(fd);
            fd = -1;
            continue;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr != 0) {
            errno = soerr;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errlen, "cannot connect to %.100s:%s: %s", u->host, u->port, strerror(errno));
    return fd;
}

/* Decodes a chunked body in place; its new length, or -1. */
static long dechunk(char *b, size_t n)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long sz = strtoul(b + in, &end, 16);
        char *crlf = memmem(b + in, n - in, "\r\n", 2);
        if (end == b + in || crlf == NULL)
            return -1;
        in = (size_t)(crlf - b) + 2;
        if (sz == 0)
            return (long)out;
        if (sz > n - in)
            return -1;
        memmove(b + out, b + in, sz);
        out += sz, in += sz + 2;
        if (in > n)
            return -1;
    }
}

/* GET base+path; *body (malloc'd, NUL-terminated) and the status, or -1 with err. */
static int http_get(const url *u, const char *path, const char *token, char **body, int *status,
                    char *err, size_t errlen)
{
    *body = NULL;
    int fd = dial(u, err, errlen);
    if (fd < 0)
        return -1;
    char req[2048];
    int n = snprintf(
        req, sizeof(req),
        "GET %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nAccept: application/json\r\n"
        "User-Agent: tiercache-stats\r\nConnection: close\r\n%s%s%s\r\n",
        u->base, path, strchr(u->host, ':') ? "[" : "", u->host, strchr(u->host, ':') ? "]" : "",
        u->port, token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(req)) {
        snprintf(err, errlen, "request too long");
        close(fd);
        return -1;
    }
    tc_deadline deadline = tc_deadline_in_ms(ANSWER_MS);
    for (int off = 0; off < n;) {
        if (wait_fd(fd, POLLOUT, deadline) != 0) {
            snprintf(err, errlen, "timed out sending the request");
            close(fd);
            return -1;
        }
        ssize_t w = send(fd, req + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(err, errlen, "send: %s", strerror(errno));
            close(fd);
            return -1;
        }
        off += w > 0 ? (int)w : 0;
    }
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL || wait_fd(fd, POLLIN, deadline) != 0) {
            snprintf(err, errlen, buf == NULL ? "out of memory" : "timed out waiting for %s", path);
            free(buf);
            close(fd);
            return -1;
        }
        if (len + 1 >= cap) {
            char *nb = cap < ANSWER_MAX ? realloc(buf, cap * 2) : NULL;
            if (nb == NULL) {
                snprintf(err, errlen, "answer too large");
                free(buf);
                close(fd);
                return -1;
            }
            buf = nb, cap *= 2;
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r == 0)
            break;
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            snprintf(err, errlen, "recv: %s", strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    char *hend = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || hend == NULL || len < 12) {
        snprintf(err, errlen, "not an HTTP answer");
        free(buf);
        return -1;
    }
    *status = atoi(buf + 9);
    *hend = '\0';
    char *b = hend + 4;
    size_t blen = len - (size_t)(b - buf);
    const char *te = strcasestr(buf, "\r\nTransfer-Encoding:");
    if (te != NULL && strcasestr(te, "chunked") != NULL) {
        long d = dechunk(b, blen);
        if (d < 0) {
            snprintf(err, errlen, "bad chunked body");
            free(buf);
            return -1;
        }
        blen = (size_t)d;
    }
    memmove(buf, b, blen);
    buf[blen] = '\0';
    *body = buf;
    return 0;
}

/* ---- printing ----------------------------------------------------------------------------- */

static bool color;

static const char *c_on(const char *code)
{
    return color ? code : "";
}

#define BOLD c_on("\033[1m")
#define DIM c_on("\033[2m")
#define GREEN c_on("\033[32m")
#define YELLOW c_on("\033[33m")
#define RED c_on("\033[31m")
#define RESET c_on("\033[0m")

static double dbl(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

static long long integer(const json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* A duration in ms with 2-3 significant digits, or "-". */
static const char *ms(const json_t *o, const char *key, char *out, size_t cap)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) {
        snprintf(out, cap, "-");
        return out;
    }
    double d = json_number_value(v);
    snprintf(out, cap, d < 1 ? "%.3f ms" : d < 100 ? "%.2f ms" : "%.0f ms", d);
    return out;
}

static const char *pct(const json_t *v, char *out, size_t cap)
{
    if (!json_is_number(v))
        snprintf(out, cap, "    -");
    else
        snprintf(out, cap, "%5.1f %%", 100.0 * json_number_value(v));
    return out;
}

static const char *bytes(double b, char *out, size_t cap)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4)
        b /= 1024, u++;
    snprintf(out, cap, u == 0 ? "%.0f %s" : "%.1f %s", b, unit[u]);
    return out;
}

/* One line of a top list: the first n names with their share. */
static void print_hot(const char *label, const json_t *list, size_t n)
{
    printf("  %-11s", label);
    if (json_array_size(list) == 0)
        printf(" %s-%s", DIM, RESET);
    size_t i;
    const json_t *it;
    json_array_foreach(list, i, it)
    {
        if (i == n)
            break;
        printf(" %s%.40s%s (%.1f %%)", i == 0 ? BOLD : "",
               json_string_value(json_object_get(it, "name")), i == 0 ? RESET : "",
               100.0 * dbl(it, "share"));
    }
    printf("\n");
}

/* The engine's lines: hot keys and tags, the bus delivery lag, admission, compression. */
static void print_engine(const json_t *s)
{
    char a[32], b[32];
    const json_t *hot = json_object_get(s, "hot"), *lag = json_object_get(s, "bus_lag");
    const json_t *eng = json_object_get(s, "engine");
    if (hot != NULL) {
        print_hot("hot keys", json_object_get(hot, "keys"), 5);
        print_hot("hot tags", json_object_get(hot, "tags"), 3);
    }
    if (lag != NULL)
        printf("  %-11s p50 %-10s p99 %-10s (%lld invalidations from other instances)\n", "bus lag",
               ms(lag, "p50_ms", a, sizeof(a)), ms(lag, "p99_ms", b, sizeof(b)),
               integer(lag, "count"));
    if (eng != NULL)
        printf("  %-11s admission %s (%lld kept out)   compression %s (%lld records, %s saved, "
               "%lld undecodable)\n",
               "engine", json_is_true(json_object_get(eng, "admission")) ? "on" : "off",
               integer(eng, "admission_rejections_window"),
               integer(eng, "compress_min_bytes") > 0 ? "on" : "off",
               integer(eng, "compressed_writes"),
               bytes(dbl(eng, "compressed_saved_bytes"), a, sizeof(a)),
               integer(eng, "decode_errors"));
}

static void print_summary(const json_t *feed, const char *server)
{
    const json_t *s = json_object_get(feed, "summary");
    char a[32], b[32], c[32], d[32];
    time_t now = (time_t)(json_integer_value(json_object_get(feed, "time")) / 1000);
    long long up = (json_integer_value(json_object_get(feed, "time")) -
                    json_integer_value(json_object_get(feed, "started"))) /
                   1000;
    struct tm tm;
    localtime_r(&now, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
    printf("%stiercache%s  %s   %slast %.0f s%s   %s   up %lldh %02lldm %02llds\n\n", BOLD, RESET,
           server, DIM, dbl(s, "window_s"), RESET, when, up / 3600, up / 60 % 60, up % 60);
    if (json_object_get(s, "rps") == NULL) {
        printf("  no samples yet: the server samples once a second\n");
        return;
    }
    const json_t *http = json_object_get(s, "http");
    printf("  %-11s %9.1f/s   errors %.1f/s", "requests", dbl(s, "rps"), dbl(s, "errors_ps"));
    if (http != NULL)
        printf("   connections %lld   in flight %lld   queued %lld", integer(http, "connections"),
               integer(http, "in_flight"), integer(http, "queued"));
    printf("\n");
    if (!json_is_true(json_object_get(feed, "cache")))
        printf("  %-11s %soff%s (--no-cache): every read goes to the database\n", "cache", YELLOW,
               RESET);
    else
        printf("  %-11s %s%s%s   hits %lld   misses %lld\n", "hit ratio", BOLD,
               pct(json_object_get(s, "hit_ratio"), a, sizeof(a)), RESET, integer(s, "hits"),
               integer(s, "misses"));
    static const char *const which[] = {"cached_ms", "uncached_ms"};
    for (int i = 0; i < 2; i++) {
        const json_t *l = json_object_get(s, which[i]);
        printf("  %-11s %-9s p50 %-10s p95 %-10s p99 %-10s (%lld requests)\n",
               i == 0 ? "latency" : "", i == 0 ? "cached" : "uncached", ms(l, "p50", a, sizeof(a)),
               ms(l, "p95", b, sizeof(b)), ms(l, "p99", c, sizeof(c)), integer(l, "count"));
    }
    const json_t *l1 = json_object_get(s, "l1");
    printf("  %-11s %s of %s   %lld entries   %lld evictions\n", "L1",
           bytes(dbl(l1, "bytes"), a, sizeof(a)), bytes(dbl(l1, "max_bytes"), b, sizeof(b)),
           integer(l1, "entries"), integer(l1, "evictions"));
    printf("  %-11s %lld stale served   %lld refreshes   %lld dropped   %lld load errors\n", "SWR",
           integer(s, "stale_served"), integer(s, "refreshes"), integer(s, "refresh_dropped"),
           integer(s, "load_errors"));
    const json_t *r = json_object_get(s, "redis");
    if (!json_is_true(json_object_get(r, "configured"))) {
        printf("  %-11s %snot configured%s (L1 only)\n", "redis", DIM, RESET);
    } else {
        bool open = json_is_true(json_object_get(r, "breaker_open"));
        bool bus = json_is_true(json_object_get(r, "bus_connected"));
        printf("  %-11s %s%s%s: breaker %s, bus %s   errors %lld (%lld last min)   p50 %s  p99 %s"
               "   pending %lld\n",
               "redis", open || !bus ? RED : GREEN, open || !bus ? "DEGRADED" : "ok", RESET,
               open ? "OPEN" : "closed", bus ? "connected" : "DOWN", integer(r, "errors"),
               integer(r, "errors_window"), ms(r, "p50_ms", a, sizeof(a)),
               ms(r, "p99_ms", b, sizeof(b)), integer(r, "pending_invalidations"));
    }
    const json_t *db = json_object_get(s, "db");
    printf("  %-11s %s   %lld queries   p50 %s   p99 %s\n", "database",
           json_string_value(json_object_get(db, "dialect")), integer(db, "queries"),
           ms(db, "p50_ms", a, sizeof(a)), ms(db, "p99_ms", b, sizeof(b)));

    print_engine(s);

    const json_t *nss = json_object_get(s, "namespaces");
    if (json_array_size(nss) == 0)
        return;
    printf("\n  %s%-14s %8s %10s %10s %9s %7s %8s %9s %7s %10s%s\n", DIM, "namespace", "hit %",
           "l1 hits", "l2 hits", "misses", "stale", "refresh", "load err", "inval", "lookups/s",
           RESET);
    size_t i;
    const json_t *n;
    json_array_foreach(nss, i, n)
    {
        printf("  %-14.14s %8s %10lld %10lld %9lld %7lld %8lld %9lld %7lld %10.1f\n",
               json_string_value(json_object_get(n, "name")),
               pct(json_object_get(n, "hit_ratio"), d, sizeof(d)), integer(n, "l1_hits"),
               integer(n, "l2_hits"), integer(n, "misses"), integer(n, "stale_served"),
               integer(n, "refreshes"), integer(n, "load_errors"), integer(n, "invalidations"),
               dbl(n, "lookups_ps"));
    }
}

/* The hit ratios by route and by tag family, the busiest ten of each (the feed
 * sorts them). */
static void print_ratios(const json_t *feed)
{
    const json_t *s = json_object_get(feed, "summary");
    static const struct {
        const char *key, *name, *title;
    } tables[] = {{"routes", "route", "route"}, {"tag_families", "family", "tag family"}};
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        const json_t *rows = json_object_get(s, tables[t].key);
        if (json_array_size(rows) == 0)
            continue;
        bool fam = t == 1;
        printf("\n  %s%-20s %8s %10s %9s %9s%s%s\n", DIM, tables[t].title, "hit %", "hits", "stale",
               "misses", fam ? "     inval" : "", RESET);
        size_t i;
        const json_t *r;
        json_array_foreach(rows, i, r)
        {
            if (i == 10) {
                printf("  %s... %zu more%s\n", DIM, json_array_size(rows) - 10, RESET);
                break;
            }
            char p[32];
            printf("  %-20.20s %8s %10lld %9lld %9lld",
                   json_string_value(json_object_get(r, tables[t].name)),
                   pct(json_object_get(r, "hit_ratio"), p, sizeof(p)), integer(r, "hits"),
                   integer(r, "stale"), integer(r, "misses"));
            if (fam)
                printf(" %9lld", integer(r, "invalidations"));
            printf("\n");
        }
    }
}

/* ---- main --------------------------------------------------------------------------------- */

static int once(const url *u, const char *server, const char *token, bool as_json, bool clear)
{
    char *body, err[256];
    int status;
    if (http_get(u, "/admin/cache.json", token, &body, &status, err, sizeof(err)) != 0) {
        fprintf(stderr, "tiercache stats: %s\n", err);
        return 1;
    }
    if (status != 200) {
        fprintf(stderr, "tiercache stats: %s/admin/cache.json answered %d%s\n", server, status,
                status == 401 || status == 403
                    ? " (give --token: the server's metrics token or an admin session token)"
                    : "");
        free(body);
        return 1;
    }
    if (as_json) {
        fputs(body, stdout);
        fputc('\n', stdout);
        free(body);
        return 0;
    }
    json_error_t je;
    json_t *feed = json_loads(body, 0, &je);
    free(body);
    if (!json_is_object(feed)) {
        fprintf(stderr, "tiercache stats: the feed is not JSON: %s\n", je.text);
        json_decref(feed);
        return 1;
    }
    if (clear)
        fputs("\033[H\033[2J", stdout);
    print_summary(feed, server);
    print_ratios(feed);
    fflush(stdout);
    json_decref(feed);
    return 0;
}

int tc_stats_main(int argc, char **argv)
{
    const char *server = getenv("TIERCACHE_URL"), *token = getenv("TIERCACHE_TOKEN");
    bool watch = false, as_json = false;
    double interval = 1;
    long count = 0;
    if (server == NULL || server[0] == '\0')
        server = "http://127.0.0.1:8080";
    if (token != NULL && token[0] == '\0')
        token = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(a, "--watch") == 0) {
            watch = true;
        } else if (strcmp(a, "--json") == 0) {
            as_json = true;
        } else if (v != NULL && strcmp(a, "--url") == 0) {
            server = v, i++;
        } else if (v != NULL && strcmp(a, "--token") == 0) {
            token = v, i++;
        } else if (v != NULL && strcmp(a, "--interval") == 0) {
            interval = atof(v), i++;
            if (interval < 0.1 || interval > 3600) {
                fprintf(stderr, "tiercache stats: --interval: 0.1 to 3600 seconds\n");
                return 2;
            }
        } else if (v != NULL && strcmp(a, "--count") == 0) {
            count = atol(v), i++;
            if (count < 0) {
                fprintf(stderr, "tiercache stats: --count: 0 or more\n");
                return 2;
            }
        } else {
            fprintf(stderr, "tiercache stats: unexpected argument '%s'\n\n%s", a, USAGE);
            return 2;
        }
    }
    url u;
    if (parse_url(server, &u) != 0) {
        fprintf(stderr, "tiercache stats: --url: expected http://HOST[:PORT][/PATH], got '%s'\n",
                server);
        return 2;
    }
    const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
    color = isatty(STDOUT_FILENO) && (nc == NULL || nc[0] == '\0') &&
            (term == NULL || strcmp(term, "dumb") != 0);
    if (!watch || as_json)
        return once(&u, server, token, as_json, false);
    bool tty = isatty(STDOUT_FILENO);
    for (long n = 0; count == 0 || n < count; n++) {
        if (n > 0) {
            tc_sleep_ms((uint64_t)(interval * 1000.0));
            if (!tty)
                printf("\n");
        }
        if (once(&u, server, token, false, tty) != 0 && count != 0)
            return 1;
    }
    return 0;
}

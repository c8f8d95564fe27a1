/*
 * The operator's log: one line on stderr for each thing an operator may have
 * to act on, and only those (the access log is the per-request record).
 *
 *   2026-12-03T16:40:12.345Z WARN  db: unreachable: could not connect: ... (request 5f0c3a9e41d27b10)
 *
 * Every line: an RFC 3339 UTC time with milliseconds, a level, a component
 * (redis, bus, cache, db, http, billing, auth, app, sentinel), the message
 * with its cause (the library's own words: libpq, SQLite, hiredis), and the
 * request it concerns when there is one. docs/monitoring.md lists every line.
 *
 * A line written again and again from one place (one format string) is
 * rate-limited: BURST lines at once, then one per EVERY_MS; the next line
 * that goes out says how many like it were held back, so an outage is a
 * handful of lines with a count, not one line per request. State changes
 * (Redis lost / back, the database unreachable / back) are written once per
 * change by their callers, so only flapping is held back.
 *
 * Threads: any; one lock around the rate table; each line is one write(2).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/internal.h"

#define SLOTS 128     /* call sites tracked (a hash of the format string's address) */
#define BURST 3       /* lines let through at once */
#define EVERY_MS 10000 /* then one per this */

static struct {
    pthread_mutex_t lock;
    struct {
        uint64_t key; /* the call site's format string, or a line's text, hashed */
        double tokens;
        uint64_t last_ms;    /* monotonic, for the refill */
        uint64_t held;       /* lines held back since the last that went out */
        int64_t held_since;  /* wall ms of the first of them */
    } slot[SLOTS];
} rate = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const LEVELS[] = {"INFO ", "WARN ", "ERROR"};

/* Whether a line of this key may go out now; *held (and *since) say how many
 * like it were held back before it. */
static bool let_through(uint64_t key, uint64_t *held, int64_t *since)
{
    uint64_t now = tc_mono_ms();
    size_t i = (key ^ key >> 29) % SLOTS;
    pthread_mutex_lock(&rate.lock);
    if (rate.slot[i].key != key) { /* a new key (or another one sharing the slot) */
        rate.slot[i].key = key;
        rate.slot[i].tokens = BURST;
        rate.slot[i].held = 0;
    } else {
        rate.slot[i].tokens += (double)(now - rate.slot[i].last_ms) / EVERY_MS;
        if (rate.slot[i].tokens > BURST)
            rate.slot[i].tokens = BURST;
    }
    rate.slot[i].last_ms = now;
    bool ok = rate.slot[i].tokens >= 1.0;
    if (ok) {
        rate.slot[i].tokens -= 1.0;
        *held = rate.slot[i].held;
        *since = rate.slot[i].held_since;
        rate.slot[i].held = 0;
    } else if (rate.slot[i].held++ == 0) {
        rate.slot[i].held_since = tc_wall_ms();
    }
    pthread_mutex_unlock(&rate.lock);
    return ok;
}

/* "2026-12-03T16:40:12.345Z" into out (25 bytes). */
static void rfc3339(int64_t ms, char out[25])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, 25, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 25 - n, ".%03dZ", (int)(ms % 1000));
}

static void vlog(uint64_t key, int level, const char *component, const char *fmt, va_list ap)
{
    uint64_t held = 0;
    int64_t since = 0;
    if (!let_through(key, &held, &since))
        return;
    char line[1024], when[25];
    rfc3339(tc_wall_ms(), when);
    int n = snprintf(line, sizeof(line), "%s %s %s: ", when,
                     LEVELS[level < TC_LOG_INFO ? 0 : level > TC_LOG_ERROR ? 2 : level], component);
    n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    const char *request = tc_http_current_request_id();
    if (n < (int)sizeof(line) && request != NULL)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " (request %s)", request);
    if (n < (int)sizeof(line) && held > 0) {
        char from[25];
        rfc3339(since, from);
        n += snprintf(line + n, sizeof(line) - (size_t)n, " [%llu more like it held back since %s]",
                      (unsigned long long)held, from);
    }
    if (n >= (int)sizeof(line) - 1) { /* cut: say so, keep the newline */
        n = (int)sizeof(line) - 2;
        memcpy(line + n - 3, "...", 3);
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w; /* nowhere to report a failure to write the log */
}

void tc_app__log(int level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog((uintptr_t)fmt, level, component, fmt, ap);
    va_end(ap);
}

void tc_app_log(int level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog((uintptr_t)fmt, level, component, fmt, ap);
    va_end(ap);
}

/* Engine and HTTP layer lines arrive formatted: keyed on their text with the
 * digits left out, so "back after 3 s" and "back after 4 s" are one kind. */
static void line_out(int level, const char *component, const char *msg, ...)
{
    uint64_t key = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = component; *p != '\0'; p++)
        key = (key ^ (unsigned char)*p) * 1099511628211ull;
    for (const char *p = msg; *p != '\0'; p++)
        if (*p < '0' || *p > '9')
            key = (key ^ (unsigned char)*p) * 1099511628211ull;
    va_list ap;
    va_start(ap, msg);
    vlog(key, level, component, "%s", ap);
    va_end(ap);
}

void tc_app__log_line(int level, const char *component, const char *msg)
{
    line_out(level, component, msg, msg);
}

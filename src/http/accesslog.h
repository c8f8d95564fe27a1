/*
 * The access log: one logfmt line per request, written by a thread of its own
 * so that the event threads never wait for a disk or a pipe.
 *
 * It is for: formatting a request's outcome (method, path without its query,
 * status, duration, cache status, bytes, route, client) and getting it to
 * stderr or a file. It is not for: deciding what a request was (the server's
 * on_done hook calls it), rotation (the process reopens its file on SIGHUP:
 * tc_access_log_reopen).
 *
 * The line (docs/monitoring.md has the field list):
 *   time=2025-01-02T03:04:05.678Z method=GET path=/trpc/user.me status=200
 *   duration_ms=0.183 cache=hit cache_detail=l1 bytes=212 route=user.me client=127.0.0.1
 *   request_id=5f0c3a9e41d27b10
 * Values with a space, '"', '=', '\' or a control byte are quoted, with \" \\
 * \n \r \t and \u00XX escapes; a value longer than 512 bytes as written (escapes
 * included) is cut and ends in "...", so no value pushes the others off the line.
 *
 * Buffering: lines go into one of two fixed buffers under a mutex held for a
 * memcpy; the writer thread swaps buffers and write(2)s the full one every
 * 100 ms, or sooner when one is half full. When both are full (the
 * destination is slower than the traffic) lines are dropped and counted,
 * never waited for.
 */
#ifndef TC_HTTP_ACCESSLOG_H
#define TC_HTTP_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/server.h"

typedef struct tc_access_log tc_access_log;
typedef struct tc_access_entry tc_access_entry; /* below */

/* dest: "stderr", or a file path (opened for append, created 0640). buffer_bytes
 * is the size of each of the two buffers (0: 256 KiB). NULL on failure, with a
 * message in err. */
tc_access_log *tc_access_log_open(const char *dest, size_t buffer_bytes, char *err, size_t errlen);
/* Writes what is buffered, stops the writer, closes a file. NULL is a no-op. */
void tc_access_log_close(tc_access_log *l);
/* After a rotation (the file renamed): lines queued before this call go to the
 * old file, and so do the few queued before the writer thread gets to it; then
 * a new file at the same path takes the rest. If the open fails the old file is
 * kept and it says so on stderr. A no-op for stderr and for NULL. Safe from any
 * thread. */
void tc_access_log_reopen(tc_access_log *l);

/* Formats the request of x (from an on_done hook: same arguments, plus the
 * outcome its Cache-Status says, which the hook has parsed already:
 * tc_cache_status_parse) and queues the line. Never blocks on I/O. */
void tc_access_log_request(tc_access_log *l, tc_http_exchange *x, int status, uint64_t duration_us,
                           const char *cache, const char *cache_detail);
/* Formats e and queues the line (what tc_access_log_request does once it has
 * read the exchange). Never blocks on I/O. */
void tc_access_log_write(tc_access_log *l, const tc_access_entry *e);

typedef struct tc_access_log_stats {
    uint64_t lines;        /* queued */
    uint64_t dropped;      /* not queued: both buffers were full */
    uint64_t write_errors; /* write(2) failures (the buffer is then lost) */
} tc_access_log_stats;

void tc_access_log_get_stats(tc_access_log *l, tc_access_log_stats *out);

/* ---- the pure parts (unit-tested) ---------------------------------------------- */

typedef struct tc_access_entry {
    int64_t time_ms; /* unix milliseconds */
    const char *method;
    const char *path; /* need not be NUL-terminated */
    size_t path_len;
    int status;
    uint64_t duration_us;
    const char *cache;        /* the Cache-Status outcome (tc_cache_status_parse), NULL: "-" */
    const char *cache_detail; /* its detail, or NULL or "" */
    uint64_t bytes;
    const char *route;  /* or NULL */
    const char *client; /* or NULL */
    const char *request_id; /* tc_http_request_id, or NULL */
    bool aborted;       /* the response did not go out whole */
} tc_access_entry;

/* Writes the line (with its '\n') into buf and returns its length; a line that
 * would not fit in cap is cut short (still ending in '\n'). cap >= 64. */
size_t tc_access_log_format(char *buf, size_t cap, const tc_access_entry *e);

/* What a Cache-Status header (RFC 9211) says about the first cache in it:
 *   TC_CSTAT_NONE (no header), TC_CSTAT_HIT, TC_CSTAT_STALE (a hit with a
 *   negative ttl, or a detail ending in "stale"), TC_CSTAT_MISS (fwd=miss),
 *   TC_CSTAT_FWD (another fwd reason).
 * word (cap >= 16) gets the reason as a token: "hit", "stale", "miss", the fwd
 * value, or "-"; detail (cap >= 16) the detail parameter's token, or "". */
typedef enum tc_cstat {
    TC_CSTAT_NONE = 0,
    TC_CSTAT_HIT,
    TC_CSTAT_STALE,
    TC_CSTAT_MISS,
    TC_CSTAT_FWD,
} tc_cstat;

tc_cstat tc_cache_status_parse(const char *header, char *word, size_t wcap, char *detail,
                               size_t dcap);

#endif

/*
 * Tag purges sent to a shared cache (Varnish with xkey) in front of the
 * server: when the app invalidates a tag that public responses carry, the
 * shared cache must drop those responses too.
 *
 * It is for: a bounded queue of tags and one thread that sends them, several
 * at a time, as `PURGE <path>` requests with the tags in one header
 * (`xkey: blog blog:hello`) to one loopback address, off the request path:
 * tc_purger_tag never blocks on the network. It is not for: deciding which
 * tags to purge (the app), or caches reached over a network (a purge is an
 * unauthenticated request; the target must be on this machine: 127.0.0.0/8,
 * ::1 or localhost).
 *
 * With repurge_ms, a purge that succeeded is sent once more that much later
 * (at most 16 waiting; beyond that the second purge is skipped).
 *
 * Delivery is best effort with bounds: a request that fails is tried three
 * times (0, 100 ms, 400 ms); a tag that cannot be queued (queue full) or sent
 * is counted and logged, and the shared cache then keeps the response until
 * its s-maxage runs out. A tag already waiting is not queued twice.
 *
 * Threads: tc_purger_tag and tc_purger_stats from any thread; one purge
 * thread of its own; tc_purger_stop from the thread that started it.
 *
 * Errors: 0 or a negative TC_HTTP_E* code (error.h).
 */
#ifndef TC_HTTP_PURGE_H
#define TC_HTTP_PURGE_H

#include <stddef.h>
#include <stdint.h>

#include "http/server.h" /* tc_http_log_fn */

typedef struct tc_purge_config {
    const char *url;    /* "http://127.0.0.1:6081/" (path optional, default "/") */
    const char *header; /* request header with the tags; default "xkey" */
    const char *sep;    /* between tags; default " " */
    int queue_max;      /* distinct tags waiting; default 1024 */
    int batch_max;      /* tags in one request; default 32 */
    int timeout_ms;     /* connect + send + first response line, per request; default 1000 */
    /* > 0: send each purge that succeeded once more this many ms later (one try). A
     * response whose fetch began before the invalidation can reach the shared cache
     * after the first purge; the second one drops it. 0 (default): no second purge. */
    int repurge_ms;
    tc_http_log_fn log; /* optional: default writes to stderr */
    void *log_ctx;
} tc_purge_config;

void tc_purge_config_init(tc_purge_config *cfg);

/* Checks and splits a purge URL: "http://HOST:PORT[/PATH]", HOST a loopback
 * IPv4 literal, "[::1]" or "localhost" (which means 127.0.0.1). host gets the
 * numeric address, path "/" when absent. TC_HTTP_EINVAL when it is not such a
 * URL. Pure. */
int tc_purge_parse_url(const char *url, char *host, size_t host_cap, int *port, char *path,
                       size_t path_cap);

typedef struct tc_purger tc_purger;

/* Starts the purge thread. NULL on failure with *err (if not NULL):
 * TC_HTTP_EINVAL (a bad URL or header), TC_HTTP_ENOMEM, TC_HTTP_ESTART. */
tc_purger *tc_purger_start(const tc_purge_config *cfg, int *err);

/* Queues a purge of tag. 0; TC_HTTP_ETOOBIG when the queue is full (the tag
 * is dropped and counted); TC_HTTP_EINVAL for a tag a header cannot carry
 * (empty, over 128 bytes, control bytes or the separator). NULL p: 0. */
int tc_purger_tag(tc_purger *p, const char *tag);

typedef struct tc_purge_stats {
    uint64_t queued;   /* tags accepted */
    uint64_t sent;     /* tags in requests the shared cache answered 2xx */
    uint64_t failed;   /* tags in requests that failed three times */
    uint64_t dropped;  /* tags refused: queue full */
    uint64_t requests; /* PURGE requests sent (tries included) */
    uint64_t waiting;  /* tags queued or in flight now */
    uint64_t repurges; /* second purges sent (requests; see repurge_ms) */
} tc_purge_stats;

void tc_purger_stats(tc_purger *p, tc_purge_stats *out);

/* Sends what is queued (one try per request, stopping at the first failure),
 * stops the thread and frees. NULL is a no-op. */
void tc_purger_stop(tc_purger *p);

#endif

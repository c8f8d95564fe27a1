/*
 * The HTTP server: libmicrohttpd (0.9.75) wrapped so that the rest of tiercache
 * sees one handler call per complete request, a small response API, and a pool
 * of worker threads for blocking work.
 *
 * It is for: accepting connections, enforcing the limits (connections, header
 * bytes, body bytes per route class, idle time, a whole-request deadline),
 * keep-alive and pipelining, HEAD, moving blocking work off the event threads
 * (suspend -> worker -> resume), and a graceful stop.
 * It is not for: routing, tRPC (trpc.h), cache headers or conditional requests
 * (the layers above decide every header except Date), TLS, HTTP/2.
 *
 * Threads (the one place that says what runs where):
 *   - event threads (cfg.event_threads; libmicrohttpd's internal poll() thread
 *     pool) read requests, run cfg.handler, and send responses. A handler must
 *     not block: anything that may wait on I/O (database, a Redis miss, a slow
 *     loader) goes through tc_http_offload().
 *   - worker threads (cfg.workers) run the blocking functions, taken from a
 *     bounded queue (cfg.queue_max); when it is full the request is answered
 *     503 with Retry-After at once.
 *   - one watchdog thread closes connections past their idle timeout or past
 *     the whole-request deadline (libmicrohttpd's own timeout restarts on every
 *     byte, so a client sending one header line a second would never go), and
 *     near max_connections the ones idle longest (shedding).
 *   An exchange is used by one thread at a time: the event thread until the
 *   handler returns, then (if offloaded) the worker until the blocking function
 *   returns, then the event thread again. Nothing else may touch it.
 *
 * Why these libmicrohttpd choices (measured, see /work/shared/HTTP-LIBRARIES.md
 * and docs): poll() mode with a thread pool, not epoll (0.9.75 stalls when
 * epoll_wait returns exactly its batch size: 128/256/384 connections), not
 * thread-per-connection (no suspend/resume there, p99 in the hundreds of ms).
 *
 * Errors: functions return 0 or a negative TC_HTTP_E* code (error.h).
 */
#ifndef TC_HTTP_SERVER_H
#define TC_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "http/error.h"

typedef struct tc_http_server tc_http_server;
typedef struct tc_http_exchange tc_http_exchange; /* one request and its response */

/* What a handler did with the exchange. */
typedef enum tc_http_action {
    TC_HTTP_DONE = 0,    /* the response is filled in: send it */
    TC_HTTP_OFFLOAD = 1, /* tc_http_offload() was called: run the blocking function */
} tc_http_action;

/* Runs on an event thread with the complete request (headers and body). */
typedef tc_http_action (*tc_http_handler)(void *ctx, tc_http_exchange *x);
/* Runs on a worker thread; fills the response of x. */
typedef void (*tc_http_blocking_fn)(void *ctx, tc_http_exchange *x);
/* Body limit for this request, decided from its method, path and headers once
 * the headers are in (e.g. 1 MiB for JSON routes, more for an upload route). */
typedef size_t (*tc_http_body_limit_fn)(void *ctx, const tc_http_exchange *x);
/* Fills the response of a request the server refuses by itself: 400 (framing
 * the server will not guess at: two Content-Length, Content-Length with
 * Transfer-Encoding, two Host or none in HTTP/1.1, a header name that is not a
 * token, Transfer-Encoding in HTTP/1.0 or twice or not ending in chunked,
 * obs-fold, a control byte such as NUL inside a header value), 501 (a transfer
 * coding other than chunked), 413 (body too large) or 503 (worker queue full;
 * Retry-After is added by the server). The
 * status is already set; the hook may set a body and headers (e.g. a tRPC error). */
typedef void (*tc_http_reject_fn)(void *ctx, tc_http_exchange *x, int status);
/* One line from libmicrohttpd or from the server (no trailing newline). */
typedef void (*tc_http_log_fn)(void *ctx, const char *line);
/* Runs once per request (every request line read), when its exchange ends: the
 * response went out, or the connection was lost. On an event thread: it must
 * not block (count, or hand a line to a buffered writer). status is the status
 * sent, or 0 when no response was sent (the client left first, maybe while a
 * worker still runs: then only the request accessors except
 * tc_http_client_addr and tc_http_alloc, tc_http_route and tc_http_response_*
 * may be used, and the latter answer NULL / 0). A request the stop deadline cut
 * while a worker had it is 503 and the same holds, except that
 * tc_http_client_addr may be used and tc_http_response_bytes and
 * tc_http_response_complete tell of the 503 sent.
 * duration_us runs from the request line read to the exchange's end. */
typedef void (*tc_http_done_fn)(void *ctx, tc_http_exchange *x, int status, uint64_t duration_us);

typedef struct tc_http_config {
    const char *bind_address;     /* IPv4 or IPv6 literal; default "127.0.0.1" */
    int port;                     /* default 8080; 0 picks a free port (see tc_http_port) */
    int listen_backlog;           /* default 1024 */
    int event_threads;            /* libmicrohttpd poll() thread pool; default 1 */
    int workers;                  /* threads for blocking work; default 8 */
    int queue_max;                /* offloaded requests waiting for a worker; default 256 */
    int max_connections;          /* open connections; default 4096. At the limit libmicrohttpd
                                     stops accepting: new ones wait in the listen backlog. From
                                     1/16 below it, the watchdog closes the connections idle
                                     longest (no request in progress, idle 1 s or more) down to
                                     2/16 below it, so a new client finds a slot at once */
    int max_connections_per_addr; /* open connections from one client address (IPv4, or an
                                     IPv6 /64); a connection over it is closed as soon as it
                                     is accepted. 0 (default): max_connections / 4;
                                     max_connections or more: no cap (behind a proxy every
                                     client has the proxy's address) */
    int idle_timeout_ms;     /* keep-alive idle, and time to get a request line; default 30000 */
    int request_timeout_ms;  /* request line to complete body; default 10000 */
    size_t max_header_bytes; /* per-connection memory for request line + headers (libmicrohttpd
                                CONNECTION_MEMORY_LIMIT); default 32 KiB, of which about
                                15 KiB can be request headers (Node's limit: 16 KiB) */
    size_t max_body_bytes;   /* default body limit when body_limit is NULL; default 1 MiB */
    int retry_after_s;       /* Retry-After of a 503; default 1 */
    int stop_timeout_ms;     /* tc_http_stop: wait this long for in-flight requests, then cut them;
                                default 10000 */

    tc_http_handler handler;          /* required */
    tc_http_body_limit_fn body_limit; /* optional */
    tc_http_reject_fn reject;         /* optional: default is a short text/plain body */
    tc_http_log_fn log;               /* optional: default writes to stderr */
    tc_http_done_fn on_done;          /* optional: per-request completion (metrics, access log) */
    void *ctx;                        /* passed to all of the above */
} tc_http_config;

/* Fills *cfg with the defaults above (handler NULL). */
void tc_http_config_init(tc_http_config *cfg);

/* Binds, starts the threads, and serves. On failure returns NULL and sets *err
 * (if err is not NULL) to TC_HTTP_EINVAL, TC_HTTP_EBIND, TC_HTTP_ESTART or
 * TC_HTTP_ENOMEM. cfg is copied; bind_address need not outlive the call. */
tc_http_server *tc_http_start(const tc_http_config *cfg, int *err);

/* The port the server listens on (useful after port 0). */
int tc_http_port(const tc_http_server *s);

/* Graceful stop, then free: stop accepting (the listening socket is closed at
 * once), let in-flight requests finish for up to cfg.stop_timeout_ms (their
 * responses carry Connection: close), close the remaining connections.
 * At the deadline the stop waits no longer: an offloaded request still queued,
 * parked or running is answered 503 (Retry-After, Connection: close) without
 * the response its blocking function may still be filling; a request still
 * being received or sent is closed; then it returns, about 250 ms after the
 * deadline at most. Blocking functions still running run on, on their
 * (detached) worker threads: what they fill is dropped when they return, and
 * the server's own memory lasts until the last of them (and the last parked
 * exchange's unpark) is done with it.
 * Returns 0 if nothing was cut, else the number of requests still in flight at
 * the deadline. *running (if not NULL) is set to the number of blocking
 * functions still running, plus parked exchanges not yet unparked, when it
 * returns: while it is not 0, cfg.ctx is still in use (or will be, by an
 * unpark), so the caller must not free it (a process that is exiting exits).
 * NULL is a no-op returning 0. Not from a handler. */
int tc_http_stop(tc_http_server *s, int *running);

typedef struct tc_http_stats {
    uint64_t requests;        /* handler calls */
    uint64_t offloaded;       /* requests run on a worker */
    uint64_t parked;          /* of those, parked once (tc_http_park) */
    uint64_t rejected_busy;   /* 503: worker queue full */
    uint64_t rejected_large;  /* 413: body over its limit */
    uint64_t rejected_bad;    /* 400 and 501 from the server's own framing checks */
    uint64_t closed_deadline; /* closed by the whole-request deadline */
    uint64_t closed_idle;     /* closed by the idle timeout (watchdog) */
    uint64_t refused_addr;    /* closed at accept: their address had max_connections_per_addr */
    uint64_t closed_shed;     /* idle ones closed to keep room near max_connections */
    uint64_t connections;     /* open now */
    uint64_t in_flight;       /* requests between request line and response sent */
    uint64_t queued;          /* offloaded requests waiting for a worker now */
} tc_http_stats;

/* A snapshot of the counters (each read atomically; not one consistent cut). */
void tc_http_get_stats(const tc_http_server *s, tc_http_stats *out);

/* --------------------------------------------------------------------------
 * The request. Strings are NUL-terminated and stay valid until the exchange
 * ends (after the response is sent); they are owned by the server.
 */
typedef enum tc_http_method_id {
    TC_HTTP_M_OTHER = 0,
    TC_HTTP_M_GET,
    TC_HTTP_M_HEAD, /* answered like GET; the server sends no body */
    TC_HTTP_M_POST,
    TC_HTTP_M_PUT,
    TC_HTTP_M_DELETE,
    TC_HTTP_M_PATCH,
    TC_HTTP_M_OPTIONS,
} tc_http_method_id;

const char *tc_http_method(const tc_http_exchange *x); /* as sent, e.g. "GET" */
tc_http_method_id tc_http_method_id_of(const tc_http_exchange *x);
/* The path, percent-decoded by libmicrohttpd, without the query (a %00 ends it
 * early: routers that care use tc_http_raw_path). */
const char *tc_http_path(const tc_http_exchange *x);
/* The request target exactly as sent ("/trpc/a,b?batch=1&input=..."). */
const char *tc_http_target(const tc_http_exchange *x, size_t *len);
/* The raw path part of the target (not decoded, not NUL-terminated at len). */
const char *tc_http_raw_path(const tc_http_exchange *x, size_t *len);
/* The raw query after '?' (not decoded), or NULL when there is no '?'. */
const char *tc_http_raw_query(const tc_http_exchange *x, size_t *len);
/* A decoded query argument (libmicrohttpd's decoding: %XX, and + as a space), or NULL. */
const char *tc_http_query_arg(const tc_http_exchange *x, const char *name);
/* A request header (name case-insensitive), or NULL. With repeated headers,
 * one of them. */
const char *tc_http_header(const tc_http_exchange *x, const char *name);
/* Calls fn for each request header in order; stops when fn returns non-zero. */
void tc_http_headers_each(const tc_http_exchange *x,
                          int (*fn)(void *arg, const char *name, const char *value), void *arg);
/* The peer's address as text ("127.0.0.1", "::1"), or NULL when unknown. It is
 * the TCP peer: behind a proxy, the proxy (Forwarded headers are the caller's
 * to trust or not). */
const char *tc_http_client_addr(tc_http_exchange *x);
/* The body (NUL-terminated; "" and 0 when there was none). */
const char *tc_http_body(const tc_http_exchange *x, size_t *len);

/* Per-request memory, 16-byte aligned, freed when the exchange ends; NULL when
 * out of memory. */
void *tc_http_alloc(tc_http_exchange *x, size_t n);
/* A slot for the application (e.g. state from the handler to the blocking
 * function); free_fn (may be NULL) is called with it when the exchange ends. */
void tc_http_set_user(tc_http_exchange *x, void *p, void (*free_fn)(void *p));
void *tc_http_user(const tc_http_exchange *x);

/* A label for the route that serves x, for metrics and logs (e.g. a procedure
 * name). route is kept as a pointer: it must be a static string. The last call
 * wins; tc_http_route answers NULL until one is made. Any thread that may use x. */
void tc_http_set_route(tc_http_exchange *x, const char *route);
const char *tc_http_route(const tc_http_exchange *x);
/* The request's id: 16 lowercase hex digits, unique within this process (a random
 * start, counted up per request), the same for the exchange's whole life. The
 * access log writes it (request_id=) and a 5xx response carries it in
 * X-Request-Id, so a user's report of an error finds its log lines. Any thread. */
const char *tc_http_request_id(const tc_http_exchange *x);
/* The id of the request whose handler or blocking function this thread is
 * running now, or NULL (another thread, or between requests): for log lines
 * written deep below the handler (a loader's database error). */
const char *tc_http_current_request_id(void);

/* --------------------------------------------------------------------------
 * The response. Status 0 (never set) is sent as 500. Every response gets a
 * Date header (libmicrohttpd); no other header is added except Content-Length,
 * Connection when closing, Retry-After on the server's own 503, and X-Request-Id
 * on every 5xx (tc_http_request_id).
 */
void tc_http_set_status(tc_http_exchange *x, int status);
int tc_http_status(const tc_http_exchange *x);
/* Copies name and value. TC_HTTP_EINVAL for a name that is not an HTTP token,
 * a value with CR, LF or NUL, or Content-Length / Transfer-Encoding (the
 * server sets those). */
int tc_http_add_header(tc_http_exchange *x, const char *name, const char *value);
int tc_http_set_content_type(tc_http_exchange *x, const char *content_type);
/* Body setters; each replaces any previous body.
 * set_body copies. take_body takes ownership of buf (malloc'd; freed with
 * free() by the server, also on failure). set_body_static keeps a pointer to
 * data, which must outlive the server. set_body_ref keeps a pointer to data
 * and calls release(arg) once when the server is done with it (any thread). */
int tc_http_set_body(tc_http_exchange *x, const void *data, size_t len);
int tc_http_take_body(tc_http_exchange *x, void *buf, size_t len);
int tc_http_set_body_static(tc_http_exchange *x, const void *data, size_t len);
int tc_http_set_body_ref(tc_http_exchange *x, const void *data, size_t len,
                         void (*release)(void *arg), void *arg);
/* Status, Content-Type (may be NULL) and a copied body in one call. */
int tc_http_respond(tc_http_exchange *x, int status, const char *content_type, const void *body,
                    size_t len);

/* A response header set so far (name case-insensitive; the first of repeated
 * ones), or NULL. In on_done: NULL when no response was sent. */
const char *tc_http_response_header(const tc_http_exchange *x, const char *name);
/* In on_done: body bytes of the response sent (0 for HEAD or when none was
 * sent), and 1 if it went out whole, 0 if the connection ended first. */
uint64_t tc_http_response_bytes(const tc_http_exchange *x);
int tc_http_response_complete(const tc_http_exchange *x);

/* From a handler only: run fn(cfg.ctx, x) on a worker, then send the response
 * it fills. The handler must then return TC_HTTP_OFFLOAD. The connection is
 * suspended meanwhile (libmicrohttpd does not watch it: a client that leaves
 * is noticed only when the response is sent, so fn needs its own deadline).
 * TC_HTTP_ESTATE when called from a blocking function. */
int tc_http_offload(tc_http_exchange *x, tc_http_blocking_fn fn);

/*
 * Parking: a blocking function that would only wait for something another
 * thread is doing (another request's load of the same key) gives its worker
 * back instead. It calls tc_http_park(x), arranges for tc_http_unpark(x) to be
 * called once the thing is done (from any thread; it may be at once), and
 * returns without a response. When both have happened the blocking function
 * runs again, from the start, on a worker, ahead of the queue. The connection
 * stays suspended throughout. Once per exchange: the second tc_http_park (or
 * one outside a blocking function) is TC_HTTP_ESTATE, and the function must
 * then wait as it would have. If the arrangement fails, tc_http_park_cancel(x)
 * and carry on (it may park later). A stopping server waits for parked
 * exchanges to come back.
 */
int tc_http_park(tc_http_exchange *x);
void tc_http_park_cancel(tc_http_exchange *x);
void tc_http_unpark(tc_http_exchange *x);

#endif

/*
 * The HTTP server over libmicrohttpd 0.9.75 (see server.h for the API and for
 * what runs on which thread). This file is the glue: request life cycle, limits,
 * offloading, the watchdog, the graceful stop. It parses nothing itself
 * except Content-Length; it has no routes and no policy.
 *
 * DESIGN — the life of one request, and the libmicrohttpd traps it avoids
 *
 *   uri log callback    request line read: allocate the exchange (refs = 1, held
 *                       by libmicrohttpd until the completed callback), copy the
 *                       raw target (libmicrohttpd decodes the URL in place later),
 *                       start the whole-request deadline.
 *   access call #1      headers complete. Framing libmicrohttpd accepts but a
 *                       proxy may read otherwise is answered 400/501 (the head's
 *                       bytes are walked where libmicrohttpd parsed them in
 *                       place). Decide the body limit; a Content-Length
 *                       over it is answered 413 now, before any body byte is
 *                       read. Nothing else is queued on this call: 0.9.75 sends
 *                       "Connection: close" on every response queued on the first
 *                       call (the documented two-call pattern keeps keep-alive).
 *   access calls #2..   body bytes, counted (chunked bodies have no length) and
 *                       copied into a buffer that never grows past the limit.
 *   access call (last)  upload_data_size == 0: run the handler. Either queue the
 *                       response, or (offload) copy what the request accessors
 *                       read out of libmicrohttpd (its memory ends with the
 *                       connection), suspend the connection and push the
 *                       exchange on the bounded worker queue (full: 503 now).
 *   worker              runs the blocking function, publishes "done" (a release
 *                       CAS from OFFLOADED, which a stop's cut may have won) and
 *                       resumes the connection, both under qlock; drops its
 *                       reference.
 *   access call (again) after the resume: queue the response the worker filled.
 *   completed callback  response sent or connection lost: call cfg.on_done (the
 *                       status sent, or 0 if none was: a worker may still hold
 *                       the exchange, so the hook sees no response fields),
 *                       drop libmicrohttpd's reference. The exchange is freed
 *                       by whichever of the worker and this callback lets go
 *                       last, so a client that disconnects while its request
 *                       sits on a worker costs nothing but the wasted work.
 *
 * Timeouts. libmicrohttpd's connection timeout restarts on every byte and a
 * suspended connection never times out. The watchdog thread keeps its own clock
 * per connection (socket context): IDLE (accepted, or last response done) may
 * last idle_timeout_ms until the next request line; RECEIVING (request line to
 * last body byte) may last request_timeout_ms; BUSY (handler, worker, sending)
 * is not limited here. A connection over its limit is shut down (shutdown(2),
 * never close(2): the descriptor stays libmicrohttpd's) under the list lock that
 * the connection-closed notification also takes, and libmicrohttpd then closes
 * it as a peer that left. libmicrohttpd calls that notification before it
 * closes the descriptor, so the watchdog never touches a reused descriptor.
 *
 * Connections. libmicrohttpd's accept policy callback refuses a connection whose
 * address (IPv4, or IPv6 /64) already has max_connections_per_addr open; the
 * counts are kept by the connection notifications under the same lock as the
 * watchdog's list. From 1/16 below max_connections the watchdog closes the
 * connections idle longest (IDLE at least a second) down to 2/16 below, so the
 * listen socket is never left unpolled by idle connections alone.
 *
 * Stop. Suspended connections must not meet MHD_stop_daemon (0.9.75 panics), so
 * the order is: quiesce (no new connections), wait for in-flight requests until
 * stop_timeout_ms, then either (all done) close the worker queue and join the
 * workers, or (the deadline passed) cut: every offloaded exchange, queued,
 * parked or on a worker, goes to CUT and its connection is resumed under qlock;
 * the event thread answers it 503 without reading its response fields; workers
 * are detached. Then stop libmicrohttpd, then the watchdog. What a cut leaves
 * running keeps the server alive (holders): a worker inside a blocking
 * function, a parked exchange waiting for its unpark; the last one frees it.
 */
#define _GNU_SOURCE /* accept4 flags in glibc headers */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "base/assert.h"
#include "base/cond.h"
#include "base/thread.h"
#include "base/time.h"
#include "http/framing.h"

/* ------------------------------------------------------------------------ */
/* Types                                                                    */

enum phase { PH_IDLE = 0, PH_RECEIVING, PH_BUSY };

/* One per TCP connection (libmicrohttpd's socket context), on the server's
 * list for the watchdog. Freed by the connection-closed notification. */
typedef struct conn_track {
    struct conn_track *prev, *next;
    int fd;
    _Atomic int phase;
    _Atomic uint64_t since_ms;   /* tc_mono_coarse_ms() when the phase began */
    bool killed;                 /* under conns_lock */
    char addr[INET6_ADDRSTRLEN]; /* the peer, as text ("" if unknown); set at connect */
    uint8_t afam;                /* its key in the per-address counts (0: not counted) */
    uint64_t akey;
    uint64_t born; /* accept order (under conns_lock): breaks ties of since_ms's coarse ticks */
} conn_track;

/* Open connections of one client address: an IPv4 address, or an IPv6 /64 (one
 * host's usual allocation: counting whole IPv6 addresses would let it open as
 * many as it likes). Open addressing, linear probing; at most one slot per open
 * connection, in a table of twice max_connections. Under conns_lock. */
typedef struct addr_slot {
    uint64_t key;
    uint8_t fam; /* 0: empty; 4 or 6 */
    int count;
} addr_slot;

/* An idle connection the watchdog may close to keep room (shed). */
typedef struct shed_item {
    uint64_t since, born;
    conn_track *t;
} shed_item;

/* A line logged at most once per LOG_GATE_MS, with how many it stands for. */
typedef struct log_gate {
    uint64_t next_ms, count;
} log_gate;

#define LOG_GATE_MS 10000
/* A connection must have been idle this long (capped at half the idle timeout)
 * to be shed: one just accepted is about to send its request. */
#define SHED_MIN_IDLE_MS 1000
/* After the stop deadline: how long the 503s of the cut requests may take to go
 * out before every connection is closed. */
#define CUT_GRACE_MS 250

enum xstate {
    X_HEADERS = 0, /* before access call #1 */
    X_BODY,        /* receiving the body */
    X_OFFLOADED,   /* on the worker queue or running there */
    X_WORKER_DONE, /* the worker filled the response */
    X_RESPONDED,   /* response queued (or the request refused) */
    X_CUT,         /* offloaded, and the stop deadline passed first: the server answers
                      503 (or closes) without the response the worker may still fill */
};

enum body_kind { B_NONE = 0, B_OWNED, B_STATIC, B_REF };

typedef struct rhdr {
    struct rhdr *next;
    const char *name, *value;
} rhdr;

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
} arena_chunk;

#define INLINE_ARENA 1024
#define DISCARD_MIN (16u << 20)

struct tc_http_exchange {
    tc_http_server *srv;
    struct MHD_Connection *conn;
    conn_track *ct;
    _Atomic int refs;
    _Atomic int state;
    bool in_handler; /* tc_http_offload is allowed */
    bool too_large;
    size_t discarded; /* body bytes dropped past the limit */

    /* request */
    const char *method;
    tc_http_method_id method_id;
    const char *url;         /* libmicrohttpd's decoded path */
    char *target;            /* raw target, arena */
    const char *client_addr; /* arena, on demand */
    /* Set by offload(): the request's headers and decoded query arguments, copied
     * into the arena with method and url, because libmicrohttpd's memory for them
     * goes with the connection, and after a cut the connection ends while the
     * blocking function still runs. The accessors read these once set. */
    bool detached;
    rhdr *req_headers, *req_args;
    size_t target_len, path_len;
    char *body; /* malloc'd, NUL-terminated */
    size_t body_len, body_cap, body_limit;

    /* response */
    int status;
    rhdr *headers, *headers_tail;
    enum body_kind body_kind;
    const void *resp;
    size_t resp_len;
    void (*release)(void *);
    void *release_arg;
    tc_http_blocking_fn blocking;
    /* tc_http_park: parked is set by the blocking function on its worker, read
     * by that worker when the function returns, cleared by park_done once both
     * parties (that worker and tc_http_unpark) have counted park_parties down:
     * whichever comes last puts x back on the queue. */
    bool parked, parked_once;
    _Atomic int park_parties;
    struct tc_http_exchange *ready_next;            /* on the ready list (qlock) */
    struct tc_http_exchange *park_prev, *park_next; /* on the parked list (qlock) */

    void *user;
    void (*user_free)(void *);

    /* for on_done */
    uint64_t t0_us;              /* request line read (tc_mono_us: the coarse clock
                                    ticks in 4 ms, too coarse for request durations) */
    _Atomic(const char *) route; /* tc_http_set_route; static strings only */
    char request_id[17];         /* tc_http_request_id, set in on_uri */
    int sent_status;             /* set by send_response */
    uint64_t sent_bytes;
    bool no_response; /* on_done: nothing was sent; the response fields may be a worker's */
    bool cut_sent;    /* X_CUT: the server's 503 was queued (event thread) */
    bool foreign;     /* on_done: a cut's 503 went out; the response fields are a worker's */
    bool complete;    /* on_done: the response went out whole */

    arena_chunk *chunks;
    size_t inline_used;
    _Alignas(16) unsigned char inline_buf[INLINE_ARENA];
};

struct tc_http_server {
    tc_http_config cfg;
    struct MHD_Daemon *mhd;
    int listen_fd; /* ours until quiesce hands it back */
    int port;
    _Atomic int stopping;

    /* worker queue */
    pthread_mutex_t qlock;
    tc_cond qcond;
    tc_http_exchange **ring;
    int qcap, qhead, qcount;
    tc_http_exchange *ready, *ready_tail; /* unparked: run before the ring */
    tc_http_exchange *parked;             /* parked, not yet back (qlock) */
    int nparked;                          /* how many (qlock) */
    bool qclosed;
    bool cut; /* the stop deadline passed: nothing more runs (qlock) */
    /* Who still uses this struct (qlock): the owner until tc_http_stop returns,
     * each worker thread until it exits, each exchange on the parked list. The
     * last one frees it: after a cut, workers still inside a blocking function
     * and parked exchanges outlive the stop. */
    int holders;
    int nstarted;               /* worker threads that took an index (qlock) */
    tc_http_exchange **running; /* per worker: the exchange it runs (qlock) */
    int nworkers;
    pthread_t *workers;

    /* watchdog */
    pthread_mutex_t conns_lock;
    tc_cond wd_cond;
    conn_track *conns;
    bool wd_stop;
    tc_thread watchdog;

    /* connections per client address, and shedding near max_connections (all
     * under conns_lock; the thresholds are set at start) */
    int per_addr_max;     /* INT_MAX: no cap */
    int shed_at, shed_to; /* open connections: shed idle ones from shed_at down to shed_to */
    int shed_min_idle_ms;
    addr_slot *addr_tab;
    size_t addr_mask, addr_used;
    shed_item *shed_buf;
    size_t shed_cap;
    log_gate refuse_gate, shed_gate;
    uint64_t accepted; /* connections so far: conn_track.born */

    /* stats */
    _Atomic uint64_t n_requests, n_offloaded, n_busy, n_large, n_bad, n_deadline, n_idle, n_parked;
    _Atomic uint64_t n_addr_refused, n_shed;
    _Atomic uint64_t next_request_id; /* random start (tc_http_create) */
    _Atomic int64_t n_connections, n_in_flight;
};

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */

static void log_line(tc_http_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(tc_http_server *s, char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (s->cfg.log)
        s->cfg.log(s->cfg.ctx, line);
    else
        fprintf(stderr, "tiercache http: %s\n", line);
}

static void log_line(tc_http_server *s, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    emit(s, buf);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    emit(cls, buf);
}

/* ------------------------------------------------------------------------ */
/* Exchange memory                                                          */

void *tc_http_alloc(tc_http_exchange *x, size_t n)
{
    if (n > SIZE_MAX - 4096)
        return NULL;
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    if (INLINE_ARENA - x->inline_used >= n) {
        void *p = x->inline_buf + x->inline_used;
        x->inline_used += n;
        return p;
    }
    arena_chunk *c = x->chunks;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = x->chunks;
        x->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static char *arena_strdup(tc_http_exchange *x, const char *s, size_t n)
{
    char *p = tc_http_alloc(x, n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void drop_body(tc_http_exchange *x)
{
    switch (x->body_kind) {
    case B_OWNED:
        free((void *)x->resp);
        break;
    case B_REF:
        if (x->release)
            x->release(x->release_arg);
        break;
    default:
        break;
    }
    x->body_kind = B_NONE;
    x->resp = NULL;
    x->resp_len = 0;
    x->release = NULL;
}

static void exchange_free(tc_http_exchange *x)
{
    drop_body(x);
    if (x->user_free)
        x->user_free(x->user);
    free(x->body);
    arena_chunk *c = x->chunks;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(x);
}

static void exchange_release(tc_http_exchange *x)
{
    int refs = atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel);
    TC_ASSERT(refs > 0);
    if (refs == 1)
        exchange_free(x);
}

/* ------------------------------------------------------------------------ */
/* Request accessors                                                        */

const char *tc_http_method(const tc_http_exchange *x)
{
    return x->method ? x->method : "";
}

tc_http_method_id tc_http_method_id_of(const tc_http_exchange *x)
{
    return x->method_id;
}

const char *tc_http_path(const tc_http_exchange *x)
{
    return x->url ? x->url : "";
}

const char *tc_http_target(const tc_http_exchange *x, size_t *len)
{
    if (len)
        *len = x->target_len;
    return x->target;
}

const char *tc_http_raw_path(const tc_http_exchange *x, size_t *len)
{
    if (len)
        *len = x->path_len;
    return x->target;
}

const char *tc_http_raw_query(const tc_http_exchange *x, size_t *len)
{
    if (x->path_len >= x->target_len) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = x->target_len - x->path_len - 1;
    return x->target + x->path_len + 1;
}

static const char *copied_value(const rhdr *h, const char *name, bool exact)
{
    for (; h != NULL; h = h->next)
        if (exact ? strcmp(h->name, name) == 0 : strcasecmp(h->name, name) == 0)
            return h->value;
    return NULL;
}

const char *tc_http_query_arg(const tc_http_exchange *x, const char *name)
{
    if (x->detached)
        return copied_value(x->req_args, name, true);
    return MHD_lookup_connection_value(x->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *tc_http_header(const tc_http_exchange *x, const char *name)
{
    if (x->detached)
        return copied_value(x->req_headers, name, false);
    return MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, name);
}

typedef struct each_ctx {
    int (*fn)(void *, const char *, const char *);
    void *arg;
} each_ctx;

static enum MHD_Result each_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    each_ctx *e = cls;
    return e->fn(e->arg, key, value ? value : "") ? MHD_NO : MHD_YES;
}

void tc_http_headers_each(const tc_http_exchange *x,
                          int (*fn)(void *arg, const char *name, const char *value), void *arg)
{
    if (x->detached) {
        for (const rhdr *h = x->req_headers; h != NULL; h = h->next)
            if (fn(arg, h->name, h->value ? h->value : ""))
                return;
        return;
    }
    each_ctx e = {fn, arg};
    MHD_get_connection_values(x->conn, MHD_HEADER_KIND, each_header, &e);
}

typedef struct copy_ctx {
    tc_http_exchange *x;
    rhdr **tail;
    bool failed;
} copy_ctx;

static enum MHD_Result copy_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    copy_ctx *c = cls;
    rhdr *h = tc_http_alloc(c->x, sizeof *h);
    if (h == NULL || (h->name = arena_strdup(c->x, key, strlen(key))) == NULL ||
        (value != NULL && (h->value = arena_strdup(c->x, value, strlen(value))) == NULL)) {
        c->failed = true;
        return MHD_NO;
    }
    if (value == NULL)
        h->value = NULL;
    h->next = NULL;
    *c->tail = h;
    c->tail = &h->next;
    return MHD_YES;
}

/* Copies what the request accessors read from libmicrohttpd into x's arena (see
 * detached). -1 when out of memory. On the event thread, x ours alone. */
static int detach_request(tc_http_exchange *x)
{
    copy_ctx h = {x, &x->req_headers, false}, a = {x, &x->req_args, false};
    MHD_get_connection_values(x->conn, MHD_HEADER_KIND, copy_value, &h);
    MHD_get_connection_values(x->conn, MHD_GET_ARGUMENT_KIND, copy_value, &a);
    const char *m = arena_strdup(x, tc_http_method(x), strlen(tc_http_method(x)));
    const char *u = arena_strdup(x, tc_http_path(x), strlen(tc_http_path(x)));
    /* the peer's address too: on_done may want it after a cut, while the worker
     * uses the arena */
    if (tc_http_client_addr(x) == NULL && x->client_addr == NULL)
        x->client_addr = "";
    if (h.failed || a.failed || m == NULL || u == NULL)
        return -1;
    x->method = m;
    x->url = u;
    x->detached = true;
    return 0;
}

/* The peer address of c as text into buf ("" if unknown). */
static void peer_text(struct MHD_Connection *c, char buf[INET6_ADDRSTRLEN])
{
    buf[0] = '\0';
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL)
        return;
    const struct sockaddr *sa = ci->client_addr;
    const char *t = NULL;
    if (sa->sa_family == AF_INET)
        t = inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, INET6_ADDRSTRLEN);
    else if (sa->sa_family == AF_INET6)
        t = inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf,
                      INET6_ADDRSTRLEN);
    if (t == NULL)
        buf[0] = '\0';
}

const char *tc_http_client_addr(tc_http_exchange *x)
{
    if (x->client_addr == NULL && x->ct != NULL) { /* formatted once per connection */
        x->client_addr = arena_strdup(x, x->ct->addr, strlen(x->ct->addr));
    } else if (x->client_addr == NULL) {
        char buf[INET6_ADDRSTRLEN];
        peer_text(x->conn, buf);
        x->client_addr = arena_strdup(x, buf, strlen(buf));
    }
    return x->client_addr != NULL && x->client_addr[0] != '\0' ? x->client_addr : NULL;
}

const char *tc_http_body(const tc_http_exchange *x, size_t *len)
{
    if (len)
        *len = x->body_len;
    return x->body ? x->body : "";
}

void tc_http_set_user(tc_http_exchange *x, void *p, void (*free_fn)(void *p))
{
    x->user = p;
    x->user_free = free_fn;
}

void *tc_http_user(const tc_http_exchange *x)
{
    return x->user;
}

/* ------------------------------------------------------------------------ */
/* Response                                                                 */

void tc_http_set_status(tc_http_exchange *x, int status)
{
    x->status = status;
}

int tc_http_status(const tc_http_exchange *x)
{
    return x->status;
}

void tc_http_set_route(tc_http_exchange *x, const char *route)
{
    atomic_store_explicit(&x->route, route, memory_order_relaxed);
}

const char *tc_http_route(const tc_http_exchange *x)
{
    return atomic_load_explicit(&((tc_http_exchange *)x)->route, memory_order_relaxed);
}

const char *tc_http_request_id(const tc_http_exchange *x)
{
    return x->request_id;
}

/* The exchange this thread is running the handler or blocking function of. */
static _Thread_local const tc_http_exchange *running_here;

const char *tc_http_current_request_id(void)
{
    return running_here != NULL ? running_here->request_id : NULL;
}

const char *tc_http_response_header(const tc_http_exchange *x, const char *name)
{
    if (x->no_response || x->foreign)
        return NULL;
    for (const rhdr *h = x->headers; h; h = h->next)
        if (strcasecmp(h->name, name) == 0)
            return h->value;
    return NULL;
}

uint64_t tc_http_response_bytes(const tc_http_exchange *x)
{
    return x->no_response ? 0 : x->sent_bytes;
}

int tc_http_response_complete(const tc_http_exchange *x)
{
    return !x->no_response && x->complete;
}

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int tc_http_add_header(tc_http_exchange *x, const char *name, const char *value)
{
    if (name == NULL || value == NULL || *name == '\0')
        return TC_HTTP_EINVAL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (!is_tchar(*p))
            return TC_HTTP_EINVAL;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if (*p == '\r' || *p == '\n' || (*p < 0x20 && *p != '\t') || *p == 0x7f)
            return TC_HTTP_EINVAL;
    if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0)
        return TC_HTTP_EINVAL;
    rhdr *h = tc_http_alloc(x, sizeof *h);
    if (h == NULL || (h->name = arena_strdup(x, name, strlen(name))) == NULL ||
        (h->value = arena_strdup(x, value, strlen(value))) == NULL)
        return TC_HTTP_ENOMEM;
    h->next = NULL;
    if (x->headers_tail)
        x->headers_tail->next = h;
    else
        x->headers = h;
    x->headers_tail = h;
    return 0;
}

int tc_http_set_content_type(tc_http_exchange *x, const char *content_type)
{
    return tc_http_add_header(x, "Content-Type", content_type);
}

int tc_http_set_body(tc_http_exchange *x, const void *data, size_t len)
{
    drop_body(x);
    if (len == 0)
        return 0;
    void *p = malloc(len);
    if (p == NULL)
        return TC_HTTP_ENOMEM;
    memcpy(p, data, len);
    x->body_kind = B_OWNED;
    x->resp = p;
    x->resp_len = len;
    return 0;
}

int tc_http_take_body(tc_http_exchange *x, void *buf, size_t len)
{
    drop_body(x);
    if (buf == NULL)
        return len ? TC_HTTP_EINVAL : 0;
    x->body_kind = B_OWNED;
    x->resp = buf;
    x->resp_len = len;
    return 0;
}

int tc_http_set_body_static(tc_http_exchange *x, const void *data, size_t len)
{
    drop_body(x);
    if (data == NULL && len)
        return TC_HTTP_EINVAL;
    x->body_kind = B_STATIC;
    x->resp = data;
    x->resp_len = len;
    return 0;
}

int tc_http_set_body_ref(tc_http_exchange *x, const void *data, size_t len,
                         void (*release)(void *arg), void *arg)
{
    drop_body(x);
    if (data == NULL && len) {
        if (release)
            release(arg);
        return TC_HTTP_EINVAL;
    }
    x->body_kind = B_REF;
    x->resp = data;
    x->resp_len = len;
    x->release = release;
    x->release_arg = arg;
    return 0;
}

int tc_http_respond(tc_http_exchange *x, int status, const char *content_type, const void *body,
                    size_t len)
{
    int rc;
    x->status = status;
    if (content_type && (rc = tc_http_set_content_type(x, content_type)) < 0)
        return rc;
    return tc_http_set_body(x, body, len);
}

int tc_http_offload(tc_http_exchange *x, tc_http_blocking_fn fn)
{
    if (fn == NULL)
        return TC_HTTP_EINVAL;
    if (!x->in_handler)
        return TC_HTTP_ESTATE;
    x->blocking = fn;
    return 0;
}

/* Builds the libmicrohttpd response from x and queues it. */
static enum MHD_Result send_response(tc_http_exchange *x)
{
    tc_http_server *s = x->srv;
    /* from access call #1 (a refusal), the last body call, or after the worker: once */
    int st = atomic_load_explicit(&x->state, memory_order_relaxed);
    TC_ASSERT(st == X_HEADERS || st == X_BODY || st == X_WORKER_DONE);
    struct MHD_Response *r = NULL;
    uint64_t body_bytes =
        x->body_kind == B_NONE || x->method_id == TC_HTTP_M_HEAD ? 0 : x->resp_len;
    switch (x->body_kind) {
    case B_NONE:
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        break;
    case B_OWNED:
        r = MHD_create_response_from_buffer(x->resp_len, (void *)x->resp, MHD_RESPMEM_MUST_FREE);
        break;
    case B_STATIC:
        r = MHD_create_response_from_buffer(x->resp_len, (void *)x->resp, MHD_RESPMEM_PERSISTENT);
        break;
    case B_REF:
        r = MHD_create_response_from_buffer_with_free_callback_cls(x->resp_len, (void *)x->resp,
                                                                   x->release, x->release_arg);
        break;
    }
    if (r == NULL) {
        log_line(s, "cannot create a response (out of memory): closing the connection");
        return MHD_NO; /* x->resp is still ours: freed with the exchange */
    }
    x->body_kind = B_NONE; /* the response owns it now */
    x->resp = NULL;
    x->release = NULL;
    bool has_connection = false;
    for (rhdr *h = x->headers; h; h = h->next) {
        if (MHD_add_response_header(r, h->name, h->value) != MHD_YES)
            log_line(s, "header %s refused by libmicrohttpd", h->name);
        has_connection |= strcasecmp(h->name, "Connection") == 0;
    }
    if (!has_connection && atomic_load_explicit(&s->stopping, memory_order_relaxed))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    int status = x->status >= 100 && x->status <= 999 ? x->status : 500;
    if (status >= 500)
        MHD_add_response_header(r, "X-Request-Id", x->request_id);
    enum MHD_Result ok = MHD_queue_response(x->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    x->sent_status = status;
    x->sent_bytes = body_bytes;
    atomic_store_explicit(&x->state, X_RESPONDED, memory_order_relaxed);
    if (x->ct)
        atomic_store_explicit(&x->ct->phase, PH_BUSY, memory_order_relaxed);
    return ok;
}

static void default_reject(tc_http_exchange *x, int status)
{
    static const char too_large[] = "Payload Too Large\n";
    static const char busy[] = "Service Unavailable\n";
    static const char bad[] = "Bad Request\n";
    static const char not_impl[] = "Not Implemented\n";
    tc_http_set_content_type(x, "text/plain; charset=utf-8");
    if (status == 413)
        tc_http_set_body_static(x, too_large, sizeof too_large - 1);
    else if (status == 400)
        tc_http_set_body_static(x, bad, sizeof bad - 1);
    else if (status == 501)
        tc_http_set_body_static(x, not_impl, sizeof not_impl - 1);
    else
        tc_http_set_body_static(x, busy, sizeof busy - 1);
}

/* A response the server decides by itself. The handler's partial response, if
 * any, is discarded. */
static enum MHD_Result reject(tc_http_exchange *x, int status)
{
    tc_http_server *s = x->srv;
    drop_body(x);
    x->headers = x->headers_tail = NULL;
    x->status = status;
    if (status == 503) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", s->cfg.retry_after_s);
        tc_http_add_header(x, "Retry-After", ra);
        atomic_fetch_add_explicit(&s->n_busy, 1, memory_order_relaxed);
    } else if (status == 413 || status == 400 || status == 501) {
        /* an unread body (or a broken request) makes the connection unusable */
        tc_http_add_header(x, "Connection", "close");
        atomic_fetch_add_explicit(status == 413 ? &s->n_large : &s->n_bad, 1, memory_order_relaxed);
    }
    if (s->cfg.reject)
        s->cfg.reject(s->cfg.ctx, x, status);
    else
        default_reject(x, status);
    x->status = status; /* whatever the hook did */
    return send_response(x);
}

/* The answer to a request the stop deadline cut while a worker had it: a
 * fixed 503 that reads nothing of x's response (the worker may still be
 * filling it in). On the event thread, after the stop resumed the connection. */
static enum MHD_Result send_cut(tc_http_exchange *x)
{
    static const char body[] = "Service Unavailable: the server is stopping\n";
    TC_ASSERT(atomic_load_explicit(&x->state, memory_order_acquire) == X_CUT && !x->cut_sent);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO; /* closed: the other way to cut it */
    char ra[16];
    snprintf(ra, sizeof ra, "%d", x->srv->cfg.retry_after_s);
    MHD_add_response_header(r, "Retry-After", ra);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    MHD_add_response_header(r, "X-Request-Id", x->request_id);
    enum MHD_Result ok = MHD_queue_response(x->conn, 503, r);
    MHD_destroy_response(r);
    x->cut_sent = true;
    x->sent_status = 503;
    x->sent_bytes = x->method_id == TC_HTTP_M_HEAD ? 0 : sizeof body - 1;
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                  */

static void server_free(tc_http_server *s);

/* One holder of s lets go (see holders); the last frees it. */
static void server_release(tc_http_server *s)
{
    pthread_mutex_lock(&s->qlock);
    TC_ASSERT(s->holders > 0);
    bool last = --s->holders == 0;
    pthread_mutex_unlock(&s->qlock);
    if (last)
        server_free(s);
}

/* x is back from a park: onto the ready list, which workers take before the
 * ring (it has waited once already), whatever the ring's fill. After a cut the
 * server has answered it already (or closed it): the worker side's reference
 * is all that is left to drop. */
static void park_done(tc_http_exchange *x)
{
    tc_http_server *s = x->srv;
    x->parked = false;
    x->ready_next = NULL;
    pthread_mutex_lock(&s->qlock);
    TC_ASSERT(s->nparked > 0); /* its worker counted it before its part of the rendezvous */
    s->nparked--;
    if (x->park_prev != NULL)
        x->park_prev->park_next = x->park_next;
    else
        s->parked = x->park_next;
    if (x->park_next != NULL)
        x->park_next->park_prev = x->park_prev;
    x->park_prev = x->park_next = NULL;
    if (s->cut) {
        TC_ASSERT(atomic_load_explicit(&x->state, memory_order_relaxed) == X_CUT);
        pthread_mutex_unlock(&s->qlock);
        exchange_release(x);
        server_release(s); /* the parked list's hold */
        return;
    }
    if (s->ready_tail != NULL)
        s->ready_tail->ready_next = x;
    else
        s->ready = x;
    s->ready_tail = x;
    if (s->qclosed) /* stopping: the workers waiting for the last one may exit after it */
        tc_cond_broadcast(&s->qcond);
    else
        tc_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    server_release(s); /* the parked list's hold (a worker holds s for the next run) */
}

int tc_http_park(tc_http_exchange *x)
{
    if (x->parked || x->parked_once || atomic_load(&x->state) != X_OFFLOADED)
        return TC_HTTP_ESTATE;
    x->parked = x->parked_once = true;
    atomic_store(&x->park_parties, 2);
    return 0;
}

void tc_http_park_cancel(tc_http_exchange *x)
{
    if (x->parked) /* never parked after all: it may park later */
        x->parked = x->parked_once = false;
}

/* One of the two parties of a park is done with it; the last one requeues it. */
static void park_party_done(tc_http_exchange *x)
{
    int parties = atomic_fetch_sub(&x->park_parties, 1);
    TC_ASSERT(parties == 1 || parties == 2);
    if (parties == 1)
        park_done(x);
}

void tc_http_unpark(tc_http_exchange *x)
{
    park_party_done(x);
}

static void *worker_main(void *arg)
{
    tc_http_server *s = arg;
    pthread_mutex_lock(&s->qlock);
    int me = s->nstarted++;
    TC_ASSERT(me < s->cfg.workers);
    for (;;) {
        while (!s->cut && s->qcount == 0 && s->ready == NULL && !(s->qclosed && s->nparked == 0))
            tc_cond_wait(&s->qcond, &s->qlock);
        tc_http_exchange *x;
        if (s->cut) {
            break; /* the stop answered whatever was waiting */
        } else if (s->ready != NULL) {
            x = s->ready;
            if ((s->ready = x->ready_next) == NULL)
                s->ready_tail = NULL;
        } else if (s->qcount > 0) {
            x = s->ring[s->qhead];
            s->qhead = (s->qhead + 1) % s->qcap;
            s->qcount--;
        } else {
            break; /* closed, drained, nothing parked */
        }
        s->running[me] = x; /* where a cut finds it */
        pthread_mutex_unlock(&s->qlock);

        running_here = x;
        x->blocking(s->cfg.ctx, x);
        running_here = NULL;
        if (x->parked) { /* it will be queued again: by the unpark, or by us if that came first */
            atomic_fetch_add_explicit(&s->n_parked, 1, memory_order_relaxed);
            pthread_mutex_lock(&s->qlock);
            s->running[me] = NULL;
            s->nparked++; /* before our part of the rendezvous: park_done undoes it */
            s->holders++; /* s must outlive the unpark, even past a stop */
            x->park_prev = NULL;
            x->park_next = s->parked;
            if (s->parked != NULL)
                s->parked->park_prev = x;
            s->parked = x;
            pthread_mutex_unlock(&s->qlock);
            park_party_done(x);
            pthread_mutex_lock(&s->qlock);
            continue;
        }
        /* Done: unless a cut took it first, publish the response (release: the
         * event thread reads it after an acquire) and resume the connection,
         * both under qlock, so a stop never meets a suspended connection. */
        pthread_mutex_lock(&s->qlock);
        s->running[me] = NULL;
        int st = X_OFFLOADED;
        if (atomic_compare_exchange_strong_explicit(&x->state, &st, X_WORKER_DONE,
                                                    memory_order_release, memory_order_relaxed))
            MHD_resume_connection(x->conn);
        else
            TC_ASSERT(st == X_CUT); /* the stop answered it; this response is dropped */
        pthread_mutex_unlock(&s->qlock);
        exchange_release(x); /* after this line x may be gone */

        pthread_mutex_lock(&s->qlock);
    }
    TC_ASSERT(s->holders > 0);
    bool last = --s->holders == 0;
    pthread_mutex_unlock(&s->qlock);
    if (last) /* a cut stop has returned already */
        server_free(s);
    return NULL;
}

/* On the event thread, from the access handler: 0 queued (connection
 * suspended), -1 queue full or closed, or out of memory. */
static int offload(tc_http_exchange *x)
{
    tc_http_server *s = x->srv;
    if (detach_request(x) != 0)
        return -1;
    pthread_mutex_lock(&s->qlock);
    if (s->qclosed || s->qcount == s->qcap) {
        pthread_mutex_unlock(&s->qlock);
        return -1;
    }
    TC_ASSERT(atomic_load_explicit(&x->state, memory_order_relaxed) == X_BODY);
    atomic_fetch_add_explicit(&x->refs, 1, memory_order_relaxed);
    atomic_store_explicit(&x->state, X_OFFLOADED, memory_order_relaxed);
    /* suspend before a worker can see it: the resume must follow the suspend */
    MHD_suspend_connection(x->conn);
    s->ring[(s->qhead + s->qcount) % s->qcap] = x;
    s->qcount++;
    tc_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    atomic_fetch_add_explicit(&s->n_offloaded, 1, memory_order_relaxed);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Connections per client address                                           */

/* The key an address is counted under: false for a family we do not count. */
static bool addr_key_of(const struct sockaddr *sa, uint8_t *fam, uint64_t *key)
{
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        *fam = 4;
        *key = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const unsigned char *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        uint64_t k = 0;
        if (memcmp(b, mapped, sizeof mapped) == 0) { /* ::ffff:a.b.c.d is a.b.c.d */
            *fam = 4;
            for (int i = 12; i < 16; i++)
                k = k << 8 | b[i];
        } else {
            *fam = 6;
            for (int i = 0; i < 8; i++) /* the /64 */
                k = k << 8 | b[i];
        }
        *key = k;
        return true;
    }
    return false;
}

/* The slot of (fam, key), or of the empty slot where it would go. conns_lock. */
static size_t addr_slot_of(const tc_http_server *s, uint8_t fam, uint64_t key)
{
    TC_ASSERT_HELD(&((tc_http_server *)s)->conns_lock);
    size_t i = (size_t)((key ^ fam) * 0x9E3779B97F4A7C15ull >> 20) & s->addr_mask;
    while (s->addr_tab[i].fam != 0 && (s->addr_tab[i].fam != fam || s->addr_tab[i].key != key))
        i = (i + 1) & s->addr_mask;
    return i;
}

static int addr_count(const tc_http_server *s, uint8_t fam, uint64_t key)
{
    const addr_slot *a = &s->addr_tab[addr_slot_of(s, fam, key)];
    return a->fam != 0 ? a->count : 0;
}

/* One more connection from (fam, key); false when the table is full (never:
 * it has twice as many slots as there can be connections). conns_lock. */
static bool addr_add(tc_http_server *s, uint8_t fam, uint64_t key)
{
    size_t i = addr_slot_of(s, fam, key);
    addr_slot *a = &s->addr_tab[i];
    if (a->fam == 0) {
        if (s->addr_used >= s->addr_mask) /* keep a slot empty, or a probe would not end */
            return false;
        s->addr_used++;
        a->fam = fam;
        a->key = key;
        a->count = 0;
    }
    a->count++;
    return true;
}

/* One connection fewer; an address at zero leaves the table (backward-shift
 * deletion keeps every other key reachable from its home slot). conns_lock. */
static void addr_remove(tc_http_server *s, uint8_t fam, uint64_t key)
{
    size_t i = addr_slot_of(s, fam, key);
    addr_slot *a = &s->addr_tab[i];
    TC_ASSERT(a->fam != 0 && a->count > 0); /* counted when it opened */
    if (--a->count > 0)
        return;
    size_t hole = i;
    for (size_t j = (i + 1) & s->addr_mask; s->addr_tab[j].fam != 0; j = (j + 1) & s->addr_mask) {
        addr_slot *b = &s->addr_tab[j];
        size_t home = (size_t)((b->key ^ b->fam) * 0x9E3779B97F4A7C15ull >> 20) & s->addr_mask;
        /* b may move into the hole unless its home lies in (hole, j] */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            s->addr_tab[hole] = *b;
            hole = j;
        }
    }
    s->addr_tab[hole].fam = 0;
    s->addr_used--;
}

/* Counts one more event for a gated log line: true (and the count so far in
 * *n, then reset) when the line is due. conns_lock. */
static bool gate_due(log_gate *g, uint64_t now, uint64_t *n)
{
    g->count++;
    if (now < g->next_ms)
        return false;
    *n = g->count;
    g->count = 0;
    g->next_ms = now + LOG_GATE_MS;
    return true;
}

/* libmicrohttpd's accept policy: a connection from an address that already has
 * per_addr_max open is closed at once, before it costs a connection slot. On
 * the event thread that accepted it; the count it reads is made by
 * on_connection on the same thread, so with one event thread the cap is exact
 * (with N, up to N - 1 over it when they accept from one address at once). */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addrlen;
    tc_http_server *s = cls;
    uint8_t fam;
    uint64_t key;
    if (s->per_addr_max == INT_MAX || !addr_key_of(addr, &fam, &key))
        return MHD_YES;
    pthread_mutex_lock(&s->conns_lock);
    int open = addr_count(s, fam, key);
    uint64_t n = 0;
    bool say = open >= s->per_addr_max && gate_due(&s->refuse_gate, tc_mono_coarse_ms(), &n);
    pthread_mutex_unlock(&s->conns_lock);
    if (open < s->per_addr_max)
        return MHD_YES;
    atomic_fetch_add_explicit(&s->n_addr_refused, 1, memory_order_relaxed);
    if (say) {
        char text[INET6_ADDRSTRLEN] = "?";
        if (addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, text, sizeof text);
        else
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addr)->sin6_addr, text, sizeof text);
        log_line(s,
                 "client %s has %d connections open (the cap per address): refusing more "
                 "(%llu refused since the last such line)",
                 text, open, (unsigned long long)n);
    }
    return MHD_NO;
}

static int cmp_shed(const void *a, const void *b)
{
    const shed_item *x = a, *y = b;
    if (x->since != y->since)
        return x->since < y->since ? -1 : 1;
    return x->born < y->born ? -1 : x->born > y->born;
}

/* Near max_connections: closes the connections idle longest (no request in
 * progress, idle at least shed_min_idle_ms) until shed_to are open, so that a
 * new client, from any address, still finds a free slot at once. The watchdog,
 * under conns_lock; the same shutdown(2) as the idle timeout. 0 or the number
 * closed. */
static int shed_idle(tc_http_server *s, uint64_t now)
{
    TC_ASSERT_HELD(&s->conns_lock);
    int64_t open = atomic_load_explicit(&s->n_connections, memory_order_relaxed);
    if (open < s->shed_at)
        return 0;
    size_t want = (size_t)(open - s->shed_to), n = 0;
    for (conn_track *t = s->conns; t != NULL && n < s->shed_cap; t = t->next) {
        if (t->killed || t->fd < 0 ||
            atomic_load_explicit(&t->phase, memory_order_acquire) != PH_IDLE)
            continue;
        uint64_t since = atomic_load_explicit(&t->since_ms, memory_order_relaxed);
        if (now >= since && now - since >= (uint64_t)s->shed_min_idle_ms)
            s->shed_buf[n++] = (shed_item){since, t->born, t};
    }
    if (n > want)
        qsort(s->shed_buf, n, sizeof *s->shed_buf, cmp_shed); /* the longest idle first */
    else
        want = n;
    for (size_t i = 0; i < want; i++) {
        s->shed_buf[i].t->killed = true;
        shutdown(s->shed_buf[i].t->fd, SHUT_RDWR); /* libmicrohttpd sees the peer gone */
    }
    atomic_fetch_add_explicit(&s->n_shed, want, memory_order_relaxed);
    return (int)want;
}

/* ------------------------------------------------------------------------ */
/* libmicrohttpd callbacks                                                  */

static tc_http_method_id method_id(const char *m)
{
    static const struct {
        const char *name;
        tc_http_method_id id;
    } t[] = {{"GET", TC_HTTP_M_GET},        {"HEAD", TC_HTTP_M_HEAD},
             {"POST", TC_HTTP_M_POST},      {"PUT", TC_HTTP_M_PUT},
             {"DELETE", TC_HTTP_M_DELETE},  {"PATCH", TC_HTTP_M_PATCH},
             {"OPTIONS", TC_HTTP_M_OPTIONS}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(m, t[i].name) == 0)
            return t[i].id;
    return TC_HTTP_M_OTHER;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    tc_http_server *s = cls;
    tc_http_exchange *x = malloc(sizeof *x);
    if (x == NULL) {
        log_line(s, "out of memory for a request: closing the connection");
        return NULL;
    }
    memset(x, 0, offsetof(tc_http_exchange, inline_buf));
    x->srv = s;
    x->conn = c;
    x->t0_us = tc_mono_us();
    uint64_t id = atomic_fetch_add_explicit(&s->next_request_id, 1, memory_order_relaxed);
    for (int i = 15; i >= 0; i--, id >>= 4)
        x->request_id[i] = "0123456789abcdef"[id & 15];
    atomic_init(&x->refs, 1);
    atomic_init(&x->state, X_HEADERS);
    size_t n = strlen(uri);
    x->target = arena_strdup(x, uri, n);
    if (x->target == NULL) {
        exchange_free(x);
        return NULL;
    }
    x->target_len = n;
    const char *q = memchr(uri, '?', n);
    x->path_len = q ? (size_t)(q - uri) : n;

    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    x->ct = ci ? ci->socket_context : NULL;
    if (x->ct) {
        atomic_store_explicit(&x->ct->since_ms, tc_mono_coarse_ms(), memory_order_relaxed);
        atomic_store_explicit(&x->ct->phase, PH_RECEIVING, memory_order_release);
    }
    atomic_fetch_add_explicit(&s->n_in_flight, 1, memory_order_relaxed);
    return x;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c;
    tc_http_server *s = cls;
    tc_http_exchange *x = *con_cls;
    if (x == NULL)
        return;
    *con_cls = NULL;
    if (s->cfg.on_done) {
        /* Anything but RESPONDED: no response went out, and a worker may still be
         * filling this one in: the hook must not read it. */
        int status = 0;
        int st = atomic_load_explicit(&x->state, memory_order_acquire);
        if (st == X_RESPONDED || (st == X_CUT && x->cut_sent)) {
            status = x->sent_status;
            x->complete = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
            x->foreign = st == X_CUT; /* the server's 503: x's response fields are a worker's */
        } else {
            x->no_response = true;
        }
        s->cfg.on_done(s->cfg.ctx, x, status, tc_mono_us() - x->t0_us);
    }
    if (x->ct) {
        atomic_store_explicit(&x->ct->since_ms, tc_mono_coarse_ms(), memory_order_relaxed);
        atomic_store_explicit(&x->ct->phase, PH_IDLE, memory_order_release);
    }
    atomic_fetch_sub_explicit(&s->n_in_flight, 1, memory_order_relaxed);
    exchange_release(x);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    tc_http_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_track *t = calloc(1, sizeof *t);
        if (t == NULL)
            return; /* served, but without the watchdog */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        t->fd = ci ? ci->connect_fd : -1;
        peer_text(c, t->addr);
        atomic_init(&t->phase, PH_IDLE);
        atomic_init(&t->since_ms, tc_mono_coarse_ms());
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        uint8_t fam;
        uint64_t key;
        pthread_mutex_lock(&s->conns_lock);
        if (ai != NULL && addr_key_of(ai->client_addr, &fam, &key) && addr_add(s, fam, key))
            t->afam = fam, t->akey = key;
        t->born = s->accepted++;
        t->next = s->conns;
        if (s->conns)
            s->conns->prev = t;
        s->conns = t;
        int64_t open = atomic_fetch_add_explicit(&s->n_connections, 1, memory_order_relaxed) + 1;
        if (open >= s->shed_at) /* make room now rather than at the next tick */
            tc_cond_signal(&s->wd_cond);
        pthread_mutex_unlock(&s->conns_lock);
        *socket_context = t;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_track *t = *socket_context;
        if (t == NULL)
            return;
        pthread_mutex_lock(&s->conns_lock);
        if (t->prev)
            t->prev->next = t->next;
        else
            s->conns = t->next;
        if (t->next)
            t->next->prev = t->prev;
        if (t->afam != 0)
            addr_remove(s, t->afam, t->akey);
        atomic_fetch_sub_explicit(&s->n_connections, 1, memory_order_relaxed);
        pthread_mutex_unlock(&s->conns_lock);
        free(t);
        *socket_context = NULL;
    }
}

/* Content-Length as sent, or -1 when absent or not a plain decimal number
 * (libmicrohttpd has already refused a malformed one). */
static long long content_length(tc_http_exchange *x)
{
    const char *v = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Content-Length");
    if (v == NULL)
        return -1;
    while (*v == ' ' || *v == '\t')
        v++;
    unsigned long long n = 0;
    const char *p = v;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (unsigned long long)(LLONG_MAX / 10 - 1))
            return LLONG_MAX; /* absurd: certainly over any limit */
        n = n * 10 + (unsigned)(*p - '0');
    }
    if (p == v)
        return -1;
    return (long long)n;
}

/* How much of a body without Content-Length we read and drop past its limit
 * before giving up on answering 413 (libmicrohttpd 0.9.75 cannot queue a
 * response before the whole body is in). */
static size_t discard_cap(const tc_http_exchange *x)
{
    if (x->body_limit > SIZE_MAX / 4)
        return SIZE_MAX;
    size_t cap = x->body_limit * 4;
    return cap > DISCARD_MIN ? cap : DISCARD_MIN;
}

/* Framing checks libmicrohttpd 0.9.75 does not make (seen: it serves two
 * different Content-Length values by taking the first, Content-Length beside
 * chunked, "Name : value", HTTP/1.1 without Host, Transfer-Encoding in HTTP/1.0
 * or twice, obs-fold, a NUL inside a value — "Bearer <token>\0junk" is read as
 * "Bearer <token>" — and it waits forever for the end of a body in a transfer
 * coding it does not know). Behind a proxy that reads these differently, each
 * is a request-smuggling door; RFC 9112 says 400 (501 for an unknown coding).
 *
 * The head as sent is gone by the first handler call, but libmicrohttpd parses
 * it in place: the request line and the header lines stay in its read buffer,
 * each line end (CRLF or LF) and each header's colon overwritten with NUL, and
 * the header list points into that buffer, in order. So the bytes between the
 * first header and the end of the head (MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE
 * counts from the method) must be exactly: name, NUL, spaces or tabs, value,
 * one or two NULs, the next name... and two to four NULs at the end. A NUL sent
 * inside a value leaves bytes that no header accounts for; an obs-fold line
 * leaves its continuation in the buffer and moves the name it was appended to
 * (0.9.75 appends a continuation to the header's NAME) out of it. Anything the
 * walk does not expect is refused: if a libmicrohttpd update parsed otherwise,
 * every request with a header would be refused, loudly, never a bad one let
 * through (tests/integration/http/server.c: test_framing_leniency proves both
 * directions). Every read stays inside [method, method + header size).
 * What it cannot see: a NUL right before a bare-LF line end ("v\0\n" reads
 * like "v\r\n"); docs/http.md says what nginx in front does about it. */
typedef struct head_walk {
    const char *lo, *hi; /* the head: [method, method + header size) */
    const char *at;      /* where the next header's name must begin; NULL: first */
    bool bad;            /* the bytes are not what the parsed headers account for */
    bool bad_name;       /* a name that is not a token */
    int host, clen, te;
    const char *te_value;
} head_walk;

static bool in_head(const head_walk *w, const char *p, size_t n)
{
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)w->lo, hi = (uintptr_t)w->hi;
    return a >= lo && a <= hi && n <= hi - a;
}

static enum MHD_Result walk_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    head_walk *w = cls;
    if (value == NULL)
        value = "", value_size = 0;
    if (key_size == 0)
        w->bad_name = true;
    for (size_t i = 0; i < key_size; i++)
        if (!is_tchar((unsigned char)key[i]))
            w->bad_name = true;
    if (strcasecmp(key, "Host") == 0)
        w->host++;
    else if (strcasecmp(key, "Content-Length") == 0)
        w->clen++;
    else if (strcasecmp(key, "Transfer-Encoding") == 0)
        w->te++, w->te_value = value;
    /* field-value: visible bytes, obs-text, spaces and tabs; no other control byte
     * (a CR alone, which libmicrohttpd keeps) */
    for (size_t i = 0; i < value_size; i++) {
        unsigned char ch = (unsigned char)value[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            w->bad = true;
    }
    if (w->bad)
        return MHD_NO;
    /* where the previous line ended: one NUL (LF) or two (CRLF), then this name */
    if (w->at == NULL) {
        if (!in_head(w, key, 1))
            goto bad;
    } else if (!((key == w->at + 1 && in_head(w, w->at, 1)) ||
                 (key == w->at + 2 && in_head(w, w->at, 2) && w->at[1] == '\0'))) {
        goto bad;
    }
    /* name, its colon (now NUL), the white space libmicrohttpd skipped, the value */
    if (!in_head(w, key, key_size + 1) || key[key_size] != '\0')
        goto bad;
    const char *p = key + key_size + 1;
    while (in_head(w, p, 1) && (*p == ' ' || *p == '\t') && p != value)
        p++;
    if (p != value || !in_head(w, value, value_size + 1) || value[value_size] != '\0')
        goto bad;
    w->at = value + value_size; /* the line end's first NUL */
    return MHD_YES;
bad:
    w->bad = true;
    return MHD_NO;
}

/* 0, or the status the request's framing earns: 400, or 501 for a transfer
 * coding other than chunked. */
static int request_framing_status(tc_http_exchange *x, const char *version)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(x->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (ci == NULL || x->method == NULL)
        return 400;
    head_walk w = {.lo = x->method, .hi = x->method + ci->header_size};
    MHD_get_connection_values_n(x->conn, MHD_HEADER_KIND, walk_header, &w);
    if (!w.bad && w.at != NULL) { /* after the last value: its line end and the empty line */
        size_t nul = 0;
        for (const char *p = w.at; p < w.hi && *p == '\0'; p++)
            nul++;
        w.bad = nul < 2 || nul > 4 || w.at + nul != w.hi;
    }
    if (w.bad || w.bad_name || w.host > 1 || w.clen > 1 || (w.clen && w.te))
        return 400;
    bool http10 = strcmp(version, MHD_HTTP_VERSION_1_0) == 0;
    if (w.host == 0 && !http10)
        return 400;
    if (w.te == 0)
        return 0;
    if (http10 || w.te > 1)
        return 400; /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing */
    /* libmicrohttpd decodes a body only when the value is exactly "chunked" (any
     * case); for anything else it reads until the client closes. */
    if (strcasecmp(w.te_value, "chunked") == 0)
        return 0;
    return tc_http_te_status(w.te_value, strlen(w.te_value));
}

static int append_body(tc_http_exchange *x, const char *data, size_t n)
{
    if (!x->too_large && n > x->body_limit - x->body_len) {
        x->too_large = true;
        free(x->body); /* not needed any more */
        x->body = NULL;
        x->body_len = x->body_cap = 0;
    }
    if (x->too_large) {
        x->discarded += n;
        return 0;
    }
    if (x->body_len + n + 1 > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap * 2 : 1024;
        while (cap < x->body_len + n + 1)
            cap *= 2;
        if (cap > x->body_limit + 1)
            cap = x->body_limit + 1;
        char *b = realloc(x->body, cap);
        if (b == NULL)
            return -1;
        x->body = b;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, data, n);
    x->body_len += n;
    x->body[x->body_len] = '\0';
    return 0;
}

static enum MHD_Result run_handler(tc_http_exchange *x)
{
    tc_http_server *s = x->srv;
    if (x->ct)
        atomic_store_explicit(&x->ct->phase, PH_BUSY, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->n_requests, 1, memory_order_relaxed);
    x->in_handler = true;
    running_here = x;
    tc_http_action a = s->cfg.handler(s->cfg.ctx, x);
    running_here = NULL;
    x->in_handler = false;
    if (a == TC_HTTP_OFFLOAD) {
        if (x->blocking == NULL) {
            log_line(s, "handler returned OFFLOAD without tc_http_offload: 500");
            drop_body(x);
            x->status = 500;
            return send_response(x);
        }
        if (offload(x) == 0)
            return MHD_YES;
        return reject(x, 503);
    }
    return send_response(x);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    tc_http_server *s = cls;
    tc_http_exchange *x = *con_cls;
    if (x == NULL)
        return MHD_NO; /* out of memory in on_uri */
    (void)c;

    switch (atomic_load_explicit(&x->state, memory_order_acquire)) {
    case X_HEADERS: {
        x->url = url;
        x->method = method;
        x->method_id = method_id(method);
        int bad = request_framing_status(x, version);
        if (bad != 0)
            return reject(x, bad);
        x->body_limit =
            s->cfg.body_limit ? s->cfg.body_limit(s->cfg.ctx, x) : s->cfg.max_body_bytes;
        long long cl = content_length(x);
        if (cl >= 0 && (unsigned long long)cl > x->body_limit)
            return reject(x, 413); /* before a single body byte is read */
        if (cl > 0) {
            x->body = malloc((size_t)cl + 1);
            if (x->body == NULL)
                return MHD_NO;
            x->body_cap = (size_t)cl + 1;
            x->body[0] = '\0';
        }
        atomic_store_explicit(&x->state, X_BODY, memory_order_relaxed);
        return MHD_YES; /* the two-call pattern: never queue on the first call */
    }
    case X_BODY:
        if (*upload_data_size != 0) {
            if (append_body(x, upload_data, *upload_data_size) < 0)
                return MHD_NO;
            *upload_data_size = 0;
            if (x->too_large && x->discarded > discard_cap(x)) {
                log_line(s, "request body far over its limit: closing the connection");
                return MHD_NO;
            }
            return MHD_YES;
        }
        if (x->too_large)
            return reject(x, 413);
        return run_handler(x);
    case X_OFFLOADED:
        return MHD_YES; /* not expected: suspended connections are not called */
    case X_WORKER_DONE:
        return send_response(x);
    case X_CUT:
        if (x->cut_sent) /* not expected: the response is queued */
            return MHD_YES;
        return send_cut(x);
    default: /* X_RESPONDED: libmicrohttpd is consuming a body we refused */
        *upload_data_size = 0;
        return MHD_YES;
    }
}

/* ------------------------------------------------------------------------ */
/* Watchdog                                                                 */

static void *watchdog_main(void *arg)
{
    tc_http_server *s = arg;
    int idle = s->cfg.idle_timeout_ms, req = s->cfg.request_timeout_ms;
    int tick = (idle < req ? idle : req) / 4;
    if (tick < 10)
        tick = 10;
    if (tick > 250)
        tick = 250;
    pthread_mutex_lock(&s->conns_lock);
    while (!s->wd_stop) {
        bool crowded = atomic_load_explicit(&s->n_connections, memory_order_relaxed) >= s->shed_at;
        tc_cond_wait_ms(&s->wd_cond, &s->conns_lock, crowded && tick > 20 ? 20 : tick);
        if (s->wd_stop)
            break;
        uint64_t now = tc_mono_coarse_ms();
        int shed = shed_idle(s, now);
        uint64_t n = 0;
        if (shed > 0 && gate_due(&s->shed_gate, now, &n)) {
            char line[200];
            snprintf(line, sizeof line,
                     "%lld connections open, near the limit of %d: closed the %d idle "
                     "longest (%llu rounds since the last such line)",
                     (long long)atomic_load(&s->n_connections) + shed, s->cfg.max_connections, shed,
                     (unsigned long long)n);
            pthread_mutex_unlock(&s->conns_lock); /* the log hook may be slow */
            emit(s, line);
            pthread_mutex_lock(&s->conns_lock);
            if (s->wd_stop)
                break;
        }
        for (conn_track *t = s->conns; t; t = t->next) {
            if (t->killed || t->fd < 0)
                continue;
            int ph = atomic_load_explicit(&t->phase, memory_order_acquire);
            /* negative when the phase began after now was read */
            int64_t age = (int64_t)(now - atomic_load_explicit(&t->since_ms, memory_order_relaxed));
            if (ph == PH_IDLE && age > idle) {
                atomic_fetch_add_explicit(&s->n_idle, 1, memory_order_relaxed);
            } else if (ph == PH_RECEIVING && age > req) {
                atomic_fetch_add_explicit(&s->n_deadline, 1, memory_order_relaxed);
            } else {
                continue;
            }
            t->killed = true;
            shutdown(t->fd, SHUT_RDWR); /* libmicrohttpd sees the peer gone and closes */
        }
    }
    pthread_mutex_unlock(&s->conns_lock);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Start / stop                                                             */

void tc_http_config_init(tc_http_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->bind_address = "127.0.0.1";
    cfg->port = 8080;
    cfg->listen_backlog = 1024;
    cfg->event_threads = 1;
    cfg->workers = 8;
    cfg->queue_max = 256;
    cfg->max_connections = 4096;
    cfg->max_connections_per_addr = 0; /* a quarter of max_connections */
    cfg->idle_timeout_ms = 30000;
    cfg->request_timeout_ms = 10000;
    cfg->max_header_bytes = 32 * 1024;
    cfg->max_body_bytes = 1024 * 1024;
    cfg->retry_after_s = 1;
    cfg->stop_timeout_ms = 10000;
}

static int open_listener(const tc_http_config *cfg, int *port_out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, cfg->bind_address, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)cfg->port);
        len = sizeof *a4;
    } else if (inet_pton(AF_INET6, cfg->bind_address, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)cfg->port);
        len = sizeof *a6;
    } else {
        return TC_HTTP_EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return TC_HTTP_EBIND;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, cfg->listen_backlog) != 0) {
        close(fd);
        return TC_HTTP_EBIND;
    }
    len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        close(fd);
        return TC_HTTP_EBIND;
    }
    *port_out = ntohs(ss.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
    return fd;
}

static void stop_workers(tc_http_server *s)
{
    pthread_mutex_lock(&s->qlock);
    s->qclosed = true;
    tc_cond_broadcast(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    for (int i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i], NULL);
    s->nworkers = 0;
}

static void stop_watchdog(tc_http_server *s)
{
    tc_thread_stop(&s->watchdog, &s->conns_lock, &s->wd_cond, &s->wd_stop);
}

static void server_free(tc_http_server *s)
{
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    pthread_mutex_destroy(&s->qlock);
    tc_cond_destroy(&s->qcond);
    pthread_mutex_destroy(&s->conns_lock);
    tc_cond_destroy(&s->wd_cond);
    free(s->ring);
    free(s->workers);
    free(s->running);
    free(s->addr_tab);
    free(s->shed_buf);
    free(s);
}

tc_http_server *tc_http_start(const tc_http_config *cfg, int *err)
{
    int e = TC_HTTP_EINVAL;
    tc_http_server *s = NULL;
    if (cfg == NULL || cfg->handler == NULL || cfg->bind_address == NULL || cfg->port < 0 ||
        cfg->port > 65535 || cfg->event_threads < 1 || cfg->workers < 1 || cfg->queue_max < 1 ||
        cfg->max_connections < 1 || cfg->max_connections_per_addr < 0 || cfg->idle_timeout_ms < 1 ||
        cfg->request_timeout_ms < 1 || cfg->max_header_bytes < 1024 || cfg->stop_timeout_ms < 0 ||
        cfg->listen_backlog < 1)
        goto fail;
    e = TC_HTTP_ENOMEM;
    if ((s = calloc(1, sizeof *s)) == NULL)
        goto fail;
    s->cfg = *cfg;
    s->cfg.bind_address = NULL; /* not kept */
    s->listen_fd = -1;
    pthread_mutex_init(&s->qlock, NULL);
    tc_cond_init(&s->qcond);
    pthread_mutex_init(&s->conns_lock, NULL);
    tc_cond_init(&s->wd_cond);
    s->qcap = cfg->queue_max;
    s->ring = calloc((size_t)s->qcap, sizeof *s->ring);
    s->workers = calloc((size_t)cfg->workers, sizeof *s->workers);
    s->running = calloc((size_t)cfg->workers, sizeof *s->running);
    if (s->ring == NULL || s->workers == NULL || s->running == NULL)
        goto fail;

    /* a quarter of the slots per address by default; shed idle connections from
     * 1/16 below the limit down to 2/16 below it */
    int max = cfg->max_connections, per = cfg->max_connections_per_addr;
    if (per == 0)
        per = max / 4 > 0 ? max / 4 : 1;
    s->per_addr_max = per >= max ? INT_MAX : per;
    int headroom = max / 16 > 0 ? max / 16 : 1;
    s->shed_at = max - headroom;
    s->shed_to = max - 2 * headroom;
    if (s->shed_at < 1) /* a limit of 1: nothing to keep room for */
        s->shed_at = INT_MAX;
    s->shed_min_idle_ms =
        SHED_MIN_IDLE_MS < cfg->idle_timeout_ms / 2 ? SHED_MIN_IDLE_MS : cfg->idle_timeout_ms / 2;
    size_t slots = 16;
    while (slots < 2 * (size_t)max)
        slots *= 2;
    s->addr_mask = slots - 1;
    s->shed_cap = (size_t)max + 64; /* libmicrohttpd keeps to max */
    s->addr_tab = calloc(slots, sizeof *s->addr_tab);
    s->shed_buf = calloc(s->shed_cap, sizeof *s->shed_buf);
    if (s->addr_tab == NULL || s->shed_buf == NULL)
        goto fail;
    uint64_t start = 0; /* ids of two processes (or two runs) do not line up */
    if (getrandom(&start, sizeof start, 0) != (ssize_t)sizeof start)
        start = tc_mono_us() ^ ((uint64_t)getpid() << 40);
    atomic_init(&s->next_request_id, start);

    int fd = open_listener(cfg, &s->port);
    if (fd < 0) {
        e = fd;
        goto fail;
    }
    s->listen_fd = fd;

    e = TC_HTTP_ESTART;
    s->holders = 1; /* the owner: until tc_http_stop returns */
    for (; s->nworkers < cfg->workers; s->nworkers++) {
        s->holders++; /* the worker's own, dropped as it exits */
        if (pthread_create(&s->workers[s->nworkers], NULL, worker_main, s) != 0) {
            s->holders--;
            goto fail;
        }
    }
    if (tc_thread_start(&s->watchdog, watchdog_main, s) != 0)
        goto fail;

    /* libmicrohttpd's own timeout is a backstop (whole seconds, restarted by
     * activity); the watchdog enforces the real limits. */
    unsigned timeout_s = (unsigned)((cfg->idle_timeout_ms + 999) / 1000) + 1;
    struct MHD_OptionItem opts[16];
    int n = 0;
#define OPT(o, v, p) opts[n++] = (struct MHD_OptionItem){(o), (intptr_t)(v), (p)}
    OPT(MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, s); /* first, or MHD logs itself */
    OPT(MHD_OPTION_LISTEN_SOCKET, fd, NULL);
    if (cfg->event_threads > 1) /* a pool of 1 is refused with a warning */
        OPT(MHD_OPTION_THREAD_POOL_SIZE, cfg->event_threads, NULL);
    OPT(MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, NULL);
    OPT(MHD_OPTION_CONNECTION_TIMEOUT, timeout_s, NULL);
    OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->max_header_bytes, NULL);
    OPT(MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s);
    OPT(MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s);
    OPT(MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, s);
    OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
    s->mhd = MHD_start_daemon(
        MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, on_accept,
        s, on_access, s, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (s->mhd == NULL)
        goto fail;
    if (err)
        *err = 0;
    return s;

fail:
    if (s) {
        stop_watchdog(s);
        stop_workers(s);
        server_free(s);
    }
    if (err)
        *err = e;
    return NULL;
}

int tc_http_port(const tc_http_server *s)
{
    return s->port;
}

/* The stop deadline passed with requests in flight: nothing more runs. Every
 * offloaded exchange is answered 503 (send_cut) on its event thread: queued ones
 * and unparked ones waiting for a worker (their worker-side reference is dropped
 * here: no worker will run them), and those a worker is running or that are
 * parked (their worker, or their unpark, drops it later). Each suspended
 * connection is resumed here, under qlock, so MHD_stop_daemon meets none. */
static void cut_offloaded(tc_http_server *s)
{
    pthread_mutex_lock(&s->qlock);
    s->qclosed = true; /* offload() refuses from here on */
    s->cut = true;
    for (; s->qcount > 0; s->qcount--) {
        tc_http_exchange *x = s->ring[s->qhead];
        s->qhead = (s->qhead + 1) % s->qcap;
        int was = atomic_exchange(&x->state, X_CUT);
        TC_ASSERT(was == X_OFFLOADED); /* nobody else moves a queued one */
        MHD_resume_connection(x->conn);
        exchange_release(x); /* libmicrohttpd's reference keeps it */
    }
    while (s->ready != NULL) {
        tc_http_exchange *x = s->ready;
        s->ready = x->ready_next;
        int was = atomic_exchange(&x->state, X_CUT);
        TC_ASSERT(was == X_OFFLOADED);
        MHD_resume_connection(x->conn);
        exchange_release(x);
    }
    s->ready_tail = NULL;
    for (int i = 0; i < s->cfg.workers; i++) { /* a worker publishes under qlock: no race */
        tc_http_exchange *x = s->running[i];
        int st = X_OFFLOADED;
        if (x != NULL &&
            atomic_compare_exchange_strong(&x->state, &st, X_CUT)) /* else it is done */
            MHD_resume_connection(x->conn);
    }
    for (tc_http_exchange *x = s->parked; x != NULL; x = x->park_next) {
        int st = X_OFFLOADED;
        if (atomic_compare_exchange_strong(&x->state, &st, X_CUT))
            MHD_resume_connection(x->conn);
    }
    tc_cond_broadcast(&s->qcond); /* idle workers exit */
    pthread_mutex_unlock(&s->qlock);
}

int tc_http_stop(tc_http_server *s, int *running)
{
    if (running != NULL)
        *running = 0;
    if (s == NULL)
        return 0;
    atomic_store(&s->stopping, 1);
    MHD_socket lfd = MHD_quiesce_daemon(s->mhd);
    if (lfd != MHD_INVALID_SOCKET && lfd == s->listen_fd)
        close(s->listen_fd); /* ours again: connects are refused from here on */
    else
        log_line(s, "cannot quiesce: the listener stays open until the end of the stop");
    s->listen_fd = -1; /* closed above, or libmicrohttpd closes it in MHD_stop_daemon */
    tc_deadline until = tc_deadline_in_ms(s->cfg.stop_timeout_ms);
    while (atomic_load(&s->n_in_flight) > 0 && !tc_deadline_expired(until))
        tc_sleep_ms(5);
    int64_t cut = atomic_load(&s->n_in_flight);
    if (cut <= 0) {
        stop_workers(s); /* every suspended connection is resumed by its worker */
    } else {
        cut_offloaded(s);
        /* the workers still inside a blocking function run on, detached: they
         * hold s (holders) and drop their exchange when they return */
        for (int i = 0; i < s->nworkers; i++)
            pthread_detach(s->workers[i]);
        s->nworkers = 0;
        /* a moment for the event threads to send the 503s; whatever is still
         * going after it (a slow upload, a slow reader) is closed below */
        tc_deadline grace = tc_deadline_in_ms(CUT_GRACE_MS);
        while (atomic_load(&s->n_in_flight) > 0 && !tc_deadline_expired(grace))
            tc_sleep_ms(5);
    }
    MHD_stop_daemon(s->mhd);
    stop_watchdog(s);
    pthread_mutex_lock(&s->qlock);
    int still = s->nparked;
    for (int i = 0; i < s->cfg.workers; i++)
        still += s->running[i] != NULL;
    pthread_mutex_unlock(&s->qlock);
    if (running != NULL)
        *running = still;
    if (still > 0)
        log_line(s,
                 "stop: %lld request(s) cut at the deadline; %d blocking function(s) still "
                 "running or parked: not waited for",
                 (long long)cut, still);
    server_release(s); /* the owner's hold: the last worker frees s if any still runs */
    return cut > 0 ? (int)cut : 0;
}

void tc_http_get_stats(const tc_http_server *s, tc_http_stats *o)
{
    tc_http_server *m = (tc_http_server *)s; /* atomics: loads only */
    o->requests = atomic_load_explicit(&m->n_requests, memory_order_relaxed);
    o->offloaded = atomic_load_explicit(&m->n_offloaded, memory_order_relaxed);
    o->parked = atomic_load_explicit(&m->n_parked, memory_order_relaxed);
    o->rejected_busy = atomic_load_explicit(&m->n_busy, memory_order_relaxed);
    o->rejected_large = atomic_load_explicit(&m->n_large, memory_order_relaxed);
    o->rejected_bad = atomic_load_explicit(&m->n_bad, memory_order_relaxed);
    o->closed_deadline = atomic_load_explicit(&m->n_deadline, memory_order_relaxed);
    o->closed_idle = atomic_load_explicit(&m->n_idle, memory_order_relaxed);
    o->refused_addr = atomic_load_explicit(&m->n_addr_refused, memory_order_relaxed);
    o->closed_shed = atomic_load_explicit(&m->n_shed, memory_order_relaxed);
    int64_t c = atomic_load_explicit(&m->n_connections, memory_order_relaxed);
    int64_t f = atomic_load_explicit(&m->n_in_flight, memory_order_relaxed);
    o->connections = c > 0 ? (uint64_t)c : 0;
    o->in_flight = f > 0 ? (uint64_t)f : 0;
    pthread_mutex_lock(&m->qlock);
    o->queued = (uint64_t)m->qcount;
    pthread_mutex_unlock(&m->qlock);
}

/*
 * The tRPC v11 HTTP wire protocol (JSON, no transformer), as pure functions:
 * bytes and strings in, a result out; no I/O, no clock, no global state. Each
 * reader of untrusted bytes here has a fuzz target (fuzz/trpc_*.c).
 *
 * It is for: turning a request (method, the path after "/trpc/", raw query,
 * Content-Type, body) into a list of calls {procedure path, JSON input}, the
 * checks tRPC makes once each procedure's kind is known (405, mixed batch), and
 * writing responses: {"result":{"data":...}}, the error shape, batch arrays and
 * the batch HTTP status. It is not for: procedures, auth, input validation,
 * cache headers, or the HTTP server (server.h); nothing here knows of them.
 *
 * Behaviour follows tRPC v11's server (packages/server/src/unstable-core-do-not-
 * import/http/contentType.ts, resolveResponse.ts, getHTTPStatusCode.ts, and
 * error/getErrorShape). Where this file differs, on purpose:
 *   - malformed JSON input is PARSE_ERROR (v11 reports the JSON.parse failure as
 *     BAD_REQUEST; both are HTTP 400), and it is a request-level error (one
 *     error object, which @trpc/client's batch link spreads over every call);
 *   - an empty POST body is "no input" (what @trpc/client sends for a mutation
 *     without input);
 *   - a batch input object may only have keys "0".."n-1" (BAD_REQUEST otherwise;
 *     v11 ignores extra keys); a missing key is "no input" for that call, as in
 *     v11 (the client drops undefined inputs when it stringifies);
 *   - limits: calls per batch, input bytes, JSON nesting depth (BAD_REQUEST,
 *     PAYLOAD_TOO_LARGE), a malformed %-escape or invalid UTF-8 in the path
 *     (BAD_REQUEST; v11 answers 500 there); JSON that jansson refuses and JavaScript
 *     takes is PARSE_ERROR: strings with \u0000, invalid UTF-8 after %-decoding,
 *     integers past 64 bits, reals that overflow a double;
 *   - reals are written with 17 significant digits (0.1 -> 0.10000000000000001;
 *     the same double, not JavaScript's shortest form);
 *   - a method other than GET/HEAD/POST is METHOD_NOT_SUPPORTED for the request.
 *
 * Errors: functions return 0 or a negative TC_HTTP_E* code (error.h). A request
 * that breaks the protocol is TC_HTTP_EPROTO with the tRPC error in the result.
 */
#ifndef TC_HTTP_TRPC_H
#define TC_HTTP_TRPC_H

#include <stddef.h>

#include <jansson.h>

#include "http/error.h"

/* tRPC error codes (TRPC_ERROR_CODES_BY_KEY and JSONRPC2_TO_HTTP_CODE). */
typedef enum tc_trpc_code {
    TC_TRPC_OK = 0,                 /* not an error */
    TC_TRPC_PARSE_ERROR,            /* -32700 400 */
    TC_TRPC_BAD_REQUEST,            /* -32600 400 */
    TC_TRPC_UNAUTHORIZED,           /* -32001 401 */
    TC_TRPC_FORBIDDEN,              /* -32003 403 */
    TC_TRPC_NOT_FOUND,              /* -32004 404 */
    TC_TRPC_METHOD_NOT_SUPPORTED,   /* -32005 405 */
    TC_TRPC_TIMEOUT,                /* -32008 408 */
    TC_TRPC_CONFLICT,               /* -32009 409 */
    TC_TRPC_PRECONDITION_FAILED,    /* -32012 412 */
    TC_TRPC_PAYLOAD_TOO_LARGE,      /* -32013 413 */
    TC_TRPC_UNSUPPORTED_MEDIA_TYPE, /* -32015 415 */
    TC_TRPC_UNPROCESSABLE_CONTENT,  /* -32022 422 */
    TC_TRPC_TOO_MANY_REQUESTS,      /* -32029 429 */
    TC_TRPC_CLIENT_CLOSED_REQUEST,  /* -32099 499 */
    TC_TRPC_INTERNAL_SERVER_ERROR,  /* -32603 500 */
    TC_TRPC_NOT_IMPLEMENTED,        /* -32603 501 */
    TC_TRPC_BAD_GATEWAY,            /* -32603 502 */
    TC_TRPC_SERVICE_UNAVAILABLE,    /* -32603 503 */
    TC_TRPC_GATEWAY_TIMEOUT,        /* -32603 504 */
    TC_TRPC_CODE_COUNT
} tc_trpc_code;

const char *tc_trpc_code_name(tc_trpc_code c); /* "NOT_FOUND"; NULL when out of range */
int tc_trpc_code_rpc(tc_trpc_code c);          /* -32004; 0 when out of range */
int tc_trpc_code_http(tc_trpc_code c);         /* 404; 500 when out of range */
/* The code named name ("NOT_FOUND"), or TC_TRPC_OK when there is none. */
tc_trpc_code tc_trpc_code_from_name(const char *name);

/* A procedure's kind, as the caller's procedure table knows it. */
typedef enum tc_trpc_kind {
    TC_TRPC_UNKNOWN = 0, /* no such procedure */
    TC_TRPC_QUERY,
    TC_TRPC_MUTATION,
} tc_trpc_kind;

typedef enum tc_trpc_method {
    TC_TRPC_GET = 0, /* GET and HEAD: queries */
    TC_TRPC_POST,    /* mutations */
} tc_trpc_method;

/* Procedures in one batch: the default of max_calls, and what a caller's per-call
 * arrays must hold when it keeps that default. */
#define TC_TRPC_BATCH_MAX 64

typedef struct tc_trpc_limits {
    size_t max_calls;       /* procedures in one batch; default TC_TRPC_BATCH_MAX */
    size_t max_input_bytes; /* JSON text of the input (query or body); default 1 MiB */
    int max_depth;          /* nesting of arrays/objects in the input; default 64 */
} tc_trpc_limits;

void tc_trpc_limits_init(tc_trpc_limits *l);

/* The HTTP request as the caller has it. Nothing is modified or kept. */
typedef struct tc_trpc_http {
    const char *method; /* "GET", "HEAD", "POST", ... (required) */
    const char *path;   /* raw, still %-encoded, after "/trpc/": "user.me" or "a,b" */
    size_t path_len;
    const char *query; /* raw query after '?', or NULL */
    size_t query_len;
    const char *content_type; /* the request's Content-Type, or NULL */
    const char *body;         /* POST body, or NULL */
    size_t body_len;
} tc_trpc_http;

typedef struct tc_trpc_call {
    const char *path; /* decoded procedure path, NUL-terminated */
    json_t *input;    /* NULL when absent (undefined in JS); a borrowed reference */
} tc_trpc_call;

/* A parsed request. All memory belongs to it: paths and inputs are valid until
 * tc_trpc_request_free (json_incref an input to keep it longer). */
typedef struct tc_trpc_request {
    tc_trpc_method method;
    int batch; /* ?batch=1 */
    size_t ncalls;
    tc_trpc_call *calls;

    /* when parse returned TC_HTTP_EPROTO: */
    tc_trpc_code error;
    char message[256];
    const char *error_path; /* the procedure path for data.path, or NULL */

    /* private */
    char *paths_;
    json_t *root_;
} tc_trpc_request;

/* Parses in into *req (overwritten; free it with tc_trpc_request_free whatever
 * the result). lim may be NULL (defaults). Returns 0; TC_HTTP_EPROTO when the
 * request breaks the protocol (req->error, req->message, and req->calls as far
 * as they were parsed — paths are parsed before inputs); TC_HTTP_ENOMEM;
 * TC_HTTP_EINVAL for a NULL argument or method. */
int tc_trpc_parse(tc_trpc_request *req, const tc_trpc_http *in, const tc_trpc_limits *lim);

/* Frees what the request holds and zeroes it. NULL is a no-op. */
void tc_trpc_request_free(tc_trpc_request *req);

/* tRPC's rule once each call's kind is known (kinds has req->ncalls entries):
 * known procedures of both kinds in one request is BAD_REQUEST for the whole
 * request ("Cannot mix procedure types in call: query, mutation"; written to
 * msg if msg_cap > 0). Returns TC_TRPC_OK or TC_TRPC_BAD_REQUEST. */
tc_trpc_code tc_trpc_check_kinds(const tc_trpc_request *req, const tc_trpc_kind *kinds, char *msg,
                                 size_t msg_cap);

/* The verdict for one call: NOT_FOUND for an unknown procedure, METHOD_NOT_
 * SUPPORTED when the method does not fit the kind (a query by POST, a mutation
 * by GET), else TC_TRPC_OK. When a response carries METHOD_NOT_SUPPORTED, send
 * an Allow header with tc_trpc_allow(kind). */
tc_trpc_code tc_trpc_check_call(const tc_trpc_request *req, tc_trpc_kind kind);

/* Writes tRPC's message for a verdict of tc_trpc_check_call on call i into buf
 * (NUL-terminated, truncated to cap): `No procedure found on path "x"`,
 * `Unsupported POST-request to query procedure at path "x"`. Returns buf. */
const char *tc_trpc_call_message(char *buf, size_t cap, const tc_trpc_request *req, size_t i,
                                 tc_trpc_kind kind, tc_trpc_code verdict);

/* The Allow header value for a 405: "GET, HEAD" for a query, "POST" for a
 * mutation, "GET, HEAD, POST" when unknown. Static string. */
const char *tc_trpc_allow(tc_trpc_kind kind);

/* --------------------------------------------------------------------------
 * Responses.
 *
 * A writer builds one response body: a single result or error, or a batch
 * array in request order, and computes the HTTP status as tRPC does
 * (getHTTPStatusCode): every item's status (200 for a result, the code's status
 * for an error) — one distinct status is the response's, more than one is 207.
 */
typedef struct tc_trpc_out {
    char *buf;
    size_t len, cap;
    int batch;
    size_t items;
    int status; /* common status so far; 0 before the first item, 207 once mixed */
    int err;    /* sticky: the first failure */
} tc_trpc_out;

void tc_trpc_out_init(tc_trpc_out *o, int batch);
/* {"result":{"data":<data>}}; data NULL is undefined: {"result":{}}. */
int tc_trpc_out_data(tc_trpc_out *o, const json_t *data);
/* The same with data already serialized (e.g. bytes from the cache), copied as
 * they are, not parsed: the caller vouches that they are one JSON value. len 0
 * is undefined. */
int tc_trpc_out_data_raw(tc_trpc_out *o, const char *json, size_t len);
/* {"error":{"message":...,"code":-32004,"data":{"code":"NOT_FOUND","httpStatus":404,
 * "path":"user.me"}}}. message NULL is the code's name (as TRPCError does);
 * path NULL leaves data.path out. */
int tc_trpc_out_error(tc_trpc_out *o, tc_trpc_code code, const char *message, const char *path);
/* Hands the body over: *body is malloc'd (free() it), NUL-terminated, *len
 * without the NUL; *status the HTTP status. The writer is reset (reusable).
 * A non-batch writer needs exactly one item. On failure nothing is handed over
 * and the writer is freed. */
int tc_trpc_out_finish(tc_trpc_out *o, char **body, size_t *len, int *status);
/* Frees a writer that will not be finished. NULL is a no-op. */
void tc_trpc_out_free(tc_trpc_out *o);

/* The fast path for a cached single query: the body is
 * TC_TRPC_DATA_PREFIX + data + TC_TRPC_DATA_SUFFIX, the data bytes copied, not
 * parsed (len 0: {"result":{}}). wrap_data_size is the body's length;
 * wrap_data_into writes it (no NUL) to dst, which has that many bytes;
 * wrap_data returns it malloc'd (free()), NUL-terminated, or NULL when out of
 * memory. The prefix and suffix are there for callers that send iovecs. */
#define TC_TRPC_DATA_PREFIX "{\"result\":{\"data\":"
#define TC_TRPC_DATA_SUFFIX "}}"
size_t tc_trpc_wrap_data_size(size_t len);
void tc_trpc_wrap_data_into(char *dst, const char *data, size_t len);
char *tc_trpc_wrap_data(const char *data, size_t len, size_t *out_len);

/* One error response body (not a batch): malloc'd, NUL-terminated, or NULL when
 * out of memory. *status (may be NULL) gets the code's HTTP status. */
char *tc_trpc_error_body(tc_trpc_code code, const char *message, const char *path, size_t *len,
                         int *status);

/* The response for a request tc_trpc_parse refused: one error object with the
 * request's code, message and error_path. Same ownership as tc_trpc_error_body. */
char *tc_trpc_request_error_body(const tc_trpc_request *req, size_t *len, int *status);

#endif

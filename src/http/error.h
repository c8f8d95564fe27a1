/*
 * Error codes of the HTTP layer (src/http/): the server wrapper and the tRPC
 * protocol functions. One convention with the cache engine: 0 is success, a
 * failure is a negative code. The two generic codes share the cache's values
 * (TC_ENOMEM, TC_EINVAL in include/tiercache/cache.h); the HTTP layer's own codes
 * live in -100..-199 so that one strerror can name any code of either layer.
 *
 * Not for HTTP statuses or tRPC error codes: those are protocol values that a
 * response carries (see server.h, trpc.h), not C failures.
 */
#ifndef TC_HTTP_ERROR_H
#define TC_HTTP_ERROR_H

enum {
    TC_HTTP_OK = 0,
    TC_HTTP_ENOMEM = -1,    /* out of memory (== TC_ENOMEM) */
    TC_HTTP_EINVAL = -2,    /* invalid argument (== TC_EINVAL) */
    TC_HTTP_EBIND = -100,   /* could not create, bind or listen on the socket */
    TC_HTTP_ESTART = -101,  /* libmicrohttpd or a thread failed to start */
    TC_HTTP_ESTATE = -102,  /* call not allowed now (e.g. offload from a worker) */
    TC_HTTP_EPROTO = -103,  /* the peer broke the protocol; the details are in the result */
    TC_HTTP_ETOOBIG = -104, /* a size limit was reached */
};

/* A static string naming err (any code of this layer or of the cache). */
const char *tc_http_strerror(int err);

#endif

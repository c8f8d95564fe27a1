/*
 * tc_http_strerror: names the HTTP layer's error codes (error.h), and the cache
 * engine's through tc_strerror. Nothing else lives here.
 */
#include "http/error.h"

#include "tiercache/cache.h"

const char *tc_http_strerror(int err)
{
    switch (err) {
    case TC_HTTP_EBIND:
        return "cannot bind or listen";
    case TC_HTTP_ESTART:
        return "server failed to start";
    case TC_HTTP_ESTATE:
        return "not allowed in this state";
    case TC_HTTP_EPROTO:
        return "protocol error";
    case TC_HTTP_ETOOBIG:
        return "size limit reached";
    default:
        return tc_strerror(err);
    }
}

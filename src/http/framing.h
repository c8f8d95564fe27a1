/*
 * Request framing fields, as pure functions: a field value in, a verdict out;
 * no I/O, no global state. Fuzzed by fuzz/framing.c.
 *
 * It is for: deciding what a request's Transfer-Encoding earns before any body
 * byte is read (server.c calls it from the first handler call). It is not for:
 * Content-Length (server.c, beside libmicrohttpd's own parse), or the header
 * block's bytes (server.c walks them where libmicrohttpd left them).
 */
#ifndef TC_HTTP_FRAMING_H
#define TC_HTTP_FRAMING_H

#include <stddef.h>

/* The status a request with this Transfer-Encoding value (n bytes, as
 * libmicrohttpd stores it: leading white space dropped) earns:
 *   0    exactly "chunked" in any case: the one coding libmicrohttpd decodes;
 *   501  a well-formed list whose last coding is chunked, once, after codings
 *        the server does not implement ("gzip, chunked"; RFC 9112 6.1);
 *   400  anything else: chunked not last or twice, no coding, a coding that is
 *        not a token, "chunked" with parameters or white space libmicrohttpd
 *        would not read as chunked (it would then wait for the client to close). */
int tc_http_te_status(const char *v, size_t n);

#endif

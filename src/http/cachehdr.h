/*
 * THE place that decides the caching headers of a response, from the class of
 * its route: Cache-Control, Vary, ETag, Last-Modified, Cache-Status (RFC 9211)
 * and the shared cache's tag header (xkey / Surrogate-Key / Cache-Tag); and
 * the conditional-request step (304 / 412) that goes with them, evaluated
 * after authentication and before any body is built.
 *
 * It is for: the table below and applying it to a response. It is not for:
 * knowing routes, procedures or sessions (the app classifies a response and
 * computes its ETag), or parsing precondition fields (cond.h).
 *
 *   class          Cache-Control                                          Vary
 *   STATIC         public, max-age=31536000, immutable                    Accept-Encoding *
 *   QUERY_PRIVATE  private, max-age=30                                    Authorization, Cookie
 *   QUERY_SWR      private, max-age=30, stale-while-revalidate=<server's> Authorization, Cookie
 *   QUERY_PUBLIC   public, max-age=60, s-maxage=300,                      -
 *                  stale-while-revalidate=600
 *   NO_STORE       no-store                                               -
 *   PAGE           no-cache                                               -
 *   PAGE_PRIVATE   private, no-cache                                      Authorization, Cookie
 *   ERROR          no-store                                               -
 *   (* only when the asset has a gzip variant)
 *
 * Nothing authenticated is ever public, s-maxage or must-revalidate; the
 * tag header is sent only on classes a shared cache may store (STATIC,
 * QUERY_PUBLIC, PAGE). docs/http-caching.md gives the reasons for each number.
 *
 * CDN-Cache-Control (RFC 9213), only when the app gives a CDN max-age (it does
 * when purges reach the shared cache): QUERY_PUBLIC and PAGE get
 * "public, max-age=<N>, stale-while-revalidate=600", so a CDN that is purged
 * by tag keeps them longer than browsers and other caches; no other class ever
 * gets one (STATIC's Cache-Control already says a year to everyone).
 */
#ifndef TC_HTTP_CACHEHDR_H
#define TC_HTTP_CACHEHDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/server.h"

typedef enum tc_route_class {
    TC_ROUTE_STATIC = 0,    /* fingerprinted asset: /static/name.HASH.ext */
    TC_ROUTE_QUERY_PRIVATE, /* authenticated API query */
    TC_ROUTE_QUERY_SWR,     /* authenticated query served stale-while-revalidate (dashboard) */
    TC_ROUTE_QUERY_PUBLIC,  /* public API query (blog) */
    TC_ROUTE_NO_STORE,      /* mutation, login/logout, webhook, health check */
    TC_ROUTE_PAGE,          /* server-rendered HTML, the same for everyone */
    TC_ROUTE_PAGE_PRIVATE,  /* server-rendered HTML of the signed-in user */
    TC_ROUTE_ERROR,         /* an error or a session-dependent redirect; a 404 under /static/ */
    TC_ROUTE_CLASS_COUNT
} tc_route_class;

/* The numbers (seconds). Browsers cannot be purged, shared caches can (tag purge). */
#define TC_STATIC_MAX_AGE 31536000 /* one year: the URL changes when the bytes do */
#define TC_PRIVATE_MAX_AGE 30      /* authenticated queries, in the browser only */
#define TC_PUBLIC_MAX_AGE 60       /* public queries in browsers: an edit shows within a minute */
#define TC_PUBLIC_S_MAXAGE 300     /* in shared caches, purged by tag on every change */
#define TC_PUBLIC_SWR 600          /* serve stale while one refresh runs */
#define TC_CDN_MAX_AGE                                                                             \
    3600 /* public responses in a CDN that is purged by tag (the                                   \
            default with --purge-url): a lost purge heals in an hour */

const char *tc_route_class_name(tc_route_class cls); /* "static", "query-private", ... */

/* The Cache-Control value of a class into out (cap >= 96 is always enough);
 * swr_s is the server's stale window, used by TC_ROUTE_QUERY_SWR (0: none).
 * Returns out. */
const char *tc_cachehdr_cache_control(tc_route_class cls, uint32_t swr_s, char *out, size_t cap);

/* The Vary value of a class, or NULL. encodings: the resource has
 * content-coded variants (Accept-Encoding). Static string. */
const char *tc_cachehdr_vary(tc_route_class cls, bool encodings);

/* true for the classes a shared cache may store (and which carry tags). */
bool tc_cachehdr_shared(tc_route_class cls);

/* The CDN-Cache-Control value of a class into out (cap >= 96 is always
 * enough), or NULL when the class gets none: anything but QUERY_PUBLIC and
 * PAGE, or max_age_s 0 (no CDN is purged: it must follow Cache-Control). */
const char *tc_cachehdr_cdn_cache_control(tc_route_class cls, uint32_t max_age_s, char *out,
                                          size_t cap);

#define TC_ETAG_MAX 32
/* A strong entity tag from a 64-bit hash: "\"<16 hex><suffix>\"" (suffix may
 * be NULL or e.g. "-gz", at most 8 bytes). Returns out. */
const char *tc_cachehdr_etag(uint64_t hash, const char *suffix, char out[TC_ETAG_MAX]);

/* Where a cached answer came from, for Cache-Status (RFC 9211). */
typedef struct tc_cache_outcome {
    bool miss;      /* the loader ran: "fwd=miss; stored" */
    bool stale;     /* served past its fresh time (stale-while-revalidate) */
    int source;     /* worst layer: 0 L1, 1 L2, 2 loader */
    int64_t ttl_ms; /* time left fresh (negative when stale) */
} tc_cache_outcome;

#define TC_CACHE_STATUS_MAX 96
/* "tiercache; hit; ttl=298; detail=l1", "tiercache; hit; ttl=-4; detail=l2-stale",
 * "tiercache; fwd=miss; stored; ttl=300". Returns out. */
const char *tc_cachehdr_cache_status(const tc_cache_outcome *o, char out[TC_CACHE_STATUS_MAX]);

/* How tags reach a shared cache: the response header and the separator
 * between tags (xkey and Surrogate-Key: " "; Cache-Tag: ","). */
typedef struct tc_tag_header {
    const char *name; /* NULL: send no tags */
    const char *sep;
} tc_tag_header;

/* Everything that decides a response's caching headers. */
typedef struct tc_cachehdr {
    tc_route_class cls;
    uint32_t swr_s;           /* TC_ROUTE_QUERY_SWR: the server's stale window */
    bool encodings;           /* Vary: Accept-Encoding (STATIC with a gzip variant) */
    const char *etag;         /* the selected representation's tag, or NULL */
    int64_t last_modified;    /* seconds since 1970, or -1 */
    const char *cache_status; /* a Cache-Status value, or NULL */
    const char *const *tags;  /* shared-cache tags (sent on shared classes only) */
    int ntags;
    const tc_tag_header *tag_header; /* NULL: no tags */
    uint32_t cdn_max_age_s;          /* CDN-Cache-Control's max-age; 0: none */
    bool clear_site_data;            /* Clear-Site-Data: "cache", "cookies" (a logout) */
    bool keep_cookies;               /* ... without "cookies": the response sets a session */
} tc_cachehdr;

/* The request's preconditions against h's validators (If-None-Match with its
 * lists, weak comparison and `*`; If-Modified-Since only without
 * If-None-Match; If-Match and If-Unmodified-Since), for a response that would
 * be 200: returns 200 (send it), 304 or 412. Nothing is added to the
 * response. Call it only once authentication has passed. */
int tc_cachehdr_precondition(tc_http_exchange *x, const tc_cachehdr *h);

/* tc_cachehdr_precondition, then the headers and the status: 200 (h's
 * headers; the caller attaches the body), 304 (h's headers: the 200's caching
 * headers; the caller sends no body) or 412 (no-store, no body). Returns the
 * status set. */
int tc_cachehdr_respond(tc_http_exchange *x, const tc_cachehdr *h);

/* Only the headers (no preconditions, status untouched): for error responses
 * and other statuses that are never conditional. */
void tc_cachehdr_apply(tc_http_exchange *x, const tc_cachehdr *h);

/* Shorthand: Cache-Control of cls (ERROR, NO_STORE) and nothing else. */
void tc_cachehdr_simple(tc_http_exchange *x, tc_route_class cls);

#endif

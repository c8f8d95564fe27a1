/*
 * Caching headers from a route class, and the conditional-request step (see
 * cachehdr.h for the table). The values are built here and nowhere else; the
 * app only says which class a response is, its validator and its tags.
 */
#include "http/cachehdr.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/cond.h"

static const char *const NAMES[TC_ROUTE_CLASS_COUNT] = {
    "static",   "query-private", "query-swr",    "query-public",
    "no-store", "page",          "page-private", "error",
};

const char *tc_route_class_name(tc_route_class cls)
{
    return (unsigned)cls < TC_ROUTE_CLASS_COUNT ? NAMES[cls] : "?";
}

const char *tc_cachehdr_cache_control(tc_route_class cls, uint32_t swr_s, char *out, size_t cap)
{
    switch (cls) {
    case TC_ROUTE_STATIC:
        snprintf(out, cap, "public, max-age=%d, immutable", TC_STATIC_MAX_AGE);
        break;
    case TC_ROUTE_QUERY_SWR: /* without a stale window: an ordinary private query */
    case TC_ROUTE_QUERY_PRIVATE:
        if (cls == TC_ROUTE_QUERY_SWR && swr_s > 0)
            snprintf(out, cap, "private, max-age=%d, stale-while-revalidate=%u", TC_PRIVATE_MAX_AGE,
                     swr_s);
        else
            snprintf(out, cap, "private, max-age=%d", TC_PRIVATE_MAX_AGE);
        break;
    case TC_ROUTE_QUERY_PUBLIC:
        snprintf(out, cap, "public, max-age=%d, s-maxage=%d, stale-while-revalidate=%d",
                 TC_PUBLIC_MAX_AGE, TC_PUBLIC_S_MAXAGE, TC_PUBLIC_SWR);
        break;
    case TC_ROUTE_PAGE:
        snprintf(out, cap, "no-cache");
        break;
    case TC_ROUTE_PAGE_PRIVATE:
        snprintf(out, cap, "private, no-cache");
        break;
    case TC_ROUTE_NO_STORE:
    case TC_ROUTE_ERROR:
    default: /* an unknown class is the safest one */
        snprintf(out, cap, "no-store");
        break;
    }
    return out;
}

const char *tc_cachehdr_vary(tc_route_class cls, bool encodings)
{
    switch (cls) {
    case TC_ROUTE_STATIC:
        return encodings ? "Accept-Encoding" : NULL;
    case TC_ROUTE_QUERY_PRIVATE:
    case TC_ROUTE_QUERY_SWR:
    case TC_ROUTE_PAGE_PRIVATE:
        return "Authorization, Cookie";
    default:
        return NULL;
    }
}

bool tc_cachehdr_shared(tc_route_class cls)
{
    return cls == TC_ROUTE_STATIC || cls == TC_ROUTE_QUERY_PUBLIC || cls == TC_ROUTE_PAGE;
}

const char *tc_cachehdr_cdn_cache_control(tc_route_class cls, uint32_t max_age_s, char *out,
                                          size_t cap)
{
    if (max_age_s == 0 || (cls != TC_ROUTE_QUERY_PUBLIC && cls != TC_ROUTE_PAGE))
        return NULL;
    snprintf(out, cap, "public, max-age=%u, stale-while-revalidate=%d", max_age_s, TC_PUBLIC_SWR);
    return out;
}

const char *tc_cachehdr_etag(uint64_t hash, const char *suffix, char out[TC_ETAG_MAX])
{
    snprintf(out, TC_ETAG_MAX, "\"%016llx%.8s\"", (unsigned long long)hash,
             suffix != NULL ? suffix : "");
    return out;
}

const char *tc_cachehdr_cache_status(const tc_cache_outcome *o, char out[TC_CACHE_STATUS_MAX])
{
    long long ttl = (long long)(o->ttl_ms / 1000);
    if (o->miss)
        snprintf(out, TC_CACHE_STATUS_MAX, "tiercache; fwd=miss; stored; ttl=%lld", ttl);
    else
        snprintf(out, TC_CACHE_STATUS_MAX, "tiercache; hit; ttl=%lld; detail=%s%s", ttl,
                 o->source == 0 ? "l1" : "l2", o->stale ? "-stale" : "");
    return out;
}

/* ---- applying ------------------------------------------------------------------------- */

#define TAGS_MAX_BYTES 4096

static void add_tags(tc_http_exchange *x, const tc_cachehdr *h)
{
    if (h->tag_header == NULL || h->tag_header->name == NULL || h->ntags <= 0 ||
        !tc_cachehdr_shared(h->cls))
        return;
    const char *sep = h->tag_header->sep != NULL ? h->tag_header->sep : " ";
    char buf[TAGS_MAX_BYTES];
    size_t n = 0, seplen = strlen(sep);
    for (int i = 0; i < h->ntags; i++) {
        size_t len = strlen(h->tags[i]);
        if (len == 0 || n + seplen + len + 1 > sizeof(buf))
            continue;
        if (n > 0) {
            memcpy(buf + n, sep, seplen);
            n += seplen;
        }
        memcpy(buf + n, h->tags[i], len);
        n += len;
    }
    buf[n] = '\0';
    if (n > 0)
        tc_http_add_header(x, h->tag_header->name, buf);
}

void tc_cachehdr_apply(tc_http_exchange *x, const tc_cachehdr *h)
{
    char cc[128];
    tc_http_add_header(x, "Cache-Control",
                       tc_cachehdr_cache_control(h->cls, h->swr_s, cc, sizeof(cc)));
    if (tc_cachehdr_cdn_cache_control(h->cls, h->cdn_max_age_s, cc, sizeof(cc)) != NULL)
        tc_http_add_header(x, "CDN-Cache-Control", cc);
    const char *vary = tc_cachehdr_vary(h->cls, h->encodings);
    if (vary != NULL)
        tc_http_add_header(x, "Vary", vary);
    if (h->clear_site_data) /* a logout: the browser forgets what it kept of this site */
        tc_http_add_header(x, "Clear-Site-Data",
                           h->keep_cookies ? "\"cache\"" : "\"cache\", \"cookies\"");
    bool cacheable = h->cls != TC_ROUTE_NO_STORE && h->cls != TC_ROUTE_ERROR;
    if (cacheable && h->etag != NULL)
        tc_http_add_header(x, "ETag", h->etag);
    if (cacheable && h->last_modified >= 0) {
        char date[TC_COND_DATE_LEN + 1];
        tc_cond_format_date(h->last_modified, date);
        tc_http_add_header(x, "Last-Modified", date);
    }
    if (cacheable && h->cache_status != NULL)
        tc_http_add_header(x, "Cache-Status", h->cache_status);
    add_tags(x, h);
}

void tc_cachehdr_simple(tc_http_exchange *x, tc_route_class cls)
{
    tc_cachehdr h = {.cls = cls, .last_modified = -1};
    tc_cachehdr_apply(x, &h);
}

/* Every If-None-Match (or If-Match) field of the request as one list. */
typedef struct joined {
    tc_http_exchange *x;
    const char *name;
    char *out;
    size_t len;
} joined;

static int join_one(void *arg, const char *name, const char *value)
{
    joined *j = arg;
    if (strcasecmp(name, j->name) != 0)
        return 0;
    size_t vlen = strlen(value), n = j->len + (j->out != NULL ? 2 : 0) + vlen;
    char *p = tc_http_alloc(j->x, n + 1);
    if (p == NULL)
        return 1; /* out of memory: what was joined so far */
    size_t o = 0;
    if (j->out != NULL) {
        memcpy(p, j->out, j->len);
        memcpy(p + j->len, ", ", 2);
        o = j->len + 2;
    }
    memcpy(p + o, value, vlen + 1);
    j->out = p;
    j->len = n;
    return 0;
}

static const char *field_list(tc_http_exchange *x, const char *name)
{
    if (tc_http_header(x, name) == NULL) /* the common case: no such field, no walk */
        return NULL;
    joined j = {.x = x, .name = name};
    tc_http_headers_each(x, join_one, &j);
    return j.out;
}

int tc_cachehdr_precondition(tc_http_exchange *x, const tc_cachehdr *h)
{
    tc_http_method_id m = tc_http_method_id_of(x);
    bool cacheable = h->cls != TC_ROUTE_NO_STORE && h->cls != TC_ROUTE_ERROR;
    if (!cacheable || (h->etag == NULL && h->last_modified < 0))
        return TC_COND_PROCEED;
    tc_cond_request rq = {
        .get_or_head = m == TC_HTTP_M_GET || m == TC_HTTP_M_HEAD,
        .if_match = field_list(x, "If-Match"),
        .if_none_match = field_list(x, "If-None-Match"),
        .if_modified_since = tc_http_header(x, "If-Modified-Since"),
        .if_unmodified_since = tc_http_header(x, "If-Unmodified-Since"),
    };
    return (int)tc_cond_evaluate(&rq, h->etag, h->last_modified);
}

int tc_cachehdr_respond(tc_http_exchange *x, const tc_cachehdr *h)
{
    int st = tc_cachehdr_precondition(x, h);
    if (st == 412)
        tc_cachehdr_simple(x, TC_ROUTE_ERROR);
    else
        tc_cachehdr_apply(x, h);
    tc_http_set_status(x, st);
    return st;
}

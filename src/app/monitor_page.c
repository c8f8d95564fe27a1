/*
 * The monitoring page: GET /admin/cache (web/admin/cache.html, for
 * administrators: anonymous visitors are sent to /login, other users get 403)
 * and its script and style sheet (GET /admin/cache.js, /admin/cache.css, open
 * to anyone: they hold no data). The files are compiled into the binary by
 * cmake/embed.cmake (tc_app__admin_assets); the page fetches its data from
 * the feed (monitor_feed.c).
 */
#include <string.h>

#include "app/monitor_internal.h"

static const char PAGE_CSP[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static const char FORBIDDEN_HTML[] =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Forbidden</title>"
    "</head><body><h1>403 Forbidden</h1><p>The cache monitor is for administrators. "
    "<a href=\"/login?next=/admin/cache\">Sign in as another user</a>.</p></body></html>\n";

static void blocking_page(void *ctx, tc_http_exchange *x)
{
    tc_app__mon_page(ctx, x, true);
}

tc_http_action tc_app__mon_page(tc_app *app, tc_http_exchange *x, bool may_block)
{
    const mon_page *pg = &app->monitor->page;
    int k = tc_app__mon_session(app, x, may_block);
    if (k == MON_BLOCK)
        return tc_app__offload(x, CALL_NEED_BLOCK, blocking_page);
    tc_http_add_header(x, "X-Frame-Options", "DENY");
    tc_http_add_header(x, "Referrer-Policy", "no-referrer");
    if (k == MON_ANON) {
        tc_http_add_header(x, "Location", "/login?next=/admin/cache");
        tc_app__mon_respond(x, 302, "text/plain; charset=utf-8", "sign in first: /login\n");
    } else if (k == MON_USER) {
        tc_app__mon_respond(x, 403, "text/html; charset=utf-8", FORBIDDEN_HTML);
    } else if (k != MON_ADMIN || pg->html == NULL) {
        tc_app__mon_respond(x, k == MON_ADMIN ? 500 : 503, "text/plain; charset=utf-8",
                            k == MON_ADMIN ? "the page was not built into this binary\n"
                                           : "could not check the session\n");
    } else {
        tc_http_set_status(x, 200);
        tc_cachehdr_simple(x, TC_ROUTE_NO_STORE);
        tc_http_add_header(x, "X-Content-Type-Options", "nosniff");
        tc_http_add_header(x, "Content-Security-Policy", PAGE_CSP);
        tc_http_set_content_type(x, "text/html; charset=utf-8");
        tc_http_set_body_static(x, pg->html->data, pg->html->len);
    }
    return TC_HTTP_DONE;
}

/* The script and the style sheet: the same for everyone, revalidated on every
 * use (the page class: no-cache) against the ETag of their bytes; the
 * precondition step (304, 412) is cachehdr's, like every other route's. */
tc_http_action tc_app__mon_asset(tc_http_exchange *x, const mon_page *p, bool js)
{
    const tc_app__asset *a = js ? p->js : p->css;
    if (a == NULL) {
        tc_app__mon_respond(x, 404, "text/plain; charset=utf-8", "not found\n");
        return TC_HTTP_DONE;
    }
    tc_cachehdr h = {
        .cls = TC_ROUTE_PAGE, .etag = js ? p->etag_js : p->etag_css, .last_modified = -1};
    int status = tc_cachehdr_respond(x, &h);
    tc_http_add_header(x, "X-Content-Type-Options", "nosniff");
    if (status == 200) {
        tc_http_set_content_type(x,
                                 js ? "text/javascript; charset=utf-8" : "text/css; charset=utf-8");
        tc_http_set_body_static(x, a->data, a->len);
    }
    return TC_HTTP_DONE;
}

static const tc_app__asset *asset(const char *name)
{
    for (const tc_app__asset *a = tc_app__admin_assets; a->name != NULL; a++)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

static void etag_of(const tc_app__asset *a, char out[TC_ETAG_MAX])
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; a != NULL && i < a->len; i++)
        h = (h ^ a->data[i]) * 1099511628211ULL;
    tc_cachehdr_etag(h, NULL, out);
}

void tc_app__mon_page_init(mon_page *p)
{
    p->html = asset("cache.html");
    p->js = asset("cache.js");
    p->css = asset("cache.css");
    etag_of(p->js, p->etag_js);
    etag_of(p->css, p->etag_css);
}

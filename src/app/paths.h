/*
 * Routing by the raw path alone: which part of the app a request's path
 * belongs to, and which page a page path is. Pure: the path's bytes in, a
 * class out, no I/O (fuzz/paths.c). The path is the request target before the
 * '?', as the client sent it: nothing is decoded, so a %-escape, a dot segment
 * or a doubled slash is just bytes that match no route.
 *
 * It is for: app.c's handle() and pages.c's resolve step. It is not for: the
 * method (each handler answers 405 itself), the query, or which static file a
 * /static/ path names (static.c's table decides: tc_app__asset_find).
 */
#ifndef TC_APP_PATHS_H
#define TC_APP_PATHS_H

#include <stddef.h>

typedef enum {
    TC_PATH_NONE,    /* nothing here: 404 */
    TC_PATH_TRPC,    /* "/trpc/" and at least one byte: the procedures (trpc.c parses them) */
    TC_PATH_MONITOR, /* /metrics, /admin/cache, /admin/cache.json, .js, .css (monitor.c) */
    TC_PATH_STATIC,  /* "/static/" and at least one byte: the asset table decides (static.c) */
    TC_PATH_PAGE,    /* /, /login, /dashboard, "/blog/" and at least one byte (pages.c) */
    TC_PATH_BILLING, /* /webhooks/billing */
    TC_PATH_HEALTH,  /* /healthz, /readyz */
} tc_path_class;

/* The class of raw[0..len) (which may hold any byte, NUL included). */
tc_path_class tc_path_classify(const char *raw, size_t len);

#define TC_PATH_SLUG_MAX 100

typedef enum {
    TC_PAGE_NONE, /* a page path with no page: 404 */
    TC_PAGE_HOME,
    TC_PAGE_LOGIN,
    TC_PAGE_DASHBOARD,
    TC_PAGE_POST, /* "/blog/<slug>": a-z, 0-9 and '-', 1 to 100 bytes (tc_in_slug) */
} tc_page_kind;

/* The page of raw[0..len): exactly "/", "/login", "/dashboard" or "/blog/<slug>"
 * (no trailing segment, ';' or %-escape). For TC_PAGE_POST, slug gets the slug,
 * NUL-terminated. */
tc_page_kind tc_path_page(const char *raw, size_t len, char slug[TC_PATH_SLUG_MAX + 1]);

#endif

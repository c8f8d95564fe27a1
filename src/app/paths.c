/*
 * Routing by the raw path (see paths.h): exact paths and fixed prefixes,
 * compared as bytes with their lengths, so a NUL or anything after a route's
 * last byte makes another path.
 */
#include "app/paths.h"

#include <stdbool.h>
#include <string.h>

#include "app/input.h"

static bool is(const char *raw, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(raw, want, len) == 0;
}

/* raw is prefix and at least one byte more */
static bool under(const char *raw, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len > n && memcmp(raw, prefix, n) == 0;
}

tc_path_class tc_path_classify(const char *raw, size_t len)
{
    static const char *const monitor[] = {"/metrics", "/admin/cache", "/admin/cache.json",
                                          "/admin/cache.js", "/admin/cache.css"};
    if (under(raw, len, "/trpc/"))
        return TC_PATH_TRPC;
    for (size_t i = 0; i < sizeof(monitor) / sizeof(monitor[0]); i++)
        if (is(raw, len, monitor[i]))
            return TC_PATH_MONITOR;
    if (under(raw, len, "/static/"))
        return TC_PATH_STATIC;
    if (is(raw, len, "/") || is(raw, len, "/login") || is(raw, len, "/dashboard") ||
        under(raw, len, "/blog/"))
        return TC_PATH_PAGE;
    if (is(raw, len, "/webhooks/billing"))
        return TC_PATH_BILLING;
    if (is(raw, len, "/healthz") || is(raw, len, "/readyz"))
        return TC_PATH_HEALTH;
    return TC_PATH_NONE;
}

tc_page_kind tc_path_page(const char *raw, size_t len, char slug[TC_PATH_SLUG_MAX + 1])
{
    if (is(raw, len, "/"))
        return TC_PAGE_HOME;
    if (is(raw, len, "/login"))
        return TC_PAGE_LOGIN;
    if (is(raw, len, "/dashboard"))
        return TC_PAGE_DASHBOARD;
    if (under(raw, len, "/blog/") && len - 6 <= TC_PATH_SLUG_MAX) {
        memcpy(slug, raw + 6, len - 6);
        slug[len - 6] = '\0';
        if (strlen(slug) == len - 6 && tc_in_slug(slug) == NULL)
            return TC_PAGE_POST;
    }
    return TC_PAGE_NONE;
}

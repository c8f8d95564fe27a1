/*
 * Routing by the raw path (src/app/paths.c): each route's paths get its
 * class; prefixes need a byte after them; exact routes and pages take no
 * trailing segment, parameter, escape, NUL or other case; a post's slug is
 * checked and copied.
 */
#include <string.h>

#include "app/paths.h"
#include "check.h"

static tc_path_class cls(const char *p)
{
    return tc_path_classify(p, strlen(p));
}

static tc_page_kind page(const char *p, char slug[TC_PATH_SLUG_MAX + 1])
{
    return tc_path_page(p, strlen(p), slug);
}

static void classes(void)
{
    CHECK_EQ_INT(cls("/trpc/user.me"), TC_PATH_TRPC);
    CHECK_EQ_INT(cls("/trpc/blog.list,user.me"), TC_PATH_TRPC);
    CHECK_EQ_INT(cls("/trpc/"), TC_PATH_NONE); /* a prefix needs a byte after it */
    CHECK_EQ_INT(cls("/trpc"), TC_PATH_NONE);
    CHECK_EQ_INT(cls("/metrics"), TC_PATH_MONITOR);
    CHECK_EQ_INT(cls("/admin/cache"), TC_PATH_MONITOR);
    CHECK_EQ_INT(cls("/admin/cache.json"), TC_PATH_MONITOR);
    CHECK_EQ_INT(cls("/admin/cache.js"), TC_PATH_MONITOR);
    CHECK_EQ_INT(cls("/admin/cache.css"), TC_PATH_MONITOR);
    CHECK_EQ_INT(cls("/admin/cache/"), TC_PATH_NONE);
    CHECK_EQ_INT(cls("/metrics;x"), TC_PATH_NONE);
    CHECK_EQ_INT(cls("/static/app.3f9a1c2b.css"), TC_PATH_STATIC);
    CHECK_EQ_INT(cls("/static/"), TC_PATH_NONE);
    CHECK_EQ_INT(cls("/"), TC_PATH_PAGE);
    CHECK_EQ_INT(cls("/login"), TC_PATH_PAGE);
    CHECK_EQ_INT(cls("/dashboard"), TC_PATH_PAGE);
    CHECK_EQ_INT(cls("/blog/hello"), TC_PATH_PAGE);
    CHECK_EQ_INT(cls("/blog/"), TC_PATH_NONE);
    CHECK_EQ_INT(cls("/dashboard/x.css"), TC_PATH_NONE); /* web cache deception */
    CHECK_EQ_INT(cls("/Dashboard"), TC_PATH_NONE);
    CHECK_EQ_INT(cls("/webhooks/billing"), TC_PATH_BILLING);
    CHECK_EQ_INT(cls("/webhooks/billing/"), TC_PATH_NONE);
    CHECK_EQ_INT(cls("/healthz"), TC_PATH_HEALTH);
    CHECK_EQ_INT(cls("/readyz"), TC_PATH_HEALTH);
    CHECK_EQ_INT(cls("/healthz%2f"), TC_PATH_NONE);
    CHECK_EQ_INT(cls(""), TC_PATH_NONE);
    CHECK_EQ_INT(cls("//"), TC_PATH_NONE);
    CHECK_EQ_INT(tc_path_classify("/healthz\0x", 10), TC_PATH_NONE); /* the length counts */
    CHECK_EQ_INT(tc_path_classify("/healthzzz", 8), TC_PATH_HEALTH);
}

static void pages(void)
{
    char slug[TC_PATH_SLUG_MAX + 1];
    CHECK_EQ_INT(page("/", slug), TC_PAGE_HOME);
    CHECK_EQ_INT(page("/login", slug), TC_PAGE_LOGIN);
    CHECK_EQ_INT(page("/dashboard", slug), TC_PAGE_DASHBOARD);
    CHECK_EQ_INT(page("/blog/hello-world-2", slug), TC_PAGE_POST);
    CHECK_EQ_STR(slug, "hello-world-2");
    static const char *const none[] = {
        "/blog/Hello", "/blog/a/b", "/blog/x;y",        "/blog/%61", "/blog/-x", "/blog/x-",
        "/blog/..",    "/login/",   "/dashboard/x.css", "/x",        "",
    };
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        if (!CHECK(page(none[i], slug) == TC_PAGE_NONE))
            fprintf(stderr, "    \"%s\" is a page\n", none[i]);
    CHECK_EQ_INT(tc_path_page("/blog/ab\0c", 10, slug), TC_PAGE_NONE);
    char longest[6 + TC_PATH_SLUG_MAX + 2] = "/blog/";
    memset(longest + 6, 'a', TC_PATH_SLUG_MAX);
    CHECK_EQ_INT(page(longest, slug), TC_PAGE_POST);
    CHECK_EQ_INT(strlen(slug), TC_PATH_SLUG_MAX);
    longest[6 + TC_PATH_SLUG_MAX] = 'a'; /* one more */
    CHECK_EQ_INT(page(longest, slug), TC_PAGE_NONE);
}

int main(void)
{
    classes();
    pages();
    return check_report();
}

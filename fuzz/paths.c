/*
 * libFuzzer target for routing by the raw path: the route classes and pages
 * (tc_path_classify, tc_path_page: src/app/paths.c) and the static files'
 * lookup (tc_app__asset_find: src/app/static.c), over a table of real asset
 * names. The path is anyone's bytes, undecoded. Nothing may crash or read out
 * of bounds, and:
 *   - every path has one class, and the class says what the path is: a
 *     prefix route starts with its prefix, an exact route is its path;
 *   - a path that reaches something (a page, a file, the monitor, the
 *     webhook, health) holds no NUL, '%', '\\', ';', "//", "..", blank or
 *     control byte; a page's slug is a slug; a file's path is its URL, byte
 *     for byte;
 *   - nothing appended to such a path ("/", "/x", ";x", "%2f", "%00", ".",
 *     "..", a NUL) reaches the same thing: no trailing segment, parameter,
 *     escape or dot segment is ignored.
 *
 * Input: the raw path.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DTC_FUZZ=ON && cmake --build build-fuzz
 *        --target fuzz_paths;  run: scripts/fuzz.sh --seconds 60 paths
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app/input.h"
#include "app/internal.h"
#include "app/paths.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static tc_assets *assets;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const tc_asset_file files[] = {
        {.name = "app.css", .data = "body{margin:0}", .len = 14},
        {.name = "app.js", .data = "export {};", .len = 10},
        {.name = "dashboard.js", .data = "refresh();", .len = 10},
        {.name = "favicon.svg", .data = "<svg/>", .len = 6},
        {.name = "LICENSE", .data = "MIT", .len = 3},
        {.name = "a.b-c_d.txt", .data = "", .len = 0},
    };
    char err[256];
    assets = tc_app__assets_from(files, sizeof(files) / sizeof(files[0]), err, sizeof(err));
    if (assets == NULL)
        abort();
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        const char *url = tc_app__asset_url(assets, files[i].name), *name;
        if (url == NULL || (name = tc_app__asset_find(assets, url, strlen(url))) == NULL ||
            strcmp(name, files[i].name) != 0)
            abort(); /* every file is found at its URL */
    }
    return 0;
}

static bool is(const char *raw, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(raw, want, len) == 0;
}

static bool starts(const char *raw, size_t len, const char *prefix)
{
    return len > strlen(prefix) && memcmp(raw, prefix, strlen(prefix)) == 0;
}

/* What raw reaches: 0 nothing, else a number naming the thing (class * 1000 + what). */
static long reach(const char *raw, size_t len)
{
    char slug[TC_PATH_SLUG_MAX + 1];
    tc_path_class c = tc_path_classify(raw, len);
    switch (c) {
    case TC_PATH_NONE:
    case TC_PATH_TRPC: /* the procedures' names are trpc.c's to parse (fuzz/trpc_parse.c) */
        return 0;
    case TC_PATH_STATIC: {
        const char *name = tc_app__asset_find(assets, raw, len);
        return name != NULL ? 1000L * c + (long)name[0] * 100 + (long)strlen(name) : 0;
    }
    case TC_PATH_PAGE: {
        tc_page_kind k = tc_path_page(raw, len, slug);
        return k != TC_PAGE_NONE ? 1000L * c + k : 0;
    }
    case TC_PATH_MONITOR:
    case TC_PATH_BILLING:
    case TC_PATH_HEALTH:
        return 1000L * c + (long)len;
    }
    abort(); /* not a class */
}

static void check_class(const char *raw, size_t len)
{
    static const char *const monitor[] = {"/metrics", "/admin/cache", "/admin/cache.json",
                                          "/admin/cache.js", "/admin/cache.css"};
    bool mon = false;
    for (size_t i = 0; i < sizeof(monitor) / sizeof(monitor[0]); i++)
        mon |= is(raw, len, monitor[i]);
    bool page = is(raw, len, "/") || is(raw, len, "/login") || is(raw, len, "/dashboard") ||
                starts(raw, len, "/blog/");
    tc_path_class c = tc_path_classify(raw, len);
    if ((c == TC_PATH_TRPC) != starts(raw, len, "/trpc/") || (c == TC_PATH_MONITOR) != mon ||
        (c == TC_PATH_STATIC) != starts(raw, len, "/static/") || (c == TC_PATH_PAGE) != page ||
        (c == TC_PATH_BILLING) != is(raw, len, "/webhooks/billing") ||
        (c == TC_PATH_HEALTH) != (is(raw, len, "/healthz") || is(raw, len, "/readyz")))
        abort(); /* the class is not what the path is */
}

static void check_reached(const char *raw, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)raw[i];
        if (ch <= ' ' || ch == 0x7f || ch == '%' || ch == '\\' || ch == ';' || ch == '?' ||
            ch == '#' || (ch == '/' && i + 1 < len && raw[i + 1] == '/') ||
            (ch == '.' && i + 1 < len && raw[i + 1] == '.'))
            abort(); /* a path that reaches something holds what no route has */
    }
    char slug[TC_PATH_SLUG_MAX + 1];
    if (tc_path_classify(raw, len) == TC_PATH_PAGE &&
        tc_path_page(raw, len, slug) == TC_PAGE_POST &&
        (strlen(slug) != len - 6 || memcmp(slug, raw + 6, len - 6) != 0 ||
         tc_in_slug(slug) != NULL))
        abort(); /* the slug is not the path's */
    const char *name = tc_app__asset_find(assets, raw, len);
    if (name != NULL) {
        const char *url = tc_app__asset_url(assets, name);
        if (url == NULL || strlen(url) != len || memcmp(url, raw, len) != 0)
            abort(); /* a file found at a path that is not its URL */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const tails[] = {"/", "/x", ";x", "%2f", "%2e", "%00", ".", "..", "/.."};
    const char *raw = (const char *)data;
    check_class(raw, size);
    long r = reach(raw, size);
    if (r == 0 || size > 4096)
        return 0;
    check_reached(raw, size);
    char buf[4096 + 8];
    memcpy(buf, raw, size);
    for (size_t i = 0; i <= sizeof(tails) / sizeof(tails[0]); i++) {
        /* the last one: a NUL and a byte */
        const char *t = i < sizeof(tails) / sizeof(tails[0]) ? tails[i] : "\0x";
        size_t tl = i < sizeof(tails) / sizeof(tails[0]) ? strlen(t) : 2;
        memcpy(buf + size, t, tl);
        check_class(buf, size + tl);
        if (reach(buf, size + tl) == r)
            abort(); /* something appended was ignored */
    }
    return 0;
}

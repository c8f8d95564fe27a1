/*
 * The static files' table (src/app/static.c) built from memory: each file is
 * found at its content-hashed URL and nowhere else — not unhashed, not with
 * another hash, case, trailing segment, escape or NUL; bad names and too many
 * files are refused.
 */
#include <stdio.h>
#include <string.h>

#include "app/internal.h"
#include "check.h"

static const tc_asset_file FILES[] = {
    {.name = "app.css", .data = "body{margin:0}", .len = 14},
    {.name = "favicon.svg", .data = "<svg/>", .len = 6},
    {.name = "LICENSE", .data = "MIT", .len = 3},
};

static const char *find(const tc_assets *as, const char *path)
{
    return tc_app__asset_find(as, path, strlen(path));
}

static void lookups(void)
{
    char err[200];
    tc_assets *as = tc_app__assets_from(FILES, 3, err, sizeof(err));
    REQUIRE(as != NULL);
    const char *css = tc_app__asset_url(as, "app.css");
    REQUIRE(css != NULL);
    CHECK(strncmp(css, "/static/app.", 12) == 0 &&
          strlen(css) == strlen("/static/app.12345678.css"));
    CHECK_EQ_STR(find(as, css), "app.css");
    CHECK_EQ_STR(find(as, tc_app__asset_url(as, "favicon.svg")), "favicon.svg");
    const char *lic = tc_app__asset_url(as, "LICENSE"); /* no extension: name.<hash> */
    CHECK(lic != NULL && strncmp(lic, "/static/LICENSE.", 16) == 0);
    CHECK_EQ_STR(find(as, lic), "LICENSE");
    CHECK(tc_app__asset_url(as, "nope.css") == NULL);

    char p[128];
    CHECK(find(as, "/static/app.css") == NULL); /* unhashed */
    snprintf(p, sizeof(p), "%s/", css);
    CHECK(find(as, p) == NULL);
    snprintf(p, sizeof(p), "%s;x", css);
    CHECK(find(as, p) == NULL);
    snprintf(p, sizeof(p), "%s%%00", css);
    CHECK(find(as, p) == NULL);
    snprintf(p, sizeof(p), "/static/..%%2f%s", css + 8);
    CHECK(find(as, p) == NULL);
    snprintf(p, sizeof(p), "%s", css);
    p[9] = 'P'; /* "/static/aPp..." */
    CHECK(find(as, p) == NULL);
    snprintf(p, sizeof(p), "%s", css);
    p[strlen(p) - 5] ^= 1; /* another hash */
    CHECK(find(as, p) == NULL);
    /* a NUL and more after the URL is another path (found by fuzz/paths.c) */
    size_t n = strlen(css);
    memcpy(p, css, n);
    memcpy(p + n, "\0x", 2);
    CHECK(tc_app__asset_find(as, p, n + 2) == NULL);
    CHECK(tc_app__asset_find(as, p, n - 1) == NULL);
    tc_app__assets_free(as);
}

static void refusals(void)
{
    char err[200] = "";
    tc_asset_file bad[] = {{.name = "../x.css", .data = "", .len = 0}};
    CHECK(tc_app__assets_from(bad, 1, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "name") != NULL);
    tc_asset_file hidden[] = {{.name = ".env", .data = "", .len = 0}};
    CHECK(tc_app__assets_from(hidden, 1, err, sizeof(err)) == NULL);
    static tc_asset_file many[300];
    static char names[300][16];
    for (int i = 0; i < 300; i++) {
        snprintf(names[i], sizeof(names[i]), "f%d.txt", i);
        many[i] = (tc_asset_file){.name = names[i], .data = names[i], .len = strlen(names[i])};
    }
    CHECK(tc_app__assets_from(many, 300, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "more than") != NULL);
    tc_assets *none = tc_app__assets_from(NULL, 0, err, sizeof(err));
    CHECK(none != NULL && find(none, "/static/app.12345678.css") == NULL);
    tc_app__assets_free(none);
    CHECK(tc_app__asset_find(NULL, "/static/x", 9) == NULL);
}

int main(void)
{
    lookups();
    refusals();
    return check_report();
}

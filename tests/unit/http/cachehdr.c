/*
 * Unit tests of src/http/cachehdr.c's table: every route class's exact
 * Cache-Control and Vary, no forbidden directive on anything authenticated,
 * which classes carry shared-cache tags, which get CDN-Cache-Control (public
 * queries and pages only, and only with a CDN max-age), the ETag and
 * Cache-Status texts.
 * Applying them to real responses (and the 304 step) is proven end to end in
 * tests/e2e/http-cache.test.mjs.
 */
#include <string.h>

#include "check.h"
#include "http/cachehdr.h"

static void test_table(void)
{
    static const struct {
        tc_route_class cls;
        uint32_t swr;
        bool enc;
        const char *cc, *vary;
        bool shared;
    } t[] = {
        {TC_ROUTE_STATIC, 0, true, "public, max-age=31536000, immutable", "Accept-Encoding", true},
        {TC_ROUTE_STATIC, 0, false, "public, max-age=31536000, immutable", NULL, true},
        {TC_ROUTE_QUERY_PRIVATE, 0, false, "private, max-age=30", "Authorization, Cookie", false},
        {TC_ROUTE_QUERY_PRIVATE, 300, false, "private, max-age=30", "Authorization, Cookie", false},
        {TC_ROUTE_QUERY_SWR, 300, false, "private, max-age=30, stale-while-revalidate=300",
         "Authorization, Cookie", false},
        {TC_ROUTE_QUERY_SWR, 0, false, "private, max-age=30", "Authorization, Cookie", false},
        {TC_ROUTE_QUERY_PUBLIC, 0, false,
         "public, max-age=60, s-maxage=300, stale-while-revalidate=600", NULL, true},
        {TC_ROUTE_NO_STORE, 0, false, "no-store", NULL, false},
        {TC_ROUTE_PAGE, 0, false, "no-cache", NULL, true},
        {TC_ROUTE_PAGE_PRIVATE, 0, false, "private, no-cache", "Authorization, Cookie", false},
        {TC_ROUTE_ERROR, 0, true, "no-store", NULL, false},
        {(tc_route_class)99, 0, false, "no-store", NULL, false}, /* unknown: the safest */
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char cc[128];
        CHECK_EQ_STR(tc_cachehdr_cache_control(t[i].cls, t[i].swr, cc, sizeof(cc)), t[i].cc);
        const char *v = tc_cachehdr_vary(t[i].cls, t[i].enc);
        if (t[i].vary == NULL)
            CHECK(v == NULL);
        else
            CHECK_EQ_STR(v, t[i].vary);
        CHECK(tc_cachehdr_shared(t[i].cls) == t[i].shared);
    }
}

/* Nothing authenticated is ever public, s-maxage or must-revalidate, and it
 * always varies on the credentials. */
static void test_authenticated(void)
{
    tc_route_class auth[] = {TC_ROUTE_QUERY_PRIVATE, TC_ROUTE_QUERY_SWR, TC_ROUTE_PAGE_PRIVATE};
    for (size_t i = 0; i < sizeof(auth) / sizeof(auth[0]); i++) {
        for (uint32_t swr = 0; swr <= 600; swr += 300) {
            char cc[128];
            tc_cachehdr_cache_control(auth[i], swr, cc, sizeof(cc));
            CHECK(strncmp(cc, "private", 7) == 0);
            CHECK(strstr(cc, "public") == NULL);
            CHECK(strstr(cc, "s-maxage") == NULL);
            CHECK(strstr(cc, "must-revalidate") == NULL);
            CHECK(!tc_cachehdr_shared(auth[i]));
            const char *v = tc_cachehdr_vary(auth[i], false);
            CHECK(v != NULL && strstr(v, "Authorization") != NULL && strstr(v, "Cookie") != NULL);
        }
    }
}

/* CDN-Cache-Control: on the public query and the public page, with the max-age
 * given; never on anything else (a personal response above all), never without
 * a max-age (no CDN is purged). */
static void test_cdn(void)
{
    char out[128];
    for (int c = 0; c <= TC_ROUTE_CLASS_COUNT; c++) {
        tc_route_class cls = (tc_route_class)c;
        const char *v = tc_cachehdr_cdn_cache_control(cls, 3600, out, sizeof(out));
        if (cls == TC_ROUTE_QUERY_PUBLIC || cls == TC_ROUTE_PAGE)
            CHECK_EQ_STR(v, "public, max-age=3600, stale-while-revalidate=600");
        else
            CHECK(v == NULL);
        CHECK(tc_cachehdr_cdn_cache_control(cls, 0, out, sizeof(out)) == NULL);
    }
    CHECK_EQ_STR(tc_cachehdr_cdn_cache_control(TC_ROUTE_PAGE, 31536000, out, sizeof(out)),
                 "public, max-age=31536000, stale-while-revalidate=600");
}

static void test_texts(void)
{
    char e[TC_ETAG_MAX];
    CHECK_EQ_STR(tc_cachehdr_etag(0x5f5d2c3385577767ull, NULL, e), "\"5f5d2c3385577767\"");
    CHECK_EQ_STR(tc_cachehdr_etag(1, "-gz", e), "\"0000000000000001-gz\"");
    CHECK_EQ_STR(tc_cachehdr_etag(UINT64_MAX, "-toolongsuffix", e), "\"ffffffffffffffff-toolong\"");
    char s[TC_CACHE_STATUS_MAX];
    tc_cache_outcome o = {.source = 0, .ttl_ms = 298500};
    CHECK_EQ_STR(tc_cachehdr_cache_status(&o, s), "tiercache; hit; ttl=298; detail=l1");
    o = (tc_cache_outcome){.source = 1, .stale = true, .ttl_ms = -4200};
    CHECK_EQ_STR(tc_cachehdr_cache_status(&o, s), "tiercache; hit; ttl=-4; detail=l2-stale");
    o = (tc_cache_outcome){.miss = true, .source = 2, .ttl_ms = 300000};
    CHECK_EQ_STR(tc_cachehdr_cache_status(&o, s), "tiercache; fwd=miss; stored; ttl=300");
    CHECK_EQ_STR(tc_route_class_name(TC_ROUTE_QUERY_PUBLIC), "query-public");
    CHECK_EQ_STR(tc_route_class_name((tc_route_class)-1), "?");
}

int main(void)
{
    test_table();
    test_authenticated();
    test_cdn();
    test_texts();
    return check_report();
}

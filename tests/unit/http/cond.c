/*
 * Unit tests of src/http/cond.c: If-None-Match and If-Match list matching (weak
 * and strong comparison, `*`, malformed fields), HTTP-dates in all three
 * forms, the precondition order of RFC 9110 §13.2.2, and Accept-Encoding
 * q-values. Pure functions: no server.
 */
#include <string.h>

#include "check.h"
#include "http/cond.h"

static void test_none_match(void)
{
    const char *e = "\"abc\"", *we = "W/\"abc\"";
    /* weak comparison: W/ on either side does not matter */
    CHECK(tc_cond_none_match("\"abc\"", e));
    CHECK(tc_cond_none_match("W/\"abc\"", e));
    CHECK(tc_cond_none_match("\"abc\"", we));
    CHECK(tc_cond_none_match("W/\"abc\"", we));
    CHECK(!tc_cond_none_match("\"abd\"", e));
    CHECK(!tc_cond_none_match("\"ab\"", e));
    CHECK(!tc_cond_none_match("\"abcd\"", e));
    /* lists, whitespace, empty members */
    CHECK(tc_cond_none_match("\"x\", \"abc\"", e));
    CHECK(tc_cond_none_match("\"x\",\"y\",W/\"abc\"", e));
    CHECK(tc_cond_none_match(" , \"x\" ,\t\"abc\" , ", e));
    CHECK(!tc_cond_none_match("\"x\", \"y\"", e));
    CHECK(!tc_cond_none_match("", e));
    CHECK(!tc_cond_none_match(",,", e));
    /* `*`: any current representation */
    CHECK(tc_cond_none_match("*", e));
    CHECK(tc_cond_none_match(" * ", e));
    CHECK(!tc_cond_none_match("*", NULL));
    CHECK(!tc_cond_none_match("\"abc\"", NULL));
    CHECK(!tc_cond_none_match(NULL, e));
    /* malformed: no match at all, even where a good member names the tag */
    CHECK(!tc_cond_none_match("abc", e));
    CHECK(!tc_cond_none_match("\"abc", e));
    CHECK(!tc_cond_none_match("\"abc\" \"x\"", e));
    CHECK(!tc_cond_none_match("\"abc\", x", e));
    CHECK(!tc_cond_none_match("w/\"abc\"", e));
    CHECK(!tc_cond_none_match("*, \"abc\"", e));
    CHECK(!tc_cond_none_match("\"a\"bc\"", e));
    CHECK(!tc_cond_none_match("\"ab c\"", "\"ab c\"")); /* space is not an etagc */
    /* opaque tags may hold any etagc, including obs-text */
    CHECK(tc_cond_none_match("\"a/b-c.d\xff\"", "\"a/b-c.d\xff\""));
    CHECK(tc_cond_none_match("\"\"", "\"\""));
    /* our own ETags */
    CHECK(tc_cond_none_match("\"5f5d2c3385577767-gz\"", "\"5f5d2c3385577767-gz\""));
    CHECK(!tc_cond_none_match("\"5f5d2c3385577767\"", "\"5f5d2c3385577767-gz\""));
}

static void test_match(void)
{
    const char *e = "\"abc\"";
    CHECK(tc_cond_match("\"abc\"", e));
    CHECK(tc_cond_match("\"x\", \"abc\"", e));
    CHECK(!tc_cond_match("W/\"abc\"", e)); /* strong comparison */
    CHECK(!tc_cond_match("\"abc\"", "W/\"abc\""));
    CHECK(tc_cond_match("*", e));
    CHECK(!tc_cond_match("*", NULL));
    CHECK(!tc_cond_match("\"abc", e));
}

static void test_dates(void)
{
    CHECK_EQ_INT(tc_cond_parse_date("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
    CHECK_EQ_INT(tc_cond_parse_date("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
    CHECK_EQ_INT(tc_cond_parse_date("Sun Nov  6 08:49:37 1994"), 784111777);
    CHECK_EQ_INT(tc_cond_parse_date("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    CHECK_EQ_INT(tc_cond_parse_date("Thu, 29 Feb 2024 12:00:00 GMT"), 1709208000);
    CHECK_EQ_INT(tc_cond_parse_date("Wed, 31 Dec 1969 23:59:59 GMT"), 0); /* clamped */
    CHECK_EQ_INT(tc_cond_parse_date("Tuesday, 01-Jan-30 00:00:00 GMT"), 1893456000);
    CHECK_EQ_INT(tc_cond_parse_date("Sat Dec 31 23:59:60 2016"), 1483228799); /* leap second */
    const char *bad[] = {
        NULL,
        "",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 30 Feb 2023 08:49:37 GMT",
        "Sun, 29 Feb 2023 08:49:37 GMT",
        "Sun, 06 Nux 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "1994-11-06T08:49:37Z",
        "784111777",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (!CHECK(tc_cond_parse_date(bad[i]) == -1))
            fprintf(stderr, "    accepted: %s\n", bad[i] ? bad[i] : "(null)");
    char out[TC_COND_DATE_LEN + 1];
    tc_cond_format_date(784111777, out);
    CHECK_EQ_STR(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    tc_cond_format_date(0, out);
    CHECK_EQ_STR(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    for (int64_t t = 0; t < 4102444800; t += 86400 * 37 + 3607) {
        tc_cond_format_date(t, out);
        if (!CHECK(tc_cond_parse_date(out) == t))
            break;
    }
}

static void test_evaluate(void)
{
    const char *e = "\"v1\"";
    int64_t lm = 784111777;
    const char *before = "Sat, 05 Nov 1994 08:49:37 GMT", *at = "Sun, 06 Nov 1994 08:49:37 GMT",
               *after = "Mon, 07 Nov 1994 08:49:37 GMT";
    tc_cond_request r = {.get_or_head = true};
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_PROCEED);
    r.if_none_match = "\"v1\"";
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_NOT_MODIFIED);
    r.if_none_match = "\"v0\"";
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_PROCEED);
    /* If-Modified-Since is ignored when If-None-Match is present... */
    r.if_modified_since = after;
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_PROCEED);
    r.if_none_match = "\"v1\"";
    r.if_modified_since = before;
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_NOT_MODIFIED);
    /* ...and used without it */
    r.if_none_match = NULL;
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_PROCEED);
    r.if_modified_since = at;
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_NOT_MODIFIED);
    r.if_modified_since = after;
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_NOT_MODIFIED);
    r.if_modified_since = "yesterday";
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_PROCEED);
    r.if_modified_since = after;
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, -1), TC_COND_PROCEED); /* no Last-Modified */
    /* not GET/HEAD: IMS means nothing, a matching INM is 412 */
    r.get_or_head = false;
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_PROCEED);
    r.if_none_match = "*";
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_FAILED);
    /* If-Match first; If-Unmodified-Since only without it */
    r = (tc_cond_request){.get_or_head = true, .if_match = "\"v0\"", .if_none_match = "\"v0\""};
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_FAILED);
    r.if_match = "\"v1\"";
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_PROCEED);
    r.if_match = "W/\"v1\"";
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_FAILED);
    r = (tc_cond_request){.get_or_head = true, .if_unmodified_since = before};
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_FAILED);
    r.if_unmodified_since = at;
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_PROCEED);
    r.if_match = "*";
    r.if_unmodified_since = before; /* ignored: If-Match is there */
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, lm), TC_COND_PROCEED);
    /* `*` and no representation */
    r = (tc_cond_request){.get_or_head = true, .if_none_match = "*"};
    CHECK_EQ_INT(tc_cond_evaluate(&r, NULL, -1), TC_COND_PROCEED);
    CHECK_EQ_INT(tc_cond_evaluate(&r, e, -1), TC_COND_NOT_MODIFIED);
}

static void test_accept(void)
{
    CHECK_EQ_INT(tc_cond_accept_q(NULL, "gzip"), 0);
    CHECK_EQ_INT(tc_cond_accept_q(NULL, "identity"), 1000);
    CHECK_EQ_INT(tc_cond_accept_q("", "gzip"), 0);
    CHECK_EQ_INT(tc_cond_accept_q("", "identity"), 1000);
    CHECK_EQ_INT(tc_cond_accept_q("gzip", "gzip"), 1000);
    CHECK_EQ_INT(tc_cond_accept_q("GZip", "gzip"), 1000);
    CHECK_EQ_INT(tc_cond_accept_q("x-gzip", "gzip"), 1000);
    CHECK_EQ_INT(tc_cond_accept_q("gzip, deflate, br, zstd", "gzip"), 1000);
    CHECK_EQ_INT(tc_cond_accept_q("br;q=1.0, gzip;q=0.8, *;q=0.1", "gzip"), 800);
    CHECK_EQ_INT(tc_cond_accept_q("br;q=1.0, gzip;q=0.8, *;q=0.1", "zstd"), 100);
    CHECK_EQ_INT(tc_cond_accept_q("gzip;q=0", "gzip"), 0);
    CHECK_EQ_INT(tc_cond_accept_q("gzip ; q=0.5", "gzip"), 500);
    CHECK_EQ_INT(tc_cond_accept_q("gzip;Q=0.125", "gzip"), 125);
    CHECK_EQ_INT(tc_cond_accept_q("*", "gzip"), 1000);
    CHECK_EQ_INT(tc_cond_accept_q("*;q=0", "identity"), 0);
    CHECK_EQ_INT(tc_cond_accept_q("*;q=0, identity;q=0.2", "identity"), 200);
    CHECK_EQ_INT(tc_cond_accept_q("identity;q=0", "identity"), 0);
    CHECK_EQ_INT(tc_cond_accept_q("br", "identity"), 1000);
    /* malformed members are skipped, the rest still counts */
    CHECK_EQ_INT(tc_cond_accept_q("gzip;q=2", "gzip"), 0);
    CHECK_EQ_INT(tc_cond_accept_q("gzip;q=0.1234", "gzip"), 0);
    CHECK_EQ_INT(tc_cond_accept_q("gzip;q=1.5", "gzip"), 0);
    CHECK_EQ_INT(tc_cond_accept_q("gzip;q", "gzip"), 0);
    CHECK_EQ_INT(tc_cond_accept_q("gzip;q=, br", "br"), 1000);
    CHECK_EQ_INT(tc_cond_accept_q("\"gzip\", gzip;q=0.3", "gzip"), 300);
    CHECK_EQ_INT(tc_cond_accept_q("gzipx", "gzip"), 0);
    CHECK_EQ_INT(tc_cond_accept_q("gzip;q=0.3, gzip;q=0.6", "gzip"), 600);
}

int main(void)
{
    test_none_match();
    test_match();
    test_dates();
    test_evaluate();
    test_accept();
    return check_report();
}

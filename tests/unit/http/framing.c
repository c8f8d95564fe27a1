/*
 * Unit tests of src/http/framing.c: what a request's Transfer-Encoding earns.
 * Pure functions: no server.
 */
#include <string.h>

#include "check.h"
#include "http/framing.h"

static int te(const char *v)
{
    return tc_http_te_status(v, strlen(v));
}

int main(void)
{
    /* the one coding libmicrohttpd decodes */
    CHECK_EQ_INT(te("chunked"), 0);
    CHECK_EQ_INT(te("Chunked"), 0);
    CHECK_EQ_INT(te("CHUNKED"), 0);
    /* codings the server does not implement, chunked last: 501 */
    CHECK_EQ_INT(te("gzip, chunked"), 501);
    CHECK_EQ_INT(te("gzip,chunked"), 501);
    CHECK_EQ_INT(te("deflate , gzip ,chunked"), 501);
    CHECK_EQ_INT(te("x-custom;a=1;b=\"q \\\" s\", chunked"), 501);
    CHECK_EQ_INT(te(", gzip,, chunked"), 501); /* empty list elements are ignored */
    /* chunked not last, twice, absent, or with parameters: 400 */
    CHECK_EQ_INT(te("chunked, gzip"), 400);
    CHECK_EQ_INT(te("gzip"), 400);
    CHECK_EQ_INT(te("identity"), 400);
    CHECK_EQ_INT(te("chunked, chunked"), 400);
    CHECK_EQ_INT(te("gzip, chunked, chunked"), 400);
    CHECK_EQ_INT(te("chunked;x=1"), 400);
    CHECK_EQ_INT(te("gzip, chunked;x=1"), 400);
    /* chunked alone, but not the exact value libmicrohttpd compares with */
    CHECK_EQ_INT(te("chunked "), 400);
    CHECK_EQ_INT(te("chunked,"), 400);
    /* not a list of codings */
    CHECK_EQ_INT(te(""), 400);
    CHECK_EQ_INT(te(" , "), 400);
    CHECK_EQ_INT(te("gzip chunked"), 400);
    CHECK_EQ_INT(te("gzip/1, chunked"), 400);
    CHECK_EQ_INT(te("gzip;, chunked"), 400);
    CHECK_EQ_INT(te("gzip;a, chunked"), 400);
    CHECK_EQ_INT(te("gzip;a=, chunked"), 400);
    CHECK_EQ_INT(te("gzip;a=\"open, chunked"), 400);
    CHECK_EQ_INT(te("gzip;a=\"x\\"), 400);
    CHECK_EQ_INT(tc_http_te_status(NULL, 0), 400);
    /* the length is what counts, not a NUL */
    CHECK_EQ_INT(tc_http_te_status("chunked\0junk", 12), 400);
    CHECK_EQ_INT(tc_http_te_status("chunkedjunk", 7), 0);
    return check_report();
}

/*
 * Procedure input validation (src/app/input.c): exact fields, types, bounds,
 * unknown fields refused, and the messages a client sees.
 */
#include <string.h>

#include "app/input.h"
#include "check.h"

static const tc_in_field UPDATE[] = {
    {.name = "name", .type = TC_IN_STRING, .min_len = 1, .max_len = 5},
    {.name = "avatarUrl", .type = TC_IN_STRING, .nullable = true, .max_len = 100, .check = tc_in_url},
    {.name = "limit", .type = TC_IN_INT, .min = 1, .max = 50},
};
#define NUPDATE ((int)(sizeof(UPDATE) / sizeof(UPDATE[0])))

static int run(const char *json, char *msg, size_t len)
{
    json_error_t e;
    json_t *in = json ? json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e) : NULL;
    REQUIRE(json == NULL || in != NULL);
    int r = tc_input_check(in, UPDATE, NUPDATE, msg, len);
    json_decref(in);
    return r;
}

static void accepts_valid(void)
{
    char msg[200];
    CHECK_EQ_INT(run("{\"name\":\"Ann\"}", msg, sizeof(msg)), 0);
    CHECK_EQ_INT(run("{\"name\":\"Ünïç\"}", msg, sizeof(msg)), 0); /* 4 characters, 7 bytes */
    CHECK_EQ_INT(run("{\"avatarUrl\":null,\"limit\":50}", msg, sizeof(msg)), 0);
    CHECK_EQ_INT(run("{}", msg, sizeof(msg)), 0);
    CHECK_EQ_INT(run(NULL, msg, sizeof(msg)), 0);
}

static void refuses_with_precise_messages(void)
{
    struct { const char *json, *msg; } cases[] = {
        {"{\"nme\":\"x\"}", "input: unknown field 'nme'"},
        {"{\"name\":5}", "input.name: expected a string"},
        {"{\"name\":\"\"}", "input.name: must be between 1 and 5 characters"},
        {"{\"name\":\"abcdef\"}", "input.name: must be between 1 and 5 characters"},
        {"{\"name\":null}", "input.name: must not be null"},
        {"{\"limit\":0}", "input.limit: must be between 1 and 50"},
        {"{\"limit\":1.5}", "input.limit: expected an integer"},
        {"{\"limit\":\"3\"}", "input.limit: expected an integer"},
        {"{\"avatarUrl\":\"javascript:alert(1)\"}", "input.avatarUrl: not an http(s) URL"},
        {"[1]", "input: expected an object"},
        {"\"x\"", "input: expected an object"},
        {"{\"name\":\"a\\u0000b\"}", "input.name: must not contain NUL characters"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char msg[200] = "";
        CHECK_EQ_INT(run(cases[i].json, msg, sizeof(msg)), -1);
        CHECK_EQ_STR(msg, cases[i].msg);
    }
}

static void required_fields(void)
{
    const tc_in_field login[] = {{.name = "email", .type = TC_IN_STRING, .required = true,
                                  .min_len = 3, .max_len = 254, .check = tc_in_email}};
    char msg[200];
    CHECK_EQ_INT(tc_input_check(NULL, login, 1, msg, sizeof(msg)), -1);
    CHECK_EQ_STR(msg, "input.email: required");
    json_t *in = json_pack("{s:s}", "email", "not-an-email");
    CHECK_EQ_INT(tc_input_check(in, login, 1, msg, sizeof(msg)), -1);
    CHECK_EQ_STR(msg, "input.email: not an email address");
    json_decref(in);
}

static void checks(void)
{
    CHECK(tc_in_email("a@b.co") == NULL);
    CHECK(tc_in_email("a@b") != NULL);
    CHECK(tc_in_email("@b.co") != NULL);
    CHECK(tc_in_email("a@@b.co") != NULL);
    CHECK(tc_in_slug("hello-world-2") == NULL);
    CHECK(tc_in_slug("Hello") != NULL);
    CHECK(tc_in_slug("-x") != NULL);
    CHECK(tc_in_slug("a/b") != NULL);
    CHECK(tc_in_url("https://example.com/a.png") == NULL);
    CHECK(tc_in_url("https://") != NULL);
    CHECK(tc_in_url("https://a b") != NULL);
}

static void cursors(void)
{
    long long pub = 0, id = 0;
    CHECK_EQ_INT(tc_in_cursor("1700000000000.42", &pub, &id), 0);
    CHECK_EQ_INT(pub, 1700000000000LL);
    CHECK_EQ_INT(id, 42);
    CHECK_EQ_INT(tc_in_cursor("9223372036854775807.0", &pub, &id), 0);
    CHECK_EQ_INT(pub, 9223372036854775807LL);
    CHECK_EQ_INT(tc_in_cursor("0.9223372036854775807", &pub, &id), 0);
    CHECK_EQ_INT(tc_in_cursor("0.0", &pub, &id), 0);
    CHECK_EQ_INT(pub, 0);
    CHECK_EQ_INT(id, 0);
    static const char *const bad[] = {
        "",  ".",   "1.",  ".1",    "1",      " 1.2",  "1.2 ", "+1.2", "1.+2", "-1.2",  "1.-2",
        "1..2", "1.2.3", "0x1.2", "1.2\n", "\r\n1.2", "1e3.2", "9223372036854775808.1",
        "1.9223372036854775808", "18446744073709551616.1", "12345678901234567890.1",
        "00000000000000000001.1",
        /* a second spelling of a post's cursor would be a second cache key (fuzz/cursor.c) */
        "045678.7", "1700000000000.042", "00.0", "0.00", "01.1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (!CHECK(tc_in_cursor(bad[i], &pub, &id) == -1))
            fprintf(stderr, "    accepted \"%s\"\n", bad[i]);
}

int main(void)
{
    cursors();
    accepts_valid();
    refuses_with_precise_messages();
    required_fields();
    checks();
    return check_report();
}

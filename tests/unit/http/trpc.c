/*
 * Unit tests of src/http/trpc.c: every request-parsing rule (methods, content
 * types, paths, batches, inputs, URL decoding, limits), the kind checks, the
 * error codes table, response writing and the batch status rule. Pure
 * functions only: no server, no sockets (those are tests/integration/http/).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http/trpc.h"

/* Parses a GET/POST quickly. target is "path?query" after "/trpc/". */
static int parse(tc_trpc_request *r, const char *method, const char *target, const char *ctype,
                 const char *body)
{
    tc_trpc_http in = {0};
    in.method = method;
    const char *q = strchr(target, '?');
    in.path = target;
    in.path_len = q ? (size_t)(q - target) : strlen(target);
    if (q) {
        in.query = q + 1;
        in.query_len = strlen(q + 1);
    }
    in.content_type = ctype;
    in.body = body;
    in.body_len = body ? strlen(body) : 0;
    return tc_trpc_parse(r, &in, NULL);
}

static int json_eq_text(const json_t *j, const char *text)
{
    if (j == NULL)
        return text == NULL;
    json_t *want = json_loads(text, JSON_DECODE_ANY, NULL);
    int eq = want && json_equal((json_t *)j, want);
    json_decref(want);
    return eq;
}

static void test_codes(void)
{
    static const struct {
        tc_trpc_code c;
        const char *name;
        int rpc, http;
    } t[] = {
        {TC_TRPC_PARSE_ERROR, "PARSE_ERROR", -32700, 400},
        {TC_TRPC_BAD_REQUEST, "BAD_REQUEST", -32600, 400},
        {TC_TRPC_UNAUTHORIZED, "UNAUTHORIZED", -32001, 401},
        {TC_TRPC_FORBIDDEN, "FORBIDDEN", -32003, 403},
        {TC_TRPC_NOT_FOUND, "NOT_FOUND", -32004, 404},
        {TC_TRPC_METHOD_NOT_SUPPORTED, "METHOD_NOT_SUPPORTED", -32005, 405},
        {TC_TRPC_TIMEOUT, "TIMEOUT", -32008, 408},
        {TC_TRPC_CONFLICT, "CONFLICT", -32009, 409},
        {TC_TRPC_PRECONDITION_FAILED, "PRECONDITION_FAILED", -32012, 412},
        {TC_TRPC_PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", -32013, 413},
        {TC_TRPC_UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", -32015, 415},
        {TC_TRPC_UNPROCESSABLE_CONTENT, "UNPROCESSABLE_CONTENT", -32022, 422},
        {TC_TRPC_TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS", -32029, 429},
        {TC_TRPC_CLIENT_CLOSED_REQUEST, "CLIENT_CLOSED_REQUEST", -32099, 499},
        {TC_TRPC_INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR", -32603, 500},
        {TC_TRPC_NOT_IMPLEMENTED, "NOT_IMPLEMENTED", -32603, 501},
        {TC_TRPC_BAD_GATEWAY, "BAD_GATEWAY", -32603, 502},
        {TC_TRPC_SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", -32603, 503},
        {TC_TRPC_GATEWAY_TIMEOUT, "GATEWAY_TIMEOUT", -32603, 504},
    };
    CHECK_EQ_INT(sizeof t / sizeof t[0], TC_TRPC_CODE_COUNT - 1);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        CHECK_EQ_STR(tc_trpc_code_name(t[i].c), t[i].name);
        CHECK_EQ_INT(tc_trpc_code_rpc(t[i].c), t[i].rpc);
        CHECK_EQ_INT(tc_trpc_code_http(t[i].c), t[i].http);
        CHECK_EQ_INT(tc_trpc_code_from_name(t[i].name), t[i].c);
    }
    CHECK(tc_trpc_code_name(TC_TRPC_OK) == NULL);
    CHECK(tc_trpc_code_name((tc_trpc_code)999) == NULL);
    CHECK_EQ_INT(tc_trpc_code_http((tc_trpc_code)-5), 500);
    CHECK_EQ_INT(tc_trpc_code_from_name("nope"), TC_TRPC_OK);
    CHECK_EQ_INT(tc_trpc_code_from_name(NULL), TC_TRPC_OK);
}

static void test_single_query(void)
{
    tc_trpc_request r;
    /* input={"id":42} encoded the way encodeURIComponent does */
    CHECK_EQ_INT(parse(&r, "GET", "user.byId?input=%7B%22id%22%3A42%7D", NULL, NULL), 0);
    CHECK_EQ_INT(r.method, TC_TRPC_GET);
    CHECK_EQ_INT(r.batch, 0);
    REQUIRE(r.ncalls == 1);
    CHECK_EQ_STR(r.calls[0].path, "user.byId");
    CHECK(json_eq_text(r.calls[0].input, "{\"id\":42}"));
    tc_trpc_request_free(&r);
    CHECK(r.calls == NULL && r.ncalls == 0);

    /* no input at all: absent, not null */
    CHECK_EQ_INT(parse(&r, "GET", "user.me", NULL, NULL), 0);
    REQUIRE(r.ncalls == 1);
    CHECK(r.calls[0].input == NULL);
    tc_trpc_request_free(&r);

    /* input= (empty) is absent too (tRPC: `if (queryInput)`) */
    CHECK_EQ_INT(parse(&r, "GET", "user.me?input=", NULL, NULL), 0);
    CHECK(r.calls[0].input == NULL);
    tc_trpc_request_free(&r);

    /* explicit JSON null is null, not absent */
    CHECK_EQ_INT(parse(&r, "GET", "user.me?input=null", NULL, NULL), 0);
    CHECK(r.calls[0].input != NULL && json_is_null(r.calls[0].input));
    tc_trpc_request_free(&r);

    /* scalars are inputs */
    CHECK_EQ_INT(parse(&r, "GET", "a?input=%22hi%22", NULL, NULL), 0);
    CHECK(json_is_string(r.calls[0].input) &&
          strcmp(json_string_value(r.calls[0].input), "hi") == 0);
    tc_trpc_request_free(&r);
    CHECK_EQ_INT(parse(&r, "GET", "a?input=12", NULL, NULL), 0);
    CHECK(json_is_integer(r.calls[0].input) && json_integer_value(r.calls[0].input) == 12);
    tc_trpc_request_free(&r);

    /* HEAD is parsed like GET; GET ignores the content type */
    CHECK_EQ_INT(parse(&r, "HEAD", "a", "text/plain", NULL), 0);
    CHECK_EQ_INT(r.method, TC_TRPC_GET);
    tc_trpc_request_free(&r);

    /* the first `input` wins, other args are ignored */
    CHECK_EQ_INT(parse(&r, "GET", "a?x=1&input=1&input=2&&y", NULL, NULL), 0);
    CHECK(json_integer_value(r.calls[0].input) == 1);
    tc_trpc_request_free(&r);

    /* a GET body is ignored */
    CHECK_EQ_INT(parse(&r, "GET", "a", "application/json", "{\"x\":1}"), 0);
    CHECK(r.calls[0].input == NULL);
    tc_trpc_request_free(&r);

    /* without batch=1 a comma is part of the one path (tRPC answers NOT_FOUND) */
    CHECK_EQ_INT(parse(&r, "GET", "a,b", NULL, NULL), 0);
    REQUIRE(r.ncalls == 1);
    CHECK_EQ_STR(r.calls[0].path, "a,b");
    tc_trpc_request_free(&r);
}

static void test_url_decoding(void)
{
    tc_trpc_request r;
    /* '+' is a space in the query (URLSearchParams), %2B is '+' */
    CHECK_EQ_INT(parse(&r, "GET", "a?input=%22a+b%2Bc%22", NULL, NULL), 0);
    CHECK_EQ_STR(json_string_value(r.calls[0].input), "a b+c");
    tc_trpc_request_free(&r);

    /* a broken %-escape in the query is kept as it is (URLSearchParams) */
    CHECK_EQ_INT(parse(&r, "GET", "a?input=%22100%25%20%zz%2%22", NULL, NULL), 0);
    CHECK_EQ_STR(json_string_value(r.calls[0].input), "100% %zz%2");
    tc_trpc_request_free(&r);

    /* lower-case hex, and UTF-8 */
    CHECK_EQ_INT(parse(&r, "GET", "a?input=%22%c3%a9%E2%82%AC%22", NULL, NULL), 0);
    CHECK_EQ_STR(json_string_value(r.calls[0].input), "\xc3\xa9\xe2\x82\xac");
    tc_trpc_request_free(&r);

    /* names are decoded too: %69nput is input; batch needs exactly "1" */
    CHECK_EQ_INT(parse(&r, "GET", "a?%69nput=7&batch=true", NULL, NULL), 0);
    CHECK_EQ_INT(r.batch, 0);
    CHECK(json_integer_value(r.calls[0].input) == 7);
    tc_trpc_request_free(&r);
    CHECK_EQ_INT(parse(&r, "GET", "a?b%61tch=1", NULL, NULL), 0);
    CHECK_EQ_INT(r.batch, 1);
    tc_trpc_request_free(&r);
    CHECK_EQ_INT(parse(&r, "GET", "a?batch=1&batch=0", NULL, NULL), 0);
    CHECK_EQ_INT(r.batch, 1); /* first wins */
    tc_trpc_request_free(&r);
    CHECK_EQ_INT(parse(&r, "GET", "a?batch", NULL, NULL), 0);
    CHECK_EQ_INT(r.batch, 0);
    tc_trpc_request_free(&r);

    /* the path is decoded like decodeURIComponent, before the batch split */
    CHECK_EQ_INT(parse(&r, "GET", "user%2Eme%2Cpost.list?batch=1", NULL, NULL), 0);
    REQUIRE(r.ncalls == 2);
    CHECK_EQ_STR(r.calls[0].path, "user.me");
    CHECK_EQ_STR(r.calls[1].path, "post.list");
    tc_trpc_request_free(&r);
    /* '+' stays '+' in a path */
    CHECK_EQ_INT(parse(&r, "GET", "a+b", NULL, NULL), 0);
    CHECK_EQ_STR(r.calls[0].path, "a+b");
    tc_trpc_request_free(&r);

    /* malformed escapes, invalid UTF-8 and NUL in the path: BAD_REQUEST */
    const char *bad[] = {"a%",        "a%2",    "a%zz",  "%C3%28",
                         "%ED%A0%80", "%C0%AF", "a%00b", "%F4%90%80%80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(parse(&r, "GET", bad[i], NULL, NULL), TC_HTTP_EPROTO);
        CHECK_EQ_INT(r.error, TC_TRPC_BAD_REQUEST);
        tc_trpc_request_free(&r);
    }
}

static void test_mutation(void)
{
    tc_trpc_request r;
    CHECK_EQ_INT(parse(&r, "POST", "user.update", "application/json", "{\"name\":\"x\"}"), 0);
    CHECK_EQ_INT(r.method, TC_TRPC_POST);
    CHECK(json_eq_text(r.calls[0].input, "{\"name\":\"x\"}"));
    tc_trpc_request_free(&r);

    /* media type parameters and case */
    CHECK_EQ_INT(parse(&r, "POST", "a", "Application/JSON; charset=utf-8", "1"), 0);
    tc_trpc_request_free(&r);

    /* an empty body is no input (what @trpc/client sends for a mutation without one) */
    CHECK_EQ_INT(parse(&r, "POST", "auth.logout", "application/json", ""), 0);
    CHECK(r.calls[0].input == NULL);
    tc_trpc_request_free(&r);

    /* the query's input is not read for POST */
    CHECK_EQ_INT(parse(&r, "POST", "a?input=5", "application/json", NULL), 0);
    CHECK(r.calls[0].input == NULL);
    tc_trpc_request_free(&r);

    /* content types */
    CHECK_EQ_INT(parse(&r, "POST", "a", NULL, "{}"), TC_HTTP_EPROTO);
    CHECK_EQ_INT(r.error, TC_TRPC_UNSUPPORTED_MEDIA_TYPE);
    CHECK_EQ_STR(r.message, "Missing content-type header");
    tc_trpc_request_free(&r);
    CHECK_EQ_INT(parse(&r, "POST", "a", "text/plain", "{}"), TC_HTTP_EPROTO);
    CHECK_EQ_INT(r.error, TC_TRPC_UNSUPPORTED_MEDIA_TYPE);
    CHECK(strstr(r.message, "text/plain") != NULL);
    tc_trpc_request_free(&r);
    CHECK_EQ_INT(parse(&r, "POST", "a", "multipart/form-data; boundary=x", "{}"), TC_HTTP_EPROTO);
    CHECK_EQ_INT(r.error, TC_TRPC_UNSUPPORTED_MEDIA_TYPE);
    tc_trpc_request_free(&r);

    /* other methods */
    CHECK_EQ_INT(parse(&r, "PUT", "a", "application/json", "{}"), TC_HTTP_EPROTO);
    CHECK_EQ_INT(r.error, TC_TRPC_METHOD_NOT_SUPPORTED);
    tc_trpc_request_free(&r);
    CHECK_EQ_INT(parse(&r, "get", "a", NULL, NULL),
                 TC_HTTP_EPROTO); /* methods are case-sensitive */
    tc_trpc_request_free(&r);
}

static void test_parse_errors(void)
{
    tc_trpc_request r;
    const char *bad[] = {"{",   "{\"a\":}",   "[1,]",        "nul",      "1 2",
                         "'x'", "{\"a\":1}}", "\"\\u0000\"", "\"\xff\"", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(parse(&r, "POST", "x.y", "application/json", bad[i]), TC_HTTP_EPROTO);
        CHECK_EQ_INT(r.error, TC_TRPC_PARSE_ERROR);
        CHECK_EQ_STR(r.error_path, "x.y"); /* single call: the error names the procedure */
        CHECK(r.message[0] != '\0');
        tc_trpc_request_free(&r);
    }
    /* malformed JSON in the query */
    CHECK_EQ_INT(parse(&r, "GET", "a?input=%7B", NULL, NULL), TC_HTTP_EPROTO);
    CHECK_EQ_INT(r.error, TC_TRPC_PARSE_ERROR);
    tc_trpc_request_free(&r);

    /* the error body of a refused request */
    CHECK_EQ_INT(parse(&r, "POST", "x.y", "application/json", "{"), TC_HTTP_EPROTO);
    size_t len;
    int status;
    char *body = tc_trpc_request_error_body(&r, &len, &status);
    REQUIRE(body != NULL);
    CHECK_EQ_INT(status, 400);
    json_t *j = json_loads(body, 0, NULL);
    REQUIRE(j != NULL);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "error"), "code")), -32700);
    CHECK_EQ_STR(json_string_value(
                     json_object_get(json_object_get(json_object_get(j, "error"), "data"), "path")),
                 "x.y");
    json_decref(j);
    free(body);
    tc_trpc_request_free(&r);
}

static void test_batch(void)
{
    tc_trpc_request r;
    /* GET batch: input={"0":{"id":1},"1":"s"} */
    CHECK_EQ_INT(parse(&r, "GET",
                       "user.byId,blog.bySlug?batch=1&input=%7B%220%22%3A%7B%22id%22%3A1%7D%2C%"
                       "221%22%3A%22s%22%7D",
                       NULL, NULL),
                 0);
    CHECK_EQ_INT(r.batch, 1);
    REQUIRE(r.ncalls == 2);
    CHECK_EQ_STR(r.calls[0].path, "user.byId");
    CHECK_EQ_STR(r.calls[1].path, "blog.bySlug");
    CHECK(json_eq_text(r.calls[0].input, "{\"id\":1}"));
    CHECK_EQ_STR(json_string_value(r.calls[1].input), "s");
    CHECK(r.error_path == NULL);
    tc_trpc_request_free(&r);

    /* a missing key is no input for that call (the client drops undefined) */
    CHECK_EQ_INT(parse(&r, "POST", "a,b,c?batch=1", "application/json", "{\"1\":null}"), 0);
    REQUIRE(r.ncalls == 3);
    CHECK(r.calls[0].input == NULL);
    CHECK(r.calls[1].input != NULL && json_is_null(r.calls[1].input));
    CHECK(r.calls[2].input == NULL);
    tc_trpc_request_free(&r);

    /* no input at all; and what the client sends for all-undefined inputs: {} */
    CHECK_EQ_INT(parse(&r, "GET", "a,b?batch=1", NULL, NULL), 0);
    CHECK(r.ncalls == 2 && r.calls[0].input == NULL && r.calls[1].input == NULL);
    tc_trpc_request_free(&r);
    CHECK_EQ_INT(parse(&r, "GET", "a,b?batch=1&input=%7B%7D", NULL, NULL), 0);
    CHECK(r.ncalls == 2 && r.calls[0].input == NULL && r.calls[1].input == NULL);
    tc_trpc_request_free(&r);

    /* a batch of one */
    CHECK_EQ_INT(parse(&r, "GET", "a?batch=1&input=%7B%220%22%3A3%7D", NULL, NULL), 0);
    CHECK(r.ncalls == 1 && r.batch && json_integer_value(r.calls[0].input) == 3);
    tc_trpc_request_free(&r);

    /* empty procedure names are calls too (NOT_FOUND later) */
    CHECK_EQ_INT(parse(&r, "GET", "a,,?batch=1", NULL, NULL), 0);
    REQUIRE(r.ncalls == 3);
    CHECK_EQ_STR(r.calls[1].path, "");
    CHECK_EQ_STR(r.calls[2].path, "");
    tc_trpc_request_free(&r);

    /* batch input must be an object */
    const char *not_obj[] = {"[1,2]", "null", "1", "\"x\""};
    for (size_t i = 0; i < sizeof not_obj / sizeof not_obj[0]; i++) {
        CHECK_EQ_INT(parse(&r, "POST", "a,b?batch=1", "application/json", not_obj[i]),
                     TC_HTTP_EPROTO);
        CHECK_EQ_INT(r.error, TC_TRPC_BAD_REQUEST);
        CHECK(r.error_path == NULL);
        tc_trpc_request_free(&r);
    }
    /* keys that match no call */
    const char *bad_keys[] = {
        "{\"2\":1}",  "{\"x\":1}",  "{\"01\":1}", "{\"-1\":1}",
        "{\" 0\":1}", "{\"0 \":1}", "{\"\":1}",   "{\"99999999999999999999999\":1}"};
    for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
        CHECK_EQ_INT(parse(&r, "POST", "a,b?batch=1", "application/json", bad_keys[i]),
                     TC_HTTP_EPROTO);
        CHECK_EQ_INT(r.error, TC_TRPC_BAD_REQUEST);
        tc_trpc_request_free(&r);
    }

    /* too many calls */
    char target[1024] = "p0";
    for (int i = 1; i < 65; i++)
        snprintf(target + strlen(target), sizeof target - strlen(target), ",p%d", i);
    strcat(target, "?batch=1");
    CHECK_EQ_INT(parse(&r, "GET", target, NULL, NULL), TC_HTTP_EPROTO); /* 65 calls */
    CHECK_EQ_INT(r.error, TC_TRPC_BAD_REQUEST);
    tc_trpc_request_free(&r);
    *strrchr(target, ',') = '\0';
    strcat(target, "?batch=1");
    CHECK_EQ_INT(parse(&r, "GET", target, NULL, NULL), 0); /* 64 calls */
    CHECK_EQ_INT(r.ncalls, 64);
    CHECK_EQ_STR(r.calls[63].path, "p63");
    tc_trpc_request_free(&r);
}

static void test_limits(void)
{
    tc_trpc_request r;
    tc_trpc_limits lim;
    tc_trpc_limits_init(&lim);
    CHECK_EQ_INT(lim.max_calls, 64);
    CHECK_EQ_INT(lim.max_depth, 64);
    CHECK_EQ_INT(lim.max_input_bytes, 1024 * 1024);

    /* deep nesting: refused before jansson recurses */
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 1);
    REQUIRE(deep != NULL);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[depth * 2] = '\0';
    CHECK_EQ_INT(parse(&r, "POST", "a", "application/json", deep), TC_HTTP_EPROTO);
    CHECK_EQ_INT(r.error, TC_TRPC_BAD_REQUEST);
    tc_trpc_request_free(&r);
    /* exactly the limit is fine; brackets inside strings do not count */
    deep[64] = '\0';
    memset(deep + 64, ']', 64);
    deep[128] = '\0';
    memset(deep, '[', 64);
    CHECK_EQ_INT(parse(&r, "POST", "a", "application/json", deep), 0);
    tc_trpc_request_free(&r);
    free(deep);
    CHECK_EQ_INT(
        parse(&r, "POST", "a", "application/json",
              "\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[\""),
        0);
    tc_trpc_request_free(&r);

    /* huge input: PAYLOAD_TOO_LARGE, body and query */
    lim.max_input_bytes = 100;
    char big[300];
    memset(big, ' ', sizeof big - 1);
    big[0] = '1';
    big[sizeof big - 1] = '\0';
    tc_trpc_http in = {.method = "POST",
                       .path = "a",
                       .path_len = 1,
                       .content_type = "application/json",
                       .body = big,
                       .body_len = strlen(big)};
    CHECK_EQ_INT(tc_trpc_parse(&r, &in, &lim), TC_HTTP_EPROTO);
    CHECK_EQ_INT(r.error, TC_TRPC_PAYLOAD_TOO_LARGE);
    tc_trpc_request_free(&r);
    char q[400] = "input=";
    memset(q + 6, '1', 200);
    q[206] = '\0';
    tc_trpc_http gin = {
        .method = "GET", .path = "a", .path_len = 1, .query = q, .query_len = strlen(q)};
    CHECK_EQ_INT(tc_trpc_parse(&r, &gin, &lim), TC_HTTP_EPROTO);
    CHECK_EQ_INT(r.error, TC_TRPC_PAYLOAD_TOO_LARGE);
    tc_trpc_request_free(&r);

    /* a big but allowed input parses */
    size_t n = 500000;
    char *arr = malloc(n * 2 + 3);
    REQUIRE(arr != NULL);
    arr[0] = '[';
    for (size_t i = 0; i < n; i++) {
        arr[1 + 2 * i] = '1';
        arr[2 + 2 * i] = ',';
    }
    arr[2 * n] = ']';
    arr[2 * n + 1] = '\0';
    CHECK_EQ_INT(parse(&r, "POST", "a", "application/json", arr), 0);
    CHECK_EQ_INT(json_array_size(r.calls[0].input), n);
    tc_trpc_request_free(&r);
    free(arr);

    /* bad arguments */
    CHECK_EQ_INT(tc_trpc_parse(NULL, &in, NULL), TC_HTTP_EINVAL);
    CHECK_EQ_INT(tc_trpc_parse(&r, NULL, NULL), TC_HTTP_EINVAL);
    tc_trpc_request_free(&r);
    tc_trpc_request_free(NULL);
}

static void test_kinds(void)
{
    tc_trpc_request r;
    char msg[256];
    REQUIRE(parse(&r, "GET", "a,b,c?batch=1", NULL, NULL) == 0);
    tc_trpc_kind qq[] = {TC_TRPC_QUERY, TC_TRPC_UNKNOWN, TC_TRPC_QUERY};
    CHECK_EQ_INT(tc_trpc_check_kinds(&r, qq, msg, sizeof msg), TC_TRPC_OK);
    tc_trpc_kind mixed[] = {TC_TRPC_UNKNOWN, TC_TRPC_MUTATION, TC_TRPC_QUERY};
    CHECK_EQ_INT(tc_trpc_check_kinds(&r, mixed, msg, sizeof msg), TC_TRPC_BAD_REQUEST);
    CHECK_EQ_STR(msg, "Cannot mix procedure types in call: mutation, query");

    CHECK_EQ_INT(tc_trpc_check_call(&r, TC_TRPC_QUERY), TC_TRPC_OK);
    CHECK_EQ_INT(tc_trpc_check_call(&r, TC_TRPC_MUTATION), TC_TRPC_METHOD_NOT_SUPPORTED);
    CHECK_EQ_INT(tc_trpc_check_call(&r, TC_TRPC_UNKNOWN), TC_TRPC_NOT_FOUND);
    CHECK_EQ_STR(tc_trpc_call_message(msg, sizeof msg, &r, 1, TC_TRPC_UNKNOWN, TC_TRPC_NOT_FOUND),
                 "No procedure found on path \"b\"");
    CHECK_EQ_STR(tc_trpc_call_message(msg, sizeof msg, &r, 0, TC_TRPC_MUTATION,
                                      TC_TRPC_METHOD_NOT_SUPPORTED),
                 "Unsupported GET-request to mutation procedure at path \"a\"");
    char tiny[8];
    tc_trpc_call_message(tiny, sizeof tiny, &r, 0, TC_TRPC_UNKNOWN, TC_TRPC_NOT_FOUND);
    CHECK_EQ_INT(strlen(tiny), 7);
    tc_trpc_request_free(&r);

    REQUIRE(parse(&r, "POST", "a", "application/json", NULL) == 0);
    CHECK_EQ_INT(tc_trpc_check_call(&r, TC_TRPC_QUERY), TC_TRPC_METHOD_NOT_SUPPORTED);
    CHECK_EQ_INT(tc_trpc_check_call(&r, TC_TRPC_MUTATION), TC_TRPC_OK);
    CHECK_EQ_STR(
        tc_trpc_call_message(msg, sizeof msg, &r, 0, TC_TRPC_QUERY, TC_TRPC_METHOD_NOT_SUPPORTED),
        "Unsupported POST-request to query procedure at path \"a\"");
    tc_trpc_request_free(&r);

    CHECK_EQ_STR(tc_trpc_allow(TC_TRPC_QUERY), "GET, HEAD");
    CHECK_EQ_STR(tc_trpc_allow(TC_TRPC_MUTATION), "POST");
    CHECK_EQ_STR(tc_trpc_allow(TC_TRPC_UNKNOWN), "GET, HEAD, POST");
}

/* Finishes o and compares body and status. */
static void expect_out(tc_trpc_out *o, const char *body, int status)
{
    char *b = NULL;
    size_t len = 0;
    int st = 0;
    CHECK_EQ_INT(tc_trpc_out_finish(o, &b, &len, &st), 0);
    CHECK_EQ_STR(b, body);
    CHECK_EQ_INT(len, b ? strlen(b) : 0);
    CHECK_EQ_INT(st, status);
    free(b);
}

static void test_write(void)
{
    tc_trpc_out o;
    tc_trpc_out_init(&o, 0);
    json_t *d = json_pack("{s:i,s:s}", "id", 42, "name", "Ann");
    tc_trpc_out_data(&o, d);
    json_decref(d);
    expect_out(&o, "{\"result\":{\"data\":{\"id\":42,\"name\":\"Ann\"}}}", 200);

    /* undefined data, scalar data, raw data */
    tc_trpc_out_data(&o, NULL);
    expect_out(&o, "{\"result\":{}}", 200);
    json_t *nul = json_null();
    tc_trpc_out_data(&o, nul);
    expect_out(&o, "{\"result\":{\"data\":null}}", 200);
    tc_trpc_out_data_raw(&o, "[1,2]", 5);
    expect_out(&o, "{\"result\":{\"data\":[1,2]}}", 200);

    /* error shape, default message, escaping, no path */
    tc_trpc_out_error(&o, TC_TRPC_NOT_FOUND, "No procedure found on path \"user.me\"", "user.me");
    expect_out(&o,
               "{\"error\":{\"message\":\"No procedure found on path \\\"user.me\\\"\",\"code\":-"
               "32004,\"data\":{\"code\":\"NOT_FOUND\",\"httpStatus\":404,\"path\":\"user.me\"}}}",
               404);
    tc_trpc_out_error(&o, TC_TRPC_UNAUTHORIZED, NULL, NULL);
    expect_out(&o,
               "{\"error\":{\"message\":\"UNAUTHORIZED\",\"code\":-32001,\"data\":{\"code\":"
               "\"UNAUTHORIZED\",\"httpStatus\":401}}}",
               401);
    tc_trpc_out_error(&o, TC_TRPC_BAD_REQUEST, "a\\b\n\x01\t\xff\xc3\xa9", "p\"");
    expect_out(
        &o,
        "{\"error\":{\"message\":\"a\\\\b\\n\\u0001\\t\xef\xbf\xbd\xc3\xa9\",\"code\":-32600,"
        "\"data\":{\"code\":\"BAD_REQUEST\",\"httpStatus\":400,\"path\":\"p\\\"\"}}}",
        400);
    /* an out-of-range code is reported as INTERNAL_SERVER_ERROR */
    tc_trpc_out_error(&o, (tc_trpc_code)1234, NULL, NULL);
    expect_out(&o,
               "{\"error\":{\"message\":\"INTERNAL_SERVER_ERROR\",\"code\":-32603,\"data\":{"
               "\"code\":\"INTERNAL_SERVER_ERROR\",\"httpStatus\":500}}}",
               500);

    /* a non-batch writer takes exactly one item */
    char *b = NULL;
    CHECK_EQ_INT(tc_trpc_out_finish(&o, &b, NULL, NULL), TC_HTTP_EINVAL);
    tc_trpc_out_data(&o, NULL);
    CHECK_EQ_INT(tc_trpc_out_data(&o, NULL), TC_HTTP_EINVAL);
    CHECK_EQ_INT(tc_trpc_out_finish(&o, &b, NULL, NULL), TC_HTTP_EINVAL);
    CHECK(b == NULL);
    tc_trpc_out_free(&o);
    tc_trpc_out_free(NULL);

    /* every JSON string the writer emits parses back */
    char *eb = tc_trpc_error_body(TC_TRPC_FORBIDDEN, "\x7f\x80 \xe2\x82 ok \xf0\x9f\x98\x80",
                                  "a\x01", NULL, NULL);
    REQUIRE(eb != NULL);
    json_t *j = json_loads(eb, 0, NULL);
    CHECK(j != NULL);
    json_decref(j);
    free(eb);
}

static void test_batch_status(void)
{
    tc_trpc_out o;
    /* all succeeded: 200 */
    tc_trpc_out_init(&o, 1);
    tc_trpc_out_data_raw(&o, "1", 1);
    tc_trpc_out_data(&o, NULL);
    expect_out(&o, "[{\"result\":{\"data\":1}},{\"result\":{}}]", 200);
    /* all failed with one status: that status */
    tc_trpc_out_error(&o, TC_TRPC_UNAUTHORIZED, NULL, "a");
    tc_trpc_out_error(&o, TC_TRPC_UNAUTHORIZED, "x", "b");
    char *b;
    int st;
    CHECK_EQ_INT(tc_trpc_out_finish(&o, &b, NULL, &st), 0);
    CHECK_EQ_INT(st, 401);
    json_t *j = json_loads(b, 0, NULL);
    CHECK(json_is_array(j) && json_array_size(j) == 2);
    CHECK_EQ_STR(
        json_string_value(json_object_get(
            json_object_get(json_object_get(json_array_get(j, 1), "error"), "data"), "path")),
        "b");
    json_decref(j);
    free(b);
    /* two error codes, one HTTP status (PARSE_ERROR and BAD_REQUEST are both 400): 400 */
    tc_trpc_out_error(&o, TC_TRPC_PARSE_ERROR, NULL, NULL);
    tc_trpc_out_error(&o, TC_TRPC_BAD_REQUEST, NULL, NULL);
    CHECK_EQ_INT(tc_trpc_out_finish(&o, &b, NULL, &st), 0);
    CHECK_EQ_INT(st, 400);
    free(b);
    /* success and error: 207 */
    tc_trpc_out_data(&o, NULL);
    tc_trpc_out_error(&o, TC_TRPC_NOT_FOUND, NULL, "b");
    CHECK_EQ_INT(tc_trpc_out_finish(&o, &b, NULL, &st), 0);
    CHECK_EQ_INT(st, 207);
    free(b);
    /* two different errors: 207 */
    tc_trpc_out_error(&o, TC_TRPC_NOT_FOUND, NULL, "a");
    tc_trpc_out_error(&o, TC_TRPC_FORBIDDEN, NULL, "b");
    tc_trpc_out_error(&o, TC_TRPC_NOT_FOUND, NULL, "c");
    CHECK_EQ_INT(tc_trpc_out_finish(&o, &b, NULL, &st), 0);
    CHECK_EQ_INT(st, 207);
    free(b);
    /* mixed then back to the first status stays 207 */
    tc_trpc_out_data(&o, NULL);
    tc_trpc_out_error(&o, TC_TRPC_CONFLICT, NULL, NULL);
    tc_trpc_out_data(&o, NULL);
    CHECK_EQ_INT(tc_trpc_out_finish(&o, &b, NULL, &st), 0);
    CHECK_EQ_INT(st, 207);
    free(b);
    /* an empty batch */
    expect_out(&o, "[]", 200);
    tc_trpc_out_free(&o);
}

static void test_fast_path(void)
{
    const char *cached = "{\"id\":7,\"name\":\"B\"}";
    size_t len;
    char *b = tc_trpc_wrap_data(cached, strlen(cached), &len);
    REQUIRE(b != NULL);
    CHECK_EQ_STR(b, "{\"result\":{\"data\":{\"id\":7,\"name\":\"B\"}}}");
    CHECK_EQ_INT(len, strlen(b));
    CHECK_EQ_INT(tc_trpc_wrap_data_size(strlen(cached)), len);
    free(b);
    /* bytes are not parsed: whatever is there is copied */
    b = tc_trpc_wrap_data("not json", 8, &len);
    CHECK_EQ_STR(b, "{\"result\":{\"data\":not json}}");
    free(b);
    b = tc_trpc_wrap_data(NULL, 0, &len);
    CHECK_EQ_STR(b, "{\"result\":{}}");
    CHECK_EQ_INT(len, 13);
    free(b);
    char dst[64];
    memset(dst, '#', sizeof dst);
    tc_trpc_wrap_data_into(dst, "true", 4);
    CHECK(memcmp(dst, "{\"result\":{\"data\":true}}", 24) == 0 && dst[24] == '#');
    /* the same bytes as the general writer produces */
    json_t *v = json_loads(cached, 0, NULL);
    tc_trpc_out o;
    tc_trpc_out_init(&o, 0);
    tc_trpc_out_data(&o, v);
    char *w;
    size_t wl;
    int st;
    CHECK_EQ_INT(tc_trpc_out_finish(&o, &w, &wl, &st), 0);
    b = tc_trpc_wrap_data(cached, strlen(cached), &len);
    CHECK_EQ_STR(w, b);
    free(w);
    free(b);
    json_decref(v);
}

int main(void)
{
    test_codes();
    test_single_query();
    test_url_decoding();
    test_mutation();
    test_parse_errors();
    test_batch();
    test_limits();
    test_kinds();
    test_write();
    test_batch_status();
    test_fast_path();
    return check_report();
}

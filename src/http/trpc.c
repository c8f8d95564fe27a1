/*
 * tRPC v11 over HTTP: request parsing and response writing (see trpc.h for the
 * contract and where it departs from tRPC on purpose). Pure: no I/O, no clock,
 * no globals beyond constant tables. Everything here reads untrusted bytes or
 * writes bytes a client parses, so every length is checked and every output
 * string is escaped to valid JSON (invalid UTF-8 becomes U+FFFD).
 *
 * DESIGN — order of the checks, as tRPC makes them:
 *   method -> Content-Type (POST must be application/json) -> procedure paths
 *   (decoded like decodeURIComponent, then split on ',' for a batch) -> inputs
 *   (the query's `input`, or the body; a batch input is an object keyed by call
 *   index). The kind of each procedure is the caller's knowledge, so the mixed
 *   batch rule and the per-call NOT_FOUND / METHOD_NOT_SUPPORTED come after,
 *   from tc_trpc_check_kinds and tc_trpc_check_call.
 */
#include "http/trpc.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------ */
/* Codes                                                                    */

static const struct {
    const char *name;
    int rpc, http;
} codes[TC_TRPC_CODE_COUNT] = {
    [TC_TRPC_OK] = {"OK", 0, 200},
    [TC_TRPC_PARSE_ERROR] = {"PARSE_ERROR", -32700, 400},
    [TC_TRPC_BAD_REQUEST] = {"BAD_REQUEST", -32600, 400},
    [TC_TRPC_UNAUTHORIZED] = {"UNAUTHORIZED", -32001, 401},
    [TC_TRPC_FORBIDDEN] = {"FORBIDDEN", -32003, 403},
    [TC_TRPC_NOT_FOUND] = {"NOT_FOUND", -32004, 404},
    [TC_TRPC_METHOD_NOT_SUPPORTED] = {"METHOD_NOT_SUPPORTED", -32005, 405},
    [TC_TRPC_TIMEOUT] = {"TIMEOUT", -32008, 408},
    [TC_TRPC_CONFLICT] = {"CONFLICT", -32009, 409},
    [TC_TRPC_PRECONDITION_FAILED] = {"PRECONDITION_FAILED", -32012, 412},
    [TC_TRPC_PAYLOAD_TOO_LARGE] = {"PAYLOAD_TOO_LARGE", -32013, 413},
    [TC_TRPC_UNSUPPORTED_MEDIA_TYPE] = {"UNSUPPORTED_MEDIA_TYPE", -32015, 415},
    [TC_TRPC_UNPROCESSABLE_CONTENT] = {"UNPROCESSABLE_CONTENT", -32022, 422},
    [TC_TRPC_TOO_MANY_REQUESTS] = {"TOO_MANY_REQUESTS", -32029, 429},
    [TC_TRPC_CLIENT_CLOSED_REQUEST] = {"CLIENT_CLOSED_REQUEST", -32099, 499},
    [TC_TRPC_INTERNAL_SERVER_ERROR] = {"INTERNAL_SERVER_ERROR", -32603, 500},
    [TC_TRPC_NOT_IMPLEMENTED] = {"NOT_IMPLEMENTED", -32603, 501},
    [TC_TRPC_BAD_GATEWAY] = {"BAD_GATEWAY", -32603, 502},
    [TC_TRPC_SERVICE_UNAVAILABLE] = {"SERVICE_UNAVAILABLE", -32603, 503},
    [TC_TRPC_GATEWAY_TIMEOUT] = {"GATEWAY_TIMEOUT", -32603, 504},
};

static bool code_ok(tc_trpc_code c)
{
    return (int)c > TC_TRPC_OK && (int)c < TC_TRPC_CODE_COUNT;
}

const char *tc_trpc_code_name(tc_trpc_code c)
{
    return code_ok(c) ? codes[c].name : NULL;
}

int tc_trpc_code_rpc(tc_trpc_code c)
{
    return code_ok(c) ? codes[c].rpc : 0;
}

int tc_trpc_code_http(tc_trpc_code c)
{
    return code_ok(c) ? codes[c].http : 500;
}

tc_trpc_code tc_trpc_code_from_name(const char *name)
{
    if (name == NULL)
        return TC_TRPC_OK;
    for (int c = TC_TRPC_OK + 1; c < TC_TRPC_CODE_COUNT; c++)
        if (strcmp(codes[c].name, name) == 0)
            return (tc_trpc_code)c;
    return TC_TRPC_OK;
}

/* ------------------------------------------------------------------------ */
/* Bytes                                                                    */

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Length of the valid UTF-8 sequence at p (n bytes left), or 0 when invalid
 * (overlongs, surrogates and code points past U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* decodeURIComponent into out (n + 1 bytes): -1 on a malformed escape or
 * invalid UTF-8 (a URIError in JS); else the decoded length. */
static long uri_decode(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= n || (h = hexval((unsigned char)in[i + 1])) < 0 ||
                (l = hexval((unsigned char)in[i + 2])) < 0)
                return -1;
            out[o++] = (char)(h << 4 | l);
            i += 2;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    if (!utf8_valid(out, o))
        return -1;
    return (long)o;
}

/* application/x-www-form-urlencoded decoding (URLSearchParams): '+' is a
 * space, a valid %XX is its byte, anything else is itself. out has n bytes;
 * returns the decoded length. */
static size_t form_decode(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        int h, l;
        if (c == '+') {
            out[o++] = ' ';
        } else if (c == '%' && i + 2 < n && (h = hexval((unsigned char)in[i + 1])) >= 0 &&
                   (l = hexval((unsigned char)in[i + 2])) >= 0) {
            out[o++] = (char)(h << 4 | l);
            i += 2;
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

/* Does the form-encoded name (n bytes) decode to want? */
static bool form_name_is(const char *name, size_t n, const char *want)
{
    char buf[32];
    size_t wl = strlen(want);
    if (n > sizeof buf)
        return false; /* 32 encoded bytes decode to at least 11: longer than any name we want */
    size_t dl = form_decode(name, n, buf);
    return dl == wl && memcmp(buf, want, wl) == 0;
}

/* The first value of the query argument `name`, still encoded. */
static bool query_get(const char *q, size_t qn, const char *name, const char **val, size_t *vn)
{
    size_t i = 0;
    while (i < qn) {
        size_t end = i;
        while (end < qn && q[end] != '&')
            end++;
        if (end > i) {
            const char *eq = memchr(q + i, '=', end - i);
            size_t klen = eq ? (size_t)(eq - (q + i)) : end - i;
            if (form_name_is(q + i, klen, name)) {
                *val = eq ? eq + 1 : q + end;
                *vn = eq ? (size_t)(q + end - (eq + 1)) : 0;
                return true;
            }
        }
        i = end + 1;
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                  */

void tc_trpc_limits_init(tc_trpc_limits *l)
{
    l->max_calls = TC_TRPC_BATCH_MAX;
    l->max_input_bytes = 1024 * 1024;
    l->max_depth = 64;
}

static int proto(tc_trpc_request *r, tc_trpc_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int proto(tc_trpc_request *r, tc_trpc_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    r->error = code;
    return TC_HTTP_EPROTO;
}

/* Nesting depth of a JSON text, ignoring brackets inside strings. Stops early
 * once max is passed. Malformed text is left to the parser. */
static int json_depth_over(const char *s, size_t n, int max)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                return 1;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 0;
}

static int parse_json(tc_trpc_request *r, const char *text, size_t n, const tc_trpc_limits *lim,
                      json_t **out)
{
    if (n > lim->max_input_bytes)
        return proto(r, TC_TRPC_PAYLOAD_TOO_LARGE, "input is larger than %zu bytes",
                     lim->max_input_bytes);
    if (json_depth_over(text, n, lim->max_depth))
        return proto(r, TC_TRPC_BAD_REQUEST, "input is nested deeper than %d levels",
                     lim->max_depth);
    json_error_t e;
    json_t *j = json_loadb(text, n, JSON_DECODE_ANY, &e);
    if (j == NULL) {
        if (json_error_code(&e) == json_error_out_of_memory)
            return TC_HTTP_ENOMEM;
        return proto(r, TC_TRPC_PARSE_ERROR, "invalid JSON input: %s (at byte %d)", e.text,
                     e.position);
    }
    *out = j;
    return 0;
}

/* "0".."n-1" without leading zeros, sign or spaces: the index, or -1. */
static long batch_index(const char *key, size_t ncalls)
{
    if (key[0] < '0' || key[0] > '9' || (key[0] == '0' && key[1] != '\0'))
        return -1;
    size_t v = 0;
    for (const char *p = key; *p; p++) {
        if (*p < '0' || *p > '9' || v > ncalls)
            return -1;
        v = v * 10 + (size_t)(*p - '0');
    }
    return v < ncalls ? (long)v : -1;
}

static bool media_type_is_json(const char *ct)
{
    if (ct == NULL)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return strncasecmp(ct, "application/json", 16) == 0;
}

void tc_trpc_request_free(tc_trpc_request *req)
{
    if (req == NULL)
        return;
    free(req->calls);
    free(req->paths_);
    json_decref(req->root_);
    memset(req, 0, sizeof *req);
}

int tc_trpc_parse(tc_trpc_request *r, const tc_trpc_http *in, const tc_trpc_limits *lim_in)
{
    if (r == NULL)
        return TC_HTTP_EINVAL;
    memset(r, 0, sizeof *r);
    if (in == NULL || in->method == NULL || (in->path == NULL && in->path_len))
        return TC_HTTP_EINVAL;
    tc_trpc_limits lim;
    if (lim_in)
        lim = *lim_in;
    else
        tc_trpc_limits_init(&lim);

    /* method */
    if (strcmp(in->method, "GET") == 0 || strcmp(in->method, "HEAD") == 0)
        r->method = TC_TRPC_GET;
    else if (strcmp(in->method, "POST") == 0)
        r->method = TC_TRPC_POST;
    else
        return proto(r, TC_TRPC_METHOD_NOT_SUPPORTED, "Unsupported %.32s-request", in->method);

    /* content type: GET falls back to JSON; POST must say JSON */
    if (r->method == TC_TRPC_POST && !media_type_is_json(in->content_type)) {
        if (in->content_type == NULL)
            return proto(r, TC_TRPC_UNSUPPORTED_MEDIA_TYPE, "Missing content-type header");
        return proto(r, TC_TRPC_UNSUPPORTED_MEDIA_TYPE, "Unsupported content-type \"%.64s\"",
                     in->content_type);
    }

    /* batch flag and input text */
    const char *q = in->query ? in->query : "";
    size_t qn = in->query ? in->query_len : 0;
    const char *v;
    size_t vn;
    r->batch = query_get(q, qn, "batch", &v, &vn) && vn == 1 && v[0] == '1';

    /* paths */
    r->paths_ = malloc(in->path_len + 1);
    if (r->paths_ == NULL)
        return TC_HTTP_ENOMEM;
    long plen = uri_decode(in->path ? in->path : "", in->path_len, r->paths_);
    if (plen < 0)
        return proto(r, TC_TRPC_BAD_REQUEST, "malformed procedure path");
    if (memchr(r->paths_, '\0', (size_t)plen) != NULL)
        return proto(r, TC_TRPC_BAD_REQUEST, "malformed procedure path");
    size_t n = 1;
    if (r->batch)
        for (long i = 0; i < plen; i++)
            n += r->paths_[i] == ',';
    if (n > lim.max_calls)
        return proto(r, TC_TRPC_BAD_REQUEST, "batch of %zu calls, more than %zu", n, lim.max_calls);
    r->calls = calloc(n, sizeof *r->calls);
    if (r->calls == NULL)
        return TC_HTTP_ENOMEM;
    r->ncalls = n;
    char *p = r->paths_;
    for (size_t i = 0; i < n; i++) {
        r->calls[i].path = p;
        if (r->batch) {
            char *comma = strchr(p, ',');
            if (comma) {
                *comma = '\0';
                p = comma + 1;
            }
        }
    }
    if (!r->batch)
        r->error_path = r->calls[0].path;

    /* input */
    const char *text = NULL;
    size_t tn = 0;
    char *decoded = NULL;
    if (r->method == TC_TRPC_GET) {
        if (query_get(q, qn, "input", &v, &vn) && vn > 0) {
            if (vn > lim.max_input_bytes * 3 + 3) /* cannot decode to less than vn/3 */
                return proto(r, TC_TRPC_PAYLOAD_TOO_LARGE, "input is larger than %zu bytes",
                             lim.max_input_bytes);
            decoded = malloc(vn);
            if (decoded == NULL)
                return TC_HTTP_ENOMEM;
            tn = form_decode(v, vn, decoded);
            text = decoded;
        }
    } else if (in->body_len > 0) {
        if (in->body == NULL)
            return TC_HTTP_EINVAL;
        text = in->body;
        tn = in->body_len;
    }
    if (text == NULL)
        return 0; /* no input at all: every call's input is absent */

    json_t *root = NULL;
    int rc = parse_json(r, text, tn, &lim, &root);
    free(decoded);
    if (rc < 0)
        return rc;
    r->root_ = root;
    if (!r->batch) {
        r->calls[0].input = root;
        return 0;
    }
    if (!json_is_object(root))
        return proto(r, TC_TRPC_BAD_REQUEST,
                     "\"input\" needs to be an object when doing a batch call");
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        long idx = batch_index(key, r->ncalls);
        if (idx < 0)
            return proto(r, TC_TRPC_BAD_REQUEST, "batch input has key \"%.32s\" for no call", key);
        r->calls[idx].input = val;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Kind checks                                                              */

tc_trpc_code tc_trpc_check_kinds(const tc_trpc_request *req, const tc_trpc_kind *kinds, char *msg,
                                 size_t msg_cap)
{
    tc_trpc_kind first = TC_TRPC_UNKNOWN;
    bool mixed = false;
    for (size_t i = 0; i < req->ncalls; i++) {
        if (kinds[i] == TC_TRPC_UNKNOWN)
            continue; /* unknown procedures are NOT_FOUND later, not a type */
        if (first == TC_TRPC_UNKNOWN)
            first = kinds[i];
        else if (kinds[i] != first)
            mixed = true;
    }
    if (!mixed)
        return TC_TRPC_OK;
    if (msg && msg_cap) /* in order of first appearance, as tRPC's Set */
        snprintf(msg, msg_cap, "Cannot mix procedure types in call: %s",
                 first == TC_TRPC_MUTATION ? "mutation, query" : "query, mutation");
    return TC_TRPC_BAD_REQUEST;
}

tc_trpc_code tc_trpc_check_call(const tc_trpc_request *req, tc_trpc_kind kind)
{
    if (kind == TC_TRPC_QUERY)
        return req->method == TC_TRPC_GET ? TC_TRPC_OK : TC_TRPC_METHOD_NOT_SUPPORTED;
    if (kind == TC_TRPC_MUTATION)
        return req->method == TC_TRPC_POST ? TC_TRPC_OK : TC_TRPC_METHOD_NOT_SUPPORTED;
    return TC_TRPC_NOT_FOUND;
}

const char *tc_trpc_call_message(char *buf, size_t cap, const tc_trpc_request *req, size_t i,
                                 tc_trpc_kind kind, tc_trpc_code verdict)
{
    if (cap == 0)
        return buf;
    const char *path = i < req->ncalls ? req->calls[i].path : "";
    if (verdict == TC_TRPC_NOT_FOUND)
        snprintf(buf, cap, "No procedure found on path \"%s\"", path);
    else if (verdict == TC_TRPC_METHOD_NOT_SUPPORTED)
        snprintf(buf, cap, "Unsupported %s-request to %s procedure at path \"%s\"",
                 req->method == TC_TRPC_GET ? "GET" : "POST",
                 kind == TC_TRPC_MUTATION ? "mutation" : "query", path);
    else
        snprintf(buf, cap, "%s", verdict == TC_TRPC_OK ? "OK" : tc_trpc_code_name(verdict));
    return buf;
}

const char *tc_trpc_allow(tc_trpc_kind kind)
{
    switch (kind) {
    case TC_TRPC_QUERY:
        return "GET, HEAD";
    case TC_TRPC_MUTATION:
        return "POST";
    default:
        return "GET, HEAD, POST";
    }
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */

static int out_reserve(tc_trpc_out *o, size_t more)
{
    if (o->err)
        return o->err;
    if (more > SIZE_MAX / 2 - o->len)
        return o->err = TC_HTTP_ENOMEM;
    if (o->len + more + 1 <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + more + 1)
        cap *= 2;
    char *b = realloc(o->buf, cap);
    if (b == NULL)
        return o->err = TC_HTTP_ENOMEM;
    o->buf = b;
    o->cap = cap;
    return 0;
}

static int out_put(tc_trpc_out *o, const char *s, size_t n)
{
    if (out_reserve(o, n) < 0)
        return o->err;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
    return 0;
}

static int out_str(tc_trpc_out *o, const char *s)
{
    return out_put(o, s, strlen(s));
}

/* A JSON string literal of s: quotes, escapes, invalid UTF-8 as U+FFFD. */
static int out_json_string(tc_trpc_out *o, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    if (out_reserve(o, n * 6 + 2) < 0) /* worst case: every byte as \u00XX */
        return o->err;
    char *w = o->buf + o->len;
    *w++ = '"';
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            *w++ = '\\';
            *w++ = (char)c;
            i++;
        } else if (c < 0x20) {
            static const char hex[] = "0123456789abcdef";
            *w++ = '\\';
            switch (c) {
            case '\n':
                *w++ = 'n';
                break;
            case '\r':
                *w++ = 'r';
                break;
            case '\t':
                *w++ = 't';
                break;
            case '\b':
                *w++ = 'b';
                break;
            case '\f':
                *w++ = 'f';
                break;
            default:
                *w++ = 'u';
                *w++ = '0';
                *w++ = '0';
                *w++ = hex[c >> 4];
                *w++ = hex[c & 15];
            }
            i++;
        } else if (c < 0x80) {
            *w++ = (char)c;
            i++;
        } else {
            size_t k = utf8_seq(p + i, n - i);
            if (k == 0) {
                memcpy(w, "\xEF\xBF\xBD", 3); /* U+FFFD */
                w += 3;
                i++;
            } else {
                memcpy(w, p + i, k);
                w += k;
                i += k;
            }
        }
    }
    *w++ = '"';
    o->len = (size_t)(w - o->buf);
    o->buf[o->len] = '\0';
    return 0;
}

void tc_trpc_out_init(tc_trpc_out *o, int batch)
{
    memset(o, 0, sizeof *o);
    o->batch = batch ? 1 : 0;
}

void tc_trpc_out_free(tc_trpc_out *o)
{
    if (o == NULL)
        return;
    free(o->buf);
    int batch = o->batch;
    tc_trpc_out_init(o, batch);
}

/* Common to each item: separator, one-item rule, status. */
static int item_begin(tc_trpc_out *o, int status)
{
    if (o->err)
        return o->err;
    if (!o->batch && o->items > 0)
        return o->err = TC_HTTP_EINVAL;
    if (out_str(o, o->items == 0 ? (o->batch ? "[" : "") : ",") < 0)
        return o->err;
    o->items++;
    if (o->status == 0)
        o->status = status;
    else if (o->status != status)
        o->status = 207;
    return 0;
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    return out_put(data, buf, size) < 0 ? -1 : 0;
}

int tc_trpc_out_data(tc_trpc_out *o, const json_t *data)
{
    if (item_begin(o, 200) < 0)
        return o->err;
    if (data == NULL)
        return out_str(o, "{\"result\":{}}");
    if (out_str(o, TC_TRPC_DATA_PREFIX) < 0)
        return o->err;
    if (json_dump_callback(data, dump_cb, o,
                           JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17)) != 0)
        return o->err ? o->err : (o->err = TC_HTTP_EINVAL);
    return out_str(o, TC_TRPC_DATA_SUFFIX);
}

int tc_trpc_out_data_raw(tc_trpc_out *o, const char *json, size_t len)
{
    if (item_begin(o, 200) < 0)
        return o->err;
    if (len == 0)
        return out_str(o, "{\"result\":{}}");
    if (out_reserve(o, tc_trpc_wrap_data_size(len)) < 0)
        return o->err;
    tc_trpc_wrap_data_into(o->buf + o->len, json, len);
    o->len += tc_trpc_wrap_data_size(len);
    o->buf[o->len] = '\0';
    return 0;
}

int tc_trpc_out_error(tc_trpc_out *o, tc_trpc_code code, const char *message, const char *path)
{
    if (!code_ok(code))
        code = TC_TRPC_INTERNAL_SERVER_ERROR;
    if (item_begin(o, codes[code].http) < 0)
        return o->err;
    char num[64];
    out_str(o, "{\"error\":{\"message\":");
    out_json_string(o, message ? message : codes[code].name);
    snprintf(num, sizeof num, ",\"code\":%d,\"data\":{\"code\":\"", codes[code].rpc);
    out_str(o, num);
    out_str(o, codes[code].name);
    snprintf(num, sizeof num, "\",\"httpStatus\":%d", codes[code].http);
    out_str(o, num);
    if (path) {
        out_str(o, ",\"path\":");
        out_json_string(o, path);
    }
    return out_str(o, "}}}");
}

int tc_trpc_out_finish(tc_trpc_out *o, char **body, size_t *len, int *status)
{
    if (!o->err && !o->batch && o->items != 1)
        o->err = TC_HTTP_EINVAL;
    if (!o->err && o->batch)
        out_str(o, o->items == 0 ? "[]" : "]");
    if (!o->err && o->buf == NULL)
        out_str(o, "");
    if (o->err) {
        int err = o->err;
        tc_trpc_out_free(o);
        return err;
    }
    *body = o->buf;
    if (len)
        *len = o->len;
    if (status)
        *status = o->status ? o->status : 200;
    int batch = o->batch;
    tc_trpc_out_init(o, batch);
    return 0;
}

size_t tc_trpc_wrap_data_size(size_t len)
{
    if (len == 0)
        return sizeof "{\"result\":{}}" - 1;
    return sizeof TC_TRPC_DATA_PREFIX - 1 + len + sizeof TC_TRPC_DATA_SUFFIX - 1;
}

void tc_trpc_wrap_data_into(char *dst, const char *data, size_t len)
{
    if (len == 0) {
        memcpy(dst, "{\"result\":{}}", sizeof "{\"result\":{}}" - 1);
        return;
    }
    memcpy(dst, TC_TRPC_DATA_PREFIX, sizeof TC_TRPC_DATA_PREFIX - 1);
    dst += sizeof TC_TRPC_DATA_PREFIX - 1;
    memcpy(dst, data, len);
    memcpy(dst + len, TC_TRPC_DATA_SUFFIX, sizeof TC_TRPC_DATA_SUFFIX - 1);
}

char *tc_trpc_wrap_data(const char *data, size_t len, size_t *out_len)
{
    size_t n = tc_trpc_wrap_data_size(len);
    if (n < len) /* overflow */
        return NULL;
    char *b = malloc(n + 1);
    if (b == NULL)
        return NULL;
    tc_trpc_wrap_data_into(b, data, len);
    b[n] = '\0';
    if (out_len)
        *out_len = n;
    return b;
}

char *tc_trpc_error_body(tc_trpc_code code, const char *message, const char *path, size_t *len,
                         int *status)
{
    tc_trpc_out o;
    tc_trpc_out_init(&o, 0);
    char *body;
    if (tc_trpc_out_error(&o, code, message, path) < 0 ||
        tc_trpc_out_finish(&o, &body, len, status) < 0) {
        tc_trpc_out_free(&o);
        return NULL;
    }
    return body;
}

char *tc_trpc_request_error_body(const tc_trpc_request *req, size_t *len, int *status)
{
    tc_trpc_code code = req->error != TC_TRPC_OK ? req->error : TC_TRPC_INTERNAL_SERVER_ERROR;
    return tc_trpc_error_body(code, req->message[0] ? req->message : NULL, req->error_path, len,
                              status);
}

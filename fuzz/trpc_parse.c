/*
 * libFuzzer target for tc_trpc_parse (src/http/trpc.c): a tRPC request from
 * anyone on the network. Parsing must never crash, leak or read out of bounds;
 * a parsed request must be well-formed (at least one call, inputs only where a
 * call is, paths valid UTF-8 without NUL); and every response written from it —
 * the refusal, or results echoing each input plus the per-call errors — must be
 * valid JSON with the status tRPC's rule gives.
 *
 * Input layout: byte 0 picks the method, then path, query, content type and
 * body separated by NUL bytes (missing parts are absent).
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DTC_FUZZ=ON && cmake --build build-fuzz
 *        --target fuzz_trpc_parse;  run: build-fuzz/fuzz_trpc_parse -max_total_time=60 DIR
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/trpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *next_part(const char **p, const char *end, size_t *len)
{
    if (*p >= end) {
        *len = 0;
        return NULL;
    }
    const char *s = *p;
    const char *z = memchr(s, '\0', (size_t)(end - s));
    *len = z ? (size_t)(z - s) : (size_t)(end - s);
    *p = z ? z + 1 : end;
    return s;
}

static void check_json(const char *body, size_t len)
{
    json_error_t e;
    json_t *j = json_loadb(body, len, JSON_DECODE_ANY, &e);
    if (j == NULL)
        abort(); /* we wrote something that is not JSON */
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *methods[] = {"GET", "POST", "HEAD", "PUT"};
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    size_t pl, ql, cl, bl;
    const char *path = next_part(&p, end, &pl);
    const char *query = next_part(&p, end, &ql);
    const char *ct = next_part(&p, end, &cl);
    const char *body = next_part(&p, end, &bl);
    char ctbuf[128];
    if (ct && cl < sizeof ctbuf) {
        memcpy(ctbuf, ct, cl);
        ctbuf[cl] = '\0';
    }
    tc_trpc_http in = {.method = methods[data[0] % 4],
                       .path = path,
                       .path_len = pl,
                       .query = query,
                       .query_len = ql,
                       .content_type = ct && cl < sizeof ctbuf ? ctbuf : NULL,
                       .body = body,
                       .body_len = bl};
    tc_trpc_limits lim;
    tc_trpc_limits_init(&lim);
    lim.max_input_bytes = 1 << 16;
    tc_trpc_request r;
    int rc = tc_trpc_parse(&r, &in, &lim);
    char *out;
    size_t olen;
    int status;
    if (rc == TC_HTTP_EPROTO) {
        if (r.error <= TC_TRPC_OK || r.error >= TC_TRPC_CODE_COUNT)
            abort();
        out = tc_trpc_request_error_body(&r, &olen, &status);
        if (out == NULL || status != tc_trpc_code_http(r.error))
            abort();
        check_json(out, olen);
        free(out);
    } else if (rc == 0) {
        if (r.ncalls < 1 || r.ncalls > lim.max_calls || (!r.batch && r.ncalls != 1))
            abort();
        tc_trpc_out o;
        tc_trpc_out_init(&o, r.batch);
        int want = 0;
        for (size_t i = 0; i < r.ncalls; i++) {
            tc_trpc_kind kind = (tc_trpc_kind)(i % 3);
            tc_trpc_code v = tc_trpc_check_call(&r, kind);
            int st;
            if (v == TC_TRPC_OK) {
                tc_trpc_out_data(&o, r.calls[i].input);
                st = 200;
            } else {
                char msg[256];
                tc_trpc_call_message(msg, sizeof msg, &r, i, kind, v);
                tc_trpc_out_error(&o, v, msg, r.calls[i].path);
                st = tc_trpc_code_http(v);
            }
            want = want == 0 ? st : (want == st ? want : 207);
        }
        if (tc_trpc_out_finish(&o, &out, &olen, &status) != 0 || status != want)
            abort();
        check_json(out, olen);
        free(out);
    } else if (rc != TC_HTTP_ENOMEM) {
        abort();
    }
    tc_trpc_request_free(&r);
    return 0;
}

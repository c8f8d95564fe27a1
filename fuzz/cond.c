/*
 * libFuzzer target for src/http/cond.c: If-None-Match / If-Match lists,
 * HTTP-dates and Accept-Encoding from anyone on the network. Nothing may
 * crash or read out of bounds, and the answers must be consistent: a list
 * that matches an entity tag strongly matches it weakly too; a date that
 * parses formats back to a date that parses to the same second; a q-value is
 * 0..1000; the precondition verdict is one of the three.
 *
 * Input layout: field value, NUL, entity tag (both optional).
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DTC_FUZZ=ON && cmake --build build-fuzz
 *        --target fuzz_cond;  run: build-fuzz/fuzz_cond -max_total_time=60 DIR
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/cond.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 2);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    buf[size + 1] = '\0';
    const char *field = buf, *etag = buf + strlen(buf) + 1;
    if (etag > buf + size)
        etag = buf + size + 1; /* "" */
    const char *tag = *etag != '\0' ? etag : NULL;

    bool weak = tc_cond_none_match(field, tag), strong = tc_cond_match(field, tag);
    if (strong && !weak)
        abort();
    int64_t t = tc_cond_parse_date(field);
    if (t >= 0) {
        char out[TC_COND_DATE_LEN + 1];
        tc_cond_format_date(t, out);
        if (tc_cond_parse_date(out) != t)
            abort();
    }
    const char *codings[] = {"gzip", "identity", "br", "*"};
    for (size_t i = 0; i < sizeof(codings) / sizeof(codings[0]); i++) {
        int q = tc_cond_accept_q(field, codings[i]);
        if (q < 0 || q > 1000)
            abort();
    }
    tc_cond_request rq = {.get_or_head = size > 0 && (data[0] & 1),
                          .if_none_match = field,
                          .if_modified_since = etag,
                          .if_match = size > 1 && (data[1] & 1) ? field : NULL};
    tc_cond_verdict v = tc_cond_evaluate(&rq, tag, t);
    if (v != TC_COND_PROCEED && v != TC_COND_NOT_MODIFIED && v != TC_COND_FAILED)
        abort();
    free(buf);
    return 0;
}

/*
 * libFuzzer target for the access log's pure parts (src/http/accesslog.c): the
 * request path is anyone's bytes, and a Cache-Status value may have passed
 * through other caches. Formatting must never crash or read out of bounds, and
 * a line must stay one line: exactly one '\n', at its end, whatever the path
 * holds; the fields the log promises are there. Parsing Cache-Status must
 * leave NUL-terminated tokens in its output buffers.
 *
 * Input layout: path NUL cache-status (either part may be empty).
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DTC_FUZZ=ON && cmake --build build-fuzz
 *        --target fuzz_accesslog;  run: build-fuzz/fuzz_accesslog -max_total_time=60
 */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/accesslog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *nul = memchr(p, '\0', size);
    size_t plen = nul != NULL ? (size_t)(nul - p) : size;
    char *cs = NULL;
    if (nul != NULL) {
        size_t clen = size - plen - 1;
        cs = malloc(clen + 1);
        if (cs == NULL)
            return 0;
        memcpy(cs, nul + 1, clen);
        cs[clen] = '\0';
    }
    char word[16], detail[16]; /* the server parses the header, then logs the words */
    tc_cache_status_parse(cs, word, sizeof(word), detail, sizeof(detail));
    tc_access_entry e = {.time_ms = 1735787045678LL,
                         .method = "GET",
                         .path = plen > 0 ? p : NULL,
                         .path_len = plen,
                         .status = 200,
                         .duration_us = 1234,
                         .cache = word,
                         .cache_detail = detail,
                         .bytes = 10,
                         .route = "r",
                         .client = "127.0.0.1"};
    char line[2048];
    size_t n = tc_access_log_format(line, sizeof(line), &e);
    if (n == 0 || n > sizeof(line) || line[n - 1] != '\n' || memchr(line, '\n', n - 1) != NULL ||
        memchr(line, '\r', n) != NULL)
        abort();
    if (memmem(line, n, " status=200 ", 12) == NULL)
        abort();
    char w[16], d[16];
    tc_cache_status_parse(cs, w, sizeof(w), d, sizeof(d));
    if (strnlen(w, sizeof(w)) == sizeof(w) || strnlen(d, sizeof(d)) == sizeof(d))
        abort();
    free(cs);
    return 0;
}

/*
 * libFuzzer target for the blog.list cursor (tc_in_cursor, src/app/input.c):
 * anyone's text, and what it accepts becomes part of a cache key in Redis
 * (blog:list:<cursor>:<limit>). It must not crash or read out of bounds, and
 * it must accept one spelling per post and nothing else:
 *   - an accepted cursor prints back ("%lld.%lld" of what it parsed) to
 *     exactly the same text: no sign, space, leading zero or other second
 *     spelling of the same post can make a second key;
 *   - every cursor blog.list can hand out (two numbers 0..INT64_MAX, printed)
 *     is accepted, with those numbers.
 *
 * Input: the cursor's text (up to a NUL); its first 16 bytes are also read as
 * the two numbers of the second check.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DTC_FUZZ=ON && cmake --build build-fuzz
 *        --target fuzz_cursor;  run: scripts/fuzz.sh --seconds 60 cursor
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[128], again[48];
    if (size >= sizeof(s))
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    long long pub = -1, id = -1;
    if (tc_in_cursor(s, &pub, &id) == 0) {
        if (pub < 0 || id < 0)
            abort();
        snprintf(again, sizeof(again), "%lld.%lld", pub, id);
        if (strcmp(again, s) != 0)
            abort(); /* a second spelling of the same cursor */
    }
    uint64_t a = 0, b = 0;
    if (size >= 16) {
        memcpy(&a, data, 8);
        memcpy(&b, data + 8, 8);
    }
    a &= INT64_MAX;
    b &= INT64_MAX;
    snprintf(s, sizeof(s), "%lld.%lld", (long long)a, (long long)b);
    if (tc_in_cursor(s, &pub, &id) != 0 || pub != (long long)a || id != (long long)b)
        abort(); /* refused a cursor blog.list hands out */
    return 0;
}

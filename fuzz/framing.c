/*
 * libFuzzer target for src/http/framing.c: a Transfer-Encoding value from
 * anyone on the network. Nothing may crash or read past n bytes, and the
 * verdict is one of 0, 400, 501, with 0 only for "chunked" itself.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DTC_FUZZ=ON && cmake --build build-fuzz
 *        --target fuzz_framing;  run: build-fuzz/fuzz_framing -max_total_time=60 DIR
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/framing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1); /* exactly size bytes: ASan sees any over-read */
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    int st = tc_http_te_status(buf, size);
    if (st != 0 && st != 400 && st != 501)
        abort();
    if ((st == 0) != (size == 7 && strncasecmp(buf, "chunked", 7) == 0))
        abort();
    free(buf);
    return 0;
}

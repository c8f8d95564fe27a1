/*
 * libFuzzer target for src/cache/codec.c, the parser of L2 records read back
 * from Redis (bytes another process, or anyone with access to that Redis, may
 * have written). Decode must never read out of bounds or crash; and whatever
 * it accepts must be exactly one well-formed record: re-encoding the decoded
 * record gives back the input, byte for byte. Both formats: TC1, and TC2 (a
 * value stored as a zstd frame, src/cache/compress.c), whose value is then
 * decompressed: never more than the record's bounded raw_len allocated, and a
 * value only when it is exactly raw_len bytes with the record's hash.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DTC_FUZZ=ON && cmake --build build-fuzz
 *        --target fuzz_codec;  run: build-fuzz/fuzz_codec -max_total_time=60 CORPUS_DIR
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tc__record r;
    if (tc__record_decode((const char *)data, size, &r) != 0)
        return 0;
    if (r.nversions != r.ntags + 2 || r.ntags < 0 || r.ntags > TC_TAGS_MAX ||
        r.fresh_until > r.stale_until)
        abort(); /* accepted what the format forbids */
    for (int i = 0; i < r.ntags; i++)
        if (r.taglen[i] == 0)
            abort();
    if ((r.flags != 0 && r.flags != TC__REC_ZSTD) ||
        (r.flags != 0 && (r.raw_len == 0 || r.raw_len > TC__RAW_MAX)))
        abort(); /* a flag or a size the format forbids */
    const tc_value *v;
    int err = tc__record_value(&r, &v);
    if (err == 0) {
        /* (a TC1 record's hash 0 means "compute it", as tc__value_new does) */
        if (v->len != (r.flags != 0 ? r.raw_len : r.len) || (r.hash != 0 && v->hash != r.hash))
            abort(); /* a value that is not the record's */
        tc_value_release(v);
    } else if (err != TC_EINVAL || r.flags == 0) {
        abort(); /* an uncompressed value always decodes (no allocation fails here) */
    }
    tc_buf out = {0};
    if (tc__record_encode(&r, &out) != 0 || out.len != size ||
        (size > 0 && memcmp(out.data, data, size) != 0))
        abort(); /* decode and encode disagree */
    free(out.data);
    return 0;
}

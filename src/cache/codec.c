/*
 * The record format of an entry in Redis. Pure: bytes in, struct out, no I/O,
 * no allocation; decode never reads past len and rejects anything that is not
 * exactly one well-formed record (fuzzed by fuzz/codec.c).
 *
 *   "TC1\0"
 *   u64 created_ms, u64 fresh_until, u64 stale_until, u32 load_ms, u64 hash
 *   u8 nversions (2..TC_TAGS_MAX+2), nversions x i64
 *   u8 ntags (0..TC_TAGS_MAX), ntags x (u8 len >= 1, len bytes)
 *   u32 len, len bytes of value
 *
 * A value stored compressed (compress.c) has a record of its own, "TC2", which
 * builds before it read as no record (a miss):
 *
 *   "TC2\0"
 *   u8 flags: TC__REC_ZSTD, and no other bit
 *   the fields of TC1 from created_ms to the tags
 *   u32 raw_len (1..TC__RAW_MAX): the value's length once decompressed
 *   u32 len, len bytes: the value as one zstd frame
 *
 * So a record of an uncompressed value is byte for byte what it was before
 * TC2, and both kinds decode. hash is always the hash of the value itself
 * (uncompressed): the ETag does not depend on how it is stored.
 *
 * Integers are little-endian. nversions is always ntags + 2.
 */
#include <string.h>

#include "cache/internal.h"

static const char MAGIC[4] = {'T', 'C', '1', '\0'};
static const char MAGIC2[4] = {'T', 'C', '2', '\0'};

static int put_u(tc_buf *out, uint64_t v, int bytes)
{
    unsigned char b[8];
    for (int i = 0; i < bytes; i++, v >>= 8)
        b[i] = (unsigned char)(v & 0xff);
    return tc_buf_append(out, b, (size_t)bytes);
}

int tc__record_encode(const tc__record *r, tc_buf *out)
{
    if (r->ntags < 0 || r->ntags > TC_TAGS_MAX || r->nversions != r->ntags + 2 ||
        r->len > UINT32_MAX || (r->flags != 0 && r->flags != TC__REC_ZSTD) ||
        (r->flags != 0 && (r->raw_len == 0 || r->raw_len > TC__RAW_MAX)))
        return TC_EINVAL;
    int err = tc_buf_append(out, r->flags != 0 ? MAGIC2 : MAGIC, sizeof(MAGIC));
    if (r->flags != 0)
        err = err ? err : put_u(out, r->flags, 1);
    err = err ? err : put_u(out, r->created_ms, 8);
    err = err ? err : put_u(out, r->fresh_until, 8);
    err = err ? err : put_u(out, r->stale_until, 8);
    err = err ? err : put_u(out, r->load_ms, 4);
    err = err ? err : put_u(out, r->hash, 8);
    err = err ? err : put_u(out, (uint64_t)r->nversions, 1);
    for (int i = 0; err == 0 && i < r->nversions; i++)
        err = put_u(out, (uint64_t)r->versions[i], 8);
    err = err ? err : put_u(out, (uint64_t)r->ntags, 1);
    for (int i = 0; err == 0 && i < r->ntags; i++) {
        if (r->taglen[i] == 0)
            return TC_EINVAL;
        err = put_u(out, r->taglen[i], 1);
        err = err ? err : tc_buf_append(out, r->tags[i], r->taglen[i]);
    }
    if (r->flags != 0)
        err = err ? err : put_u(out, r->raw_len, 4);
    err = err ? err : put_u(out, r->len, 4);
    err = err ? err : tc_buf_append(out, r->data, r->len);
    return err;
}

typedef struct reader {
    const unsigned char *p, *end;
    bool bad;
} reader;

static uint64_t get_u(reader *rd, int bytes)
{
    if (rd->bad || rd->end - rd->p < bytes) {
        rd->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | rd->p[i];
    rd->p += bytes;
    return v;
}

static const char *get_bytes(reader *rd, size_t n)
{
    if (rd->bad || (size_t)(rd->end - rd->p) < n) {
        rd->bad = true;
        return NULL;
    }
    const char *s = (const char *)rd->p;
    rd->p += n;
    return s;
}

int tc__record_decode(const char *buf, size_t len, tc__record *r)
{
    reader rd = {(const unsigned char *)buf, (const unsigned char *)buf + len, false};
    memset(r, 0, sizeof(*r));
    const char *magic = get_bytes(&rd, sizeof(MAGIC));
    if (magic == NULL)
        return TC_EINVAL;
    if (memcmp(magic, MAGIC2, sizeof(MAGIC2)) == 0) {
        r->flags = (unsigned)get_u(&rd, 1);
        if (rd.bad || r->flags != TC__REC_ZSTD) /* a flag this reader does not know */
            return TC_EINVAL;
    } else if (memcmp(magic, MAGIC, sizeof(MAGIC)) != 0) {
        return TC_EINVAL;
    }
    r->created_ms = get_u(&rd, 8);
    r->fresh_until = get_u(&rd, 8);
    r->stale_until = get_u(&rd, 8);
    r->load_ms = (uint32_t)get_u(&rd, 4);
    r->hash = get_u(&rd, 8);
    r->nversions = (int)get_u(&rd, 1);
    if (rd.bad || r->nversions < 2 || r->nversions > TC_TAGS_MAX + 2)
        return TC_EINVAL;
    for (int i = 0; i < r->nversions; i++)
        r->versions[i] = (int64_t)get_u(&rd, 8);
    r->ntags = (int)get_u(&rd, 1);
    if (rd.bad || r->ntags != r->nversions - 2)
        return TC_EINVAL;
    for (int i = 0; i < r->ntags; i++) {
        r->taglen[i] = (uint8_t)get_u(&rd, 1);
        r->tags[i] = get_bytes(&rd, r->taglen[i]);
        if (rd.bad || r->taglen[i] == 0)
            return TC_EINVAL;
    }
    if (r->flags != 0) {
        r->raw_len = (size_t)get_u(&rd, 4);
        if (rd.bad || r->raw_len == 0 || r->raw_len > TC__RAW_MAX)
            return TC_EINVAL;
    }
    r->len = (size_t)get_u(&rd, 4);
    r->data = get_bytes(&rd, r->len);
    if (rd.bad || rd.p != rd.end || r->fresh_until > r->stale_until)
        return TC_EINVAL;
    return 0;
}

/*
 * Tests src/cache/codec.c, the L2 record format. The record carries the tag
 * versions an entry was loaded under (DESIGN.md guarantee 2) and its fresh and
 * stale times (guarantee 4), so a record that decodes wrongly could serve an
 * invalidated or expired value. Proves: encode/decode round trip byte for
 * byte, the bytes follow the documented layout, and decode rejects every
 * malformed input: truncation at every length, bad magic, nversions !=
 * ntags + 2, trailing bytes, fresh_until > stale_until, zero-length tags.
 * And a value stored compressed (issue 11, part 5: "TC2", src/cache/compress.c):
 * a compressed record round-trips to the same value and hash; a record in the
 * format written before compression (TC1) is still decoded by this reader; a
 * value below the threshold, or one that does not shrink, is written as TC1,
 * byte for byte as before; a corrupt compressed record (a flipped byte, a
 * frame that claims another size, a record that claims more than TC__RAW_MAX,
 * an unknown flag, a hash that is not its content's) is refused, never a
 * wrong value. fuzz/codec.c explores the rest.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "cache/internal.h"
#include "check.h"

/* ---- an independent writer of the documented layout ---------------------- */

/* A record as raw fields, free to be inconsistent (the encoder refuses that). */
typedef struct raw {
    const char *magic; /* 4 bytes; NULL: "TC1\0" */
    uint64_t created, fresh, stale;
    uint32_t load_ms;
    uint64_t hash;
    int nversions;
    int64_t versions[256]; /* room for any u8 count */
    int ntags;
    const char *tags[TC_TAGS_MAX + 2];
    int taglen[TC_TAGS_MAX + 2]; /* 0: strlen(tag); -1: a zero-length tag */
    const char *data;
    size_t len;
    long len_delta;  /* added to the length field only (not to the bytes written) */
    size_t trailing; /* junk bytes appended after the record */
    bool tc2;        /* "TC2\0", the flags byte and raw_len (a compressed value) */
    unsigned flags;
    uint32_t raw_len;
} raw;

static void put_le(tc_buf *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++, v >>= 8) {
        unsigned char c = (unsigned char)(v & 0xff);
        tc_buf_append(b, &c, 1);
    }
}

static void raw_write(const raw *r, tc_buf *b)
{
    tc_buf_append(b, r->magic != NULL ? r->magic : r->tc2 ? "TC2\0" : "TC1\0", 4);
    if (r->tc2)
        put_le(b, r->flags, 1);
    put_le(b, r->created, 8);
    put_le(b, r->fresh, 8);
    put_le(b, r->stale, 8);
    put_le(b, r->load_ms, 4);
    put_le(b, r->hash, 8);
    put_le(b, (uint64_t)r->nversions, 1);
    for (int i = 0; i < r->nversions; i++)
        put_le(b, (uint64_t)r->versions[i], 8);
    put_le(b, (uint64_t)r->ntags, 1);
    for (int i = 0; i < r->ntags; i++) {
        size_t n = r->taglen[i] == -1 ? 0
                   : r->taglen[i]     ? (size_t)r->taglen[i]
                                      : strlen(r->tags[i]);
        put_le(b, n, 1);
        tc_buf_append(b, r->tags[i], n);
    }
    if (r->tc2)
        put_le(b, r->raw_len, 4);
    put_le(b, (uint64_t)((long)r->len + r->len_delta), 4);
    tc_buf_append(b, r->data, r->len);
    for (size_t i = 0; i < r->trailing; i++)
        tc_buf_append(b, "\x5a", 1);
}

/* A well-formed raw record with ntags tags. */
static raw valid_raw(int ntags)
{
    static const char *names[] = {"user:42", "plan", "t", "dashboard", "a", "bb", "ccc", "dddd"};
    raw r = {.created = 1700000000000ull,
             .fresh = 1700000030000ull,
             .stale = 1700000330000ull,
             .load_ms = 17,
             .hash = 0x0123456789abcdefull,
             .nversions = ntags + 2,
             .ntags = ntags,
             .data = "{\"id\":42}",
             .len = 9};
    for (int i = 0; i < r.nversions; i++)
        r.versions[i] = 100000000000000ll + i;
    for (int i = 0; i < ntags; i++)
        r.tags[i] = names[i % 8];
    return r;
}

/* Decodes a heap copy of exactly len bytes, so ASan sees any read past them. */
static int decode_exact(const char *buf, size_t len, tc__record *out)
{
    char *copy = malloc(len > 0 ? len : 1);
    if (len > 0)
        memcpy(copy, buf, len);
    int rc = tc__record_decode(copy, len, out);
    free(copy);
    return rc;
}

static int decode_raw(const raw *r)
{
    tc_buf b = {0};
    raw_write(r, &b);
    tc__record rec;
    int rc = decode_exact(b.data, b.len, &rec);
    free(b.data);
    return rc;
}

/* ---- round trip ----------------------------------------------------------- */

static void check_same_record(const tc__record *a, const tc__record *b)
{
    CHECK(a->created_ms == b->created_ms);
    CHECK(a->fresh_until == b->fresh_until);
    CHECK(a->stale_until == b->stale_until);
    CHECK_EQ_INT(a->load_ms, b->load_ms);
    CHECK(a->hash == b->hash);
    CHECK_EQ_INT(a->nversions, b->nversions);
    for (int i = 0; i < a->nversions && i < b->nversions; i++)
        CHECK(a->versions[i] == b->versions[i]);
    CHECK_EQ_INT(a->ntags, b->ntags);
    for (int i = 0; i < a->ntags && i < b->ntags; i++) {
        CHECK_EQ_INT(a->taglen[i], b->taglen[i]);
        CHECK(memcmp(a->tags[i], b->tags[i], a->taglen[i]) == 0);
    }
    CHECK_EQ_INT(a->len, b->len);
    CHECK(a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0));
}

/* Encodes r, decodes it, compares, re-encodes the decoded record: same bytes. */
static void round_trip(const tc__record *r)
{
    tc_buf enc = {0}, again = {0};
    REQUIRE(tc__record_encode(r, &enc) == 0);
    tc__record d;
    CHECK_EQ_INT(tc__record_decode(enc.data, enc.len, &d), 0);
    check_same_record(r, &d);
    if (d.len > 0) /* the value points into the buffer, not into a copy */
        CHECK(d.data >= enc.data && d.data + d.len == enc.data + enc.len);
    CHECK_EQ_INT(tc__record_encode(&d, &again), 0);
    CHECK(again.len == enc.len && memcmp(again.data, enc.data, enc.len) == 0);
    free(enc.data);
    free(again.data);
}

static tc__record record_of(const raw *w)
{
    tc__record r = {.created_ms = w->created,
                    .fresh_until = w->fresh,
                    .stale_until = w->stale,
                    .load_ms = w->load_ms,
                    .hash = w->hash,
                    .nversions = w->nversions,
                    .ntags = w->ntags,
                    .data = w->data,
                    .len = w->len};
    for (int i = 0; i < w->nversions; i++)
        r.versions[i] = w->versions[i];
    for (int i = 0; i < w->ntags; i++) {
        r.tags[i] = w->tags[i];
        r.taglen[i] = (uint8_t)strlen(w->tags[i]);
    }
    return r;
}

static void test_round_trip(void)
{
    for (int ntags = 0; ntags <= TC_TAGS_MAX; ntags++) {
        raw w = valid_raw(ntags);
        tc__record r = record_of(&w);
        round_trip(&r);
    }
}

static void test_round_trip_edges(void)
{
    static const char binary[] = {'\0', '\xff', 'a', '\0', '\x80', '\n'};
    char longtag[255];
    memset(longtag, 'x', sizeof(longtag));
    tc__record r = {.created_ms = UINT64_MAX - 5,
                    .fresh_until = UINT64_MAX - 1,
                    .stale_until = UINT64_MAX,
                    .load_ms = UINT32_MAX,
                    .hash = UINT64_MAX,
                    .nversions = 3,
                    .versions = {INT64_MIN, -1, INT64_MAX},
                    .ntags = 1,
                    .tags = {longtag},
                    .taglen = {255},
                    .data = binary,
                    .len = sizeof(binary)};
    round_trip(&r);

    tc__record empty = {.nversions = 2, .data = "", .len = 0}; /* no tags, empty value */
    round_trip(&empty);

    tc__record same_times = {.created_ms = 5, .fresh_until = 9, .stale_until = 9, .nversions = 2};
    round_trip(&same_times); /* fresh_until == stale_until (stale_ms 0) is allowed */
}

/* The encoder writes exactly the layout documented in codec.c. */
static void test_layout_matches_documentation(void)
{
    raw w = valid_raw(3);
    tc__record r = record_of(&w);
    tc_buf enc = {0}, ref = {0};
    REQUIRE(tc__record_encode(&r, &enc) == 0);
    raw_write(&w, &ref);
    CHECK(enc.len == ref.len && memcmp(enc.data, ref.data, ref.len) == 0);
    CHECK_EQ_INT(enc.len, 4 + 8 * 3 + 4 + 8 + 1 + 5 * 8 + 1 + (1 + 7) + (1 + 4) + (1 + 1) + 4 + 9);
    free(enc.data);
    free(ref.data);
}

/* ---- rejections ----------------------------------------------------------- */

static void test_truncation_at_every_length(void)
{
    for (int ntags = 0; ntags <= TC_TAGS_MAX; ntags += 4) {
        raw w = valid_raw(ntags);
        tc_buf b = {0};
        raw_write(&w, &b);
        tc__record r;
        REQUIRE(decode_exact(b.data, b.len, &r) == 0);
        int accepted = 0;
        for (size_t n = 0; n < b.len; n++)
            accepted += decode_exact(b.data, n, &r) != TC_EINVAL;
        CHECK_EQ_INT(accepted, 0);
        free(b.data);
    }
    tc__record r;
    CHECK_EQ_INT(tc__record_decode(NULL, 0, &r), TC_EINVAL);
}

static void test_bad_magic(void)
{
    raw w = valid_raw(1);
    CHECK_EQ_INT(decode_raw(&w), 0);
    static const char *bad[] = {"XC1", "TX1", "TC3", "TC1\1", "tc1", "\0\0\0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        w.magic = bad[i];
        CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
    }
}

static void test_versions_must_be_ntags_plus_two(void)
{
    for (int ntags = 0; ntags <= TC_TAGS_MAX; ntags++) {
        raw w = valid_raw(ntags);
        w.nversions = ntags + 1;
        CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
        w.nversions = ntags + 3;
        CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
    }
    static const int out_of_range[] = {0, 1, TC_TAGS_MAX + 3, 255};
    for (size_t i = 0; i < sizeof(out_of_range) / sizeof(out_of_range[0]); i++) {
        raw w = valid_raw(0);
        w.nversions = out_of_range[i];
        CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
    }

    /* The encoder refuses to write such a record. */
    raw w = valid_raw(2);
    tc__record r = record_of(&w);
    tc_buf b = {0};
    r.nversions = 3;
    CHECK_EQ_INT(tc__record_encode(&r, &b), TC_EINVAL);
    r.ntags = TC_TAGS_MAX + 1, r.nversions = TC_TAGS_MAX + 3;
    CHECK_EQ_INT(tc__record_encode(&r, &b), TC_EINVAL);
    r.ntags = -1, r.nversions = 1;
    CHECK_EQ_INT(tc__record_encode(&r, &b), TC_EINVAL);
    free(b.data);
}

static void test_trailing_bytes(void)
{
    raw w = valid_raw(2);
    w.trailing = 1;
    CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
    w.trailing = 100;
    CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
    w.trailing = 0;
    w.len_delta = -1; /* the length field says one byte fewer than follows */
    CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
    w.len_delta = 1; /* one byte more than follows */
    CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
}

static void test_fresh_after_stale(void)
{
    raw w = valid_raw(1);
    w.fresh = w.stale + 1;
    CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
    w.fresh = UINT64_MAX, w.stale = 0;
    CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
    w.fresh = w.stale = 42;
    CHECK_EQ_INT(decode_raw(&w), 0);
}

static void test_zero_length_tag(void)
{
    for (int pos = 0; pos < 3; pos++) { /* first, middle, last of three tags */
        raw w = valid_raw(3);
        w.taglen[pos] = -1;
        CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
    }
    raw w = valid_raw(2);
    tc__record r = record_of(&w);
    r.taglen[1] = 0;
    tc_buf b = {0};
    CHECK_EQ_INT(tc__record_encode(&r, &b), TC_EINVAL);
    free(b.data);
}

/* ---- values stored compressed (TC2) ------------------------------------------ */

/* A JSON-like value of n bytes that compresses well, and its record. */
static char *blog_like(size_t n)
{
    static const char part[] = "{\"id\":17,\"title\":\"Caching in layers\",\"body\":\"L1, then "
                               "Redis, then the database; each answer carries its ETag.\"},";
    char *v = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        v[i] = part[i % (sizeof(part) - 1)];
    v[n] = '\0';
    return v;
}

static tc__record record_with(const char *data, size_t len)
{
    raw w = valid_raw(2);
    tc__record r = record_of(&w);
    r.data = data;
    r.len = len;
    r.hash = tc__hash(data, len);
    return r;
}

/* The value a decoded record gives, or NULL (rc in *rc). */
static const tc_value *value_of(const char *buf, size_t len, int *rc)
{
    tc__record d;
    const tc_value *v = NULL;
    *rc = decode_exact(buf, len, &d);
    if (*rc == 0) {
        /* decode_exact freed its copy: decode again in place for the value */
        tc__record_decode(buf, len, &d);
        *rc = tc__record_value(&d, &v);
    }
    return v;
}

static void test_compressed_round_trip(void)
{
    size_t n = 4096;
    char *val = blog_like(n);
    tc__record r = record_with(val, n);
    tc_buf z = {0}, enc = {0};
    CHECK_EQ_INT(tc__record_compress(&r, 1024, &z), 1);
    CHECK(r.flags == TC__REC_ZSTD && r.raw_len == n && r.len < n / 2 && r.data == z.data);
    REQUIRE(tc__record_encode(&r, &enc) == 0);
    CHECK(memcmp(enc.data, "TC2\0\x01", 5) == 0);
    round_trip(&r); /* the TC2 bytes decode and encode back to themselves */
    int rc;
    const tc_value *v = value_of(enc.data, enc.len, &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK(v != NULL && v->len == n && memcmp(v->data, val, n) == 0);
    CHECK(v != NULL && v->hash == tc__hash(val, n)); /* the ETag does not change */
    tc_value_release(v);
    free(enc.data);
    free(z.data);
    free(val);
}

/* What the code before compression wrote (TC1, by the independent writer) is read. */
static void test_old_record_decoded_by_new_reader(void)
{
    size_t n = 4096;
    char *val = blog_like(n);
    raw w = valid_raw(2);
    w.data = val, w.len = n, w.hash = tc__hash(val, n);
    tc_buf b = {0};
    raw_write(&w, &b);
    int rc;
    const tc_value *v = value_of(b.data, b.len, &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK(v != NULL && v->len == n && memcmp(v->data, val, n) == 0 && v->hash == w.hash);
    tc_value_release(v);
    free(b.data);

    /* Below the threshold, or off, or not shrinking: written as TC1, as before. */
    tc__record r = record_with(val, 1023);
    tc_buf z = {0};
    CHECK_EQ_INT(tc__record_compress(&r, 1024, &z), 0);
    CHECK(r.flags == 0 && r.data == val && z.data == NULL);
    r = record_with(val, n);
    CHECK_EQ_INT(tc__record_compress(&r, 0, &z), 0);
    CHECK(r.flags == 0 && r.data == val);
    char noise[2048];
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < sizeof(noise); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        noise[i] = (char)x;
    }
    r = record_with(noise, sizeof(noise));
    CHECK_EQ_INT(tc__record_compress(&r, 1024, &z), 0);
    CHECK(r.flags == 0 && r.data == noise);
    tc_buf enc = {0}, ref = {0};
    REQUIRE(tc__record_encode(&r, &enc) == 0);
    w = valid_raw(2);
    w.data = noise, w.len = sizeof(noise), w.hash = r.hash;
    raw_write(&w, &ref);
    CHECK(enc.len == ref.len && memcmp(enc.data, ref.data, ref.len) == 0);
    free(enc.data);
    free(ref.data);
    free(val);
}

/* A raw TC2 record around frame (raw_len claimed), for the corruption cases. */
static raw tc2_raw(const char *frame, size_t flen, uint32_t raw_len, uint64_t hash)
{
    raw w = valid_raw(1);
    w.tc2 = true, w.flags = TC__REC_ZSTD, w.raw_len = raw_len;
    w.data = frame, w.len = flen, w.hash = hash;
    return w;
}

static int value_rc(const raw *w)
{
    tc_buf b = {0};
    raw_write(w, &b);
    int rc;
    const tc_value *v = value_of(b.data, b.len, &rc);
    if (v != NULL)
        tc_value_release(v);
    free(b.data);
    return rc;
}

static void test_corrupt_compressed_record_refused(void)
{
    size_t n = 3000;
    char *val = blog_like(n);
    uint64_t h = tc__hash(val, n);
    size_t cap = ZSTD_compressBound(n);
    char *frame = malloc(cap);
    size_t flen = ZSTD_compress(frame, cap, val, n, 3);
    REQUIRE(!ZSTD_isError(flen));
    raw w = tc2_raw(frame, flen, (uint32_t)n, h);
    CHECK_EQ_INT(value_rc(&w), 0); /* the good one, written independently */

    int refused = 0, flips = 0;
    for (size_t i = 0; i < flen; i += 7, flips++) { /* a byte flipped anywhere in the frame */
        frame[i] ^= 0x5a;
        refused += value_rc(&w) == TC_EINVAL;
        frame[i] ^= 0x5a;
    }
    CHECK_EQ_INT(refused, flips);
    w = tc2_raw(frame, flen, (uint32_t)n - 1, h); /* the frame holds another size */
    CHECK_EQ_INT(value_rc(&w), TC_EINVAL);
    w = tc2_raw(frame, flen, (uint32_t)n, h ^ 1); /* a value that is not the record's */
    CHECK_EQ_INT(value_rc(&w), TC_EINVAL);
    w = tc2_raw(frame, flen - 1, (uint32_t)n, h); /* cut short */
    CHECK_EQ_INT(value_rc(&w), TC_EINVAL);
    w = tc2_raw(frame, flen, TC__RAW_MAX + 1, h); /* claims more than any reader allocates */
    CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
    w = tc2_raw(frame, flen, 0, h);
    CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
    static const unsigned bad_flags[] = {0, 2, 3, 0x81};
    for (size_t i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++) {
        w = tc2_raw(frame, flen, (uint32_t)n, h);
        w.flags = bad_flags[i];
        CHECK_EQ_INT(decode_raw(&w), TC_EINVAL);
    }
    /* a frame that holds (and claims) more than the record says: nothing more is
     * allocated than the record's raw_len, and it is refused */
    w = tc2_raw(frame, flen, 100, h);
    CHECK_EQ_INT(value_rc(&w), TC_EINVAL);
    /* the encoder writes no record the reader would refuse */
    tc__record r = record_with(val, n);
    r.flags = TC__REC_ZSTD, r.raw_len = TC__RAW_MAX + 1;
    tc_buf b = {0};
    CHECK_EQ_INT(tc__record_encode(&r, &b), TC_EINVAL);
    r.flags = 2, r.raw_len = n;
    CHECK_EQ_INT(tc__record_encode(&r, &b), TC_EINVAL);
    free(b.data);
    free(frame);
    free(val);
}

int main(void)
{
    test_round_trip();
    test_round_trip_edges();
    test_layout_matches_documentation();
    test_truncation_at_every_length();
    test_bad_magic();
    test_versions_must_be_ntags_plus_two();
    test_trailing_bytes();
    test_fresh_after_stale();
    test_zero_length_tag();
    test_compressed_round_trip();
    test_old_record_decoded_by_new_reader();
    test_corrupt_compressed_record_refused();
    return check_report();
}

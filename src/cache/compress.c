/*
 * Values stored compressed in L2: zstd (Debian's libzstd) for the values large
 * enough that Redis memory and the bytes on the wire matter more than the
 * microseconds of decompressing them. L1 holds the value itself: what is
 * cheaper to serve.
 *
 * It is for: turning a record's value into a frame before it is written
 * (tc__record_compress) and a decoded record back into its value
 * (tc__record_value). It is not for: the record's layout (codec.c, where a
 * compressed value is the "TC2" record) or deciding the threshold (tc_config).
 *
 * DESIGN — a record from Redis is not trusted. A frame's header can claim any
 * content size; the record's own raw_len is bounded by TC__RAW_MAX (codec.c
 * refuses more), the frame's claimed size must equal it, the output buffer is
 * exactly raw_len bytes (zstd never writes past it), the decompressed length
 * must be exactly raw_len and its hash the record's. Anything else is
 * TC_EINVAL: the caller counts it and treats the record as a miss, and the
 * next load writes a good one over it.
 *
 * Threads: any. Each thread keeps one compression and one decompression
 * context (created on first use, freed when the thread exits): a context is
 * a large allocation that a call would otherwise make and free each time.
 */
#include <pthread.h>
#include <stdlib.h>
#include <zstd.h>

#include "cache/internal.h"

#define LEVEL 3 /* zstd's default: ~3x on the blog's JSON, well under a load's cost */

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static bool ctx_key_ok;

typedef struct contexts {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
} contexts;

/* Reachable from the thread's own storage while it lives (so a leak checker sees
 * it), freed by the key's destructor when it ends. */
static _Thread_local contexts *tls;

static void contexts_free(void *arg)
{
    contexts *x = arg;
    ZSTD_freeCCtx(x->c);
    ZSTD_freeDCtx(x->d);
    free(x);
    tls = NULL;
}

static void key_init(void)
{
    ctx_key_ok = pthread_key_create(&ctx_key, contexts_free) == 0;
}

static contexts *mine(void)
{
    if (tls != NULL)
        return tls;
    pthread_once(&ctx_once, key_init);
    contexts *x = calloc(1, sizeof(*x));
    if (x == NULL || !ctx_key_ok || pthread_setspecific(ctx_key, x) != 0) {
        free(x);
        return NULL;
    }
    return tls = x;
}

int tc__record_compress(tc__record *r, size_t min_bytes, tc_buf *z)
{
    if (min_bytes == 0 || r->flags != 0 || r->len < min_bytes || r->len > TC__RAW_MAX)
        return 0;
    contexts *x = mine();
    if (x == NULL || (x->c == NULL && (x->c = ZSTD_createCCtx()) == NULL))
        return 0;
    size_t cap = ZSTD_compressBound(r->len);
    char *buf = malloc(cap);
    if (buf == NULL)
        return 0;
    size_t n = ZSTD_compressCCtx(x->c, buf, cap, r->data, r->len, LEVEL);
    if (ZSTD_isError(n) || n > r->len - r->len / 8) { /* not worth a decompression */
        free(buf);
        return 0;
    }
    *z = (tc_buf){.data = buf, .len = n, .cap = cap};
    r->flags = TC__REC_ZSTD;
    r->raw_len = r->len;
    r->data = buf;
    r->len = n;
    return 1;
}

int tc__record_value(const tc__record *r, const tc_value **out)
{
    *out = NULL;
    if (r->flags == 0) {
        *out = tc__value_new(r->data, r->len, r->hash);
        return *out != NULL ? 0 : TC_ENOMEM;
    }
    if (r->flags != TC__REC_ZSTD || r->raw_len == 0 || r->raw_len > TC__RAW_MAX ||
        ZSTD_getFrameContentSize(r->data, r->len) != (unsigned long long)r->raw_len)
        return TC_EINVAL;
    contexts *x = mine();
    if (x == NULL || (x->d == NULL && (x->d = ZSTD_createDCtx()) == NULL))
        return TC_ENOMEM;
    char *buf;
    tc_value *v = tc__value_alloc(r->raw_len, &buf);
    if (v == NULL)
        return TC_ENOMEM;
    size_t n = ZSTD_decompressDCtx(x->d, buf, r->raw_len, r->data, r->len);
    if (ZSTD_isError(n) || n != r->raw_len || (v->hash = tc__hash(buf, n)) != r->hash) {
        tc_value_release(v);
        return TC_EINVAL;
    }
    *out = v;
    return 0;
}

/*
 * Values, loader output buffers, the content hash and error strings.
 *
 * A value is one allocation: a reference count, the public tc_value, and the
 * bytes. It is immutable once made, so readers on any thread need no lock;
 * the last tc_value_release() frees it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cache/internal.h"

typedef struct value_box {
    _Atomic unsigned refs;
    tc_value v;
    char bytes[];
} value_box;

#define BOX(v) ((value_box *)((char *)(v)-offsetof(value_box, v)))

uint64_t tc__hash(const void *data, size_t len)
{
    return XXH3_64bits(data, len);
}

const tc_value *tc__value_new(const void *data, size_t len, uint64_t hash)
{
    value_box *b = malloc(sizeof(*b) + len + 1);
    if (b == NULL)
        return NULL;
    atomic_init(&b->refs, 1);
    if (len > 0)
        memcpy(b->bytes, data, len);
    b->bytes[len] = '\0'; /* convenience for text values; not counted in len */
    b->v.data = b->bytes;
    b->v.len = len;
    b->v.hash = hash != 0 ? hash : tc__hash(b->bytes, len);
    return &b->v;
}

tc_value *tc__value_alloc(size_t len, char **bytes)
{
    value_box *b = malloc(sizeof(*b) + len + 1);
    if (b == NULL)
        return NULL;
    atomic_init(&b->refs, 1);
    b->bytes[len] = '\0';
    b->v.data = *bytes = b->bytes;
    b->v.len = len;
    b->v.hash = 0;
    return &b->v;
}

void tc_value_retain(const tc_value *v)
{
    atomic_fetch_add_explicit(&BOX(v)->refs, 1, memory_order_relaxed);
}

void tc_value_release(const tc_value *v)
{
    if (v == NULL)
        return;
    value_box *b = BOX(v);
    unsigned refs = atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel);
    TC_ASSERT(refs > 0);
    if (refs == 1)
        free(b);
}

void tc_hash_hex(uint64_t hash, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, hash >>= 4)
        out[i] = hex[hash & 0xf];
    out[16] = '\0';
}

/* ---- output buffers ------------------------------------------------------ */

static int buf_reserve(tc_buf *b, size_t extra)
{
    if (b->max != 0 && b->len + extra > b->max)
        return TC_EINVAL;
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap != 0 ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return TC_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int tc_buf_append(tc_buf *b, const void *data, size_t len)
{
    int err = buf_reserve(b, len);
    if (err != 0)
        return err;
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

int tc_buf_printf(tc_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return TC_EINVAL;
    int err = buf_reserve(b, (size_t)n + 1);
    if (err != 0)
        return err;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

const char *tc_strerror(int err)
{
    switch (err) {
    case TC_OK:
        return "ok";
    case TC_ENOMEM:
        return "out of memory";
    case TC_EINVAL:
        return "invalid argument";
    case TC_ENOTFOUND:
        return "no usable entry";
    case TC_ELOAD:
        return "loader failed and no stale value may be served";
    case TC_EREDIS:
        return "redis unreachable or failed";
    case TC_ETIMEDOUT:
        return "timed out waiting for another load";
    case TC_ECLOSED:
        return "cache is closing";
    case TC_EUNAVAILABLE:
        return "the source is unavailable";
    default:
        return err < 0 ? "loader error" : "unknown error";
    }
}

uint64_t tc__random_epoch(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != sizeof(v))
        v = tc_mono_us() * 0x9e3779b97f4a7c15ull;
    return 100000000000000ull + v % 900000000000000ull;
}

uint64_t tc__random_increment(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != sizeof(v))
        v = tc_mono_us() * 0x9e3779b97f4a7c15ull;
    return 1000000000ull + v % 1000000000000ull;
}

void tc__say(const tc__logger *lg, int level, const char *component, const char *fmt, ...)
{
    if (lg->fn == NULL)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lg->fn(lg->ctx, level, component, msg);
}

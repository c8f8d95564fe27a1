/*
 * The page store (pagecache.h): a page's key to its last rendered bytes and
 * their ETag, bounded in bytes.
 *
 * DESIGN. SHARDS shards, chosen by the key's hash, each a mutex, a fixed
 * array of hash buckets and an LRU list, with an eighth of the byte budget.
 * A lookup holds its shard's mutex for a bucket walk, an ETag compare, a
 * reference taken and a list move: no allocation, no copy. A response is
 * sent from the stored bytes themselves (tc_http_set_body_ref), so a body is
 * reference-counted apart from its entry: replacing or evicting the entry
 * drops the store's reference, and the bytes go when the last response that
 * uses them has been sent. Counters are relaxed atomics outside the locks.
 */
#include "app/pagecache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/assert.h"
#include "http/cachehdr.h" /* TC_ETAG_MAX */

#define SHARDS 8
#define BUCKETS 512 /* per shard */

typedef struct body {
    tc_page_body pub; /* first: a tc_page_body * is a body * */
    _Atomic uint32_t refs;
    char *buf;
} body;

typedef struct entry {
    struct entry *next;          /* in its bucket */
    struct entry *newer, *older; /* the shard's LRU list */
    uint64_t h;
    size_t charge; /* bytes counted against the budget */
    body *b;       /* the store's reference */
    char etag[TC_ETAG_MAX];
    size_t klen;
    char key[];
} entry;

typedef struct shard {
    pthread_mutex_t lock;
    entry *buckets[BUCKETS];
    entry *newest, *oldest;
    size_t bytes, max_bytes, entries;
} shard;

struct tc_pagecache {
    shard shards[SHARDS];
    size_t max_bytes;
    _Atomic uint64_t hits, misses, stores, evictions;
};

static void count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- bodies ---------------------------------------------------------------------------- */

static body *body_new(char *buf, size_t len)
{
    body *b = malloc(sizeof(*b));
    if (b == NULL)
        return NULL;
    b->pub = (tc_page_body){.data = buf, .len = len};
    b->buf = buf;
    atomic_init(&b->refs, 1);
    return b;
}

static const tc_page_body *body_retain(body *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return &b->pub;
}

void tc_page_body_release(const tc_page_body *pb)
{
    if (pb == NULL)
        return;
    body *b = (body *)pb;
    uint32_t before = atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel);
    TC_ASSERT(before > 0);
    if (before == 1) {
        free(b->buf);
        free(b);
    }
}

void tc_page_body_release_cb(void *arg)
{
    tc_page_body_release(arg);
}

/* ---- a shard (its lock held) ----------------------------------------------------------- */

static entry **bucket_of(shard *s, uint64_t h)
{
    return &s->buckets[(h >> 8) % BUCKETS];
}

static entry *find(shard *s, uint64_t h, const char *key, size_t klen)
{
    for (entry *e = *bucket_of(s, h); e != NULL; e = e->next)
        if (e->h == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    return NULL;
}

static void lru_unlink(shard *s, entry *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        s->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        s->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push(shard *s, entry *e)
{
    e->older = s->newest;
    e->newer = NULL;
    if (s->newest != NULL)
        s->newest->newer = e;
    s->newest = e;
    if (s->oldest == NULL)
        s->oldest = e;
}

/* Takes e out of the shard and frees it (its bytes live on while a response holds them). */
static void drop(shard *s, entry *e)
{
    TC_ASSERT_HELD(&s->lock);
    entry **p = bucket_of(s, e->h);
    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    lru_unlink(s, e);
    TC_ASSERT(s->bytes >= e->charge && s->entries > 0);
    s->bytes -= e->charge;
    s->entries--;
    tc_page_body_release(&e->b->pub);
    free(e);
}

/* ---- the store ------------------------------------------------------------------------- */

tc_pagecache *tc_pagecache_new(size_t max_bytes)
{
    if (max_bytes == 0)
        return NULL;
    tc_pagecache *pc = calloc(1, sizeof(*pc));
    if (pc == NULL)
        return NULL;
    pc->max_bytes = max_bytes;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&pc->shards[i].lock, NULL);
        pc->shards[i].max_bytes = max_bytes / SHARDS;
    }
    return pc;
}

void tc_pagecache_free(tc_pagecache *pc)
{
    if (pc == NULL)
        return;
    for (int i = 0; i < SHARDS; i++) {
        shard *s = &pc->shards[i];
        pthread_mutex_lock(&s->lock);
        while (s->oldest != NULL)
            drop(s, s->oldest);
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_destroy(&s->lock);
    }
    free(pc);
}

static shard *shard_of(tc_pagecache *pc, uint64_t h)
{
    return &pc->shards[h % SHARDS];
}

const tc_page_body *tc_pagecache_get(tc_pagecache *pc, const char *key, size_t klen,
                                     const char *etag)
{
    if (pc == NULL || etag == NULL)
        return NULL;
    uint64_t h = XXH3_64bits(key, klen);
    shard *s = shard_of(pc, h);
    const tc_page_body *out = NULL;
    pthread_mutex_lock(&s->lock);
    entry *e = find(s, h, key, klen);
    if (e != NULL && strcmp(e->etag, etag) == 0) {
        out = body_retain(e->b);
        lru_unlink(s, e);
        lru_push(s, e);
    }
    pthread_mutex_unlock(&s->lock);
    count(out != NULL ? &pc->hits : &pc->misses);
    return out;
}

const tc_page_body *tc_pagecache_put(tc_pagecache *pc, const char *key, size_t klen,
                                     const char *etag, char *data, size_t len)
{
    body *b = body_new(data, len);
    if (b == NULL)
        return NULL;
    size_t elen = strlen(etag);
    if (pc == NULL || elen >= TC_ETAG_MAX)
        return &b->pub; /* not kept: the caller's reference is the only one */
    uint64_t h = XXH3_64bits(key, klen);
    shard *s = shard_of(pc, h);
    size_t charge = sizeof(entry) + klen + sizeof(body) + len;
    if (charge > s->max_bytes)
        return &b->pub;
    entry *e = malloc(sizeof(*e) + klen);
    if (e == NULL)
        return &b->pub;
    *e = (entry){.h = h, .charge = charge, .b = b, .klen = klen};
    memcpy(e->etag, etag, elen + 1);
    memcpy(e->key, key, klen);
    const tc_page_body *out = body_retain(b); /* the response's; the entry keeps the first */
    uint64_t evicted = 0;
    pthread_mutex_lock(&s->lock);
    entry *old = find(s, h, key, klen);
    if (old != NULL)
        drop(s, old);
    while (s->bytes + charge > s->max_bytes) {
        TC_ASSERT(s->oldest != NULL); /* charge <= max_bytes: an empty shard has room */
        drop(s, s->oldest);
        evicted++;
    }
    entry **p = bucket_of(s, h);
    e->next = *p;
    *p = e;
    lru_push(s, e);
    s->bytes += charge;
    s->entries++;
    pthread_mutex_unlock(&s->lock);
    count(&pc->stores);
    atomic_fetch_add_explicit(&pc->evictions, evicted, memory_order_relaxed);
    return out;
}

void tc_pagecache_stats_get(tc_pagecache *pc, tc_pagecache_stats *out)
{
    *out = (tc_pagecache_stats){0};
    if (pc == NULL)
        return;
    out->hits = atomic_load_explicit(&pc->hits, memory_order_relaxed);
    out->misses = atomic_load_explicit(&pc->misses, memory_order_relaxed);
    out->stores = atomic_load_explicit(&pc->stores, memory_order_relaxed);
    out->evictions = atomic_load_explicit(&pc->evictions, memory_order_relaxed);
    out->max_bytes = pc->max_bytes;
    for (int i = 0; i < SHARDS; i++) {
        shard *s = &pc->shards[i];
        pthread_mutex_lock(&s->lock);
        out->entries += s->entries;
        out->bytes += s->bytes;
        pthread_mutex_unlock(&s->lock);
    }
}

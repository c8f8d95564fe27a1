/*
 * L1: the in-process table. Sharded by key hash, one mutex per shard, a
 * chained hash table and an LRU list in each. Each shard holds at most
 * max_bytes / nshards bytes of charged memory (entry, key, value); inserting
 * past that evicts from the cold end.
 *
 * An entry is reference counted: the table holds one reference while the
 * entry is linked, and each reader holds one from tc__l1_get() until
 * tc__entry_release(). So eviction or invalidation on one thread never frees
 * an entry another thread is reading (DESIGN.md guarantee 10).
 *
 * This module does not judge validity (times, tags): cache.c does.
 *
 * DESIGN — scan resistance. Plain LRU lets a one-off scan over many cold keys
 * (a crawler, a report, an export) push the whole hot set out. With admission
 * on, each shard counts every lookup of a key in a small frequency sketch
 * (admit.c), and a key not yet in the table that needs room is let in only
 * if it was looked up more often than each entry it would evict; else it
 * is not inserted (the caller still has its value; the next read finds it in
 * L2). A scan's keys are seen once: they displace only entries the sketch
 * has forgotten (halved to 0), never the hot set. Replacing an entry under
 * the same key (a refresh, a new value after an invalidation) is always
 * admitted, and nothing else changes: validity, invalidation, single-flight
 * and the times are cache.c's, and an entry kept out is only a later L2 read.
 */
#include <stdlib.h>
#include <string.h>

#include "cache/internal.h"

/* What an entry is charged at least (an empty key and value): a shard of
 * max_bytes holds at most max_bytes / this many (the sketch's size). */
#define ENTRY_MIN_CHARGE (sizeof(tc__entry) + 64)

typedef struct shard {
    pthread_mutex_t lock;
    tc__entry **buckets;
    size_t nbuckets, count, bytes, max_bytes;
    tc__lru lru; /* sentinel: lru.next is the most recently used */
    uint64_t evictions, rejections;
    tc__sketch sketch; /* with admission */
} shard;

struct tc__l1 {
    int nshards;
    bool admission;
    shard *shards;
};

tc__l1 *tc__l1_new(size_t max_bytes, int nshards, bool admission)
{
    if (nshards <= 0 || (nshards & (nshards - 1)) != 0)
        return NULL;
    tc__l1 *l1 = calloc(1, sizeof(*l1));
    if (l1 == NULL || (l1->shards = calloc((size_t)nshards, sizeof(shard))) == NULL) {
        free(l1);
        return NULL;
    }
    l1->nshards = nshards;
    l1->admission = admission;
    for (int i = 0; i < nshards; i++) {
        shard *s = &l1->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->nbuckets = 64;
        s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
        s->max_bytes = max_bytes / (size_t)nshards;
        s->lru.next = s->lru.prev = &s->lru;
        if (s->buckets == NULL ||
            (admission && tc__sketch_init(&s->sketch, s->max_bytes / ENTRY_MIN_CHARGE) != 0)) {
            l1->nshards = i + 1;
            tc__l1_free(l1);
            return NULL;
        }
    }
    return l1;
}

tc__entry *tc__entry_new(const char *key, size_t klen, uint64_t khash, const tc_value *value)
{
    tc__entry *e = calloc(1, sizeof(*e) + klen + 1);
    if (e == NULL)
        return NULL;
    atomic_init(&e->refs, 1);
    atomic_init(&e->refresh_at, 0);
    atomic_init(&e->grace_serve_until, 0);
    memcpy(e->key, key, klen);
    e->klen = (uint16_t)klen;
    e->khash = khash;
    e->value = value;
    e->charge = sizeof(*e) + klen + 1 + value->len + 64 /* value header, malloc slack */;
    return e;
}

void tc__entry_release(tc__entry *e)
{
    if (e == NULL)
        return;
    unsigned refs = atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel);
    TC_ASSERT(refs > 0);
    if (refs != 1)
        return;
    tc_value_release(e->value);
    for (int i = 0; i < e->ntags; i++)
        tc__tag_put(e->tags[i]);
    free(e);
}

static shard *shard_of(tc__l1 *l1, uint64_t h)
{
    return &l1->shards[h & (uint64_t)(l1->nshards - 1)];
}

static tc__entry **slot_of(shard *s, uint64_t h)
{
    return &s->buckets[(h >> 16) & (s->nbuckets - 1)];
}

static tc__entry **find(shard *s, const char *key, size_t klen, uint64_t h)
{
    tc__entry **pp = slot_of(s, h);
    for (; *pp != NULL; pp = &(*pp)->hnext)
        if ((*pp)->khash == h && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0)
            return pp;
    return pp;
}

#define LRU_ENTRY(n) ((tc__entry *)((char *)(n)-offsetof(tc__entry, lru)))

static void lru_unlink(tc__entry *e)
{
    e->lru.prev->next = e->lru.next;
    e->lru.next->prev = e->lru.prev;
}

static void lru_push(shard *s, tc__entry *e)
{
    e->lru.next = s->lru.next;
    e->lru.prev = &s->lru;
    s->lru.next->prev = &e->lru;
    s->lru.next = &e->lru;
}

/* Unlinks *pp from the shard; the caller drops the table's reference after
 * unlocking (freeing under the lock would lengthen it). */
static tc__entry *unlink_at(shard *s, tc__entry **pp)
{
    tc__entry *e = *pp;
    TC_ASSERT(s->count > 0 && s->bytes >= e->charge); /* the shard's accounting holds e */
    *pp = e->hnext;
    lru_unlink(e);
    s->count--;
    s->bytes -= e->charge;
    return e;
}

static void grow(shard *s)
{
    size_t n = s->nbuckets * 2;
    tc__entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (tc__entry *e = s->buckets[i], *next; e != NULL; e = next) {
            next = e->hnext;
            tc__entry **slot = &b[(e->khash >> 16) & (n - 1)];
            e->hnext = *slot;
            *slot = e;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

tc__entry *tc__l1_get(tc__l1 *l1, const char *key, size_t klen, uint64_t khash)
{
    shard *s = shard_of(l1, khash);
    pthread_mutex_lock(&s->lock);
    tc__entry *e = *find(s, key, klen, khash);
    if (l1->admission)
        tc__sketch_add(&s->sketch, khash, s->count); /* hit or miss: the key was asked for */
    if (e != NULL) {
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        if (s->lru.next != &e->lru) {
            lru_unlink(e);
            lru_push(s, e);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return e;
}

/* Whether the new entry e may evict the least recently used entries it needs
 * the room of: it was seen more often than each of them (a tie keeps what is
 * there: a scan's key, seen once, does not displace another seen once). The caller
 * holds the shard lock. */
static bool admits(shard *s, const tc__entry *e)
{
    size_t need = s->bytes + e->charge - s->max_bytes;
    unsigned freq = tc__sketch_freq(&s->sketch, e->khash);
    for (tc__lru *n = s->lru.prev; need > 0 && n != &s->lru; n = n->prev) {
        const tc__entry *victim = LRU_ENTRY(n);
        if (tc__sketch_freq(&s->sketch, victim->khash) >= freq)
            return false;
        need -= victim->charge < need ? victim->charge : need;
    }
    return true;
}

bool tc__l1_put(tc__l1 *l1, tc__entry *e)
{
    shard *s = shard_of(l1, e->khash);
    tc__entry *dropped = NULL; /* unlinked entries, chained through hnext */
    if (e->charge > s->max_bytes)
        return false; /* would evict the whole shard for one value */
    pthread_mutex_lock(&s->lock);
    tc__entry **pp = find(s, e->key, e->klen, e->khash);
    if (*pp != NULL) {
        dropped = unlink_at(s, pp);
        dropped->hnext = NULL;
    } else if (l1->admission && s->bytes + e->charge > s->max_bytes && !admits(s, e)) {
        s->rejections++;
        pthread_mutex_unlock(&s->lock);
        return false;
    }
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed); /* the table's */
    if (s->count >= s->nbuckets)
        grow(s);
    pp = slot_of(s, e->khash);
    e->hnext = *pp;
    *pp = e;
    lru_push(s, e);
    s->count++;
    s->bytes += e->charge;
    while (s->bytes > s->max_bytes) {
        TC_ASSERT(s->lru.prev != &s->lru); /* bytes are charged only for listed entries */
        tc__entry *victim = LRU_ENTRY(s->lru.prev);
        victim = unlink_at(s, find(s, victim->key, victim->klen, victim->khash));
        victim->hnext = dropped;
        dropped = victim;
        s->evictions++;
    }
    pthread_mutex_unlock(&s->lock);
    while (dropped != NULL) {
        tc__entry *next = dropped->hnext;
        tc__entry_release(dropped);
        dropped = next;
    }
    return true;
}

void tc__l1_remove(tc__l1 *l1, const char *key, size_t klen, uint64_t khash, tc__entry *only)
{
    shard *s = shard_of(l1, khash);
    tc__entry *e = NULL;
    pthread_mutex_lock(&s->lock);
    tc__entry **pp = find(s, key, klen, khash);
    if (*pp != NULL && (only == NULL || *pp == only))
        e = unlink_at(s, pp);
    pthread_mutex_unlock(&s->lock);
    tc__entry_release(e);
}

static void clear_shard(shard *s)
{
    for (;;) {
        tc__entry *batch[64];
        int n = 0;
        pthread_mutex_lock(&s->lock);
        while (n < 64 && s->lru.next != &s->lru) {
            tc__entry *e = LRU_ENTRY(s->lru.next);
            batch[n++] = unlink_at(s, find(s, e->key, e->klen, e->khash));
        }
        if (s->lru.next == &s->lru) /* empty: nothing left charged */
            TC_ASSERT(s->count == 0 && s->bytes == 0);
        pthread_mutex_unlock(&s->lock);
        for (int i = 0; i < n; i++)
            tc__entry_release(batch[i]);
        if (n < 64)
            return;
    }
}

void tc__l1_clear(tc__l1 *l1)
{
    for (int i = 0; i < l1->nshards; i++)
        clear_shard(&l1->shards[i]);
}

void tc__l1_stats(tc__l1 *l1, uint64_t *entries, uint64_t *bytes, uint64_t *evictions)
{
    *entries = *bytes = *evictions = 0;
    for (int i = 0; i < l1->nshards; i++) {
        shard *s = &l1->shards[i];
        pthread_mutex_lock(&s->lock);
        *entries += s->count;
        *bytes += s->bytes;
        *evictions += s->evictions;
        pthread_mutex_unlock(&s->lock);
    }
}

uint64_t tc__l1_rejections(tc__l1 *l1)
{
    uint64_t n = 0;
    for (int i = 0; i < l1->nshards; i++) {
        shard *s = &l1->shards[i];
        pthread_mutex_lock(&s->lock);
        n += s->rejections;
        pthread_mutex_unlock(&s->lock);
    }
    return n;
}

void tc__l1_free(tc__l1 *l1)
{
    if (l1 == NULL)
        return;
    for (int i = 0; i < l1->nshards; i++) {
        clear_shard(&l1->shards[i]);
        free(l1->shards[i].buckets);
        tc__sketch_free(&l1->shards[i].sketch);
        pthread_mutex_destroy(&l1->shards[i].lock);
    }
    free(l1->shards);
    free(l1);
}

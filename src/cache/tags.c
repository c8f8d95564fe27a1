/*
 * Interned tags and their local generation counters.
 *
 * An L1 entry keeps a pointer to each of its tags and the generation each had
 * before the entry's load began; the entry is valid while every one is
 * unchanged. So a hit costs one atomic load per tag, and invalidating a tag is
 * one atomic increment here, whatever the number of entries that carry it.
 *
 * A tag lives while something holds a reference (an entry, a load in
 * progress). A tag nobody references has nothing to invalidate, so bumping an
 * absent tag is correctly a no-op, and a re-interned tag may start at 0.
 * Reference counts change under the shard lock, so lookup and the last put
 * cannot race.
 */
#include <stdlib.h>
#include <string.h>

#include "cache/internal.h"

#define NSHARDS 16
#define NBUCKETS 1024 /* per shard; chains grow beyond that, which stays correct */

typedef struct shard {
    pthread_mutex_t lock;
    tc__tag *buckets[NBUCKETS];
} shard;

struct tc__tags {
    shard shards[NSHARDS];
};

tc__tags *tc__tags_new(void)
{
    tc__tags *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    for (int i = 0; i < NSHARDS; i++)
        pthread_mutex_init(&t->shards[i].lock, NULL);
    return t;
}

void tc__tags_free(tc__tags *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        for (int b = 0; b < NBUCKETS; b++) {
            /* Only leaked references would leave tags here; free them anyway. */
            for (tc__tag *g = t->shards[i].buckets[b], *n; g != NULL; g = n) {
                n = g->next;
                free(g);
            }
        }
        pthread_mutex_destroy(&t->shards[i].lock);
    }
    free(t);
}

static shard *shard_of(tc__tags *t, uint64_t h)
{
    return &t->shards[h % NSHARDS];
}

static tc__tag **slot_of(shard *s, uint64_t h)
{
    return &s->buckets[(h / NSHARDS) % NBUCKETS];
}

static tc__tag *find(tc__tag *g, uint64_t h, const char *name, size_t len)
{
    for (; g != NULL; g = g->next)
        if (g->hash == h && strncmp(g->name, name, len) == 0 && g->name[len] == '\0')
            return g;
    return NULL;
}

tc__tag *tc__tag_get(tc__tags *t, const char *name, size_t len)
{
    uint64_t h = tc__hash(name, len);
    shard *s = shard_of(t, h);
    pthread_mutex_lock(&s->lock);
    tc__tag **slot = slot_of(s, h);
    tc__tag *g = find(*slot, h, name, len);
    if (g == NULL && (g = malloc(sizeof(*g) + len + 1)) != NULL) {
        atomic_init(&g->gen, 0);
        g->owner = t;
        g->hash = h;
        g->refs = 0;
        memcpy(g->name, name, len);
        g->name[len] = '\0';
        g->next = *slot;
        *slot = g;
    }
    if (g != NULL)
        g->refs++;
    pthread_mutex_unlock(&s->lock);
    return g;
}

void tc__tag_put(tc__tag *g)
{
    if (g == NULL)
        return;
    shard *s = shard_of(g->owner, g->hash);
    pthread_mutex_lock(&s->lock);
    TC_ASSERT(g->refs > 0);
    if (--g->refs == 0) {
        tc__tag **pp = slot_of(s, g->hash);
        while (*pp != g)
            pp = &(*pp)->next;
        *pp = g->next;
        free(g);
    }
    pthread_mutex_unlock(&s->lock);
}

bool tc__tags_bump(tc__tags *t, const char *name, size_t len)
{
    uint64_t h = tc__hash(name, len);
    shard *s = shard_of(t, h);
    pthread_mutex_lock(&s->lock);
    tc__tag *g = find(*slot_of(s, h), h, name, len);
    if (g != NULL)
        atomic_fetch_add_explicit(&g->gen, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&s->lock);
    return g != NULL;
}

void tc__tag_ref(tc__tag *g)
{
    shard *s = shard_of(g->owner, g->hash);
    pthread_mutex_lock(&s->lock);
    TC_ASSERT(g->refs > 0); /* a new reference to a tag someone holds */
    g->refs++;
    pthread_mutex_unlock(&s->lock);
}

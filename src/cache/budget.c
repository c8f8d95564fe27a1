/*
 * The L2 budget: how many keys and bytes this instance may hold in Redis.
 *
 * A Redis shared with a job queue runs with `maxmemory-policy noeviction`: it
 * will not make room, it refuses the job queue's writes. So the engine bounds
 * what it stores itself. Every record this instance writes is counted until it
 * expires (its TTL is known when it is written), in a ring of buckets by
 * expiry time; before a write, the live total plus the new record must fit.
 * A record written again before it expires (a refresh) is counted twice until
 * the first copy's expiry: the estimate errs high, never low — as far as the
 * ring reaches (36 h; a longer TTL is counted as expiring then).
 *
 * It is per instance, and needs no round trip and no key of its own: a fleet
 * of N instances holds at most N budgets. It is a safety net: what anonymous
 * input can make the server store is bounded first by checking that input
 * against real data (docs/cache.md).
 *
 * Not for: L1's memory (l1.c has its byte limit), the engine's own small keys
 * (tag counters, members), which follow the records.
 */
#include <stdlib.h>
#include <string.h>

#include "cache/internal.h"

#define BUCKETS 8192
#define WIDTH_MS 16000ull /* 8192 x 16 s: 36 h */

struct tc__budget {
    uint64_t max_bytes, max_keys; /* 0: no limit on that */
    pthread_mutex_t lock;
    uint64_t head;         /* the first bucket not yet expired, as an absolute bucket number */
    uint64_t bytes, keys;  /* live totals */
    bool over;             /* the last write was refused */
    struct {
        uint64_t bytes, keys;
    } ring[BUCKETS];
};

tc__budget *tc__budget_new(uint64_t max_bytes, uint64_t max_keys, uint64_t now)
{
    if (max_bytes == 0 && max_keys == 0)
        return NULL;
    tc__budget *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->max_bytes = max_bytes;
    b->max_keys = max_keys;
    b->head = now / WIDTH_MS;
    pthread_mutex_init(&b->lock, NULL);
    return b;
}

void tc__budget_free(tc__budget *b)
{
    if (b == NULL)
        return;
    pthread_mutex_destroy(&b->lock);
    free(b);
}

/* Drops what expired by now; the caller holds the lock. */
static void advance(tc__budget *b, uint64_t now_ms)
{
    uint64_t now = now_ms / WIDTH_MS;
    for (int n = 0; b->head < now && n < BUCKETS; b->head++, n++) {
        uint64_t i = b->head % BUCKETS;
        TC_ASSERT(b->bytes >= b->ring[i].bytes && b->keys >= b->ring[i].keys);
        b->bytes -= b->ring[i].bytes;
        b->keys -= b->ring[i].keys;
        b->ring[i].bytes = b->ring[i].keys = 0;
    }
    if (b->head < now) /* idle for longer than the ring: everything expired */
        b->head = now;
}

int tc__budget_take(tc__budget *b, uint64_t now, uint64_t bytes, uint64_t ttl_ms)
{
    pthread_mutex_lock(&b->lock);
    advance(b, now);
    bool fits = (b->max_bytes == 0 || b->bytes + bytes <= b->max_bytes) &&
                (b->max_keys == 0 || b->keys + 1 <= b->max_keys);
    int verdict = fits ? (b->over ? TC__BUDGET_BACK : TC__BUDGET_OK)
                       : (b->over ? TC__BUDGET_FULL : TC__BUDGET_NOW_FULL);
    b->over = !fits;
    if (fits) {
        /* the bucket of the expiry, rounded up: counted until then at least */
        uint64_t at = (now + ttl_ms + WIDTH_MS - 1) / WIDTH_MS;
        if (at < b->head)
            at = b->head;
        if (at >= b->head + BUCKETS)
            at = b->head + BUCKETS - 1;
        b->ring[at % BUCKETS].bytes += bytes;
        b->ring[at % BUCKETS].keys++;
        b->bytes += bytes;
        b->keys++;
    }
    pthread_mutex_unlock(&b->lock);
    return verdict;
}

void tc__budget_read(tc__budget *b, uint64_t now, uint64_t *bytes, uint64_t *keys)
{
    pthread_mutex_lock(&b->lock);
    advance(b, now);
    *bytes = b->bytes;
    *keys = b->keys;
    pthread_mutex_unlock(&b->lock);
}

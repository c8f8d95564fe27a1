/*
 * Hot keys and hot tags: which keys are read most, which tags are invalidated
 * most, lately — a bounded summary, counted on the read path.
 *
 * It is for: a top-K of names by how often they are counted, in fixed memory,
 * at a cost the L1 hit path can pay. It is not for: exact counts (a name out
 * of the top may be under-counted, one in it over-counted by at most its
 * `error`), nor anything a guarantee rests on.
 *
 * DESIGN — Space-Saving (Metwally, Agrawal and El Abbadi, "Efficient
 * Computation of Frequent and Top-k Elements in Data Streams", ICDT 2005),
 * striped so that no lock is taken by every read:
 *   - A summary is SLOTS (name, count, error) slots. A name in it has its
 *     count bumped; a name not in it takes the slot with the least count c
 *     and starts at c + 1 with error c (it may have been seen up to c times
 *     before). Every name counted more than total/SLOTS times is in it, with
 *     a count above that of every name counted fewer (the guarantee the unit
 *     test holds it to).
 *   - There are nstripes summaries, each behind its own mutex. A thread is
 *     given a stripe the first time it counts (round robin), so the event
 *     thread and each worker mostly have one to themselves; it only ever
 *     try-locks it, and when another thread holds it (the snapshot, or a
 *     thread that shares its stripe) the count is skipped — counted in
 *     `skipped`, so what it cost is visible. Nothing waits on the read path.
 *   - A snapshot locks each stripe in turn, adds up the counts of each name
 *     (by its 64-bit hash) across stripes, and sorts.
 *   - Every HALVE_EVERY counts a stripe halves its counts and errors, so the
 *     summary says what is hot lately, not since the process started.
 * Cost on the read path: a thread-local read, a try-lock, a scan of SLOTS
 * 64-bit hashes (a miss also scans the counts for the least, and copies the
 * name), an unlock.
 */
#include <stdlib.h>
#include <string.h>

#include "cache/internal.h"

#define SLOTS 64
#define HALVE_EVERY (1u << 16)

typedef struct stripe {
    pthread_mutex_t lock;
    uint32_t n, since_halving;
    uint64_t total; /* counts in the summary's window (halved with them) */
    uint64_t hash[SLOTS];
    uint32_t count[SLOTS], error[SLOTS];
    char name[SLOTS][TC_HOT_NAME_MAX];
    _Atomic uint64_t skipped;
} __attribute__((aligned(64))) stripe;

struct tc__topk {
    int nstripes;
    stripe *s;
};

tc__topk *tc__topk_new(int nstripes)
{
    tc__topk *t = calloc(1, sizeof(*t));
    if (t == NULL || nstripes <= 0 ||
        posix_memalign((void **)&t->s, 64, sizeof(stripe) * (size_t)nstripes) != 0) {
        free(t);
        return NULL;
    }
    memset(t->s, 0, sizeof(stripe) * (size_t)nstripes);
    t->nstripes = nstripes;
    for (int i = 0; i < nstripes; i++)
        pthread_mutex_init(&t->s[i].lock, NULL);
    return t;
}

void tc__topk_free(tc__topk *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->nstripes; i++)
        pthread_mutex_destroy(&t->s[i].lock);
    free(t->s);
    free(t);
}

/* This thread's stripe number, handed out round robin on first use. */
static unsigned my_stripe(void)
{
    static _Atomic unsigned next;
    static _Thread_local unsigned mine; /* 0: not given yet */
    if (mine == 0)
        mine = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) + 1;
    return mine - 1;
}

static void halve(stripe *s)
{
    for (uint32_t i = 0; i < s->n; i++) {
        s->count[i] /= 2;
        s->error[i] /= 2;
    }
    s->total /= 2;
    s->since_halving = 0;
}

void tc__topk_add(tc__topk *t, const char *name, size_t len, uint64_t hash)
{
    stripe *s = &t->s[my_stripe() % (unsigned)t->nstripes];
    if (pthread_mutex_trylock(&s->lock) != 0) {
        atomic_fetch_add_explicit(&s->skipped, 1, memory_order_relaxed);
        return;
    }
    uint32_t i = 0;
    while (i < s->n && s->hash[i] != hash)
        i++;
    if (i == s->n) { /* not in the summary: a free slot, or the least counted one */
        uint32_t least = 0;
        if (s->n < SLOTS) {
            i = s->n++;
        } else {
            i = 0;
            for (uint32_t j = 1; j < SLOTS; j++)
                if (s->count[j] < s->count[i])
                    i = j;
            least = s->count[i];
        }
        s->hash[i] = hash;
        s->count[i] = least;
        s->error[i] = least;
        size_t n = len < TC_HOT_NAME_MAX - 1 ? len : TC_HOT_NAME_MAX - 1;
        memcpy(s->name[i], name, n);
        s->name[i][n] = '\0';
    }
    if (s->count[i] < UINT32_MAX)
        s->count[i]++;
    s->total++;
    if (++s->since_halving >= HALVE_EVERY)
        halve(s);
    pthread_mutex_unlock(&s->lock);
}

typedef struct merged {
    uint64_t hash, count, error;
    const char *name;
} merged;

static int by_hash(const void *a, const void *b)
{
    uint64_t x = ((const merged *)a)->hash, y = ((const merged *)b)->hash;
    return x < y ? -1 : x > y;
}

static int by_count_desc(const void *a, const void *b)
{
    const merged *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return strcmp(x->name, y->name); /* a stable order for equal counts */
}

int tc__topk_read(tc__topk *t, tc_hot_item *out, int max, uint64_t *total, uint64_t *skipped)
{
    *total = *skipped = 0;
    size_t cap = (size_t)t->nstripes * SLOTS;
    merged *m = malloc(sizeof(*m) * cap);
    char(*names)[TC_HOT_NAME_MAX] = malloc(TC_HOT_NAME_MAX * cap);
    if (m == NULL || names == NULL) {
        free(m);
        free(names);
        return 0;
    }
    size_t n = 0;
    for (int k = 0; k < t->nstripes; k++) {
        stripe *s = &t->s[k];
        pthread_mutex_lock(&s->lock);
        for (uint32_t i = 0; i < s->n; i++, n++) {
            memcpy(names[n], s->name[i], TC_HOT_NAME_MAX);
            m[n] = (merged){s->hash[i], s->count[i], s->error[i], names[n]};
        }
        *total += s->total;
        pthread_mutex_unlock(&s->lock);
        *skipped += atomic_load_explicit(&s->skipped, memory_order_relaxed);
    }
    qsort(m, n, sizeof(*m), by_hash);
    size_t u = 0; /* one row per name: the stripes' counts added up */
    for (size_t i = 0; i < n; i++) {
        if (u > 0 && m[u - 1].hash == m[i].hash) {
            m[u - 1].count += m[i].count;
            m[u - 1].error += m[i].error;
        } else {
            m[u++] = m[i];
        }
    }
    qsort(m, u, sizeof(*m), by_count_desc);
    int k = 0;
    for (; k < max && (size_t)k < u && m[k].count > 0; k++) {
        memcpy(out[k].name, m[k].name, TC_HOT_NAME_MAX);
        out[k].count = m[k].count;
        out[k].error = m[k].error;
    }
    free(m);
    free(names);
    return k;
}

/*
 * Cache metrics: per-namespace counters and latency histograms.
 *
 * Counters are relaxed atomics bumped on the request path; a snapshot reads
 * them without stopping anyone, so it is consistent per counter, not across
 * counters. Namespaces are added under a lock and never removed, so a reader
 * may scan the first nns slots without one.
 */
#include <string.h>

#include "cache/internal.h"

void tc__metrics_init(tc__metrics *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    strcpy(m->ns[TC_NS_MAX - 1].name, "other");
}

void tc__metrics_destroy(tc__metrics *m)
{
    pthread_mutex_destroy(&m->lock);
}

static tc__ns *scan(tc__metrics *m, int n, const char *name, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strncmp(m->ns[i].name, name, len) == 0 && m->ns[i].name[len] == '\0')
            return &m->ns[i];
    return NULL;
}

tc__ns *tc__metrics_ns(tc__metrics *m, const char *key)
{
    const char *colon = strchr(key, ':');
    const char *name = colon != NULL ? key : "-";
    size_t len = colon != NULL ? (size_t)(colon - key) : 1;
    if (len >= TC_NS_NAME_MAX)
        return &m->ns[TC_NS_MAX - 1];
    tc__ns *ns = scan(m, atomic_load_explicit(&m->nns, memory_order_acquire), name, len);
    if (ns != NULL)
        return ns;
    pthread_mutex_lock(&m->lock);
    int n = atomic_load_explicit(&m->nns, memory_order_relaxed);
    ns = scan(m, n, name, len);
    if (ns == NULL && n < TC_NS_MAX - 1) {
        ns = &m->ns[n];
        memcpy(ns->name, name, len);
        ns->name[len] = '\0';
        atomic_store_explicit(&m->nns, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&m->lock);
    return ns != NULL ? ns : &m->ns[TC_NS_MAX - 1];
}

void tc__hist_add(tc__hist *h, uint64_t us)
{
    int b = us == 0 ? 0 : 64 - __builtin_clzll(us); /* us < 2^b */
    if (b >= TC_HIST_BUCKETS)
        b = TC_HIST_BUCKETS - 1;
    atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

void tc__hist_copy(const tc__hist *h, tc_histogram *out)
{
    for (int i = 0; i < TC_HIST_BUCKETS; i++)
        out->buckets[i] = atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    out->count = atomic_load_explicit(&h->count, memory_order_relaxed);
    out->sum_us = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
}

double tc_histogram_percentile(const tc_histogram *h, double pct)
{
    uint64_t total = 0;
    for (int i = 0; i < TC_HIST_BUCKETS; i++)
        total += h->buckets[i];
    if (total == 0)
        return 0;
    double want = pct / 100.0 * (double)total, seen = 0;
    for (int i = 0; i < TC_HIST_BUCKETS; i++) {
        if (h->buckets[i] == 0)
            continue;
        if (seen + (double)h->buckets[i] >= want) {
            /* interpolate inside [2^(i-1), 2^i) */
            double lo = i == 0 ? 0 : (double)(1ull << (i - 1)), hi = (double)(1ull << i);
            return lo + (hi - lo) * ((want - seen) / (double)h->buckets[i]);
        }
        seen += (double)h->buckets[i];
    }
    return (double)(1ull << (TC_HIST_BUCKETS - 1));
}

/*
 * The sampler and the monitoring page's feed. Once a second a thread of its
 * own reads every counter (the engine's snapshot, the registry's atomics, the
 * server's and the database's counters) into a ring of RING samples; GET
 * /admin/cache.json turns the ring into the feed: per-second series for the
 * charts, and a summary of the whole window.
 *
 * Threads. The sampler holds ring_lock only to copy a sample in; the feed,
 * built on a worker (a session check may need the database), holds it only to
 * copy the ring out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "app/monitor_internal.h"
#include "base/cond.h"
#include "base/thread.h"

#define RING 61        /* samples: one a second, the last minute */
#define SAMPLE_MS 1000 /* between samples */
#define SMOOTH 5       /* latency series: each point covers the last SMOOTH seconds */

/* A sample: what the feed needs of every counter, once a second. */
typedef struct ns_sample {
    char name[TC_NS_NAME_MAX];
    uint64_t l1, l2, miss, coalesced, stale, refresh, dropped, load_errors, invalidations;
} ns_sample;

typedef struct sample {
    int64_t t_ms;
    int nns;
    ns_sample ns[TC_NS_MAX];
    uint64_t l1_entries, l1_bytes, l1_evictions;
    uint64_t redis_errors, breaker_opens, bus_reconnects, pending;
    int breaker_open, bus_connected;
    uint64_t redis[TC_HIST_BUCKETS];
    uint64_t requests, errors;
    uint64_t out[MON_OUTCOMES][MON_NB];
    bool have_http;
    tc_http_stats http;
    uint64_t db[TC_DB_HIST_BUCKETS];
    int ntags; /* tag invalidations by the tag's namespace; clears */
    char tag_name[MON_TAGNS_MAX][TC_NS_NAME_MAX];
    uint64_t tag_n[MON_TAGNS_MAX], clears;
    /* the bus delivery lag; admission; compression */
    uint64_t bus_lag[TC_HIST_BUCKETS], l1_rejections, l2_compressed, l2_saved, l2_decode_errors;
    /* hit ratios (take_ratios): responses by route and Cache-Status, lookups by tag family */
    int nroutes;
    const char *route_name[MON_ROUTES_MAX];
    uint64_t route_cache[MON_ROUTES_MAX][MON_OUTCOMES], tag_lookups[MON_TAGNS_MAX][MON_OUTCOMES];
} sample;

struct mon_sampler {
    tc_monitor *m;
    pthread_mutex_t ring_lock;
    tc_cond ring_cond;
    bool stop;
    tc_thread thread;
    sample *ring; /* RING */
    int head, count;
};

/* ---- the sampler ------------------------------------------------------------------- */

/* The hit ratios' counters into s (after the tag names: s->ntags is set). */
static void take_ratios(tc_monitor *m, sample *s)
{
    s->nroutes = atomic_load_explicit(&m->nroutes, memory_order_acquire);
    for (int i = 0; i < s->nroutes; i++) {
        s->route_name[i] = m->routes[i].name;
        for (int k = 0; k < MON_OUTCOMES; k++)
            s->route_cache[i][k] =
                atomic_load_explicit(&m->routes[i].cache[k], memory_order_relaxed);
    }
    for (int i = 0; i < s->ntags; i++)
        for (int k = 0; k < MON_OUTCOMES; k++)
            s->tag_lookups[i][k] =
                atomic_load_explicit(&m->tags[i].lookups[k], memory_order_relaxed);
}

static void take_sample(tc_monitor *m, sample *s, tc_metrics *cm)
{
    memset(s, 0, sizeof(*s));
    s->t_ms = tc_wall_ms();
    if (m->app->cache != NULL) {
        tc_metrics_snapshot(m->app->cache, cm);
        s->nns = cm->nns;
        for (int i = 0; i < cm->nns; i++) {
            const tc_ns_metrics *n = &cm->ns[i];
            ns_sample *d = &s->ns[i];
            snprintf(d->name, sizeof(d->name), "%s", n->name);
            d->l1 = n->l1_hits, d->l2 = n->l2_hits, d->miss = n->misses;
            d->coalesced = n->coalesced, d->stale = n->stale_served;
            d->refresh = n->refreshes, d->dropped = n->refresh_dropped;
            d->load_errors = n->load_errors, d->invalidations = n->invalidations;
        }
        s->l1_entries = cm->l1_entries, s->l1_bytes = cm->l1_bytes;
        s->l1_evictions = cm->l1_evictions, s->redis_errors = cm->redis_errors;
        s->breaker_opens = cm->breaker_opens, s->bus_reconnects = cm->bus_reconnects;
        s->pending = cm->pending_invalidations, s->breaker_open = cm->breaker_open;
        s->bus_connected = cm->bus_connected;
        memcpy(s->redis, cm->redis_latency.buckets, sizeof(s->redis));
        s->clears = cm->clears;
        memcpy(s->bus_lag, cm->bus_lag.buckets, sizeof(s->bus_lag));
        s->l1_rejections = cm->l1_rejections, s->l2_compressed = cm->l2_compressed_writes;
        s->l2_saved = cm->l2_compressed_saved_bytes, s->l2_decode_errors = cm->l2_decode_errors;
    }
    s->ntags = atomic_load_explicit(&m->ntags, memory_order_acquire);
    for (int i = 0; i < s->ntags; i++) {
        memcpy(s->tag_name[i], m->tags[i].name, TC_NS_NAME_MAX);
        s->tag_n[i] = atomic_load_explicit(&m->tags[i].n, memory_order_relaxed);
    }
    take_ratios(m, s);
    s->requests = atomic_load_explicit(&m->requests, memory_order_relaxed);
    s->errors = atomic_load_explicit(&m->errors, memory_order_relaxed);
    for (int k = 0; k < MON_OUTCOMES; k++)
        mon_hist_read(&m->out[k], s->out[k], NULL);
    s->have_http = tc_app__mon_server_stats(m, &s->http);
    for (int d = TC_DB_SQLITE; d <= TC_DB_POSTGRES; d++) {
        tc_db_latency l;
        tc_db_latency_get((tc_db_dialect)d, TC_DB_OP_QUERY, &l);
        for (int i = 0; i < TC_DB_HIST_BUCKETS; i++)
            s->db[i] += l.buckets[i];
    }
}

static void *sampler_main(void *arg)
{
    mon_sampler *sp = arg;
    sample *s = malloc(sizeof(*s));
    tc_metrics *cm = malloc(sizeof(*cm));
    if (s == NULL || cm == NULL) {
        free(s);
        free(cm);
        tc_app__log(TC_LOG_ERROR, "app", "monitor: out of memory: the monitoring page will stay empty");
        return NULL;
    }
    pthread_mutex_lock(&sp->ring_lock);
    while (!sp->stop) {
        pthread_mutex_unlock(&sp->ring_lock);
        take_sample(sp->m, s, cm);
        pthread_mutex_lock(&sp->ring_lock);
        sp->ring[sp->head] = *s;
        sp->head = (sp->head + 1) % RING;
        if (sp->count < RING)
            sp->count++;
        tc_deadline next = tc_deadline_in_ms(SAMPLE_MS);
        while (!sp->stop && tc_cond_wait_until(&sp->ring_cond, &sp->ring_lock, next) == 0)
            ;
    }
    pthread_mutex_unlock(&sp->ring_lock);
    free(s);
    free(cm);
    return NULL;
}

mon_sampler *tc_app__mon_sampler_start(tc_monitor *m, char *err, size_t errlen)
{
    mon_sampler *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->ring = calloc(RING, sizeof(*s->ring))) == NULL) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->m = m;
    pthread_mutex_init(&s->ring_lock, NULL);
    tc_cond_init(&s->ring_cond);
    if (tc_thread_start(&s->thread, sampler_main, s) != 0) {
        snprintf(err, errlen, "monitor: cannot start the sampler thread");
        tc_cond_destroy(&s->ring_cond);
        pthread_mutex_destroy(&s->ring_lock);
        free(s->ring);
        free(s);
        return NULL;
    }
    return s;
}

void tc_app__mon_sampler_stop(mon_sampler *s)
{
    if (s == NULL)
        return;
    tc_thread_stop(&s->thread, &s->ring_lock, &s->ring_cond, &s->stop);
    tc_cond_destroy(&s->ring_cond);
    pthread_mutex_destroy(&s->ring_lock);
    free(s->ring);
    free(s);
}

/* ---- the feed ---------------------------------------------------------------------- */

/* Namespace nb's counters in the older sample a; zeros when it was not there yet. */
static const ns_sample *ns_before(const sample *a, const ns_sample *nb)
{
    static const ns_sample zero;
    for (int i = 0; i < a->nns; i++)
        if (strcmp(a->ns[i].name, nb->name) == 0)
            return &a->ns[i];
    return &zero;
}

static uint64_t tag_count(const sample *s, const char *name)
{
    for (int i = 0; i < s->ntags; i++)
        if (strcmp(s->tag_name[i], name) == 0)
            return s->tag_n[i];
    return 0;
}

/* Whether the cache has a Redis (one, through sentinels, or a cluster). */
static bool redis_configured(const tc_app *app)
{
    return app->cache != NULL && (app->cfg.redis_host != NULL || app->cfg.sentinels != NULL ||
                                  app->cfg.cluster_nodes != NULL);
}

static json_t *num(double v)
{
    return json_real(v);
}

static json_t *num_or_null(double v, bool ok)
{
    return ok ? json_real(v) : json_null();
}

static json_t *ratio(uint64_t hits, uint64_t lookups)
{
    return lookups > 0 ? json_real((double)hits / (double)lookups) : json_null();
}

static void sub_hist(const uint64_t *a, const uint64_t *b, uint64_t *d, int n)
{
    for (int i = 0; i < n; i++)
        d[i] = a[i] >= b[i] ? a[i] - b[i] : 0;
}

static uint64_t dsub(uint64_t a, uint64_t b)
{
    return a >= b ? a - b : 0;
}

/* Percentiles (ms) of the requests answered from the cache (hit + stale) or
 * not (miss), between samples a (older) and b. */
static json_t *pcts(const sample *a, const sample *b, bool cached, uint64_t *count)
{
    uint64_t d[MON_NB], tmp[MON_NB];
    if (cached) {
        sub_hist(b->out[MON_HIT], a->out[MON_HIT], d, MON_NB);
        sub_hist(b->out[MON_STALE], a->out[MON_STALE], tmp, MON_NB);
        for (int i = 0; i < MON_NB; i++)
            d[i] += tmp[i];
    } else {
        sub_hist(b->out[MON_MISS], a->out[MON_MISS], d, MON_NB);
    }
    uint64_t n = 0;
    for (int i = 0; i < MON_NB; i++)
        n += d[i];
    if (count)
        *count = n;
    json_t *o = json_object();
    static const double which[] = {50, 95, 99};
    static const char *const names[] = {"p50", "p95", "p99"};
    for (int i = 0; i < 3; i++) {
        double us = tc_app__mon_percentile(d, MON_NB, 0, which[i]);
        json_object_set_new(o, names[i], num_or_null(us / 1000.0, us >= 0));
    }
    return o;
}

static void add_point(json_t *series, const char *key, json_t *v)
{
    json_array_append_new(json_object_get(series, key), v);
}

static const char *const PCT_NAMES[] = {"p50", "p95", "p99"};

/* The ring, oldest first, into r (RING samples); returns how many there are. */
static int ring_copy(mon_sampler *sp, sample *r)
{
    pthread_mutex_lock(&sp->ring_lock);
    int n = sp->count;
    for (int i = 0; i < n; i++)
        r[i] = sp->ring[(sp->head - n + i + RING) % RING];
    pthread_mutex_unlock(&sp->ring_lock);
    return n;
}

/* ---- the series: one point a second --------------------------------------------------- */

/* Every series, empty: the charts' arrays, a hit ratio per namespace of the
 * latest sample (or none), and three percentiles of cached and uncached requests. */
static json_t *series_new(const sample *last)
{
    static const char *const keys[] = {
        "t",          "rps",      "errors_ps",  "hit_ratio",       "lookups_ps",  "l1_bytes",
        "l1_entries", "stale_ps", "refresh_ps", "redis_errors_ps", "redis_p99_ms"};
    json_t *s = json_object();
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        json_object_set_new(s, keys[i], json_array());
    json_t *nsr = json_object(), *cached = json_object(), *uncached = json_object();
    json_object_set_new(s, "ns_hit_ratio", nsr);
    json_object_set_new(s, "cached_ms", cached);
    json_object_set_new(s, "uncached_ms", uncached);
    for (int i = 0; i < 3; i++) {
        json_object_set_new(cached, PCT_NAMES[i], json_array());
        json_object_set_new(uncached, PCT_NAMES[i], json_array());
    }
    for (int k = 0; last != NULL && k < last->nns; k++)
        json_object_set_new(nsr, last->ns[k].name, json_array());
    return s;
}

/* The cache's points between a and b: hit ratios (overall and per namespace),
 * lookups, stale answers and refreshes a second. npoints: how many points each
 * series has once this one is in. */
static void series_cache_point(json_t *s, const sample *a, const sample *b, double secs,
                               size_t npoints)
{
    json_t *nsr = json_object_get(s, "ns_hit_ratio");
    uint64_t hits = 0, lookups = 0, stale = 0, refresh = 0;
    for (int k = 0; k < b->nns; k++) {
        const ns_sample *nb = &b->ns[k], *na = ns_before(a, nb);
        uint64_t h = dsub(nb->l1 + nb->l2, na->l1 + na->l2);
        uint64_t l = h + dsub(nb->miss, na->miss);
        hits += h, lookups += l;
        stale += dsub(nb->stale, na->stale);
        refresh += dsub(nb->refresh, na->refresh);
        json_t *arr = json_object_get(nsr, nb->name);
        if (arr != NULL)
            json_array_append_new(arr, ratio(h, l));
    }
    /* namespaces that appeared later: pad so every series lines up with t */
    json_t *arr;
    const char *nm;
    json_object_foreach(nsr, nm, arr)
    {
        while (json_array_size(arr) < npoints)
            json_array_insert_new(arr, 0, json_null());
    }
    add_point(s, "hit_ratio", ratio(hits, lookups));
    add_point(s, "lookups_ps", num((double)lookups / secs));
    add_point(s, "l1_bytes", json_integer((json_int_t)b->l1_bytes));
    add_point(s, "l1_entries", json_integer((json_int_t)b->l1_entries));
    add_point(s, "stale_ps", num((double)stale / secs));
    add_point(s, "refresh_ps", num((double)refresh / secs));
}

/* One point of every series, for the second from a to b; w is the sample the
 * latency percentiles start from (SMOOTH seconds before b, or the oldest). */
static void series_point(json_t *s, const sample *w, const sample *a, const sample *b,
                         size_t npoints)
{
    double secs = (double)(b->t_ms - a->t_ms) / 1000.0;
    if (secs <= 0)
        secs = 1;
    add_point(s, "t", json_integer(b->t_ms));
    add_point(s, "rps", num((double)dsub(b->requests, a->requests) / secs));
    add_point(s, "errors_ps", num((double)dsub(b->errors, a->errors) / secs));
    series_cache_point(s, a, b, secs, npoints);
    add_point(s, "redis_errors_ps", num((double)dsub(b->redis_errors, a->redis_errors) / secs));
    uint64_t rd[TC_HIST_BUCKETS];
    sub_hist(b->redis, a->redis, rd, TC_HIST_BUCKETS);
    double rp = tc_app__mon_percentile(rd, TC_HIST_BUCKETS, 1, 99);
    add_point(s, "redis_p99_ms", num_or_null(rp / 1000.0, rp >= 0));
    json_t *pc = pcts(w, b, true, NULL), *pu = pcts(w, b, false, NULL);
    json_t *cached = json_object_get(s, "cached_ms"), *uncached = json_object_get(s, "uncached_ms");
    for (int k = 0; k < 3; k++) {
        json_array_append(json_object_get(cached, PCT_NAMES[k]), json_object_get(pc, PCT_NAMES[k]));
        json_array_append(json_object_get(uncached, PCT_NAMES[k]),
                          json_object_get(pu, PCT_NAMES[k]));
    }
    json_decref(pc);
    json_decref(pu);
}

/* ---- the summary: the whole ring, and the latest gauges ------------------------------- */

/* What the namespaces add up to over the window. */
typedef struct ns_totals {
    uint64_t hits, misses, stale, refresh, dropped, lerr, nkeys;
} ns_totals;

/* The window's counts of one namespace; adds them to t. */
static json_t *summary_ns(const sample *a, const sample *b, const ns_sample *nb, double per,
                          ns_totals *t)
{
    const ns_sample *na = ns_before(a, nb);
    uint64_t l1 = dsub(nb->l1, na->l1), l2 = dsub(nb->l2, na->l2), mi = dsub(nb->miss, na->miss);
    t->hits += l1 + l2, t->misses += mi;
    t->stale += dsub(nb->stale, na->stale), t->refresh += dsub(nb->refresh, na->refresh);
    t->dropped += dsub(nb->dropped, na->dropped), t->lerr += dsub(nb->load_errors, na->load_errors);
    t->nkeys += dsub(nb->invalidations, na->invalidations);
    /* this namespace's keys, and the tags named like it ("user:42" for user:42) */
    uint64_t inval = dsub(nb->invalidations, na->invalidations) +
                     dsub(tag_count(b, nb->name), tag_count(a, nb->name));
    return json_pack("{s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:{s:I,s:I,s:I,s:I,s:I}}",
                     "name", nb->name, "hit_ratio", ratio(l1 + l2, l1 + l2 + mi), "l1_hits",
                     (json_int_t)l1, "l2_hits", (json_int_t)l2, "misses", (json_int_t)mi,
                     "coalesced", (json_int_t)dsub(nb->coalesced, na->coalesced), "stale_served",
                     (json_int_t)dsub(nb->stale, na->stale), "refreshes",
                     (json_int_t)dsub(nb->refresh, na->refresh), "refresh_dropped",
                     (json_int_t)dsub(nb->dropped, na->dropped), "load_errors",
                     (json_int_t)dsub(nb->load_errors, na->load_errors), "invalidations",
                     (json_int_t)inval, "lookups_ps", num((double)(l1 + l2 + mi) / per), "totals",
                     "l1_hits", (json_int_t)nb->l1, "l2_hits", (json_int_t)nb->l2, "misses",
                     (json_int_t)nb->miss, "stale_served", (json_int_t)nb->stale, "refreshes",
                     (json_int_t)nb->refresh);
}

/* The requests of the window: rates and latency percentiles. */
static void summary_requests(json_t *sum, const sample *a, const sample *b, double per)
{
    uint64_t reqs = dsub(b->requests, a->requests);
    json_object_set_new(sum, "requests", json_integer((json_int_t)reqs));
    json_object_set_new(sum, "rps", num((double)reqs / per));
    json_object_set_new(sum, "errors_ps", num((double)dsub(b->errors, a->errors) / per));
    uint64_t cnt;
    json_t *pc = pcts(a, b, true, &cnt);
    json_object_set_new(pc, "count", json_integer((json_int_t)cnt));
    json_object_set_new(sum, "cached_ms", pc);
    json_t *pu = pcts(a, b, false, &cnt);
    json_object_set_new(pu, "count", json_integer((json_int_t)cnt));
    json_object_set_new(sum, "uncached_ms", pu);
}

/* The cache over the window: each namespace, invalidations, and the totals. */
static void summary_cache(json_t *sum, const sample *a, const sample *b, double per)
{
    json_t *nss = json_array();
    ns_totals t = {0};
    for (int k = 0; k < b->nns; k++) {
        json_t *o = summary_ns(a, b, &b->ns[k], per, &t);
        if (o != NULL)
            json_array_append_new(nss, o);
    }
    json_object_set_new(sum, "namespaces", nss);
    uint64_t tags = 0;
    for (int i = 0; i < b->ntags; i++)
        tags += dsub(b->tag_n[i], tag_count(a, b->tag_name[i]));
    json_object_set_new(sum, "invalidations",
                        json_pack("{s:I,s:I,s:I}", "tag", (json_int_t)tags, "key",
                                  (json_int_t)t.nkeys, "clear",
                                  (json_int_t)dsub(b->clears, a->clears)));
    json_object_set_new(sum, "hit_ratio", ratio(t.hits, t.hits + t.misses));
    json_object_set_new(sum, "hits", json_integer((json_int_t)t.hits));
    json_object_set_new(sum, "misses", json_integer((json_int_t)t.misses));
    json_object_set_new(sum, "stale_served", json_integer((json_int_t)t.stale));
    json_object_set_new(sum, "refreshes", json_integer((json_int_t)t.refresh));
    json_object_set_new(sum, "refresh_dropped", json_integer((json_int_t)t.dropped));
    json_object_set_new(sum, "load_errors", json_integer((json_int_t)t.lerr));
}

/* One row of a hit-ratio table: the window's outcomes and the totals since start. */
typedef struct ratio_row {
    const char *name;
    uint64_t w[MON_OUTCOMES], tot[MON_OUTCOMES], inval; /* inval: tag families only */
} ratio_row;

static uint64_t row_sum(const uint64_t v[MON_OUTCOMES])
{
    return v[MON_HIT] + v[MON_STALE] + v[MON_MISS];
}

/* The busiest first: the window's answers, then the totals', then the name. */
static int row_cmp(const void *pa, const void *pb)
{
    const ratio_row *a = pa, *b = pb;
    uint64_t wa = row_sum(a->w), wb = row_sum(b->w), ta = row_sum(a->tot), tb = row_sum(b->tot);
    if (wa != wb)
        return wa > wb ? -1 : 1;
    if (ta != tb)
        return ta > tb ? -1 : 1;
    return strcmp(a->name, b->name);
}

static json_t *ratio_table(ratio_row *rows, int n, const char *key, bool inval)
{
    qsort(rows, (size_t)n, sizeof(rows[0]), row_cmp);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        const ratio_row *r = &rows[i];
        if (row_sum(r->tot) == 0)
            continue;
        json_t *o =
            json_pack("{s:s,s:o,s:I,s:I,s:I,s:{s:o,s:I,s:I,s:I}}", key, r->name, "hit_ratio",
                      ratio(r->w[MON_HIT] + r->w[MON_STALE], row_sum(r->w)), "hits",
                      (json_int_t)r->w[MON_HIT], "stale", (json_int_t)r->w[MON_STALE], "misses",
                      (json_int_t)r->w[MON_MISS], "totals", "hit_ratio",
                      ratio(r->tot[MON_HIT] + r->tot[MON_STALE], row_sum(r->tot)), "hits",
                      (json_int_t)r->tot[MON_HIT], "stale", (json_int_t)r->tot[MON_STALE], "misses",
                      (json_int_t)r->tot[MON_MISS]);
        if (o != NULL && inval)
            json_object_set_new(o, "invalidations", json_integer((json_int_t)r->inval));
        if (o != NULL)
            json_array_append_new(arr, o);
    }
    return arr;
}

/* Hit ratios over the window: by route (Cache-Status of the responses) and by
 * tag family (the cached queries answered), the busiest first. */
static void summary_ratios(json_t *sum, const sample *a, const sample *b)
{
    ratio_row rows[MON_ROUTES_MAX > MON_TAGNS_MAX ? MON_ROUTES_MAX : MON_TAGNS_MAX];
    for (int i = 0; i < b->nroutes; i++) {
        rows[i] = (ratio_row){.name = b->route_name[i]};
        for (int k = 0; k < MON_OUTCOMES; k++) { /* slots never move: i is the same route in a */
            uint64_t before = i < a->nroutes ? a->route_cache[i][k] : 0;
            rows[i].tot[k] = b->route_cache[i][k];
            rows[i].w[k] = dsub(b->route_cache[i][k], before);
        }
    }
    json_object_set_new(sum, "routes", ratio_table(rows, b->nroutes, "route", false));
    for (int i = 0; i < b->ntags; i++) {
        rows[i] = (ratio_row){.name = b->tag_name[i],
                              .inval = dsub(b->tag_n[i], tag_count(a, b->tag_name[i]))};
        for (int k = 0; k < MON_OUTCOMES; k++) {
            uint64_t before = i < a->ntags ? a->tag_lookups[i][k] : 0;
            rows[i].tot[k] = b->tag_lookups[i][k];
            rows[i].w[k] = dsub(b->tag_lookups[i][k], before);
        }
    }
    json_object_set_new(sum, "tag_families", ratio_table(rows, b->ntags, "family", true));
}

/* The layers' gauges in the latest sample b, and their counts since a: L1,
 * Redis, the HTTP server, the database, the access log. */
static void summary_layers(tc_monitor *m, json_t *sum, const sample *a, const sample *b)
{
    json_object_set_new(sum, "l1",
                        json_pack("{s:I,s:I,s:I,s:I,s:I}", "entries", (json_int_t)b->l1_entries,
                                  "bytes", (json_int_t)b->l1_bytes, "max_bytes",
                                  (json_int_t)m->cfg.l1_max_bytes, "evictions",
                                  (json_int_t)b->l1_evictions, "evictions_window",
                                  (json_int_t)dsub(b->l1_evictions, a->l1_evictions)));
    uint64_t rd[TC_HIST_BUCKETS];
    sub_hist(b->redis, a->redis, rd, TC_HIST_BUCKETS);
    double r50 = tc_app__mon_percentile(rd, TC_HIST_BUCKETS, 1, 50);
    double r99 = tc_app__mon_percentile(rd, TC_HIST_BUCKETS, 1, 99);
    json_object_set_new(sum, "redis",
                        json_pack("{s:b,s:b,s:I,s:b,s:I,s:I,s:I,s:o,s:o,s:I}", "configured",
                                  redis_configured(m->app),
                                  "breaker_open", b->breaker_open, "breaker_opens",
                                  (json_int_t)b->breaker_opens, "bus_connected", b->bus_connected,
                                  "bus_reconnects", (json_int_t)b->bus_reconnects, "errors",
                                  (json_int_t)b->redis_errors, "errors_window",
                                  (json_int_t)dsub(b->redis_errors, a->redis_errors), "p50_ms",
                                  num_or_null(r50 / 1000.0, r50 >= 0), "p99_ms",
                                  num_or_null(r99 / 1000.0, r99 >= 0), "pending_invalidations",
                                  (json_int_t)b->pending));
    if (b->have_http)
        json_object_set_new(sum, "http",
                            json_pack("{s:I,s:I,s:I,s:I,s:I}", "connections",
                                      (json_int_t)b->http.connections, "in_flight",
                                      (json_int_t)b->http.in_flight, "queued",
                                      (json_int_t)b->http.queued, "offloaded",
                                      (json_int_t)b->http.offloaded, "rejected",
                                      (json_int_t)(b->http.rejected_busy + b->http.rejected_large +
                                                   b->http.rejected_bad)));
    uint64_t dd[TC_DB_HIST_BUCKETS], dn = 0;
    sub_hist(b->db, a->db, dd, TC_DB_HIST_BUCKETS);
    for (int i = 0; i < TC_DB_HIST_BUCKETS; i++)
        dn += dd[i];
    double d50 = tc_app__mon_percentile(dd, TC_DB_HIST_BUCKETS, 1, 50);
    double d99 = tc_app__mon_percentile(dd, TC_DB_HIST_BUCKETS, 1, 99);
    json_object_set_new(
        sum, "db",
        json_pack("{s:s,s:I,s:o,s:o}", "dialect",
                  strncmp(m->app->cfg.db_url, "sqlite:", 7) == 0 ? "sqlite" : "postgresql",
                  "queries", (json_int_t)dn, "p50_ms", num_or_null(d50 / 1000.0, d50 >= 0),
                  "p99_ms", num_or_null(d99 / 1000.0, d99 >= 0)));
    tc_access_log_stats ls;
    tc_access_log_get_stats(m->log, &ls);
    json_object_set_new(sum, "access_log",
                        json_pack("{s:b,s:I,s:I}", "on", m->log != NULL, "lines",
                                  (json_int_t)ls.lines, "dropped", (json_int_t)ls.dropped));
}

/* A top list of the engine's (tc_hot_snapshot) as [{name, count, error, share}]. */
static json_t *hot_list(const tc_hot_item *it, int n, uint64_t total)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(
            a, json_pack("{s:s,s:I,s:I,s:o}", "name", it[i].name, "count", (json_int_t)it[i].count,
                         "error", (json_int_t)it[i].error, "share",
                         total > 0 ? json_real((double)it[i].count / (double)total) : json_null()));
    return a;
}

/* The engine's hot keys and tags (now), the bus delivery lag, admission and compression
 * (over the window a..b, and since the start). */
static void summary_engine(tc_monitor *m, json_t *sum, const sample *a, const sample *b)
{
    tc_hot *h = malloc(sizeof(*h));
    if (h != NULL && m->app->cache != NULL) {
        tc_hot_snapshot(m->app->cache, h);
        json_object_set_new(
            sum, "hot",
            json_pack("{s:o,s:o,s:I,s:I,s:I}", "keys", hot_list(h->keys, h->nkeys, h->key_reads),
                      "tags", hot_list(h->tags, h->ntags, h->tag_invalidations), "key_reads",
                      (json_int_t)h->key_reads, "tag_invalidations",
                      (json_int_t)h->tag_invalidations, "skipped", (json_int_t)h->skipped));
    }
    free(h);
    uint64_t lag[TC_HIST_BUCKETS], n = 0, all = 0;
    sub_hist(b->bus_lag, a->bus_lag, lag, TC_HIST_BUCKETS);
    for (int i = 0; i < TC_HIST_BUCKETS; i++)
        n += lag[i], all += b->bus_lag[i];
    double l50 = tc_app__mon_percentile(lag, TC_HIST_BUCKETS, 1, 50);
    double l99 = tc_app__mon_percentile(lag, TC_HIST_BUCKETS, 1, 99);
    json_object_set_new(sum, "bus_lag",
                        json_pack("{s:I,s:I,s:o,s:o}", "count", (json_int_t)n, "total",
                                  (json_int_t)all, "p50_ms", num_or_null(l50 / 1000.0, l50 >= 0),
                                  "p99_ms", num_or_null(l99 / 1000.0, l99 >= 0)));
    json_object_set_new(
        sum, "engine",
        json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:I}", "admission", m->app->cfg.l1_admission,
                  "admission_rejections", (json_int_t)b->l1_rejections,
                  "admission_rejections_window",
                  (json_int_t)dsub(b->l1_rejections, a->l1_rejections), "compress_min_bytes",
                  (json_int_t)m->app->cfg.l2_compress_min_bytes, "compressed_writes",
                  (json_int_t)b->l2_compressed, "compressed_saved_bytes", (json_int_t)b->l2_saved,
                  "decode_errors", (json_int_t)b->l2_decode_errors));
}

static json_t *build_feed(tc_monitor *m)
{
    sample *r = malloc(sizeof(sample) * RING);
    if (r == NULL)
        return NULL;
    int n = ring_copy(m->sampler, r);
    const sample *last = n > 0 ? &r[n - 1] : NULL;

    json_t *feed = json_object();
    json_object_set_new(feed, "version", json_integer(1));
    json_object_set_new(feed, "time", json_integer(tc_wall_ms()));
    json_object_set_new(feed, "started", json_integer(m->started_ms));
    json_object_set_new(feed, "interval_ms", json_integer(SAMPLE_MS));
    json_object_set_new(feed, "cache", json_boolean(m->app->cache != NULL));
    json_object_set_new(feed, "redis", json_boolean(redis_configured(m->app)));

    json_t *s = series_new(last);
    for (int i = 1; i < n; i++)
        series_point(s, &r[i > SMOOTH ? i - SMOOTH : 0], &r[i - 1], &r[i], (size_t)i);
    json_object_set_new(feed, "series", s);

    json_t *sum = json_object();
    json_object_set_new(feed, "summary", sum);
    if (n > 0) {
        const sample *a = &r[0], *b = last;
        double secs = (double)(b->t_ms - a->t_ms) / 1000.0;
        json_object_set_new(sum, "window_s", num(secs));
        double per = secs > 0 ? secs : 1;
        summary_requests(sum, a, b, per);
        summary_cache(sum, a, b, per);
        summary_ratios(sum, a, b);
        summary_layers(m, sum, a, b);
        summary_engine(m, sum, a, b);
    }
    free(r);
    return feed;
}

static void blocking_feed(void *ctx, tc_http_exchange *x)
{
    tc_app *app = ctx;
    tc_monitor *m = app->monitor;
    if (!tc_app__mon_access(m, x)) {
        int k = tc_app__mon_session(app, x, true);
        if (k == MON_ANON) {
            tc_http_add_header(x, "WWW-Authenticate", "Bearer realm=\"tiercache\"");
            tc_app__mon_respond(x, 401, "application/json",
                                "{\"error\":\"sign in as an administrator\"}");
            return;
        }
        if (k == MON_USER) {
            tc_app__mon_respond(x, 403, "application/json",
                                "{\"error\":\"for administrators only\"}");
            return;
        }
        if (k != MON_ADMIN) {
            tc_app__mon_respond(x, 503, "application/json",
                                "{\"error\":\"could not check the session\"}");
            return;
        }
    }
    json_t *feed = build_feed(m);
    char *text = feed != NULL ? json_dumps(feed, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(feed);
    if (text == NULL) {
        tc_app__mon_respond(x, 500, "application/json", "{\"error\":\"out of memory\"}");
        return;
    }
    tc_http_set_status(x, 200);
    tc_cachehdr_simple(x, TC_ROUTE_NO_STORE);
    tc_http_add_header(x, "X-Content-Type-Options", "nosniff");
    tc_http_set_content_type(x, "application/json");
    tc_http_take_body(x, text, strlen(text));
}

tc_http_action tc_app__mon_feed(tc_app *app, tc_http_exchange *x)
{
    return tc_app__offload(x, CALL_NEED_BLOCK, blocking_feed);
}

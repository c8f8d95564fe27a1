/*
 * GET /metrics: every counter of the cache engine, the HTTP server, the
 * routes, the database and the access log in the Prometheus text format
 * 0.0.4 (docs/monitoring.md lists every family). The access check runs on the
 * event thread; the text (a millisecond or so of formatting) is built on a
 * worker, from the registry's atomics (monitor.c) and the engine's and the
 * database's snapshots, with no lock but the server's for its counters.
 *
 * It is for: formatting. It is not for: counting (monitor.c) or deciding who
 * may read it (tc_app__mon_access).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/monitor_internal.h"

static const char *const OUTCOME_NAMES[MON_OUTCOMES] = {"hit", "stale", "miss"};

#define P(...) tc_buf_printf(b, __VA_ARGS__)

static void family(tc_buf *b, const char *name, const char *type, const char *help)
{
    P("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* labels: `a="x",b="y"` or "". */
static void series(tc_buf *b, const char *name, const char *labels, uint64_t v)
{
    if (labels[0] != '\0')
        P("%s{%s} %llu\n", name, labels, (unsigned long long)v);
    else
        P("%s %llu\n", name, (unsigned long long)v);
}

/* A family with one unlabelled series. */
static void single(tc_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    family(b, name, type, help);
    series(b, name, "", v);
}

/* A run of such families, as a table. */
typedef struct one_series {
    const char *name, *type, *help;
    uint64_t v;
} one_series;

static void singles(tc_buf *b, const one_series *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        single(b, s[i].name, s[i].type, s[i].help, s[i].v);
}

#define SINGLES(b, table) singles(b, table, sizeof(table) / sizeof(table[0]))

static void hist_tail(tc_buf *b, const char *name, const char *labels, uint64_t cum,
                      uint64_t sum_us)
{
    const char *sep = labels[0] != '\0' ? "," : "";
    P("%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
    if (labels[0] != '\0') {
        P("%s_sum{%s} %llu.%06llu\n", name, labels, (unsigned long long)(sum_us / 1000000),
          (unsigned long long)(sum_us % 1000000));
        P("%s_count{%s} %llu\n", name, labels, (unsigned long long)cum);
    } else {
        P("%s_sum %llu.%06llu\n", name, (unsigned long long)(sum_us / 1000000),
          (unsigned long long)(sum_us % 1000000));
        P("%s_count %llu\n", name, (unsigned long long)cum);
    }
}

/* Power-of-two microsecond buckets (engine, database) as cumulative seconds. */
static void hist_log2(tc_buf *b, const char *name, const char *labels, const uint64_t *bk, int n,
                      uint64_t sum_us)
{
    const char *sep = labels[0] != '\0' ? "," : "";
    uint64_t cum = 0;
    for (int i = 0; i < n - 1; i++) {
        cum += bk[i];
        P("%s_bucket{%s%sle=\"%.9g\"} %llu\n", name, labels, sep, (double)(1ull << i) / 1e6,
          (unsigned long long)cum);
    }
    hist_tail(b, name, labels, cum + bk[n - 1], sum_us);
}

static void hist_fixed(tc_buf *b, const char *name, const char *labels, const uint64_t bk[MON_NB],
                       uint64_t sum_us)
{
    const char *sep = labels[0] != '\0' ? "," : "";
    uint64_t cum = 0;
    for (int i = 0; i < TC_MON_HIST_BOUNDS; i++) {
        cum += bk[i];
        P("%s_bucket{%s%sle=\"%.9g\"} %llu\n", name, labels, sep,
          (double)tc_app__mon_bounds_us[i] / 1e6, (unsigned long long)cum);
    }
    hist_tail(b, name, labels, cum + bk[MON_NB - 1], sum_us);
}

void tc_app__mon_label_escape(const char *v, char *out, size_t cap)
{
    size_t n = 0;
    for (; *v != '\0' && n + 3 < cap; v++) {
        if (*v == '\\' || *v == '"') {
            out[n++] = '\\';
            out[n++] = *v;
        } else if (*v == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *v;
        }
    }
    out[n] = '\0';
}

/* One counter per namespace, from the snapshot. */
#define NS_COUNTER(metric, field, help)                                                            \
    do {                                                                                           \
        family(b, metric, "counter", help);                                                        \
        for (int i = 0; i < cm->nns; i++) {                                                        \
            tc_app__mon_label_escape(cm->ns[i].name, esc, sizeof(esc));                            \
            snprintf(lab, sizeof(lab), "namespace=\"%s\"", esc);                                   \
            series(b, metric, lab, cm->ns[i].field);                                               \
        }                                                                                          \
    } while (0)

/* One histogram per namespace, from the snapshot. */
#define NS_HISTOGRAM(metric, field, help)                                                          \
    do {                                                                                           \
        family(b, metric, "histogram", help);                                                      \
        for (int i = 0; i < cm->nns; i++) {                                                        \
            tc_app__mon_label_escape(cm->ns[i].name, esc, sizeof(esc));                            \
            snprintf(lab, sizeof(lab), "namespace=\"%s\"", esc);                                   \
            hist_log2(b, metric, lab, cm->ns[i].field.buckets, TC_HIST_BUCKETS,                    \
                      cm->ns[i].field.sum_us);                                                     \
        }                                                                                          \
    } while (0)

/* The engine's families by namespace (and tag namespace): hits, misses, ...,
 * invalidations, hit and load latencies. */
static void render_namespaces(tc_monitor *m, tc_buf *b, const tc_metrics *cm)
{
    char lab[160], esc[80];
    family(b, "tiercache_cache_hits_total", "counter",
           "Cache answers from a layer (l1: in-process, l2: Redis), stale ones included.");
    for (int i = 0; i < cm->nns; i++) {
        tc_app__mon_label_escape(cm->ns[i].name, esc, sizeof(esc));
        snprintf(lab, sizeof(lab), "namespace=\"%s\",layer=\"l1\"", esc);
        series(b, "tiercache_cache_hits_total", lab, cm->ns[i].l1_hits);
        snprintf(lab, sizeof(lab), "namespace=\"%s\",layer=\"l2\"", esc);
        series(b, "tiercache_cache_hits_total", lab, cm->ns[i].l2_hits);
    }
    NS_COUNTER("tiercache_cache_misses_total", misses,
               "Lookups that ran the loader (the database) for their caller.");
    NS_COUNTER("tiercache_cache_coalesced_total", coalesced,
               "Lookups that waited for another caller's load of the same key (single-flight).");
    NS_COUNTER("tiercache_cache_stale_served_total", stale_served,
               "Answers past their fresh time (stale-while-revalidate, stale-if-error).");
    NS_COUNTER("tiercache_cache_refreshes_total", refreshes, "Background refreshes run.");
    NS_COUNTER("tiercache_cache_refresh_dropped_total", refresh_dropped,
               "Background refreshes not queued: the refresh queue was full.");
    NS_COUNTER("tiercache_cache_load_errors_total", load_errors,
               "Loader failures, foreground or background.");

    family(b, "tiercache_cache_invalidations_total", "counter",
           "Invalidations by reason: key (one key, by the key's namespace), tag (one tag, by "
           "the tag's namespace), clear (everything; namespace \"*\").");
    for (int i = 0; i < cm->nns; i++) {
        tc_app__mon_label_escape(cm->ns[i].name, esc, sizeof(esc));
        snprintf(lab, sizeof(lab), "namespace=\"%s\",reason=\"key\"", esc);
        series(b, "tiercache_cache_invalidations_total", lab, cm->ns[i].invalidations);
    }
    int nt = atomic_load_explicit(&m->ntags, memory_order_acquire);
    for (int i = 0; i < nt; i++) {
        uint64_t v = atomic_load_explicit(&m->tags[i].n, memory_order_relaxed);
        if (i == 0 && v == 0)
            continue; /* "other" unused */
        snprintf(lab, sizeof(lab), "namespace=\"%s\",reason=\"tag\"", m->tags[i].name);
        series(b, "tiercache_cache_invalidations_total", lab, v);
    }
    series(b, "tiercache_cache_invalidations_total", "namespace=\"*\",reason=\"clear\"",
           cm->clears);

    NS_HISTOGRAM("tiercache_cache_hit_duration_seconds", hit_latency,
                 "L1 hit latency inside the engine; one hit in 16 per thread is timed.");
    NS_HISTOGRAM("tiercache_cache_load_duration_seconds", load_latency,
                 "Loader (database) run time, foreground and background.");
}

/* The engine's layers: L1, Redis, the bus and the lease. */
static void render_layers(tc_monitor *m, tc_buf *b, const tc_metrics *cm)
{
    const one_series l1_redis[] = {
        {"tiercache_cache_l1_entries", "gauge", "Entries in the in-process cache.", cm->l1_entries},
        {"tiercache_cache_l1_bytes", "gauge", "Bytes held by the in-process cache.", cm->l1_bytes},
        {"tiercache_cache_l1_max_bytes", "gauge", "The in-process cache's byte limit.",
         m->cfg.l1_max_bytes},
        {"tiercache_cache_l1_evictions_total", "counter",
         "Entries evicted from the in-process cache to stay under its limit.", cm->l1_evictions},
        {"tiercache_cache_pending_invalidations", "gauge",
         "Invalidations applied here but not yet delivered to Redis (replayed when it answers).",
         cm->pending_invalidations},
        {"tiercache_redis_errors_total", "counter",
         "Redis commands that failed, timed out or could not be sent.", cm->redis_errors},
        {"tiercache_redis_breaker_open", "gauge",
         "1 while the circuit breaker is open (Redis is skipped), else 0.",
         (uint64_t)cm->breaker_open},
        {"tiercache_redis_breaker_opens_total", "counter", "Times the breaker opened.",
         cm->breaker_opens},
        {"tiercache_cache_l2_budget_bytes", "gauge",
         "Bytes of the records this instance wrote to Redis and that have not expired, as its "
         "L2 budget counts them (0 without a budget).",
         cm->l2_budget_bytes},
        {"tiercache_cache_l2_budget_keys", "gauge",
         "Records this instance wrote to Redis and that have not expired, as its L2 budget "
         "counts them.",
         cm->l2_budget_keys},
        {"tiercache_cache_l2_budget_refusals_total", "counter",
         "Records not written to Redis: the L2 budget was full (they are served from L1 and the "
         "loader).",
         cm->l2_budget_refusals},
        {"tiercache_cache_l1_admission_rejections_total", "counter",
         "New entries kept out of a full L1 by admission: asked for less often than what "
         "they would evict (--l1-admission).",
         cm->l1_rejections},
        {"tiercache_cache_l2_compressed_writes_total", "counter",
         "Records written to Redis with their value compressed (--l2-compress-min-bytes).",
         cm->l2_compressed_writes},
        {"tiercache_cache_l2_compressed_saved_bytes_total", "counter",
         "Bytes compression took off the values of those records.", cm->l2_compressed_saved_bytes},
        {"tiercache_cache_l2_decode_errors_total", "counter",
         "Records read from Redis that were no record of ours or whose compressed value did "
         "not decode: treated as misses.",
         cm->l2_decode_errors},
    };
    SINGLES(b, l1_redis);
    family(b, "tiercache_redis_command_duration_seconds", "histogram",
           "Redis round trips (command sent to reply read).");
    hist_log2(b, "tiercache_redis_command_duration_seconds", "", cm->redis_latency.buckets,
              TC_HIST_BUCKETS, cm->redis_latency.sum_us);
    const one_series bus_lease[] = {
        {"tiercache_bus_connected", "gauge",
         "1 while subscribed to the invalidation bus, else 0 (L1 is bypassed meanwhile).",
         (uint64_t)cm->bus_connected},
        {"tiercache_bus_reconnects_total", "counter",
         "Times the invalidation bus subscription was re-established.", cm->bus_reconnects},
        {"tiercache_bus_messages_total", "counter",
         "Invalidation messages received on the bus (this process's own included).",
         cm->bus_messages},
        {"tiercache_cache_l1_trusted", "gauge",
         "1 while this instance's lease holds: the bus proved within the lease that every "
         "invalidation has arrived, so L1 may answer; 0: L1 is bypassed.",
         (uint64_t)cm->l1_trusted},
        {"tiercache_cache_lease_lapses_total", "counter",
         "Times the lease ran out while subscribed (Redis slow or cut off).", cm->lease_lapses},
        {"tiercache_cache_ack_timeouts_total", "counter",
         "Invalidations that waited out the lease of an instance that did not acknowledge.",
         cm->ack_timeouts},
        {"tiercache_redis_incarnations_total", "counter",
         "Times a different Redis process answered (restart, restore, failover): nothing "
         "cached before was trusted.",
         cm->incarnations},
        /* on a Redis Cluster; 0 on one Redis */
        {"tiercache_redis_cluster_moved_total", "counter",
         "Redis Cluster: MOVED redirections followed (a slot has a new master).",
         cm->cluster_moved},
        {"tiercache_redis_cluster_ask_total", "counter",
         "Redis Cluster: ASK redirections followed (a slot being migrated).", cm->cluster_ask},
        {"tiercache_redis_cluster_retries_total", "counter",
         "Redis Cluster: commands sent again (TRYAGAIN; an invalidation held back while the "
         "bus's slot moves).",
         cm->cluster_retries},
        {"tiercache_redis_cluster_down_total", "counter",
         "Redis Cluster: commands failed because their slot had no master (CLUSTERDOWN).",
         cm->cluster_down},
        {"tiercache_redis_cluster_slot_map_reads_total", "counter",
         "Redis Cluster: slot maps read (CLUSTER SLOTS).", cm->cluster_refreshes},
    };
    SINGLES(b, bus_lease);
    family(b, "tiercache_cache_invalidate_duration_seconds", "histogram",
           "An invalidation from this instance until every instance applied it (or its lease ran "
           "out).");
    hist_log2(b, "tiercache_cache_invalidate_duration_seconds", "", cm->invalidate_latency.buckets,
              TC_HIST_BUCKETS, cm->invalidate_latency.sum_us);
    family(b, "tiercache_bus_lag_seconds", "histogram",
           "Another instance's invalidation, from its sending (its clock) to its application "
           "here: the bus delivery lag, once per invalidation.");
    hist_log2(b, "tiercache_bus_lag_seconds", "", cm->bus_lag.buckets, TC_HIST_BUCKETS,
              cm->bus_lag.sum_us);
}

#define HOT_LABELS 10 /* series of the hot key and tag families: the top 10 only */

/* A name as a label value: escaped, and any byte that is not printable ASCII as '?'
 * (a name cut at TC_HOT_NAME_MAX may end inside a UTF-8 sequence). */
static void hot_label(const char *name, char *out, size_t cap)
{
    char clean[TC_HOT_NAME_MAX];
    size_t n = 0;
    for (; name[n] != '\0' && n < sizeof(clean) - 1; n++)
        clean[n] = name[n] >= 0x20 && name[n] < 0x7f ? name[n] : '?';
    clean[n] = '\0';
    tc_app__mon_label_escape(clean, out, cap);
}

/* The hot keys and tags (tc_hot_snapshot): the top HOT_LABELS of each, no more. */
static void render_hot(tc_buf *b, const tc_hot *h)
{
    char lab[2 * TC_HOT_NAME_MAX + 16], esc[2 * TC_HOT_NAME_MAX + 4];
    family(b, "tiercache_cache_hot_key_reads", "gauge",
           "Reads of the most read keys lately, estimated (counts halve as they age): the top "
           "10 keys only.");
    for (int i = 0; i < h->nkeys && i < HOT_LABELS; i++) {
        hot_label(h->keys[i].name, esc, sizeof(esc));
        snprintf(lab, sizeof(lab), "key=\"%s\"", esc);
        series(b, "tiercache_cache_hot_key_reads", lab, h->keys[i].count);
    }
    family(b, "tiercache_cache_hot_tag_invalidations", "gauge",
           "Invalidations made here of the most invalidated tags lately (\"#<key>\": a key), "
           "estimated: the top 10 tags only.");
    for (int i = 0; i < h->ntags && i < HOT_LABELS; i++) {
        hot_label(h->tags[i].name, esc, sizeof(esc));
        snprintf(lab, sizeof(lab), "tag=\"%s\"", esc);
        series(b, "tiercache_cache_hot_tag_invalidations", lab, h->tags[i].count);
    }
    single(b, "tiercache_cache_hot_skipped_total", "counter",
           "Reads not counted among the hot keys: their thread's counter was busy.", h->skipped);
}

static void render_http(tc_monitor *m, tc_buf *b)
{
    char lab[200], esc[140];
    int nr = atomic_load_explicit(&m->nroutes, memory_order_acquire);
    family(b, "tiercache_http_requests_total", "counter",
           "Responses sent, by route (procedure name, batch, unknown, or path) and status code.");
    for (int i = 0; i < nr; i++) {
        tc_app__mon_label_escape(m->routes[i].name, esc, sizeof(esc));
        for (int c = 0; c < MON_CODES; c++) {
            uint64_t v = atomic_load_explicit(&m->routes[i].codes[c], memory_order_relaxed);
            if (v == 0)
                continue;
            snprintf(lab, sizeof(lab), "route=\"%s\",code=\"%d\"", esc, c + 100);
            series(b, "tiercache_http_requests_total", lab, v);
        }
    }
    family(b, "tiercache_http_request_duration_seconds", "histogram",
           "Request line read to response sent, by route.");
    for (int i = 0; i < nr; i++) {
        uint64_t bk[MON_NB], sum, n = 0;
        mon_hist_read(&m->routes[i].lat, bk, &sum);
        for (int k = 0; k < MON_NB; k++)
            n += bk[k];
        if (n == 0)
            continue; /* "other", before anything counted there */
        tc_app__mon_label_escape(m->routes[i].name, esc, sizeof(esc));
        snprintf(lab, sizeof(lab), "route=\"%s\"", esc);
        hist_fixed(b, "tiercache_http_request_duration_seconds", lab, bk, sum);
    }
    family(b, "tiercache_http_request_duration_by_cache_seconds", "histogram",
           "Request duration by the Cache-Status of the response: hit, stale (a hit past its "
           "fresh time) or miss.");
    for (int k = 0; k < MON_OUTCOMES; k++) {
        uint64_t bk[MON_NB], sum;
        mon_hist_read(&m->out[k], bk, &sum);
        snprintf(lab, sizeof(lab), "cache=\"%s\"", OUTCOME_NAMES[k]);
        hist_fixed(b, "tiercache_http_request_duration_by_cache_seconds", lab, bk, sum);
    }
    family(b, "tiercache_http_unanswered_requests_total", "counter",
           "Requests whose connection ended before a response was sent.");
    series(b, "tiercache_http_unanswered_requests_total", "",
           atomic_load_explicit(&m->unanswered, memory_order_relaxed));

    tc_http_stats st;
    if (!tc_app__mon_server_stats(m, &st))
        return;
    const one_series server[] = {
        {"tiercache_http_connections", "gauge", "Open client connections.", st.connections},
        {"tiercache_http_in_flight_requests", "gauge",
         "Requests between request line and response sent.", st.in_flight},
        {"tiercache_http_queued_requests", "gauge", "Requests waiting for a worker thread now.",
         st.queued},
        {"tiercache_http_handler_calls_total", "counter",
         "Requests that reached the application's handler.", st.requests},
        {"tiercache_http_offloaded_total", "counter",
         "Requests run on a worker thread (could block: cache miss, database, mutation).",
         st.offloaded},
        {"tiercache_http_parked_total", "counter",
         "Offloaded requests that gave their worker back while another request loaded "
         "the same key, and ran again after it.",
         st.parked},
    };
    SINGLES(b, server);
    family(b, "tiercache_http_rejected_total", "counter",
           "Requests the server refused by itself: busy (503, worker queue full), too_large "
           "(413), bad_request (400, framing).");
    series(b, "tiercache_http_rejected_total", "reason=\"busy\"", st.rejected_busy);
    series(b, "tiercache_http_rejected_total", "reason=\"too_large\"", st.rejected_large);
    series(b, "tiercache_http_rejected_total", "reason=\"bad_request\"", st.rejected_bad);
    family(b, "tiercache_http_closed_total", "counter",
           "Connections the server closed: deadline (request too slow), idle (keep-alive "
           "idle), shed (idle, closed to keep room near --max-connections), per_address (at "
           "accept: the client's address already had --max-connections-per-addr open).");
    series(b, "tiercache_http_closed_total", "reason=\"deadline\"", st.closed_deadline);
    series(b, "tiercache_http_closed_total", "reason=\"idle\"", st.closed_idle);
    series(b, "tiercache_http_closed_total", "reason=\"shed\"", st.closed_shed);
    series(b, "tiercache_http_closed_total", "reason=\"per_address\"", st.refused_addr);
}

/* The hit ratios: responses by route and Cache-Status, cached queries by tag
 * family. Both label sets are bounded (monitor.h); all-zero series are left out. */
static void render_ratios(tc_monitor *m, tc_buf *b)
{
    char lab[200], esc[140];
    family(b, "tiercache_route_cache_total", "counter",
           "Responses by route and by their Cache-Status: hit, stale (a hit past its fresh "
           "time) or miss; responses without one (mutations, static files, errors) are not "
           "counted.");
    int nr = atomic_load_explicit(&m->nroutes, memory_order_acquire);
    for (int i = 0; i < nr; i++) {
        uint64_t v[MON_OUTCOMES], any = 0;
        for (int k = 0; k < MON_OUTCOMES; k++)
            any |= v[k] = atomic_load_explicit(&m->routes[i].cache[k], memory_order_relaxed);
        if (any == 0)
            continue;
        tc_app__mon_label_escape(m->routes[i].name, esc, sizeof(esc));
        for (int k = 0; k < MON_OUTCOMES; k++) {
            snprintf(lab, sizeof(lab), "route=\"%s\",cache=\"%s\"", esc, OUTCOME_NAMES[k]);
            series(b, "tiercache_route_cache_total", lab, v[k]);
        }
    }
    family(b, "tiercache_tag_family_lookups_total", "counter",
           "Cached queries answered, by the family of the entry's tags (the text before ':', "
           "once per family) and by outcome: hit, stale or miss (the loader ran).");
    int nt = atomic_load_explicit(&m->ntags, memory_order_acquire);
    for (int i = 0; i < nt; i++) {
        uint64_t v[MON_OUTCOMES], any = 0;
        for (int k = 0; k < MON_OUTCOMES; k++)
            any |= v[k] = atomic_load_explicit(&m->tags[i].lookups[k], memory_order_relaxed);
        if (any == 0)
            continue;
        for (int k = 0; k < MON_OUTCOMES; k++) {
            snprintf(lab, sizeof(lab), "family=\"%s\",cache=\"%s\"", m->tags[i].name,
                     OUTCOME_NAMES[k]);
            series(b, "tiercache_tag_family_lookups_total", lab, v[k]);
        }
    }
}

/* The server-rendered pages: renders by page, and the store of their bytes. */
static void render_pages(tc_monitor *m, tc_buf *b)
{
    tc_app__page_stats ps;
    tc_app__pages_stats(m->app->pages, &ps);
    family(b, "tiercache_page_renders_total", "counter",
           "Page bodies built from their values and templates, by page; a page answered from "
           "the page store builds none.");
    for (int k = 0; k < TC_APP_PAGE_KINDS; k++) {
        const char *name = tc_app__page_name(k);
        char lab[48];
        if (name == NULL)
            continue;
        snprintf(lab, sizeof(lab), "page=\"%s\"", name);
        series(b, "tiercache_page_renders_total", lab, ps.renders[k]);
    }
    const one_series store[] = {
        {"tiercache_page_cache_hits_total", "counter",
         "Pages answered from the bytes stored under their ETag (no JSON parsed, no template run).",
         ps.store.hits},
        {"tiercache_page_cache_misses_total", "counter",
         "Pages whose ETag found no stored bytes: rendered, then stored.", ps.store.misses},
        {"tiercache_page_cache_stores_total", "counter", "Rendered pages stored.", ps.store.stores},
        {"tiercache_page_cache_evictions_total", "counter",
         "Stored pages dropped to stay under the page store's limit.", ps.store.evictions},
        {"tiercache_page_cache_entries", "gauge", "Pages in the page store.", ps.store.entries},
        {"tiercache_page_cache_bytes", "gauge", "Bytes held by the page store.", ps.store.bytes},
        {"tiercache_page_cache_max_bytes", "gauge",
         "The page store's limit (--page-cache-mb; 0: no store).", ps.store.max_bytes},
    };
    SINGLES(b, store);
}

static void render_db(tc_buf *b)
{
    /* Every dialect and operation, read once with its labels; the three families
     * show it, leaving out what never ran. */
    enum { NDIALECTS = TC_DB_POSTGRES - TC_DB_SQLITE + 1 };
    tc_db_latency l[NDIALECTS][TC_DB_OPS];
    char lab[NDIALECTS][TC_DB_OPS][128], dlab[NDIALECTS][48];
    for (int d = 0; d < NDIALECTS; d++) {
        tc_db_dialect dialect = (tc_db_dialect)(TC_DB_SQLITE + d);
        snprintf(dlab[d], sizeof(dlab[d]), "dialect=\"%s\"", tc_db_dialect_name(dialect));
        for (int op = 0; op < TC_DB_OPS; op++) {
            tc_db_latency_get(dialect, (tc_db_op)op, &l[d][op]);
            snprintf(lab[d][op], sizeof(lab[d][op]), "%s,operation=\"%s\"", dlab[d],
                     tc_db_op_name((tc_db_op)op));
        }
    }
    family(b, "tiercache_db_query_duration_seconds", "histogram",
           "Database statements by dialect and operation (query: the call plus each row "
           "stepped).");
    for (int d = 0; d < NDIALECTS; d++)
        for (int op = 0; op < TC_DB_OP_POOL_WAIT; op++)
            if (l[d][op].count > 0)
                hist_log2(b, "tiercache_db_query_duration_seconds", lab[d][op], l[d][op].buckets,
                          TC_DB_HIST_BUCKETS, l[d][op].sum_us);
    family(b, "tiercache_db_errors_total", "counter",
           "Database calls that returned an error, by dialect and operation.");
    for (int d = 0; d < NDIALECTS; d++)
        for (int op = 0; op < TC_DB_OPS; op++)
            if (l[d][op].count > 0)
                series(b, "tiercache_db_errors_total", lab[d][op], l[d][op].errors);
    family(b, "tiercache_db_pool_wait_seconds", "histogram",
           "Time spent waiting for a free pooled connection.");
    for (int d = 0; d < NDIALECTS; d++) {
        const tc_db_latency *w = &l[d][TC_DB_OP_POOL_WAIT];
        if (w->count > 0)
            hist_log2(b, "tiercache_db_pool_wait_seconds", dlab[d], w->buckets, TC_DB_HIST_BUCKETS,
                      w->sum_us);
    }
}

static char *render_metrics(tc_monitor *m, size_t *len)
{
    tc_buf buf = {0}, *b = &buf;
    tc_metrics *cm = malloc(sizeof(*cm));
    if (cm == NULL)
        return NULL;
    single(b, "tiercache_cache_enabled", "gauge",
           "1 when reads go through the cache, 0 when it is turned off (--no-cache).",
           m->app->cache != NULL);
    if (m->app->cache != NULL) {
        tc_metrics_snapshot(m->app->cache, cm);
        render_namespaces(m, b, cm);
        render_layers(m, b, cm);
        tc_hot *h = malloc(sizeof(*h));
        if (h != NULL) {
            tc_hot_snapshot(m->app->cache, h);
            render_hot(b, h);
        }
        free(h);
    }
    free(cm);
    render_http(m, b);
    render_ratios(m, b);
    render_pages(m, b);
    single(b, "tiercache_db_available", "gauge",
           "0 while the database is unavailable as the calls see it (from the first failure to "
           "connect or to answer in time until the next success), else 1.",
           !atomic_load(&m->app->db_down));
    render_db(b);
    tc_access_log_stats ls;
    tc_access_log_get_stats(m->log, &ls);
    const one_series log[] = {
        {"tiercache_access_log_lines_total", "counter", "Access log lines queued.", ls.lines},
        {"tiercache_access_log_dropped_total", "counter",
         "Access log lines dropped: the destination was slower than the traffic.", ls.dropped},
        {"tiercache_access_log_write_errors_total", "counter",
         "Failed writes of the access log (their lines are lost).", ls.write_errors},
    };
    SINGLES(b, log);
    family(b, "process_start_time_seconds", "gauge",
           "Start time of the process since the unix epoch in seconds.");
    P("process_start_time_seconds %lld.%03lld\n", (long long)(m->started_ms / 1000),
      (long long)(m->started_ms % 1000));
    if (b->data == NULL) { /* out of memory along the way */
        return NULL;
    }
    *len = b->len;
    return b->data;
}

#undef P

static void blocking_metrics(void *ctx, tc_http_exchange *x)
{
    tc_monitor *m = ((tc_app *)ctx)->monitor;
    size_t len = 0;
    char *text = render_metrics(m, &len);
    if (text == NULL) {
        tc_app__mon_respond(x, 500, "text/plain; charset=utf-8", "out of memory\n");
        return;
    }
    tc_http_set_status(x, 200);
    tc_cachehdr_simple(x, TC_ROUTE_NO_STORE);
    tc_http_set_content_type(x, "text/plain; version=0.0.4; charset=utf-8");
    tc_http_take_body(x, text, len);
}

tc_http_action tc_app__mon_metrics(tc_app *app, tc_http_exchange *x)
{
    tc_monitor *m = app->monitor;
    if (!tc_app__mon_access(m, x)) {
        if (m->token != NULL) {
            tc_http_add_header(x, "WWW-Authenticate", "Bearer realm=\"metrics\"");
            tc_app__mon_respond(x, 401, "text/plain; charset=utf-8",
                                "a bearer token is required\n");
        } else {
            tc_app__mon_respond(
                x, 403, "text/plain; charset=utf-8",
                "metrics are served to loopback peers only (or set a metrics token)\n");
        }
        return TC_HTTP_DONE;
    }
    /* a millisecond of formatting: not on the thread that answers cached requests */
    return tc_app__offload(x, CALL_NEED_BLOCK, blocking_metrics);
}

/* tags.c: tag, key and global invalidation across cache instances sharing one real Redis
 * (the shared test Redis when scripts/test.sh runs us, under a prefix of our own).
 * Three or four in-process instances, each with its own L1 and bus subscription, stand in
 * for three or four servers.
 *
 * Proves, from DESIGN.md "The cache engine: what it must get right":
 *   2  tags without clocks: instance A loads a key with tag T, instance B invalidates T, and
 *      right after B's call returns a fresh instance C gets no L2 answer for it (the old
 *      record is never served once its tag moved) while A reloads after bus delivery; an
 *      invalidation that lands while A's loader runs leaves its result born stale (never
 *      written to L2, dropped from A's L1 on delivery); a lost tag counter comes back at a
 *      new random epoch, so the entries that recorded the old one stay invalid.
 *   3  read-your-writes: after the invalidation returns, the invalidating instance itself
 *      and a fresh one read the new value at once; others within a bus-delivery deadline.
 *   5  invalidated means gone: an entry past its fresh time but within its stale time is
 *      served stale for mere expiry, and never once its tag was invalidated (get, peek).
 *   6  the bus carries tag, key and clear invalidations to every instance's L1.
 */
#include "common.h"

#define FRESH_MS 60000u
#define STALE_MS 60000u

static int port;
static char prefix[64];
static redisContext *rc;

static tc_cache *new_cache(it_clock *clock)
{
    tc_config cfg;
    it_config(&cfg, port, 0, prefix);
    if (clock != NULL) {
        cfg.clock = it_clock_fn;
        cfg.clock_ctx = clock;
    }
    tc_cache *c = it_cache(&cfg);
    REQUIRE(c != NULL);
    int up;
    IT_WAIT_UNTIL(up, it_bus_connected(c), IT_DEADLINE_MS);
    REQUIRE(up);
    return c;
}

static uint64_t bus_messages(tc_cache *c)
{
    tc_metrics m;
    tc_metrics_snapshot(c, &m);
    return m.bus_messages;
}

static void test_tag_invalidation_reaches_other_instances(void)
{
    static it_source src;
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, FRESH_MS, STALE_MS, "team:1");
    tc_cache *a = new_cache(NULL), *b = new_cache(NULL);
    char v1[64], v2[64];
    it_expect(v1, sizeof(v1), "doc:1", "v1");
    it_expect(v2, sizeof(v2), "doc:1", "v2");

    it_read r = it_get_or_load(a, "doc:1", &p);
    CHECK_EQ_INT(r.source, TC_SRC_LOADER);
    CHECK_EQ_STR(r.data, v1);
    r = it_get_or_load(a, "doc:1", &p);
    CHECK_EQ_INT(r.source, TC_SRC_L1);

    it_source_set(&src, "v2");
    uint64_t seen_by_a = bus_messages(a);
    CHECK_EQ_INT(tc_invalidate_tag(b, "team:1"), 0);

    /* Right after the call returns, before any bus delivery matters: a fresh instance
     * gets nothing from L2, then loads the new value. */
    tc_cache *c = new_cache(NULL);
    r = it_get(c, "doc:1", &p);
    CHECK_EQ_INT(r.rc, TC_ENOTFOUND);
    r = it_get_or_load(c, "doc:1", &p);
    CHECK_EQ_INT(r.source, TC_SRC_LOADER);
    CHECK_EQ_STR(r.data, v2);
    /* The invalidating instance reads its own write. */
    r = it_get_or_load(b, "doc:1", &p);
    CHECK_EQ_STR(r.data, v2);

    /* A: its L1 copy is dropped when the message arrives; the next read reloads. */
    int delivered;
    IT_WAIT_UNTIL(delivered, bus_messages(a) > seen_by_a, IT_DEADLINE_MS);
    CHECK(delivered);
    it_read first = {0};
    r = it_read_until(a, "doc:1", &p, v2, IT_DEADLINE_MS, &first);
    CHECK_EQ_STR(r.data, v2);
    CHECK(first.source != TC_SRC_L1); /* a reload (L2 has v2 by now), not the old L1 entry */
    CHECK_EQ_INT(it_get_or_load(a, "doc:1", &p).source, TC_SRC_L1);

    tc_cache_destroy(a);
    tc_cache_destroy(b);
    tc_cache_destroy(c);
}

/* The hook runs inside A's loader once it has read v1: the source moves to v2 and B
 * invalidates the tag while A's load is still in flight. */
static tc_cache *hook_b;
static void invalidate_during_load(it_source *s, const char *key)
{
    if (s->hook_ctx == NULL)
        return;
    s->hook_ctx = NULL; /* once */
    it_source_set(s, "v2");
    CHECK_EQ_INT(tc_invalidate_tag(hook_b, "team:2"), 0);
}

static void test_invalidation_during_load_is_born_stale(void)
{
    static it_source src;
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, FRESH_MS, STALE_MS, "team:2");
    tc_cache *a = new_cache(NULL), *b = new_cache(NULL);
    char v2[64];
    it_expect(v2, sizeof(v2), "doc:2", "v2");
    hook_b = b;
    src.hook = invalidate_during_load;
    src.hook_ctx = &src;
    uint64_t seen_by_a = bus_messages(a);

    it_read r = it_get_or_load(a, "doc:2", &p);
    CHECK_EQ_INT(r.rc, 0); /* the caller whose call overlapped the invalidation: v1 or v2 */
    CHECK(src.hook_ctx == NULL);

    /* The v1 load recorded T's version from before the invalidation: never written to L2. */
    char key[128];
    snprintf(key, sizeof(key), "%sdoc:2", prefix);
    CHECK_EQ_INT(it_rint(rc, "EXISTS %s", key), 0);
    tc_cache *c = new_cache(NULL);
    CHECK_EQ_INT(it_get(c, "doc:2", &p).rc, TC_ENOTFOUND);
    r = it_get_or_load(c, "doc:2", &p);
    CHECK_EQ_STR(r.data, v2);
    CHECK_EQ_INT(r.source, TC_SRC_LOADER);

    /* ... and A's L1 drops it when the message arrives. */
    int delivered;
    IT_WAIT_UNTIL(delivered, bus_messages(a) > seen_by_a, IT_DEADLINE_MS);
    CHECK(delivered);
    r = it_read_until(a, "doc:2", &p, v2, IT_DEADLINE_MS, NULL);
    CHECK_EQ_STR(r.data, v2);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
    tc_cache_destroy(c);
}

static void test_lost_tag_counter_never_revives_old_entry(void)
{
    static it_source src;
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, FRESH_MS, STALE_MS, "team:3");
    tc_policy untagged = it_policy(&src, FRESH_MS, STALE_MS, NULL);
    tc_cache *a = new_cache(NULL);
    char tag[128], global[128], old[32], now[32];
    snprintf(tag, sizeof(tag), "%s~t:team:3", prefix);
    snprintf(global, sizeof(global), "%s~t:*", prefix);

    CHECK_EQ_INT(it_get_or_load(a, "doc:3", &p).rc, 0);
    CHECK_EQ_INT(it_get_or_load(a, "doc:4", &untagged).rc, 0);
    tc_cache *c = new_cache(NULL);
    CHECK_EQ_INT(it_get(c, "doc:3", &p).source, TC_SRC_L2); /* the records are good */
    CHECK_EQ_INT(it_get(c, "doc:4", &untagged).source, TC_SRC_L2);
    tc_cache_destroy(c);

    /* The counter is evicted (Redis under memory pressure, a restart): the entry that
     * recorded its old value must not come back to life when it is recreated. */
    it_rstr(rc, old, sizeof(old), "GET %s", tag);
    CHECK_EQ_INT(it_rint(rc, "DEL %s", tag), 1);
    c = new_cache(NULL);
    CHECK_EQ_INT(it_get(c, "doc:3", &p).rc, TC_ENOTFOUND);
    CHECK_EQ_INT(it_rint(rc, "EXISTS %s", tag), 0); /* a read creates no key */
    it_source_set(&src, "v2");
    it_read r = it_get_or_load(c, "doc:3", &p);
    CHECK_EQ_INT(r.source, TC_SRC_LOADER);
    it_rstr(rc, now, sizeof(now), "GET %s", tag); /* made again by the write, elsewhere */
    CHECK(now[0] != '\0' && strcmp(now, old) != 0);
    tc_cache_destroy(c);

    /* The same for the global counter, which every entry carries, tagged or not. */
    CHECK_EQ_INT(it_rint(rc, "DEL %s", global), 1);
    c = new_cache(NULL);
    CHECK_EQ_INT(it_get(c, "doc:3", &p).rc, TC_ENOTFOUND);
    CHECK_EQ_INT(it_get(c, "doc:4", &untagged).rc, TC_ENOTFOUND);
    tc_cache_destroy(c);
    tc_cache_destroy(a);
}

/* 1 when peek finds no entry for key; a hit is released. */
static int peek_gone(tc_cache *c, const char *key)
{
    tc_result res;
    int err = tc_peek(c, key, NULL, &res);
    if (err == 0)
        tc_value_release(res.value);
    return err == TC_ENOTFOUND;
}

static void test_invalidated_entry_never_served_stale(void)
{
    static it_source src;
    static it_clock clock;
    it_source_init(&src, "v1");
    it_clock_init(&clock);
    tc_policy p = it_policy(&src, 1000, 600000, "team:4");
    tc_cache *a = new_cache(&clock), *b = new_cache(&clock);
    char v1[64], v2[64];
    it_expect(v1, sizeof(v1), "doc:5", "v1");
    it_expect(v2, sizeof(v2), "doc:5", "v2");

    CHECK_EQ_INT(it_get_or_load(a, "doc:5", &p).rc, 0);
    atomic_fetch_add(&clock.ms, 5000); /* past fresh, well within stale */

    /* Mere expiry: served stale, from L2 to a fresh instance, from L1 to A (peek). */
    tc_cache *d = new_cache(&clock);
    it_read r = it_get(d, "doc:5", &p);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(r.stale, 1);
    CHECK_EQ_STR(r.data, v1);
    tc_cache_destroy(d);
    tc_result res;
    CHECK_EQ_INT(tc_peek(a, "doc:5", NULL, &res), 0); /* no loader: no refresh */
    CHECK_EQ_INT(res.stale, 1);
    tc_value_release(res.value);

    /* Invalidation: no longer served, stale or not. */
    it_source_set(&src, "v2");
    uint64_t seen_by_a = bus_messages(a);
    CHECK_EQ_INT(tc_invalidate_tag(b, "team:4"), 0);
    d = new_cache(&clock);
    CHECK_EQ_INT(it_get(d, "doc:5", &p).rc, TC_ENOTFOUND);
    r = it_get_or_load(d, "doc:5", &p);
    CHECK_EQ_STR(r.data, v2);
    CHECK_EQ_INT(r.stale, 0);
    /* A: until the message is applied its L1 may still answer v1 (bus delivery bounds
     * that); once it is, peek — which serves stale entries — finds nothing at all. */
    int delivered;
    IT_WAIT_UNTIL(delivered, bus_messages(a) > seen_by_a, IT_DEADLINE_MS);
    CHECK(delivered);
    int gone;
    IT_WAIT_UNTIL(gone, peek_gone(a, "doc:5"), IT_DEADLINE_MS);
    CHECK(gone);
    r = it_get_or_load(a, "doc:5", &p);
    CHECK_EQ_STR(r.data, v2);
    CHECK_EQ_INT(r.stale, 0);
    CHECK_EQ_INT(r.source, TC_SRC_L2); /* D stored v2; the invalidated v1 is never used */
    tc_cache_destroy(a);
    tc_cache_destroy(b);
    tc_cache_destroy(d);
}

static void test_key_and_clear_invalidations_across_instances(void)
{
    static it_source src;
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, FRESH_MS, STALE_MS, NULL);
    tc_cache *a = new_cache(NULL), *b = new_cache(NULL);
    char want[64], key[128];

    CHECK_EQ_INT(it_get_or_load(a, "doc:6", &p).rc, 0);
    CHECK_EQ_INT(it_get_or_load(a, "doc:7", &p).rc, 0);
    CHECK_EQ_INT(it_get_or_load(a, "doc:6", &p).source, TC_SRC_L1);
    CHECK_EQ_INT(it_get_or_load(a, "doc:7", &p).source, TC_SRC_L1);

    /* One key: its record is deleted and its own tag moved. */
    it_source_set(&src, "v2");
    CHECK_EQ_INT(tc_invalidate_key(b, "doc:6"), 0);
    snprintf(key, sizeof(key), "%sdoc:6", prefix);
    CHECK_EQ_INT(it_rint(rc, "EXISTS %s", key), 0);
    tc_cache *c = new_cache(NULL);
    CHECK_EQ_INT(it_get(c, "doc:6", &p).rc, TC_ENOTFOUND);
    CHECK_EQ_INT(it_get(c, "doc:7", &p).source, TC_SRC_L2); /* the other key is untouched */
    tc_cache_destroy(c);
    it_expect(want, sizeof(want), "doc:6", "v2");
    it_read r = it_read_until(a, "doc:6", &p, want, IT_DEADLINE_MS, NULL);
    CHECK_EQ_STR(r.data, want);
    it_expect(want, sizeof(want), "doc:7", "v1");
    CHECK_EQ_STR(it_get_or_load(a, "doc:7", &p).data, want);

    /* Everything under the prefix: one counter, one message. */
    it_source_set(&src, "v3");
    CHECK_EQ_INT(tc_clear(b), 0);
    c = new_cache(NULL);
    CHECK_EQ_INT(it_get(c, "doc:6", &p).rc, TC_ENOTFOUND);
    CHECK_EQ_INT(it_get(c, "doc:7", &p).rc, TC_ENOTFOUND);
    tc_cache_destroy(c);
    it_expect(want, sizeof(want), "doc:7", "v3");
    r = it_read_until(a, "doc:7", &p, want, IT_DEADLINE_MS, NULL);
    CHECK_EQ_STR(r.data, want);
    it_expect(want, sizeof(want), "doc:6", "v3");
    CHECK_EQ_STR(it_get_or_load(a, "doc:6", &p).data, want);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

int main(void)
{
    tct_redis own;
    port = it_redis_port(&own);
    REQUIRE(port > 0);
    snprintf(prefix, sizeof(prefix), "it-tags-%ld:", (long)getpid());
    rc = it_redis(port, 0);
    REQUIRE(rc != NULL);

    test_tag_invalidation_reaches_other_instances();
    test_invalidation_during_load_is_born_stale();
    test_lost_tag_counter_never_revives_old_entry();
    test_invalidated_entry_never_served_stale();
    test_key_and_clear_invalidations_across_instances();

    redisFree(rc);
    tct_redis_stop(&own);
    return check_report();
}

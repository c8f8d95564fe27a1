/* fleet.c: read-your-writes across instances, however the instances and Redis fail. Several
 * in-process tc_cache instances stand in for several processes (each has its own L1, bus
 * subscription, membership and lease); one of them reaches Redis through a proxy that the
 * test can freeze — a network partition, connections open and silent. Each test runs its
 * own redis-server (one is killed and restored from an older snapshot).
 *
 * Proves, from DESIGN.md "The cache engine: what it must get right":
 *   3  read-your-writes, fleet-wide: after tc_invalidate_tag returns, no instance serves the
 *      old value — not one whose bus is healthy (it acknowledged: the writer waited for
 *      nobody past its acknowledgement, ack_timeouts stays 0 over 50 invalidations, and
 *      each instance reads the new value at once), and not one cut off from Redis while its
 *      L1 holds the old value and its lease (2 s here) has not run out: the writer waits
 *      for it until its lease is over (ack_timeouts 1), and that instance then reads the new
 *      value, not its L1 entry; once the partition heals it trusts its L1 again. An
 *      instance that leaves (tc_cache_destroy) is no longer waited for.
 *   6  losing the bus: a load that ran while its instance was deaf (its bus lost, the
 *      invalidation of what it loaded missed) and ends after the bus is back is born
 *      invalid: what it read before the write is not kept in L1 once L1 is trusted again.
 *  12  a new Redis is a new world: Redis restored from a snapshot taken before an
 *      invalidation brings back the old record with the tag counters that make it look
 *      valid; neither the instance that saw the invalidation nor a new one is served it.
 *      Nor does the restored list of members (from before an instance joined) let a writer
 *      forget that instance: it registers anew before it trusts its L1 again.
 * And the bus delivery lag (issue 11, part 2): an instance records, once per invalidation
 * it applies from another (a single-tag one and one of three tags alike), the time since
 * that instance sent it, and nothing for its own; a message in the format of builds
 * before the send time (no "@<µs>") is still applied, with no lag recorded.
 *
 * fleet@cluster: the same on a private Redis Cluster (3 masters, 3 replicas): the partitioned
 * instance reaches every node through a proxy of its own (tc_config.cluster_address), all
 * frozen at once; a snapshot is of every master, restored together.
 */
#include "common.h"

#define TAG "acct"
#define FRESH_MS 600000

static char prefix[64];

static tc_metrics metrics(tc_cache *c)
{
    tc_metrics m;
    tc_metrics_snapshot(c, &m);
    return m;
}

/* An instance on s, or (pt not NULL) reaching s only through pt's proxies. */
static tc_cache *fleet_cache(it_server *s, it_partition *pt, int lease_ms)
{
    tc_config cfg;
    it_config(&cfg, s->port, 0, prefix);
    if (pt != NULL)
        it_partition_config(pt, &cfg);
    cfg.redis_timeout_ms = 100;
    cfg.connect_timeout_ms = 200;
    cfg.breaker_failures = 3;
    cfg.breaker_open_ms = 200;
    cfg.lease_ms = lease_ms;
    return it_cache(&cfg);
}

/* Reads key on c and checks it answers want; returns the read. */
static it_read read_want(tc_cache *c, const char *key, const tc_policy *p, const char *want,
                         const char *who)
{
    it_read r = it_get_or_load(c, key, p);
    CHECK_EQ_INT(r.rc, 0);
    if (!CHECK(strcmp(r.data, want) == 0))
        fprintf(stderr, "    %s: %s gave '%s' (from %s), want '%s'\n", who, key, r.data,
                it_source_name(r.source), want);
    return r;
}

static bool trusted(tc_cache *c)
{
    return metrics(c).l1_trusted;
}

/* Three healthy instances: every invalidation is acknowledged by the two others, none is
 * waited out, and each reads the new value at once. */
static void test_healthy_fleet_acknowledges(void)
{
    it_server server;
    REQUIRE(it_server_start(&server) == 0);
    tc_cache *c[3];
    for (int i = 0; i < 3; i++)
        REQUIRE((c[i] = fleet_cache(&server, NULL, 1000)) != NULL);
    it_source src;
    it_source_init(&src, "v0");
    tc_policy p = it_policy(&src, FRESH_MS, 0, TAG);
    char want[96], version[16];
    for (int n = 1; n <= 50; n++) {
        for (int i = 0; i < 3; i++) { /* every instance holds the value in L1 */
            it_expect(want, sizeof(want), "acct:1", src.version);
            read_want(c[i], "acct:1", &p, want, "before");
        }
        snprintf(version, sizeof(version), "v%d", n);
        it_source_set(&src, version);
        CHECK_EQ_INT(tc_invalidate_tag(c[n % 3], TAG), 0);
        CHECK_EQ_INT(metrics(c[n % 3]).ack_timeouts, 0); /* acknowledged, not waited out */
        it_expect(want, sizeof(want), "acct:1", version);
        for (int i = 0; i < 3; i++)
            read_want(c[i], "acct:1", &p, want, "after");
    }
    for (int i = 0; i < 3; i++) {
        tc_metrics m = metrics(c[i]);
        CHECK_EQ_INT(m.ack_timeouts, 0);
        CHECK(m.invalidate_latency.count >= 16); /* 50 writes over 3 instances */
    }
    /* One leaves: the others stop waiting for it at once. */
    tc_cache_destroy(c[2]);
    it_source_set(&src, "v-after-leave");
    CHECK_EQ_INT(tc_invalidate_tag(c[0], TAG), 0);
    CHECK_EQ_INT(metrics(c[0]).ack_timeouts, 0);
    tc_cache_destroy(c[0]);
    tc_cache_destroy(c[1]);
    it_server_stop(&server);
}

/* Instance B reaches Redis through a proxy; the proxy freezes while B's L1 holds the old
 * value and its 2 s lease is fresh. A's invalidation must not return while B may still
 * serve it: A waits for B's lease, and B then answers the new value. */
static void test_partitioned_instance_stops_trusting_l1(void)
{
    it_server server;
    REQUIRE(it_server_start(&server) == 0);
    static it_partition px;
    REQUIRE(it_partition_start(&px, &server) == 0);
    tc_cache *a = fleet_cache(&server, NULL, 100);
    tc_cache *b = fleet_cache(&server, &px, 2000);
    REQUIRE(a != NULL && b != NULL);
    bool ok;
    IT_WAIT_UNTIL(ok, trusted(a) && trusted(b), IT_DEADLINE_MS);
    REQUIRE(ok);

    it_source src;
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, FRESH_MS, 0, TAG);
    char v1[64], v2[64];
    it_expect(v1, sizeof(v1), "acct:1", "v1");
    it_expect(v2, sizeof(v2), "acct:1", "v2");
    read_want(a, "acct:1", &p, v1, "a");
    read_want(b, "acct:1", &p, v1, "b");
    CHECK_EQ_INT(read_want(b, "acct:1", &p, v1, "b").source, TC_SRC_L1);

    it_partition_freeze(&px, 1);
    it_source_set(&src, "v2");
    CHECK_EQ_INT(tc_invalidate_tag(a, TAG), 0);
    CHECK_EQ_INT(metrics(a).ack_timeouts, 1); /* waited B's lease out, did not return early */
    it_read r = read_want(b, "acct:1", &p, v2, "b, cut off, right after the write returned");
    CHECK(r.source != TC_SRC_L1);
    CHECK(!trusted(b));
    read_want(a, "acct:1", &p, v2, "a");

    it_partition_freeze(&px, 0);
    IT_WAIT_UNTIL(ok, trusted(b), IT_DEADLINE_MS); /* the partition healed: B catches up */
    CHECK(ok);
    read_want(b, "acct:1", &p, v2, "b, healed");
    CHECK_EQ_INT(read_want(b, "acct:1", &p, v2, "b, healed").source, TC_SRC_L1);
    CHECK(metrics(b).lease_lapses >= 1);

    tc_cache_destroy(a);
    tc_cache_destroy(b);
    it_partition_stop(&px);
    it_server_stop(&server);
}

/* The hook runs inside B's loader, once it has read v1, while B is cut off (its bus lost):
 * A writes v2, B misses the message, then the partition heals and B trusts its L1 again
 * before its load ends. */
static tc_cache *deaf_a, *deaf_b;
static it_partition deaf_px;

static void write_while_deaf(it_source *s, const char *key)
{
    (void)key;
    it_source_set(s, "v2");
    CHECK_EQ_INT(tc_invalidate_tag(deaf_a, TAG), 0);
    it_partition_freeze(&deaf_px, 0);
    bool ok;
    IT_WAIT_UNTIL(ok, trusted(deaf_b), IT_DEADLINE_MS);
    CHECK(ok);
}

/* A load that spans a bus outage: it began after B lost its bus (so the generations it
 * recorded already count that loss), read v1, and ends once B has resubscribed and trusts
 * its L1 again, after a write B never heard of. Resubscribing must make it born invalid:
 * B then answers v2, never its own v1 from L1. */
static void test_load_across_a_bus_outage_is_born_invalid(void)
{
    it_server server;
    REQUIRE(it_server_start(&server) == 0);
    REQUIRE(it_partition_start(&deaf_px, &server) == 0);
    deaf_a = fleet_cache(&server, NULL, 100);
    deaf_b = fleet_cache(&server, &deaf_px, 100);
    REQUIRE(deaf_a != NULL && deaf_b != NULL);
    bool ok;
    IT_WAIT_UNTIL(ok, trusted(deaf_a) && trusted(deaf_b), IT_DEADLINE_MS);
    REQUIRE(ok);

    it_partition_freeze(&deaf_px, 1); /* B's bus is lost after 3 s of silence */
    IT_WAIT_UNTIL(ok, !it_bus_connected(deaf_b), IT_DEADLINE_MS);
    REQUIRE(ok);
    it_source src;
    it_source_init(&src, "v1");
    src.hook = write_while_deaf;
    tc_policy p = it_policy(&src, FRESH_MS, 0, TAG);
    char v1[64], v2[64];
    it_expect(v1, sizeof(v1), "acct:1", "v1");
    it_expect(v2, sizeof(v2), "acct:1", "v2");
    read_want(deaf_b, "acct:1", &p, v1, "b, its load spanning the outage");
    src.hook = NULL;
    it_read r = read_want(deaf_b, "acct:1", &p, v2, "b, after the write and its bus back");
    if (!CHECK(r.source != TC_SRC_L1))
        fprintf(stderr, "    b kept in L1 what it loaded before a write it never heard of\n");
    read_want(deaf_a, "acct:1", &p, v2, "a");

    tc_cache_destroy(deaf_a);
    tc_cache_destroy(deaf_b);
    it_partition_stop(&deaf_px);
    it_server_stop(&server);
}

/* Redis restored from a snapshot taken before an invalidation: the old record comes back
 * with the old counters, consistent with each other. It must not be served. */
static void test_snapshot_restore_is_a_new_world(void)
{
    it_server server;
    REQUIRE(it_server_start(&server) == 0);
    tc_cache *a = fleet_cache(&server, NULL, 250);
    REQUIRE(a != NULL);
    it_source src;
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, FRESH_MS, 0, TAG);
    char v1[64], v2[64];
    it_expect(v1, sizeof(v1), "acct:1", "v1");
    it_expect(v2, sizeof(v2), "acct:1", "v2");
    read_want(a, "acct:1", &p, v1, "a"); /* the v1 record is in Redis */
    REQUIRE(it_server_snapshot(&server) == 0);

    it_source_set(&src, "v2");
    CHECK_EQ_INT(tc_invalidate_tag(a, TAG), 0);
    read_want(a, "acct:1", &p, v2, "a"); /* and now the v2 record */

    REQUIRE(it_server_restore(&server) == 0); /* v1 and its counters are back */
    uint64_t loads = (uint64_t)atomic_load(&src.loads);
    bool ok;
    IT_WAIT_UNTIL(ok, trusted(a), IT_DEADLINE_MS);
    CHECK(ok);
    read_want(a, "acct:1", &p, v2, "a, after the restore");
    tc_cache *fresh = fleet_cache(&server, NULL, 250); /* never saw v2, nor the old Redis */
    REQUIRE(fresh != NULL);
    read_want(fresh, "acct:1", &p, v2, "a new instance, after the restore");
    CHECK((uint64_t)atomic_load(&src.loads) > loads); /* v2 came from the loader */
    IT_WAIT_UNTIL(ok, metrics(a).incarnations >= 1, IT_DEADLINE_MS); /* a noticed, too */
    CHECK(ok);
    tc_cache_destroy(fresh);
    tc_cache_destroy(a);
    it_server_stop(&server);
}

/* B joins after the snapshot, so the Redis restored from it does not list B. Once B trusts
 * its L1 again it must be listed (it re-registered on the Redis it now talks to), or a writer
 * would not wait for it: A's write then would return while B, cut off, still serves the old
 * value from L1 under its (long) lease. */
static void test_restored_redis_lists_an_instance_before_it_trusts_l1(void)
{
    it_server server;
    REQUIRE(it_server_start(&server) == 0);
    static it_partition px;
    REQUIRE(it_partition_start(&px, &server) == 0);
    tc_cache *a = fleet_cache(&server, NULL, 100);
    REQUIRE(a != NULL);
    REQUIRE(it_server_snapshot(&server) == 0); /* lists A only */
    tc_cache *b = fleet_cache(&server, &px, 2000);
    REQUIRE(b != NULL);
    bool ok;
    IT_WAIT_UNTIL(ok, trusted(b), IT_DEADLINE_MS);
    REQUIRE(ok);

    REQUIRE(it_server_restore(&server) == 0);
    IT_WAIT_UNTIL(ok, !trusted(b), IT_DEADLINE_MS); /* B lost its bus */
    CHECK(ok);
    IT_WAIT_UNTIL(ok, trusted(a) && trusted(b), IT_DEADLINE_MS); /* and is back */
    REQUIRE(ok);
    redisContext *insp = it_redis(server.port, 0);
    REQUIRE(insp != NULL);
    char members[160];
    if (it_on_cluster())
        snprintf(members, sizeof(members), "%s~{%smeta}members", prefix, prefix);
    else
        snprintf(members, sizeof(members), "%s~members:0", prefix);
    CHECK_EQ_INT(it_rint(insp, "ZCARD %s", members), 2); /* A and B, both registered anew */
    redisFree(insp);

    it_source src;
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, FRESH_MS, 0, TAG);
    char v1[64], v2[64];
    it_expect(v1, sizeof(v1), "acct:2", "v1");
    it_expect(v2, sizeof(v2), "acct:2", "v2");
    read_want(b, "acct:2", &p, v1, "b");
    CHECK_EQ_INT(read_want(b, "acct:2", &p, v1, "b").source, TC_SRC_L1);
    it_partition_freeze(&px, 1);
    it_source_set(&src, "v2");
    CHECK_EQ_INT(tc_invalidate_tag(a, TAG), 0);
    it_read r = read_want(b, "acct:2", &p, v2, "b, cut off, right after the write returned");
    CHECK(r.source != TC_SRC_L1);
    it_partition_freeze(&px, 0);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
    it_partition_stop(&px);
    it_server_stop(&server);
}

/* A applies nothing of its own; B records one lag per invalidation of A's; an old-format
 * message is applied by B, and adds no lag. */
static void test_bus_lag_recorded_once_per_invalidation(void)
{
    it_server server;
    REQUIRE(it_server_start(&server) == 0);
    tc_cache *a = fleet_cache(&server, NULL, 1000), *b = fleet_cache(&server, NULL, 1000);
    REQUIRE(a != NULL && b != NULL);
    it_source src;
    it_source_init(&src, "v0");
    tc_policy p = it_policy(&src, FRESH_MS, 0, TAG);
    for (int n = 1; n <= 10; n++)
        CHECK_EQ_INT(tc_invalidate_tag(a, TAG), 0);
    const char *three[] = {"lag-1", "lag-2", "lag-3"};
    CHECK_EQ_INT(tc_invalidate_tags(a, three, 3, 0), 0);
    /* the writer returned after B acknowledged, i.e. after B applied (and timed) each */
    tc_metrics mb = metrics(b), ma = metrics(a);
    CHECK_EQ_INT(mb.bus_lag.count, 11);
    CHECK_EQ_INT(ma.bus_lag.count, 0);
    CHECK_EQ_INT(ma.ack_timeouts, 0);
    uint64_t in_buckets = 0;
    for (int i = 0; i < TC_HIST_BUCKETS; i++)
        in_buckets += mb.bus_lag.buckets[i];
    CHECK_EQ_INT(in_buckets, 11);
    /* same host, same clock: each lag is under the writer's whole call (an ack round) */
    CHECK(mb.bus_lag.sum_us < 11u * IT_CALL_BOUND_MS * 1000u);

    /* A message as builds before the send time wrote them: "<seq> <id> <tag>" */
    char want[96];
    it_expect(want, sizeof(want), "acct:7", "v0");
    read_want(b, "acct:7", &p, want, "before");
    it_source_set(&src, "v1");
    redisContext *r = it_redis(server.port, 0);
    REQUIRE(r != NULL);
    char chan[160];
    if (it_on_cluster()) /* the shard channel of the meta slot */
        snprintf(chan, sizeof(chan), "%s~{%smeta}bus", prefix, prefix);
    else
        snprintf(chan, sizeof(chan), "%s~bus:0", prefix);
    CHECK(it_rint(r, "INCR %s~t:%s", prefix, TAG) > 0); /* what the script does first */
    CHECK(it_rint(r, "%s %s %s", it_on_cluster() ? "SPUBLISH" : "PUBLISH", chan,
                  "7 0123456789abcdef " TAG) >= 1);
    redisFree(r);
    it_expect(want, sizeof(want), "acct:7", "v1");
    it_read got = it_read_until(b, "acct:7", &p, want, IT_DEADLINE_MS, NULL);
    CHECK(strcmp(got.data, want) == 0); /* applied: L1 no longer answers v0 */
    CHECK_EQ_INT(metrics(b).bus_lag.count, 11);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
    it_server_stop(&server);
}

int main(void)
{
    snprintf(prefix, sizeof(prefix), "it-fleet-%ld:", (long)getpid());
    test_healthy_fleet_acknowledges();
    test_partitioned_instance_stops_trusting_l1();
    test_load_across_a_bus_outage_is_born_invalid();
    test_snapshot_restore_is_a_new_world();
    test_restored_redis_lists_an_instance_before_it_trusts_l1();
    test_bus_lag_recorded_once_per_invalidation();
    return check_report();
}

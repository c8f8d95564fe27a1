/* outage.c: the cache engine while its Redis dies, comes back empty, or stops answering
 * while keeping its data. Each test runs its own redis-server (it kills or pauses it) and
 * uses small timeouts: redis_timeout_ms 50, connect 100, breaker 3 failures / 200 ms.
 * Time bounds are loose (IT_CALL_BOUND_MS, 2 s per call): they check "never a thread
 * blocked on a dead socket", not speed.
 *
 * Proves, from DESIGN.md "The cache engine: what it must get right":
 *   7  Redis is a cache, not a dependency: with Redis killed, every call (reads, set,
 *      invalidations, clear, create, destroy — from several threads at once) returns
 *      within the bound, reads with the loader's value; metrics show breaker_open,
 *      redis_errors and bus_connected = 0; after a restart the breaker closes.
 *      single_instance = 1: L1 keeps serving while Redis is down.
 *   6  while the bus is down a (non single-instance) cache bypasses L1: answers come from
 *      the loader, not L1; after the restart the bus reconnects and L1 is used again.
 *   3  an invalidation made while Redis is unreachable returns TC_EREDIS, is applied here
 *      at once and kept (pending_invalidations > 0); when Redis answers again — with its
 *      old data still there (CLIENT PAUSE, not a restart) — it is replayed before this
 *      instance reads L2 again (shown on a single_instance cache: with no bus thread to
 *      replay it first, only the replay on the read's path keeps the old record away),
 *      and also when this instance stays idle (pending returns to 0 on its own: the bus
 *      thread's replay), so no other instance is served the old record from L2, and the
 *      instances holding the key in L1 drop it (the replay is published).
 *
 * outage@cluster: the same on a private Redis Cluster (3 masters, 3 replicas), every node
 * killed and restarted at once (empty, same masters and slots), every master paused.
 */
#include "common.h"

#define TAG "acct"

static char prefix[64];

static tc_cache *outage_cache(int port, int single_instance)
{
    tc_config cfg;
    it_config(&cfg, port, 0, prefix);
    cfg.redis_timeout_ms = 50;
    cfg.connect_timeout_ms = 100;
    cfg.breaker_failures = 3;
    cfg.breaker_open_ms = 200;
    cfg.single_instance = single_instance;
    return it_cache(&cfg);
}

static void check_bound(int64_t took, const char *what)
{
    if (!CHECK(took < IT_CALL_BOUND_MS))
        fprintf(stderr, "    %s took %lld ms\n", what, (long long)took);
}

/* Reads key and checks the answer: rc 0, want, within the bound; returns it. */
static it_read read_ok(tc_cache *c, const char *key, const tc_policy *p, const char *want)
{
    it_read r = it_get_or_load(c, key, p);
    CHECK_EQ_INT(r.rc, 0);
    if (!CHECK(strcmp(r.data, want) == 0))
        fprintf(stderr, "    %s: got '%s', want '%s'\n", key, r.data, want);
    check_bound(r.took_ms, "tc_get_or_load");
    return r;
}

static tc_metrics metrics(tc_cache *c)
{
    tc_metrics m;
    tc_metrics_snapshot(c, &m);
    return m;
}

/* ---- background readers: no thread may ever block on the dead socket -------------------- */

typedef struct readers {
    tc_cache *c;
    it_source src;
    tc_policy p;
    atomic_bool stop;
    _Atomic int64_t max_ms;
    atomic_int errors, reads;
    pthread_t threads[4];
} readers;

static void *reader_main(void *arg)
{
    readers *rd = arg;
    for (int i = 0; !atomic_load(&rd->stop) && i < 1000000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "bg:%d", i % 8);
        it_read r = it_get_or_load(rd->c, key, &rd->p);
        atomic_fetch_add(&rd->reads, 1);
        if (r.rc != 0)
            atomic_fetch_add(&rd->errors, 1);
        int64_t m = atomic_load(&rd->max_ms);
        while (r.took_ms > m && !atomic_compare_exchange_weak(&rd->max_ms, &m, r.took_ms)) {
        }
        it_sleep_ms(2);
    }
    return NULL;
}

static void readers_start(readers *rd, tc_cache *c)
{
    rd->c = c;
    it_source_init(&rd->src, "bg");
    rd->p = it_policy(&rd->src, 60000, 60000, NULL);
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&rd->threads[i], NULL, reader_main, rd) == 0);
}

static void readers_stop(readers *rd)
{
    atomic_store(&rd->stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(rd->threads[i], NULL);
    CHECK(atomic_load(&rd->reads) > 0);
    CHECK_EQ_INT(atomic_load(&rd->errors), 0);
    check_bound(atomic_load(&rd->max_ms), "a background reader's slowest call");
}

/* ---- the tests -------------------------------------------------------------------------- */

static void test_redis_killed_then_restarted_empty(void)
{
    static it_source src;
    static readers bg;
    it_server server;
    REQUIRE(it_server_start(&server) == 0);
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, 60000, 60000, TAG);
    char v1[64], v2[64];
    it_expect(v1, sizeof(v1), "acct:1", "v1");
    it_expect(v2, sizeof(v2), "acct:1", "v2");

    tc_cache *a = outage_cache(server.port, 0);
    REQUIRE(a != NULL);
    int ok;
    IT_WAIT_UNTIL(ok, it_bus_connected(a), IT_DEADLINE_MS);
    REQUIRE(ok);
    readers_start(&bg, a);
    CHECK_EQ_INT(read_ok(a, "acct:1", &p, v1).source, TC_SRC_LOADER);
    CHECK_EQ_INT(read_ok(a, "acct:1", &p, v1).source, TC_SRC_L1);

    REQUIRE(it_server_kill(&server) == 0);

    /* The bus notices; from then on L1 cannot be trusted and is bypassed. */
    IT_WAIT_UNTIL(ok, !it_bus_connected(a), IT_DEADLINE_MS);
    CHECK(ok);
    int loads = atomic_load(&src.loads);
    CHECK_EQ_INT(read_ok(a, "acct:1", &p, v1).source, TC_SRC_LOADER);
    CHECK_EQ_INT(read_ok(a, "acct:1", &p, v1).source, TC_SRC_LOADER);
    CHECK_EQ_INT(atomic_load(&src.loads), loads + 2);

    /* Reads keep being answered by the loader while the breaker opens. */
    int64_t end = it_now_ms() + IT_DEADLINE_MS;
    while (!metrics(a).breaker_open && it_now_ms() < end)
        CHECK_EQ_INT(read_ok(a, "acct:1", &p, v1).source, TC_SRC_LOADER);
    tc_metrics m = metrics(a);
    CHECK_EQ_INT(m.breaker_open, 1);
    CHECK(m.breaker_opens >= 1);
    CHECK(m.redis_errors >= 3);
    CHECK_EQ_INT(m.bus_connected, 0);

    /* Every other call returns promptly too. */
    tc_result res;
    int64_t t0 = it_now_ms();
    CHECK_EQ_INT(tc_get(a, "acct:1", &p, &res), TC_ENOTFOUND);
    check_bound(it_now_ms() - t0, "tc_get");
    t0 = it_now_ms();
    CHECK_EQ_INT(tc_peek(a, "acct:1", &p, &res), TC_ENOTFOUND); /* L1 is bypassed */
    check_bound(it_now_ms() - t0, "tc_peek");
    t0 = it_now_ms();
    int rc = tc_set(a, "acct:9", "nine", 4, &p);
    CHECK(rc == 0 || rc == TC_EREDIS);
    check_bound(it_now_ms() - t0, "tc_set");

    /* Mutate the source of truth and invalidate while Redis is down. */
    it_source_set(&src, "v2");
    t0 = it_now_ms();
    CHECK_EQ_INT(tc_invalidate_tag(a, TAG), TC_EREDIS);
    check_bound(it_now_ms() - t0, "tc_invalidate_tag");
    CHECK(metrics(a).pending_invalidations > 0);
    t0 = it_now_ms();
    CHECK_EQ_INT(tc_invalidate_key(a, "acct:2"), TC_EREDIS);
    CHECK_EQ_INT(tc_delete(a, "acct:3"), TC_EREDIS);
    CHECK_EQ_INT(tc_clear(a), TC_EREDIS);
    check_bound(it_now_ms() - t0, "three invalidations");
    CHECK(metrics(a).pending_invalidations > 0);
    CHECK_EQ_INT(read_ok(a, "acct:1", &p, v2).source, TC_SRC_LOADER);

    /* A cache created now starts anyway, with the loader behind it. */
    t0 = it_now_ms();
    tc_cache *c = outage_cache(server.port, 0);
    check_bound(it_now_ms() - t0, "tc_cache_create");
    REQUIRE(c != NULL);
    CHECK_EQ_INT(read_ok(c, "acct:1", &p, v2).source, TC_SRC_LOADER);

    /* Back, empty. The bus resubscribes; the pending invalidations are replayed. */
    REQUIRE(it_server_restart(&server) == 0);
    IT_WAIT_UNTIL(ok, it_bus_connected(a) && it_bus_connected(c), IT_DEADLINE_MS);
    CHECK(ok);
    end = it_now_ms() + IT_DEADLINE_MS;
    while ((metrics(a).pending_invalidations > 0 || metrics(a).breaker_open) && it_now_ms() < end) {
        read_ok(a, "acct:1", &p, v2);
        it_sleep_ms(20);
    }
    m = metrics(a);
    CHECK_EQ_INT(m.pending_invalidations, 0);
    CHECK_EQ_INT(m.breaker_open, 0);
    CHECK(m.bus_reconnects >= 1);
    /* Nothing stale, and L1 trusted again (once the lease is back). */
    IT_WAIT_UNTIL(ok, it_l1_trusted(a) && it_l1_trusted(c), IT_DEADLINE_MS);
    CHECK(ok);
    read_ok(a, "acct:1", &p, v2);
    CHECK_EQ_INT(read_ok(a, "acct:1", &p, v2).source, TC_SRC_L1);
    read_ok(c, "acct:1", &p, v2);
    CHECK_EQ_INT(read_ok(c, "acct:1", &p, v2).source, TC_SRC_L1);
    readers_stop(&bg);

    t0 = it_now_ms();
    tc_cache_destroy(c);
    tc_cache_destroy(a);
    check_bound(it_now_ms() - t0, "tc_cache_destroy x2");
    it_server_stop(&server);
}

static void test_destroy_while_redis_down(void)
{
    static it_source src;
    it_server server;
    REQUIRE(it_server_start(&server) == 0);
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, 60000, 60000, TAG);
    tc_cache *a = outage_cache(server.port, 0);
    REQUIRE(a != NULL);
    char v1[64];
    it_expect(v1, sizeof(v1), "acct:1", "v1");
    read_ok(a, "acct:1", &p, v1);
    REQUIRE(it_server_kill(&server) == 0);
    read_ok(a, "acct:1", &p, v1);
    int64_t t0 = it_now_ms();
    tc_cache_destroy(a);
    check_bound(it_now_ms() - t0, "tc_cache_destroy");
    it_server_stop(&server);
}

static void test_single_instance_keeps_l1_while_redis_down(void)
{
    static it_source src;
    it_server server;
    REQUIRE(it_server_start(&server) == 0);
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, 60000, 60000, TAG);
    char v1[64], v2[64];
    it_expect(v1, sizeof(v1), "acct:1", "v1");
    it_expect(v2, sizeof(v2), "acct:1", "v2");
    tc_cache *s = outage_cache(server.port, 1);
    REQUIRE(s != NULL);
    CHECK_EQ_INT(read_ok(s, "acct:1", &p, v1).source, TC_SRC_LOADER);
    CHECK_EQ_INT(read_ok(s, "acct:1", &p, v1).source, TC_SRC_L1);
    CHECK_EQ_INT(metrics(s).bus_connected, 0); /* no bus at all: nobody else writes */

    REQUIRE(it_server_kill(&server) == 0);
    int loads = atomic_load(&src.loads);
    /* Trip the breaker with misses on other keys; L1 answers throughout. */
    int64_t end = it_now_ms() + IT_DEADLINE_MS;
    for (int i = 0; !metrics(s).breaker_open && it_now_ms() < end; i++) {
        char other[32], want[64];
        snprintf(other, sizeof(other), "acct:x%d", i);
        it_expect(want, sizeof(want), other, "v1");
        read_ok(s, other, &p, want);
        CHECK_EQ_INT(read_ok(s, "acct:1", &p, v1).source, TC_SRC_L1);
        loads++;
    }
    CHECK_EQ_INT(metrics(s).breaker_open, 1);
    for (int i = 0; i < 20; i++)
        CHECK_EQ_INT(read_ok(s, "acct:1", &p, v1).source, TC_SRC_L1);
    CHECK_EQ_INT(atomic_load(&src.loads), loads);

    /* An invalidation still applies here at once; L1 keeps working with the new value. */
    it_source_set(&src, "v2");
    CHECK_EQ_INT(tc_invalidate_tag(s, TAG), TC_EREDIS);
    CHECK(metrics(s).pending_invalidations > 0);
    CHECK_EQ_INT(read_ok(s, "acct:1", &p, v2).source, TC_SRC_LOADER);
    CHECK_EQ_INT(read_ok(s, "acct:1", &p, v2).source, TC_SRC_L1);

    REQUIRE(it_server_restart(&server) == 0);
    end = it_now_ms() + IT_DEADLINE_MS;
    for (int i = 0; metrics(s).pending_invalidations > 0 && it_now_ms() < end; i++) {
        char other[32], want[64];
        snprintf(other, sizeof(other), "acct:y%d", i); /* an L1 miss reaches for L2 */
        it_expect(want, sizeof(want), other, "v2");
        read_ok(s, other, &p, want);
        it_sleep_ms(20);
    }
    CHECK_EQ_INT(metrics(s).pending_invalidations, 0);
    CHECK_EQ_INT(read_ok(s, "acct:1", &p, v2).source, TC_SRC_L1);
    tc_cache_destroy(s);
    it_server_stop(&server);
}

/* One run of the CLIENT PAUSE scenario, with its own key and tag.
 *   a_reads_first 0: after Redis answers again, instance A stays idle; its pending
 *                    invalidation must still be replayed (pending back to 0) on its own:
 *                    by its bus thread (bus_tick), the only thing running in A.
 *   a_reads_first 1: A reads the key through L2 (NO_L1) the moment Redis answers: the
 *                    replay must come before that L2 read, so A never gets the old record.
 *                    A is single_instance here: no bus, so no bus thread that could replay
 *                    first; only the replay on the read's own path (l2_usable) can save it.
 * Returns 1 when Redis was still paused when the invalidation was made (the scenario ran),
 * 0 when this machine was too slow to reach it within the pause (the caller retries with a
 * longer pause: slowness is never a verdict). */
static int pause_scenario(it_server *srv, redisContext *insp, int a_reads_first, int attempt,
                          int pause_ms)
{
    static it_source sources[2][3];
    it_source *src = &sources[a_reads_first][attempt];
    char key[32], tag[32], tagkey[128], valkey[128], v1[64], v2[64];
    snprintf(key, sizeof(key), "acct:p%d%d", a_reads_first, attempt);
    snprintf(tag, sizeof(tag), "team:p%d%d", a_reads_first, attempt);
    snprintf(tagkey, sizeof(tagkey), "%s~t:%s", prefix, tag);
    snprintf(valkey, sizeof(valkey), "%s%s", prefix, key);
    it_source_init(src, "v1");
    it_expect(v1, sizeof(v1), key, "v1");
    it_expect(v2, sizeof(v2), key, "v2");
    tc_policy p = it_policy(src, 60000, 60000, tag);
    tc_policy p_no_l1 = p;
    p_no_l1.flags = TC_POLICY_NO_L1;

    tc_cache *a = outage_cache(srv->port, a_reads_first), *holder = outage_cache(srv->port, 0);
    REQUIRE(a != NULL && holder != NULL);
    int ok;
    IT_WAIT_UNTIL(ok, (a_reads_first || it_bus_connected(a)) && it_bus_connected(holder),
                  IT_DEADLINE_MS);
    REQUIRE(ok);
    CHECK_EQ_INT(read_ok(a, key, &p, v1).source, TC_SRC_LOADER);
    CHECK_EQ_INT(read_ok(holder, key, &p, v1).source, TC_SRC_L2);
    CHECK_EQ_INT(read_ok(holder, key, &p, v1).source, TC_SRC_L1);
    char before[32], after[32];
    it_rstr(insp, before, sizeof(before), "GET %s", tagkey);
    CHECK(before[0] != '\0');
    /* A control key, not invalidated: Redis keeps serving it after the pause. */
    char ctl[32], ctl_v1[64];
    snprintf(ctl, sizeof(ctl), "ctl:p%d%d", a_reads_first, attempt);
    it_expect(ctl_v1, sizeof(ctl_v1), ctl, "v1");
    tc_policy p_ctl = it_policy(src, 60000, 60000, NULL);
    CHECK_EQ_INT(read_ok(a, ctl, &p_ctl, ctl_v1).source, TC_SRC_LOADER);

    /* Redis stops answering, keeping its data. */
    char reply[16];
    REQUIRE(it_server_pause(srv, pause_ms) == 0);
    int64_t paused_at = it_now_ms();
    it_source_set(src, "v2");
    int64_t t0 = it_now_ms();
    int rc = tc_invalidate_tag(a, tag);
    int64_t took = it_now_ms() - t0;
    if (rc == 0 && t0 + 50 >= paused_at + pause_ms) { /* too slow to see the pause */
        tc_cache_destroy(a);
        tc_cache_destroy(holder);
        return 0;
    }
    CHECK_EQ_INT(rc, TC_EREDIS);
    check_bound(took, "tc_invalidate_tag on a paused Redis");
    CHECK(metrics(a).pending_invalidations > 0);

    /* Redis answers again, with the old record and the old tag version still there. */
    struct timeval tv = {(pause_ms + IT_DEADLINE_MS) / 1000, 0};
    redisSetTimeout(insp, tv);
    it_rstr(insp, reply, sizeof(reply), "PING");
    CHECK_EQ_STR(reply, "PONG");
    tv.tv_sec = 5;
    redisSetTimeout(insp, tv);
    /* The old record is still there: only a moved tag version keeps it from being served
     * (the timed-out command itself was dropped by Redis with its closed connection). */
    CHECK_EQ_INT(it_rint(insp, "EXISTS %s", valkey), 1);

    if (a_reads_first) {
        /* A's first L2 read comes after its replay: the old record matches the old tag
         * version, so reading L2 first would answer v1. */
        CHECK(read_ok(a, key, &p_no_l1, v2).source != TC_SRC_L1);
    }
    int replayed;
    IT_WAIT_UNTIL(replayed, metrics(a).pending_invalidations == 0, IT_DEADLINE_MS);
    if (!CHECK(replayed))
        fprintf(stderr, "    a %s instance never replayed its pending invalidation\n",
                a_reads_first ? "reading" : "idle");
    it_rstr(insp, after, sizeof(after), "GET %s", tagkey);
    CHECK(strcmp(after, before) != 0); /* the tag moved in Redis */

    /* Another instance reading L2 never gets the old record; the control key it does. */
    tc_cache *b = outage_cache(srv->port, 0);
    REQUIRE(b != NULL);
    CHECK_EQ_INT(read_ok(b, ctl, &p_ctl, ctl_v1).source, TC_SRC_L2);
    it_read r = it_get(b, key, &p);
    if (!CHECK(r.rc == TC_ENOTFOUND || (r.rc == 0 && strcmp(r.data, v2) == 0)))
        fprintf(stderr, "    a fresh instance read '%s' from L2\n", r.data);
    CHECK_EQ_STR(read_ok(b, key, &p, v2).data, v2);
    tc_cache_destroy(b);

    /* The replay was published too: the instance holding v1 in L1 drops it. */
    it_read first = {.rc = -1};
    r = it_read_until(holder, key, &p, v2, IT_DEADLINE_MS, &first);
    CHECK_EQ_STR(r.data, v2);
    CHECK(first.source != TC_SRC_L1);
    CHECK_EQ_STR(read_ok(a, key, &p, v2).data, v2);
    tc_cache_destroy(a);
    tc_cache_destroy(holder);
    return 1;
}

static void test_pending_invalidation_replayed_before_l2_read(void)
{
    it_server server;
    REQUIRE(it_server_start(&server) == 0);
    redisContext *insp = it_redis(server.port, 0);
    REQUIRE(insp != NULL);
    for (int a_reads_first = 0; a_reads_first < 2; a_reads_first++) {
        int done = 0;
        for (int attempt = 0; attempt < 3 && !done; attempt++) {
            done = pause_scenario(&server, insp, a_reads_first, attempt, 2000 << attempt);
            if (!done)
                fprintf(stderr, "note: the %d ms pause was over before the invalidation\n",
                        2000 << attempt);
        }
        CHECK(done);
    }
    redisFree(insp);
    it_server_stop(&server);
}

int main(void)
{
    snprintf(prefix, sizeof(prefix), "it-outage-%ld:", (long)getpid());
    test_redis_killed_then_restarted_empty();
    test_destroy_while_redis_down();
    test_single_instance_keeps_l1_while_redis_down();
    test_pending_invalidation_replayed_before_l2_read();
    return check_report();
}

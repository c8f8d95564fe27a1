/* cluster.c: the cache engine on a Redis Cluster, where what the other tests prove needs the
 * cluster's own machinery: redirections, a slot that moves, one master that fails or comes back
 * from a snapshot. Runs on a private cluster of 3 masters and 3 replicas (it moves slots, kills
 * and restores masters). The caches here read the slot map again only when a redirection or a
 * failure says so (cluster_refresh_ms 10 min), so what is tested is the redirection, not a
 * refresh that happened to come first.
 *
 * Proves (docs/cache.md, "On a Redis Cluster"):
 *   - MOVED: a record whose slot moved to another master is read from there (an L2 hit, one
 *     MOVED), and the slot map is corrected: the next read sends no MOVED.
 *   - ASK: while a slot is split between two masters, a record already moved is read from its
 *     new master (ASKING), a record written then goes to the new master, and once the slot is
 *     closed the map follows it.
 *   - the bus's slot (the meta slot) moving: while the meta keys are split (TRYAGAIN) and then
 *     all moved but the instances still listen on the old master (the meta script's fence), an
 *     invalidation is not published where nobody listens: it does not return 0 while an
 *     instance still serves the old value from its L1; once the slot is closed the instances
 *     follow it (sunsubscribe) and the invalidation, replayed, reaches them.
 *   - a new world per master: a master restored from a snapshot brings back a tag counter at
 *     its old value, which would revive a record on another master that the counter's
 *     invalidation had killed; its incarnation check moves the global tag first, so that
 *     record is never served again.
 *   - a pool and a breaker per master: with one master killed, records on the others are still
 *     L2 hits and the dead master's keys come from the loader at once; its breaker opens.
 *   - configuration: a malformed list of nodes, a cluster with sentinels or another database,
 *     are refused; a cluster that does not answer is not an error (the loader answers).
 */
#include "common.h"

#define FRESH_MS 600000u
#define NEVER_MS 600000 /* cluster_refresh_ms: only redirections and failures refresh */

static char prefix[64];
static tct_cluster *cl = &it__own_cluster;

static tc_cache *cl_cache(int single_instance, int timeout_ms)
{
    tc_config cfg;
    it_config(&cfg, 0, 0, prefix);
    cfg.cluster_refresh_ms = NEVER_MS;
    cfg.single_instance = single_instance;
    cfg.redis_timeout_ms = timeout_ms;
    tc_cache *c = it_cache(&cfg);
    REQUIRE(c != NULL);
    int ok = 1;
    if (!single_instance)
        IT_WAIT_UNTIL(ok, it_l1_trusted(c), IT_DEADLINE_MS);
    REQUIRE(ok);
    return c;
}

static tc_metrics metrics(tc_cache *c)
{
    tc_metrics m;
    tc_metrics_snapshot(c, &m);
    return m;
}

/* An integer reply of a command routed by the test (tct_cluster_command), or LLONG_MIN. */
static long long ask_int(const char *fmt, const char *key)
{
    redisReply *rep = tct_cluster_command(cl, fmt, key);
    long long v = rep != NULL && rep->type == REDIS_REPLY_INTEGER ? rep->integer : LLONG_MIN;
    freeReplyObject(rep);
    return v;
}

/* The slot of a Redis key (the cluster's own CLUSTER KEYSLOT) and the node serving it. */
static unsigned slot_of(const char *rkey)
{
    long long slot = ask_int("CLUSTER KEYSLOT %s", rkey);
    REQUIRE(slot >= 0 && slot < 16384);
    return (unsigned)slot;
}

static int master_of(const char *rkey)
{
    return tct_cluster_master_of(cl, slot_of(rkey));
}

/* A master other than the ones given (-1: none). */
static int master_other_than(int a, int b)
{
    for (unsigned s = 0; s < 16384; s += 512) {
        int m = tct_cluster_master_of(cl, s);
        if (m >= 0 && m != a && m != b)
            return m;
    }
    return -1;
}

/* "<fmt with %d>" for the first d whose Redis key (prefix + infix + name) is on master
 * `want` (or, want < 0, on none of avoid[0..2]). */
static void name_on(char *out, size_t n, const char *fmt, const char *infix, int want,
                    const int *avoid)
{
    for (int d = 0; d < 100000; d++) {
        char rkey[256];
        snprintf(out, n, fmt, d);
        snprintf(rkey, sizeof(rkey), "%s%s%s", prefix, infix, out);
        int m = master_of(rkey);
        if (want >= 0 ? m == want : (m != avoid[0] && m != avoid[1] && m != avoid[2]))
            return;
    }
    REQUIRE(!"no name found on that master");
}

/* A master that serves neither the meta slot nor the global tag (the one a test breaks). */
static int master_apart(void)
{
    char meta[256], global[256];
    snprintf(meta, sizeof(meta), "%s~{%smeta}seq", prefix, prefix);
    snprintf(global, sizeof(global), "%s~t:*", prefix);
    return master_other_than(master_of(meta), master_of(global));
}

/* "<fmt with %d>" for the first d whose record and own counter are both away from master x. */
static void key_away_from(char *out, size_t n, const char *fmt, int x)
{
    for (int d = 0; d < 100000; d++) {
        char rkey[256], own[256];
        snprintf(out, n, fmt, d);
        snprintf(rkey, sizeof(rkey), "%s%s", prefix, out);
        snprintf(own, sizeof(own), "%s~t:#%s", prefix, out);
        if (master_of(rkey) != x && master_of(own) != x)
            return;
    }
    REQUIRE(!"no key found away from that master");
}

/* ---- MOVED ------------------------------------------------------------------------------- */

static void test_moved_is_followed_and_the_map_updated(void)
{
    static it_source src;
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, FRESH_MS, 0, "mv");
    p.flags = TC_POLICY_NO_L1;
    tc_cache *a = cl_cache(1, 1000);
    CHECK_EQ_INT(it_get_or_load(a, "mv:1", &p).source, TC_SRC_LOADER);
    CHECK_EQ_INT(it_get(a, "mv:1", &p).source, TC_SRC_L2);

    char rkey[128];
    snprintf(rkey, sizeof(rkey), "%smv:1", prefix);
    int from = master_of(rkey), to = master_other_than(from, -1);
    REQUIRE(tct_cluster_move_slot(cl, slot_of(rkey), to, 0) == 0);
    uint64_t moved = metrics(a).cluster_moved;
    it_read r = it_get(a, "mv:1", &p);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(r.source, TC_SRC_L2); /* read from the new master */
    CHECK_EQ_STR(r.data, "mv:1=v1");
    CHECK(metrics(a).cluster_moved >= moved + 1);
    moved = metrics(a).cluster_moved;
    CHECK_EQ_INT(it_get(a, "mv:1", &p).source, TC_SRC_L2);
    CHECK_EQ_INT(metrics(a).cluster_moved, moved); /* the map knows now */
    CHECK_EQ_INT(atomic_load(&src.loads), 1);
    tc_cache_destroy(a);
}

/* ---- ASK --------------------------------------------------------------------------------- */

/* 1 when key exists on node i, asked with ASKING (it may be importing the slot). */
static int exists_asking(int i, const char *rkey)
{
    redisContext *r = it_redis(cl->node[i].port, 0);
    REQUIRE(r != NULL);
    freeReplyObject(redisCommand(r, "ASKING"));
    long long n = it_rint(r, "EXISTS %s", rkey);
    redisFree(r);
    return n == 1;
}

static void test_ask_is_followed_while_a_slot_is_split(void)
{
    static it_source src;
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, FRESH_MS, 0, "ask");
    p.flags = TC_POLICY_NO_L1;
    tc_cache *a = cl_cache(1, 1000);
    /* two keys of one slot (a hash tag): one moves first, the other is written meanwhile */
    CHECK_EQ_INT(it_get_or_load(a, "ask:{k}1", &p).source, TC_SRC_LOADER);
    char rkey1[128], rkey2[128];
    snprintf(rkey1, sizeof(rkey1), "%sask:{k}1", prefix);
    snprintf(rkey2, sizeof(rkey2), "%sask:{k}2", prefix);
    unsigned slot = slot_of(rkey1);
    int from = master_of(rkey1), to = master_other_than(from, -1);
    REQUIRE(tct_cluster_slot_open(cl, slot, to) == 0);
    REQUIRE(tct_cluster_slot_migrate(cl, slot, to, rkey1) == 0);

    uint64_t asked = metrics(a).cluster_ask;
    it_read r = it_get(a, "ask:{k}1", &p); /* the old master says ASK */
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(r.source, TC_SRC_L2);
    CHECK(metrics(a).cluster_ask >= asked + 1);
    CHECK_EQ_INT(tc_set(a, "ask:{k}2", "two", 3, &p), 0); /* missing there: written where it goes */
    CHECK(exists_asking(to, rkey2));
    redisReply *rep = tct_cluster_command(cl, "EXISTS %s", rkey2); /* not on the old one: ASK */
    CHECK(rep != NULL && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "ASK ", 4) == 0);
    freeReplyObject(rep);

    /* the rest of the slot (the keys' own counters: the same hash tag), then closed */
    REQUIRE(tct_cluster_slot_migrate(cl, slot, to, NULL) == 0);
    REQUIRE(tct_cluster_slot_close(cl, slot, to) == 0);
    uint64_t moved = metrics(a).cluster_moved;
    r = it_get(a, "ask:{k}2", &p);
    CHECK_EQ_INT(r.source, TC_SRC_L2);
    CHECK_EQ_STR(r.data, "two");
    CHECK(metrics(a).cluster_moved >= moved + 1); /* the slot is the new master's now */
    CHECK_EQ_INT(atomic_load(&src.loads), 1);
    tc_cache_destroy(a);
}

/* ---- the meta slot moving: TRYAGAIN, the fence, the bus following ------------------------- */

static void test_bus_slot_moving_never_returns_an_unseen_invalidation(void)
{
    static it_source src;
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, FRESH_MS, 0, "team:m");
    tc_cache *w = cl_cache(0, 300), *b = cl_cache(0, 1000);
    CHECK_EQ_INT(tc_invalidate_tag(w, "warm-up"), 0); /* the sequence key exists */
    char v1[64], v2[64];
    it_expect(v1, sizeof(v1), "doc:m", "v1");
    it_expect(v2, sizeof(v2), "doc:m", "v2");
    it_get_or_load(b, "doc:m", &p);
    CHECK_EQ_INT(it_get_or_load(b, "doc:m", &p).source, TC_SRC_L1);

    char seq[256], members[256];
    snprintf(seq, sizeof(seq), "%s~{%smeta}seq", prefix, prefix);
    snprintf(members, sizeof(members), "%s~{%smeta}members", prefix, prefix);
    unsigned slot = slot_of(seq);
    int from = master_of(seq), to = master_other_than(from, -1);
    REQUIRE(ask_int("EXISTS %s", seq) == 1 && ask_int("EXISTS %s", members) == 1);
    REQUIRE(tct_cluster_slot_open(cl, slot, to) == 0);

    /* The sequence moved, the members not yet: the meta script's keys are split. */
    REQUIRE(tct_cluster_slot_migrate(cl, slot, to, seq) == 0);
    it_source_set(&src, "v2");
    uint64_t retries = metrics(w).cluster_retries;
    int rc = tc_invalidate_tag(w, "team:m");
    CHECK_EQ_INT(rc, TC_EREDIS); /* not done, and said so */
    CHECK(metrics(w).cluster_retries > retries);
    if (!CHECK(rc != 0 || strcmp(it_get_or_load(b, "doc:m", &p).data, v2) == 0))
        fprintf(stderr, "    an invalidation returned 0 while b still answers v1\n");

    /* Both moved: the script runs on the new master, where nobody listens yet. */
    REQUIRE(tct_cluster_slot_migrate(cl, slot, to, NULL) == 0);
    retries = metrics(w).cluster_retries;
    rc = tc_invalidate_tag(w, "team:m");
    CHECK_EQ_INT(rc, TC_EREDIS);
    CHECK(metrics(w).cluster_retries > retries); /* fenced */
    it_read r = it_get_or_load(b, "doc:m", &p);
    if (!CHECK(rc != 0 || strcmp(r.data, v2) == 0))
        fprintf(stderr, "    an invalidation returned 0 while b still answers %s (from %s)\n",
                r.data, it_source_name(r.source));

    /* The slot is closed: both buses follow it; the pending invalidation is replayed. */
    REQUIRE(tct_cluster_slot_close(cl, slot, to) == 0);
    r = it_read_until(b, "doc:m", &p, v2, IT_DEADLINE_MS, NULL);
    CHECK_EQ_STR(r.data, v2);
    int ok;
    IT_WAIT_UNTIL(ok, it_pending(w) == 0 && it_l1_trusted(w) && it_l1_trusted(b),
                  IT_DEADLINE_MS);
    CHECK(ok);
    CHECK(metrics(b).bus_reconnects >= 1);
    /* and the bus works there: a write now reaches b's L1 before it returns */
    it_get_or_load(b, "doc:m", &p);
    CHECK_EQ_INT(it_get_or_load(b, "doc:m", &p).source, TC_SRC_L1);
    it_source_set(&src, "v3");
    CHECK_EQ_INT(tc_invalidate_tag(w, "team:m"), 0);
    char v3[64];
    it_expect(v3, sizeof(v3), "doc:m", "v3");
    CHECK_EQ_STR(it_get_or_load(b, "doc:m", &p).data, v3);
    CHECK_EQ_INT(metrics(w).ack_timeouts, 0); /* b acknowledged it */
    tc_cache_destroy(w);
    tc_cache_destroy(b);
}

/* ---- one master back from a snapshot ------------------------------------------------------ */

static void test_restored_master_does_not_revive_records_elsewhere(void)
{
    static it_source src;
    it_source_init(&src, "v1");
    /* the tag on master x, the record (and its own counter) on another */
    int x = master_apart();
    REQUIRE(x >= 0);
    char tag[32], key[32];
    int avoid[3] = {x, -1, -1};
    name_on(tag, sizeof(tag), "grp:%d", "~t:", x, avoid);
    key_away_from(key, sizeof(key), "doc:r%d", x);
    tc_policy p = it_policy(&src, FRESH_MS, 0, tag);
    tc_cache *a = cl_cache(0, 1000);
    CHECK_EQ_INT(it_get_or_load(a, key, &p).source, TC_SRC_LOADER);
    REQUIRE(tct_redis_snapshot(&cl->node[x]) == 0); /* the tag as it is now */

    it_source_set(&src, "v2");
    CHECK_EQ_INT(tc_invalidate_tag(a, tag), 0);
    tc_cache *c = cl_cache(1, 1000);
    CHECK_EQ_INT(it_get(c, key, &p).rc, TC_ENOTFOUND); /* the record is dead */
    tc_cache_destroy(c);

    /* x comes back from the snapshot: the tag at its old value, with x's old marker */
    REQUIRE(tct_redis_restore(&cl->node[x]) == 0);
    REQUIRE(tct_cluster_wait_ok(cl, 60000) == 0);
    c = cl_cache(1, 1000);
    it_read r = it_get(c, key, &p);
    if (!CHECK(r.rc == TC_ENOTFOUND))
        fprintf(stderr, "    a record killed before the restore was served: '%s'\n", r.data);
    char v2[64];
    it_expect(v2, sizeof(v2), key, "v2");
    CHECK_EQ_STR(it_get_or_load(c, key, &p).data, v2);
    tc_cache_destroy(c);
    int ok;
    IT_WAIT_UNTIL(ok, strcmp(it_get_or_load(a, key, &p).data, v2) == 0, IT_DEADLINE_MS);
    CHECK(ok);
    tc_cache_destroy(a);
}

/* ---- a breaker per master ----------------------------------------------------------------- */

static void test_a_dead_master_costs_only_its_keys(void)
{
    static it_source src;
    it_source_init(&src, "v1");
    int x = master_apart();
    REQUIRE(x >= 0);
    /* a key whose record and counters are all away from x, and one whose record is on x */
    char away[32], there[32], tag[32];
    int avoid[3] = {x, -1, -1};
    name_on(tag, sizeof(tag), "grp:b%d", "~t:", -1, avoid);
    key_away_from(away, sizeof(away), "doc:b%d", x);
    name_on(there, sizeof(there), "doc:t%d", "", x, avoid);
    tc_policy p = it_policy(&src, FRESH_MS, 0, tag);
    p.flags = TC_POLICY_NO_L1;
    tc_cache *a = cl_cache(1, 200);
    CHECK_EQ_INT(it_get_or_load(a, away, &p).source, TC_SRC_LOADER);
    CHECK_EQ_INT(it_get_or_load(a, there, &p).source, TC_SRC_LOADER);
    CHECK_EQ_INT(it_get_or_load(a, away, &p).source, TC_SRC_L2);

    /* x dies; its replica takes over only after the node timeout (5 s): not yet */
    REQUIRE(tct_cluster_kill(cl, x) == 0);
    int64_t end = it_now_ms() + IT_DEADLINE_MS;
    while (!metrics(a).breaker_open && it_now_ms() < end) {
        it_read r = it_get_or_load(a, there, &p);
        CHECK_EQ_INT(r.rc, 0);
        CHECK_EQ_INT(r.source, TC_SRC_LOADER);
    }
    CHECK_EQ_INT(metrics(a).breaker_open, 1);
    it_read r = it_get_or_load(a, away, &p);
    CHECK_EQ_INT(r.source, TC_SRC_L2); /* the other masters still answer */
    r = it_get_or_load(a, there, &p);  /* x's breaker is open: no wait at all */
    CHECK_EQ_INT(r.source, TC_SRC_LOADER);
    CHECK(r.took_ms < IT_CALL_BOUND_MS);

    REQUIRE(tct_cluster_restart(cl, x) == 0); /* back before a failover, empty */
    REQUIRE(tct_cluster_wait_ok(cl, 60000) == 0);
    tc_cache_destroy(a);
}

/* ---- configuration ----------------------------------------------------------------------- */

static void test_configuration(void)
{
    static const char *const bad[] = {"", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:7000,", ":7000",
                                      "127.0.0.1:x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tc_config cfg;
        it_config(&cfg, 0, 0, prefix);
        cfg.cluster_nodes = bad[i];
        int err = 0;
        if (!CHECK(tc_cache_create(&cfg, &err) == NULL && err == TC_EINVAL))
            fprintf(stderr, "    cluster_nodes '%s' accepted\n", bad[i]);
    }
    tc_config cfg;
    it_config(&cfg, 0, 0, prefix);
    cfg.sentinels = "127.0.0.1:26379";
    cfg.sentinel_master = "m";
    int err = 0;
    CHECK(tc_cache_create(&cfg, &err) == NULL && err == TC_EINVAL);

    /* nobody answers there: not an error; the loader answers */
    it_config(&cfg, 0, 0, prefix);
    char nobody[32];
    snprintf(nobody, sizeof(nobody), "127.0.0.1:%d", tct_free_port());
    cfg.cluster_nodes = nobody;
    cfg.single_instance = 1;
    tc_cache *c = it_cache(&cfg);
    REQUIRE(c != NULL);
    static it_source src;
    it_source_init(&src, "v1");
    tc_policy p = it_policy(&src, FRESH_MS, 0, NULL);
    it_read r = it_get_or_load(c, "doc:n", &p);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(r.source, TC_SRC_LOADER);
    CHECK_EQ_INT(tc_ready(c, 0), TC_EREDIS);
    tc_cache_destroy(c);
}

int main(void)
{
    setenv("TC_TEST_CLUSTER", "1", 1); /* this file runs on a cluster only */
    snprintf(prefix, sizeof(prefix), "it-cl-%ld:", (long)getpid());
    REQUIRE(it_private_cluster() > 0);

    test_moved_is_followed_and_the_map_updated();
    test_ask_is_followed_while_a_slot_is_split();
    test_bus_slot_moving_never_returns_an_unseen_invalidation();
    test_restored_master_does_not_revive_records_elsewhere();
    test_a_dead_master_costs_only_its_keys();
    test_configuration();
    return check_report();
}

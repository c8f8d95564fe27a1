/* keys.c: where the cache engine puts its data in a real, shared Redis — and what it leaves
 * alone. Runs against its own redis-server (it reads INFO commandstats and database 0).
 *
 * Proves, from DESIGN.md "The cache engine: what it must get right":
 *   8  every key (and the bus channel) is under the configured prefix, in the configured
 *      database index (3; database 0 stays untouched); keys of another application in the
 *      same database — a job queue list, a hash, a string with a TTL — keep their type, value
 *      and TTL through get_or_load, get, set, delete, invalidate_tag, invalidate_key and
 *      clear; nothing ever issues FLUSHDB or FLUSHALL, and clear does not scan the keyspace.
 *   2  an entry's Redis TTL is its fresh + stale time; its tag counters live at least as
 *      long as it does, and start at a random epoch, not at 1.
 *   1  L2: a second instance (its own L1) is answered from Redis with the same bytes and
 *      hash (source L2), without running its loader; then from its own L1.
 *   8  tc_rate_take (the shared login limit): its bucket is <prefix>~rl:<name> in the
 *      configured database, with a TTL; two instances share it; the burst+1st take is refused.
 * And values stored compressed (issue 11, part 5): a value of at least l2_compress_min_bytes
 * is stored as a TC2 record (a zstd frame, much smaller than the value), and another
 * instance without L1 is answered from it with the same bytes and hash; with compression
 * off the record is TC1, as before, and is read the same way; a compressed record corrupted
 * in Redis is a miss (the loader runs), counted in l2_decode_errors, and the load writes a
 * good record over it.
 *
 * keys@cluster: the same on a private Redis Cluster (3 masters, 3 replicas), where there is
 * one database: database 0 holds everything, a cache asking for database 3 is refused, and
 * the keys documented for a cluster are there instead of ~inc and ~members:<db>: an
 * incarnation marker ~inc{...} for each master the cache talked to, in that master's lowest
 * slot, naming its run_id; ~{<prefix>meta}members; the bus is the shard channel
 * ~{<prefix>meta}bus. Commands are counted on every master.
 */
#include "cache/internal.h" /* tc__record_decode: read the engine's record as stored */
#include "common.h"

#define DB (it_on_cluster() ? 0 : 3) /* a cluster has database 0 only */
#define PREFIX "app1:"
#define FRESH_MS 100000u
#define STALE_MS 200000u

static tct_redis server;
static int port; /* the server's, or a node of the private cluster */
static redisContext *db3, *db0; /* on a cluster, both database 0 */

/* ---- another application's keys, and a snapshot of them ------------------------------ */

typedef struct foreign {
    const char *key;
    char type[16];
    char value[256];
    long long pttl;
} foreign;

static foreign foreigners[] = {{.key = "bull:queue:1"},
                               {.key = "bull:x"},
                               {.key = "other:y"},
                               {.key = "app1"},
                               {.key = "app1-not-ours"}};
#define NFOREIGN (sizeof(foreigners) / sizeof(foreigners[0]))

/* "type|value" of key as one string: lists and hashes joined with ','. */
static void describe(redisContext *r, const char *key, char *type, size_t tn, char *value,
                     size_t vn)
{
    it_rstr(r, type, tn, "TYPE %s", key);
    value[0] = '\0';
    redisReply *rep = NULL;
    if (strcmp(type, "string") == 0)
        rep = it_command(r, "GET %s", key);
    else if (strcmp(type, "list") == 0)
        rep = it_command(r, "LRANGE %s 0 -1", key);
    else if (strcmp(type, "hash") == 0)
        rep = it_command(r, "HGETALL %s", key);
    if (rep == NULL)
        return;
    if (rep->type == REDIS_REPLY_STRING) {
        snprintf(value, vn, "%s", rep->str);
    } else if (rep->type == REDIS_REPLY_ARRAY) {
        size_t used = 0;
        for (size_t i = 0; i < rep->elements && used < vn; i++)
            used += (size_t)snprintf(value + used, vn - used, "%s%s", i ? "," : "",
                                     rep->element[i]->str);
    }
    freeReplyObject(rep);
}

static void setup_foreign_keys(void)
{
    freeReplyObject(it_command(db3, "RPUSH bull:queue:1 job-1 job-2 job-3"));
    freeReplyObject(it_command(db3, "HSET bull:x state active attempts 2"));
    freeReplyObject(it_command(db3, "SET other:y hello PX 600000"));
    /* Share the prefix's first characters without being under it. */
    freeReplyObject(it_command(db3, "SET app1 bare"));
    freeReplyObject(it_command(db3, "SADD app1-not-ours m1 m2"));
    for (size_t i = 0; i < NFOREIGN; i++) {
        foreign *f = &foreigners[i];
        describe(db3, f->key, f->type, sizeof(f->type), f->value, sizeof(f->value));
        f->pttl = it_rint(db3, "PTTL %s", f->key);
    }
    CHECK_EQ_STR(foreigners[0].type, "list");
    CHECK_EQ_STR(foreigners[1].type, "hash");
    CHECK_EQ_STR(foreigners[2].type, "string");
    CHECK(foreigners[2].pttl > 0);
    if (!it_on_cluster())
        freeReplyObject(redisCommand(db0, "SET db0:marker untouched"));
}

/* Every foreign key has its type, value and TTL (never extended, never dropped). */
static void check_foreign_untouched(const char *after)
{
    for (size_t i = 0; i < NFOREIGN; i++) {
        const foreign *f = &foreigners[i];
        char type[16], value[256];
        describe(db3, f->key, type, sizeof(type), value, sizeof(value));
        long long pttl = it_rint(db3, "PTTL %s", f->key);
        int ok = strcmp(type, f->type) == 0 && strcmp(value, f->value) == 0 &&
                 (f->pttl < 0 ? pttl == f->pttl : (pttl > 0 && pttl <= f->pttl));
        if (!CHECK(ok))
            fprintf(stderr, "    after %s: %s is %s '%s' pttl %lld (was %s '%s' pttl %lld)\n",
                    after, f->key, type, value, pttl, f->type, f->value, f->pttl);
    }
    if (it_on_cluster())
        return; /* one database */
    char v[64];
    it_rstr(db0, v, sizeof(v), "GET db0:marker");
    CHECK_EQ_STR(v, "untouched");
    if (!CHECK(it_rint(db0, "DBSIZE") == 1))
        fprintf(stderr, "    after %s: database 0 holds keys of ours\n", after);
}

static int is_foreign(const char *key)
{
    for (size_t i = 0; i < NFOREIGN; i++)
        if (strcmp(key, foreigners[i].key) == 0)
            return 1;
    return 0;
}

/* Every key of database 3 is either another application's or under the prefix. */
static void check_only_prefixed_keys(const char *after)
{
    size_t n;
    char **keys = it_keys(db3, &n);
    for (size_t i = 0; i < n; i++)
        if (!is_foreign(keys[i]) && !CHECK(it_starts_with(keys[i], PREFIX)))
            fprintf(stderr, "    after %s: key '%s' is outside the prefix\n", after, keys[i]);
    it_free_keys(keys, n);
}

/* ---- the tests ----------------------------------------------------------------------- */

static it_source source_a, source_b;

/* ---- on a cluster: where a key is, per the cluster itself -------------------------------- */

/* The port of the master that serves key's slot (CLUSTER KEYSLOT, CLUSTER SLOTS), and
 * that master's lowest slot; -1 if unknown. */
static int master_of_key(const char *key, long long *lowest)
{
    long long slot = it_rint(db3, "CLUSTER KEYSLOT %s", key);
    redisReply *rep = redisCommand(db3, "CLUSTER SLOTS");
    int master = -1;
    for (size_t i = 0; rep != NULL && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        if (slot >= e->element[0]->integer && slot <= e->element[1]->integer)
            master = (int)e->element[2]->element[1]->integer;
    }
    *lowest = 16384;
    for (size_t i = 0; rep != NULL && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        if (e->element[2]->element[1]->integer == master && e->element[0]->integer < *lowest)
            *lowest = e->element[0]->integer;
    }
    freeReplyObject(rep);
    return master;
}

/* The run_id of the Redis on port. */
static void run_id_of(int on_port, char *out, size_t n)
{
    redisContext *r = it_redis(on_port, 0);
    redisReply *rep = r != NULL ? redisCommand(r, "INFO server") : NULL;
    const char *at = rep != NULL && rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "run_id:")
                                                                    : NULL;
    snprintf(out, n, "%.*s", at != NULL ? (int)strcspn(at + 7, "\r\n") : 0, at != NULL ? at + 7 : "");
    freeReplyObject(rep);
    redisFree(r);
}

/* Exactly the keys documented for a cluster: the value, its tags' counters, the members,
 * and one incarnation marker per master talked to — in that master's lowest slot, naming
 * its process. */
static void check_cluster_keys(void)
{
    static const char *const exact[] = {PREFIX "user:1", PREFIX "~t:*", PREFIX "~t:#user:1",
                                        PREFIX "~t:team:7", PREFIX "~{" PREFIX "meta}members"};
    enum { NEXACT = sizeof(exact) / sizeof(exact[0]) };
    int masters[NEXACT], nmasters = 0;
    for (size_t i = 0; i < NEXACT; i++) {
        if (!CHECK(it_rint(db3, "EXISTS %s", exact[i]) == 1))
            fprintf(stderr, "    missing %s\n", exact[i]);
        long long lowest;
        int m = master_of_key(exact[i], &lowest), k = 0;
        while (k < nmasters && masters[k] != m)
            k++;
        if (k == nmasters)
            masters[nmasters++] = m;
    }
    size_t n, markers = 0, ours = 0;
    char **keys = it_keys(db3, &n);
    for (size_t i = 0; i < n; i++) {
        if (is_foreign(keys[i]))
            continue;
        ours++;
        if (!it_starts_with(keys[i], PREFIX "~inc{"))
            continue;
        markers++;
        long long lowest, slot = it_rint(db3, "CLUSTER KEYSLOT %s", keys[i]);
        int m = master_of_key(keys[i], &lowest);
        char run[64], marked[64];
        run_id_of(m, run, sizeof(run));
        it_rstr(db3, marked, sizeof(marked), "GET %s", keys[i]);
        if (!CHECK(slot == lowest && strcmp(run, marked) == 0 && run[0] != '\0'))
            fprintf(stderr, "    marker %s: slot %lld (master's lowest %lld), names '%s', the "
                    "master is '%s'\n", keys[i], slot, lowest, marked, run);
    }
    it_free_keys(keys, n);
    CHECK_EQ_INT(markers, nmasters);
    CHECK_EQ_INT(ours, NEXACT + markers);
}

static void test_entries_live_under_prefix_in_db_with_ttl(void)
{
    tc_config cfg;
    it_config(&cfg, port, DB, PREFIX);
    tc_cache *a = it_cache(&cfg);
    REQUIRE(a != NULL);
    tc_policy p = it_policy(&source_a, FRESH_MS, STALE_MS, "team:7");

    int64_t t0 = it_now_ms();
    it_read r = it_get_or_load(a, "user:1", &p);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(r.source, TC_SRC_LOADER);
    CHECK_EQ_STR(r.data, "user:1=v1");

    /* Exactly the documented keys: the value, one counter per tag, the marker of the
     * Redis process written through, and the members of the fleet (this instance). */
    if (it_on_cluster())
        check_cluster_keys();
    else {
    static const char *const expected[] = {PREFIX "user:1",    PREFIX "~t:*",
                                           PREFIX "~t:#user:1", PREFIX "~t:team:7",
                                           PREFIX "~inc",      PREFIX "~members:3"};
    enum { NEXPECTED = sizeof(expected) / sizeof(expected[0]) };
    size_t n;
    char **keys = it_keys(db3, &n);
    size_t ours = 0;
    for (size_t i = 0; i < n; i++)
        ours += !is_foreign(keys[i]);
    it_free_keys(keys, n);
    CHECK_EQ_INT(ours, NEXPECTED);
    for (size_t i = 0; i < NEXPECTED; i++)
        if (!CHECK(it_rint(db3, "EXISTS %s", expected[i]) == 1))
            fprintf(stderr, "    missing %s\n", expected[i]);
    }
    check_only_prefixed_keys("get_or_load");
    check_foreign_untouched("get_or_load");

    /* The value is one binary record holding the loaded bytes, hash, times and tags. */
    char type[16];
    it_rstr(db3, type, sizeof(type), "TYPE %s", PREFIX "user:1");
    CHECK_EQ_STR(type, "string");
    redisReply *rep = it_command(db3, "GET %s", PREFIX "user:1");
    REQUIRE(rep != NULL && rep->type == REDIS_REPLY_STRING);
    tc__record rec;
    CHECK_EQ_INT(tc__record_decode(rep->str, rep->len, &rec), 0);
    CHECK(rec.len == strlen("user:1=v1") && memcmp(rec.data, "user:1=v1", rec.len) == 0);
    CHECK(rec.hash == r.hash);
    CHECK_EQ_INT(rec.stale_until - rec.created_ms, FRESH_MS + STALE_MS);
    CHECK_EQ_INT(rec.ntags, 1);
    CHECK(rec.ntags == 1 && rec.taglen[0] == 6 && memcmp(rec.tags[0], "team:7", 6) == 0);
    freeReplyObject(rep);

    /* Redis TTL = fresh + stale, less only the time this test has taken since the load. */
    long long pttl = it_rint(db3, "PTTL %s", PREFIX "user:1");
    int64_t elapsed = it_now_ms() - t0;
    if (!CHECK(pttl <= FRESH_MS + STALE_MS && pttl >= FRESH_MS + STALE_MS - elapsed - 2))
        fprintf(stderr, "    PTTL %lld, want %u - [0, %lld]\n", pttl, FRESH_MS + STALE_MS,
                (long long)elapsed + 2);

    /* Tag counters outlive the entry, and start at a random epoch (not 1). */
    static const char *const tags[] = {PREFIX "~t:*", PREFIX "~t:#user:1", PREFIX "~t:team:7"};
    for (size_t i = 0; i < 3; i++) {
        long long tp = it_rint(db3, "PTTL %s", tags[i]);
        if (!CHECK(tp == -1 || tp >= pttl))
            fprintf(stderr, "    %s PTTL %lld < entry's %lld\n", tags[i], tp, pttl);
        char v[32];
        it_rstr(db3, v, sizeof(v), "GET %s", tags[i]);
        if (!CHECK(strtoll(v, NULL, 10) > 1000000000LL))
            fprintf(stderr, "    %s = '%s': not a random epoch\n", tags[i], v);
    }

    /* Nothing in database 0 but its own marker; the bus channel is under the prefix too
     * (on a cluster: a shard channel of the meta slot, on the master that serves it). */
    if (it_on_cluster()) {
        long long lowest;
        redisContext *meta = it_redis(master_of_key(PREFIX "~{" PREFIX "meta}bus", &lowest), 0);
        REQUIRE(meta != NULL);
        rep = redisCommand(meta, "PUBSUB SHARDCHANNELS *");
        REQUIRE(rep != NULL && rep->type == REDIS_REPLY_ARRAY);
        int bus_seen = 0;
        for (size_t i = 0; i < rep->elements; i++) {
            CHECK(it_starts_with(rep->element[i]->str, PREFIX));
            bus_seen += strcmp(rep->element[i]->str, PREFIX "~{" PREFIX "meta}bus") == 0;
        }
        CHECK_EQ_INT(bus_seen, 1);
        freeReplyObject(rep);
        redisFree(meta);
        tc_cache_destroy(a);
        return;
    }
    CHECK_EQ_INT(it_rint(db0, "DBSIZE"), 1);
    rep = redisCommand(db3, "PUBSUB CHANNELS *");
    REQUIRE(rep != NULL && rep->type == REDIS_REPLY_ARRAY);
    int bus_seen = 0;
    for (size_t i = 0; i < rep->elements; i++) {
        CHECK(it_starts_with(rep->element[i]->str, PREFIX));
        bus_seen += strcmp(rep->element[i]->str, PREFIX "~bus:3") == 0;
    }
    CHECK_EQ_INT(bus_seen, 1);
    freeReplyObject(rep);
    tc_cache_destroy(a);
}

static void test_l2_hit_from_second_instance(void)
{
    tc_config cfg;
    it_config(&cfg, port, DB, PREFIX);
    tc_cache *a = it_cache(&cfg), *b = it_cache(&cfg);
    REQUIRE(a != NULL && b != NULL);
    tc_policy pa = it_policy(&source_a, FRESH_MS, STALE_MS, "team:7");
    tc_policy pb = it_policy(&source_b, FRESH_MS, STALE_MS, "team:7");

    it_read ra = it_get_or_load(a, "user:2", &pa);
    CHECK_EQ_INT(ra.rc, 0);
    CHECK_EQ_STR(ra.data, "user:2=v1");

    /* b's loader would say "b-would-load": it must not run. */
    int loads_b = atomic_load(&source_b.loads);
    it_read rb = it_get_or_load(b, "user:2", &pb);
    CHECK_EQ_INT(rb.rc, 0);
    CHECK_EQ_INT(rb.source, TC_SRC_L2);
    CHECK_EQ_STR(rb.data, ra.data);
    CHECK(rb.hash == ra.hash);
    CHECK_EQ_INT(atomic_load(&source_b.loads), loads_b);

    /* ... and it now sits in b's own L1. */
    rb = it_get_or_load(b, "user:2", &pb);
    CHECK_EQ_INT(rb.source, TC_SRC_L1);
    CHECK_EQ_STR(rb.data, ra.data);
    CHECK(rb.hash == ra.hash);
    CHECK_EQ_INT(atomic_load(&source_b.loads), loads_b);

    tc_metrics m;
    tc_metrics_snapshot(b, &m);
    int user = -1;
    for (int i = 0; i < m.nns; i++)
        if (strcmp(m.ns[i].name, "user") == 0)
            user = i;
    REQUIRE(user >= 0);
    CHECK_EQ_INT(m.ns[user].l2_hits, 1);
    CHECK_EQ_INT(m.ns[user].l1_hits, 1);
    CHECK_EQ_INT(m.ns[user].misses, 0);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

static void test_foreign_keys_untouched_by_every_operation(void)
{
    tc_config cfg;
    it_config(&cfg, port, DB, PREFIX);
    tc_cache *a = it_cache(&cfg);
    REQUIRE(a != NULL);
    tc_policy p = it_policy(&source_a, FRESH_MS, STALE_MS, "team:7");

    it_read r = it_get_or_load(a, "user:3", &p);
    CHECK_EQ_INT(r.rc, 0);
    check_foreign_untouched("get_or_load");

    r = it_get(a, "user:3", &p);
    CHECK_EQ_INT(r.rc, 0);
    check_foreign_untouched("get");

    CHECK_EQ_INT(tc_set(a, "user:4", "four", 4, &p), 0);
    CHECK_EQ_INT(it_rint(db3, "EXISTS %s", PREFIX "user:4"), 1);
    check_foreign_untouched("set");

    CHECK_EQ_INT(tc_delete(a, "user:4"), 0);
    CHECK_EQ_INT(it_rint(db3, "EXISTS %s", PREFIX "user:4"), 0);
    check_foreign_untouched("delete");

    CHECK_EQ_INT(tc_invalidate_tag(a, "team:7"), 0);
    check_foreign_untouched("invalidate_tag");

    CHECK_EQ_INT(tc_invalidate_key(a, "user:3"), 0);
    check_foreign_untouched("invalidate_key");

    /* Tags and keys that look like another application's data are still ours, prefixed. */
    CHECK_EQ_INT(tc_invalidate_tag(a, "bull:queue:1"), 0);
    CHECK_EQ_INT(tc_invalidate_key(a, "bull:x"), 0);
    check_foreign_untouched("invalidate of look-alike names");

    r = it_get_or_load(a, "user:3", &p);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(tc_clear(a), 0);
    check_foreign_untouched("clear");

    /* Cleared means gone from L1 and L2 alike. */
    tc_cache *b = it_cache(&cfg);
    REQUIRE(b != NULL);
    CHECK_EQ_INT(it_get(b, "user:3", &p).rc, TC_ENOTFOUND);
    r = it_get_or_load(a, "user:3", &p);
    CHECK_EQ_INT(r.source, TC_SRC_LOADER);
    check_only_prefixed_keys("every operation");
    check_foreign_untouched("every operation");
    tc_cache_destroy(b);
    tc_cache_destroy(a);
    check_foreign_untouched("destroy");
}

/* calls=N of cmdstat_<cmd> in INFO commandstats of r; 0 when the command never ran, -1 on
 * error. */
static long long calls_on(redisContext *r, const char *cmd)
{
    redisReply *rep = redisCommand(r, "INFO commandstats");
    long long calls = -1;
    if (rep != NULL && rep->type == REDIS_REPLY_STRING) {
        char want[64];
        snprintf(want, sizeof(want), "cmdstat_%s:calls=", cmd);
        const char *at = strstr(rep->str, want);
        calls = at != NULL ? strtoll(at + strlen(want), NULL, 10) : 0;
    }
    freeReplyObject(rep);
    return calls;
}

/* The same over the server, or every master of the cluster. */
static long long command_calls(const char *cmd)
{
    if (!it_on_cluster())
        return calls_on(db0, cmd);
    int ports[16], n = it_masters(db0, ports, 16);
    long long calls = n > 0 ? 0 : -1;
    for (int i = 0; i < n && calls >= 0; i++) {
        redisContext *r = it_redis(ports[i], 0);
        long long c = r != NULL ? calls_on(r, cmd) : -1;
        calls = c >= 0 ? calls + c : -1;
        redisFree(r);
    }
    return calls;
}

static void test_no_flush_and_clear_scans_nothing(void)
{
    tc_config cfg;
    it_config(&cfg, port, DB, PREFIX);
    tc_cache *a = it_cache(&cfg);
    REQUIRE(a != NULL);
    tc_policy p = it_policy(&source_a, FRESH_MS, STALE_MS, "team:7");
    CHECK_EQ_INT(it_get_or_load(a, "user:5", &p).rc, 0);

    long long scans = command_calls("scan"), keys = command_calls("keys");
    CHECK_EQ_INT(tc_clear(a), 0);
    CHECK_EQ_INT(tc_invalidate_tag(a, "team:7"), 0);
    CHECK_EQ_INT(tc_clear(a), 0);
    CHECK_EQ_INT(command_calls("scan"), scans);
    CHECK_EQ_INT(command_calls("keys"), keys);
    tc_cache_destroy(a);

    /* Over the whole test, in this private server: */
    CHECK_EQ_INT(command_calls("flushdb"), 0);
    CHECK_EQ_INT(command_calls("flushall"), 0);
    CHECK(command_calls("get") > 0); /* the stats are there to read */
}

/* tc_rate_take: a bucket under the prefix in the configured database, shared by two
 * instances, with a TTL; refused exactly past the burst. */
static void test_shared_rate_limit(void)
{
    tc_config cfg;
    it_config(&cfg, port, DB, PREFIX);
    tc_cache *a = it_cache(&cfg), *b = it_cache(&cfg);
    REQUIRE(a != NULL && b != NULL);
    int64_t ms = -1;
    /* burst 3, one token a minute: nothing comes back during the test */
    CHECK_EQ_INT(tc_rate_take(a, "login:x", 3, 1, &ms), 1);
    CHECK_EQ_INT(ms, 0);
    CHECK_EQ_INT(tc_rate_take(b, "login:x", 3, 1, &ms), 1);
    CHECK_EQ_INT(tc_rate_take(a, "login:x", 3, 1, &ms), 1);
    CHECK_EQ_INT(tc_rate_take(b, "login:x", 3, 1, &ms), 0);
    CHECK(ms > 55000 && ms <= 60000);
    CHECK_EQ_INT(tc_rate_take(a, "login:x", 3, 1, &ms), 0); /* a refusal takes nothing */
    CHECK(ms > 55000 && ms <= 60000);
    CHECK_EQ_INT(tc_rate_take(a, "login:y", 3, 1, &ms), 1); /* another bucket */
    long long pttl = it_rint(db3, "PTTL %s", PREFIX "~rl:login:x");
    CHECK(pttl > 120000 && pttl <= 180000); /* empty now, full again in three minutes */
    if (!it_on_cluster())
        CHECK_EQ_INT(it_rint(db0, "EXISTS %s", PREFIX "~rl:login:x"), 0);
    check_foreign_untouched("rate_take");

    CHECK_EQ_INT(tc_rate_take(a, "", 3, 1, &ms), TC_EINVAL);
    CHECK_EQ_INT(tc_rate_take(a, "login:x", 0, 1, &ms), TC_EINVAL);
    tc_cache_destroy(a);
    tc_cache_destroy(b);

    /* No Redis configured: it cannot tell, and says so. */
    tc_config_init(&cfg);
    tc_cache *local = it_cache(&cfg);
    REQUIRE(local != NULL);
    CHECK_EQ_INT(tc_rate_take(local, "login:x", 3, 1, &ms), TC_EREDIS);
    tc_cache_destroy(local);
}

/* The log lines of a cache (tc_config.log), counted by what they say. */
static atomic_int budget_full_lines, budget_back_lines;

static void count_lines(void *ctx, int level, const char *component, const char *msg)
{
    if (strstr(msg, "L2 budget reached") != NULL)
        atomic_fetch_add(&budget_full_lines, 1);
    if (strstr(msg, "L2 budget: room again") != NULL)
        atomic_fetch_add(&budget_back_lines, 1);
}

/* A budget of 5 keys: of 10 distinct entries loaded, 5 records reach Redis, the other 5
 * are served all the same (from the loader, then L1), refused and counted, and the log says
 * so once; reads and reads of what is stored create nothing more. */
static void test_l2_budget_bounds_what_is_stored(void)
{
    static const char *const pfx = "it-keys-budget:";
    tc_config cfg;
    it_config(&cfg, port, DB, pfx);
    cfg.l2_budget_keys = 5;
    cfg.log = count_lines;
    tc_cache *c = it_cache(&cfg);
    REQUIRE(c != NULL);
    tc_policy p = it_policy(&source_a, FRESH_MS, STALE_MS, NULL);
    char key[32], want[64];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "item:%d", i);
        it_expect(want, sizeof(want), key, "v1");
        it_read r = it_get_or_load(c, key, &p);
        CHECK_EQ_INT(r.rc, 0);
        CHECK_EQ_STR(r.data, want);
    }
    size_t n, records = 0;
    char **keys = it_keys(db3, &n);
    for (size_t i = 0; i < n; i++)
        records += strncmp(keys[i], "it-keys-budget:item:", 20) == 0;
    it_free_keys(keys, n);
    CHECK_EQ_INT(records, 5);
    tc_metrics m;
    tc_metrics_snapshot(c, &m);
    CHECK_EQ_INT(m.l2_budget_keys, 5);
    CHECK_EQ_INT(m.l2_budget_refusals, 5);
    CHECK_EQ_INT(atomic_load(&budget_full_lines), 1);
    CHECK_EQ_INT(atomic_load(&budget_back_lines), 0);
    tc_cache_destroy(c);
}

/* A cluster has one database: a cache that asks for another is refused at once. */
static void test_cluster_refuses_another_database(void)
{
    tc_config cfg;
    it_config(&cfg, port, 3, PREFIX);
    int err = 0;
    CHECK(tc_cache_create(&cfg, &err) == NULL);
    CHECK_EQ_INT(err, TC_EINVAL);
}

/* ---- values stored compressed ---------------------------------------------------------- */

static atomic_int big_loads;

/* About 3 KB of JSON-like text that names its key. */
static int big_loader(void *ctx, const char *key, tc_buf *out)
{
    atomic_fetch_add(&big_loads, 1);
    for (int i = 0; out->len < 3000; i++)
        if (tc_buf_printf(out, "{\"key\":\"%s\",\"n\":%d,\"text\":\"a post body\"},", key, i) != 0)
            return TC_ELOAD;
    return 0;
}

/* The record stored under key: its first bytes in magic[4], its length. */
static long long stored(const char *key, char magic[4])
{
    redisReply *rep = it_command(db3, "GET %s%s", PREFIX, key); /* MOVED followed */
    long long n = -1;
    memset(magic, 0, 4);
    if (rep != NULL && rep->type == REDIS_REPLY_STRING && rep->len >= 4) {
        memcpy(magic, rep->str, 4);
        n = (long long)rep->len;
    }
    freeReplyObject(rep);
    return n;
}

static void test_large_values_stored_compressed(void)
{
    tc_config cfg, nol1, off;
    it_config(&cfg, port, DB, PREFIX);
    nol1 = off = cfg;
    nol1.l1_max_bytes = 0; /* every read of b goes to Redis */
    off.l2_compress_min_bytes = 0;
    tc_cache *a = it_cache(&cfg), *b = it_cache(&nol1), *o = it_cache(&off);
    REQUIRE(a != NULL && b != NULL && o != NULL);
    CHECK_EQ_INT(cfg.l2_compress_min_bytes, 1024); /* the default */
    tc_policy p = {.fresh_ms = FRESH_MS, .stale_ms = STALE_MS, .loader = big_loader};

    tc_result ra;
    REQUIRE(tc_get_or_load(a, "post:1", &p, &ra) == 0);
    CHECK(ra.value->len >= 3000);
    char magic[4];
    long long n = stored("post:1", magic);
    CHECK(memcmp(magic, "TC2", 4) == 0);
    if (!CHECK(n > 0 && n < (long long)ra.value->len / 2))
        fprintf(stderr, "    record of %lld bytes for a value of %zu\n", n, ra.value->len);

    int loads = atomic_load(&big_loads);
    tc_result rb;
    REQUIRE(tc_get_or_load(b, "post:1", &p, &rb) == 0);
    CHECK_EQ_INT(rb.source, TC_SRC_L2);
    CHECK(rb.value->len == ra.value->len &&
          memcmp(rb.value->data, ra.value->data, ra.value->len) == 0);
    CHECK(rb.value->hash == ra.value->hash); /* the ETag is the same */
    CHECK_EQ_INT(atomic_load(&big_loads), loads);
    tc_value_release(rb.value);

    /* compression off: TC1, as before compression, and read the same way */
    tc_result ro;
    REQUIRE(tc_get_or_load(o, "post:2", &p, &ro) == 0);
    n = stored("post:2", magic);
    CHECK(memcmp(magic, "TC1", 4) == 0);
    CHECK(n > (long long)ro.value->len);
    REQUIRE(tc_get_or_load(b, "post:2", &p, &rb) == 0);
    CHECK_EQ_INT(rb.source, TC_SRC_L2);
    CHECK(rb.value->hash == ro.value->hash);
    tc_value_release(rb.value);
    tc_value_release(ro.value);

    /* a compressed record corrupted in Redis: a miss, counted; a good record written over */
    n = stored("post:1", magic);
    REQUIRE(n > 40);
    CHECK(it_rint(db3, "SETRANGE %s%s %lld %s", PREFIX, "post:1", n - 20, "corrupt!") == n);
    tc_metrics m;
    tc_metrics_snapshot(b, &m);
    CHECK_EQ_INT(m.l2_decode_errors, 0);
    REQUIRE(tc_get_or_load(b, "post:1", &p, &rb) == 0);
    CHECK_EQ_INT(rb.source, TC_SRC_LOADER);
    CHECK(rb.value->hash == ra.value->hash);
    tc_value_release(rb.value);
    tc_metrics_snapshot(b, &m);
    CHECK_EQ_INT(m.l2_decode_errors, 1);
    CHECK(m.l2_compressed_writes >= 1);
    REQUIRE(tc_get_or_load(b, "post:1", &p, &rb) == 0);
    CHECK_EQ_INT(rb.source, TC_SRC_L2);
    tc_value_release(rb.value);
    tc_metrics_snapshot(b, &m);
    CHECK_EQ_INT(m.l2_decode_errors, 1);
    tc_metrics_snapshot(a, &m);
    CHECK_EQ_INT(m.l2_compressed_writes, 1);
    CHECK(m.l2_compressed_saved_bytes > ra.value->len / 2);
    tc_value_release(ra.value);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
    tc_cache_destroy(o);
}

int main(void)
{
    if (it_on_cluster()) { /* a private one: its command counts are ours */
        REQUIRE((port = it_private_cluster()) > 0);
    } else {
        REQUIRE(tct_redis_start(&server) == 0);
        port = server.port;
    }
    db3 = it_redis(port, DB);
    db0 = it_redis(port, 0);
    REQUIRE(db3 != NULL && db0 != NULL);
    it_source_init(&source_a, "v1");
    it_source_init(&source_b, "b-would-load");
    setup_foreign_keys();

    test_entries_live_under_prefix_in_db_with_ttl();
    test_l2_hit_from_second_instance();
    test_foreign_keys_untouched_by_every_operation();
    test_no_flush_and_clear_scans_nothing();
    test_shared_rate_limit();
    test_l2_budget_bounds_what_is_stored();
    test_large_values_stored_compressed();
    if (it_on_cluster())
        test_cluster_refuses_another_database();

    redisFree(db3);
    redisFree(db0);
    tct_redis_stop(&server);
    return check_report();
}

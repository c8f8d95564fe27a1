/*
 * The engine: get-or-load through L1 and L2, single-flight, stale-while-
 * revalidate, tags and invalidation. The modules beside it do the mechanics
 * (l1.c, tags.c, redis.c, bus.c, pool.c); this file holds the rules.
 *
 * DESIGN — why a stale answer can never follow an invalidation.
 *
 * Every entry carries tags: [0] the global tag "*" (tc_clear and the bus
 * going down bump it), [1] the key's own tag "#key" (tc_invalidate_key), then
 * the policy's tags. Each tag has two counters:
 *   - a local generation (tags.c), bumped in this process by an invalidation
 *     made here or received on the bus;
 *   - a version in Redis (<prefix>~t:<tag>), bumped by the INVALIDATE script,
 *     which publishes on the bus in the same step.
 * A load first records both (local generations, then — in the same round
 * trip that reads L2 — the Redis versions), then reads L2 or runs the loader.
 * The result is stored in L1 only with the generations recorded before, and
 * in Redis only by a script that checks the versions recorded before. So an
 * invalidation that lands while a load runs leaves its result born invalid:
 * it is never served, here or anywhere (guarantee 2), and a hit is checked
 * by comparing counters, never clocks.
 *
 * A caller that finds a load in flight for its key joins it only if the
 * flight's recorded generations are still current; otherwise that load began
 * before an invalidation this caller may already have seen returned, so the
 * caller starts its own (read-your-writes, guarantee 3).
 *
 * Stale serving (guarantee 4) only applies to entries that are still valid:
 * an invalidated entry fails the counter check before its times are looked at
 * (guarantee 5).
 *
 * The fleet (an invalidation returns once every live instance applied it,
 * L1 served only under a lease) is fleet.c's; its DESIGN comment says why it
 * holds.
 *
 * DESIGN — a new Redis is a new world. A restarted Redis, one restored from
 * a snapshot, a replica promoted by a failover can all bring back old records
 * with the old tag counters that make them look valid. redis.c runs an EPOCH
 * script on every new connection: when the marker <prefix>~inc does not name
 * the Redis process answering, the global tag "*" moves (so every record
 * stored before is born invalid) and the marker is set; when that process is
 * not the one this instance dialed before, it bumps its global generation and
 * empties L1 (on_incarnation) before the connection is used.
 *
 * Threads: any caller thread; background refreshes on the pool's threads;
 * bus messages, pongs, registration and acknowledgements on the bus thread.
 * Shared state: L1 and tags (sharded locks), flights (sharded locks below),
 * pending invalidations (one lock), the fleet's state (fleet.c).
 */
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cache/cluster.h"

#define FLIGHT_SHARDS 64
#define REFRESH_RETRY_MS 1000 /* after a failed background refresh */
#define TAG_TTL_SLACK_MS 60000
#define RETRY_SEND_MS 20 /* between attempts to reach Redis for an invalidation */

/* A caller that asked to be told when a flight is over (tc_await_flight). */
typedef struct flight_waiter {
    struct flight_waiter *next;
    void (*cb)(void *arg, int err);
    void *arg;
} flight_waiter;

typedef struct flight {
    struct flight *next;
    uint64_t khash;
    char *key;
    int ntags;
    tc__tag *tags[TC_TAGS_MAX + 2];
    uint64_t gens[TC_TAGS_MAX + 2];
    int refs; /* the leader and each waiter; guarded by the shard lock */
    bool linked, done;
    bool background; /* a refresh: what it replaces may still be served meanwhile */
    flight_waiter *waiters; /* tc_await_flight: told after it is over; shard lock */
    int err;
    tc_result res;
    tc_cond cond;
} flight;

typedef struct flight_shard {
    pthread_mutex_t lock;
    flight *head;
} flight_shard;

struct tc_cache {
    tc_config cfg;
    char *prefix, *host, *password;
    size_t prefix_len;
    char channel[256];
    char instance[17];
    tc__l1 *l1;
    tc__tags *tags;
    tc__tag *global;
    tc__redis *redis;
    tc__bus *bus;
    tc__sentinel *sentinel; /* or NULL: a fixed address */
    _Atomic bool bus_up;
    tc__pool *pool;
    tc__metrics metrics;
    flight_shard flights[FLIGHT_SHARDS];

    pthread_mutex_t pending_lock;
    char **pending; /* tag names whose invalidation has not reached Redis */
    int npending;
    _Atomic int pending_count;

    tc__topk *hot_keys, *hot_tags; /* the most read keys, the most invalidated tags */
    tc__fleet *fleet; /* with a bus: the lease and the acknowledgements */
    tc__budget *budget; /* or NULL: no limit on what we hold in Redis */
    tc__logger log;     /* cfg.log */
    uint64_t bus_lost_at; /* bus thread: when the subscription was lost (mono ms), 0: up */
};

/* ---- small helpers -------------------------------------------------------- */

/* The engine's clock: entry times (created, fresh until, stale until) are read
 * from it and stored in L2 records that other processes compare with their own
 * clock, so it is the wall clock (milliseconds since the epoch) — or a test's
 * clock (tc_config.clock). Durations are measured on tc_mono_us() instead. */
static uint64_t clock_ms(tc_cache *c)
{
    if (c->cfg.clock != NULL)
        return c->cfg.clock(c->cfg.clock_ctx);
    return (uint64_t)tc_wall_ms();
}

static uint64_t random_u64(void)
{
    uint64_t v;
    if (getrandom(&v, sizeof(v), 0) != sizeof(v))
        v = tc_mono_us() * 0x9e3779b97f4a7c15ull;
    return v;
}

static double random_unit(void) /* (0, 1] */
{
    static _Thread_local uint64_t s;
    if (s == 0)
        s = random_u64() | 1;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return ((double)(s >> 11) + 1.0) / 9007199254740992.0;
}

/* "<prefix><infix><name>" into out (size TC_KEY_MAX + 256). */
static size_t redis_key(tc_cache *c, char *out, const char *infix, const char *name)
{
    return (size_t)snprintf(out, TC_KEY_MAX + 256, "%s%s%s", c->prefix, infix, name);
}

static bool key_ok(const char *key)
{
    size_t n = key != NULL ? strlen(key) : 0;
    return n > 0 && n <= TC_KEY_MAX && key[0] != '~';
}

static bool policy_ok(const tc_policy *p, bool need_loader)
{
    if (p == NULL)
        return !need_loader;
    if (p->ntags < 0 || p->ntags > TC_TAGS_MAX || (need_loader && p->loader == NULL))
        return false;
    for (int i = 0; i < p->ntags; i++) {
        size_t n = p->tags[i] != NULL ? strlen(p->tags[i]) : 0;
        if (n == 0 || n > TC_TAG_MAX || p->tags[i][0] == '#' || strcmp(p->tags[i], "*") == 0)
            return false;
    }
    return true;
}

#define say(c, ...) tc__say(&(c)->log, __VA_ARGS__)

/* Whether this instance's lease holds now (fleet.c). */
static bool l1_trusted(tc_cache *c)
{
    return c->bus == NULL || tc__fleet_trusted(c->fleet);
}

static bool l1_usable(tc_cache *c, const tc_policy *p)
{
    return c->l1 != NULL && (p == NULL || !(p->flags & TC_POLICY_NO_L1)) && l1_trusted(c);
}

/* ---- tags of an entry ----------------------------------------------------- */

/* Interns the entry's tags into tags[] and records their generations. */
static int capture(tc_cache *c, const char *key, const tc_policy *p, tc__tag **tags, uint64_t *gens,
                   int *ntags)
{
    char self[TC_KEY_MAX + 2];
    int n = snprintf(self, sizeof(self), "#%s", key);
    tc__tag_ref(c->global);
    tags[0] = c->global;
    tags[1] = tc__tag_get(c->tags, self, (size_t)n);
    *ntags = tags[1] != NULL ? 2 : 1;
    for (int i = 0; p != NULL && i < p->ntags && tags[*ntags - 1] != NULL; i++) {
        tags[*ntags] = tc__tag_get(c->tags, p->tags[i], strlen(p->tags[i]));
        if (tags[*ntags] != NULL)
            (*ntags)++;
    }
    if (*ntags != 2 + (p != NULL ? p->ntags : 0)) {
        for (int i = 0; i < *ntags; i++)
            tc__tag_put(tags[i]);
        *ntags = 0;
        return TC_ENOMEM;
    }
    for (int i = 0; i < *ntags; i++)
        gens[i] = atomic_load(&tags[i]->gen);
    return 0;
}

static void release_tags(tc__tag **tags, int ntags)
{
    for (int i = 0; i < ntags; i++)
        tc__tag_put(tags[i]);
}

static bool gens_current(tc__tag *const *tags, const uint64_t *gens, int ntags)
{
    for (int i = 0; i < ntags; i++)
        if (atomic_load(&tags[i]->gen) != gens[i])
            return false;
    return true;
}

/* ---- L1 ------------------------------------------------------------------- */

typedef struct times {
    uint64_t created, fresh_until, stale_until;
    uint32_t load_ms;
} times;

static void fill_result(tc_result *res, const tc_value *v, tc_source src, const times *t,
                        uint64_t now)
{
    tc_value_retain(v);
    res->value = v;
    res->source = src;
    res->stale = now >= t->fresh_until;
    res->ttl_ms = (int64_t)t->fresh_until - (int64_t)now;
    res->age_ms = now > t->created ? (int64_t)(now - t->created) : 0;
}

/* Stores v in L1 under the generations recorded before it was read, unless
 * one of them has moved since (then it is born invalid). Returns the entry
 * with a reference for the caller, or NULL. */
static tc__entry *l1_store(tc_cache *c, const char *key, uint64_t khash, const tc_policy *p,
                           const tc_value *v, const times *t, tc__ns *ns, tc__tag *const *tags,
                           const uint64_t *gens, int ntags)
{
    if (!l1_usable(c, p) || !gens_current(tags, gens, ntags))
        return NULL;
    tc_value_retain(v);
    tc__entry *e = tc__entry_new(key, strlen(key), khash, v);
    if (e == NULL) {
        tc_value_release(v);
        return NULL;
    }
    e->created_ms = t->created;
    e->fresh_until = t->fresh_until;
    e->stale_until = t->stale_until;
    e->grace_until = t->stale_until + (p != NULL ? p->grace_ms : 0);
    e->load_ms = t->load_ms;
    e->ns = ns;
    for (int i = 0; i < ntags; i++) {
        tc__tag_ref(tags[i]);
        e->tags[i] = tags[i];
        e->gens[i] = gens[i];
    }
    e->ntags = ntags;
    tc__l1_put(c->l1, e);
    return e;
}

/* ---- flights -------------------------------------------------------------- */

static flight_shard *fshard(tc_cache *c, uint64_t khash)
{
    return &c->flights[(khash >> 8) % FLIGHT_SHARDS];
}

/* The flight for key, or NULL; the caller holds the shard lock (as for every
 * function on a shard's flights below). */
static flight *flight_find(flight_shard *s, const char *key, uint64_t khash)
{
    TC_ASSERT_HELD(&s->lock);
    for (flight *f = s->head; f != NULL; f = f->next)
        if (f->khash == khash && strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

static void flight_unlink(flight_shard *s, flight *f)
{
    TC_ASSERT_HELD(&s->lock);
    if (!f->linked)
        return;
    flight **pp = &s->head;
    while (*pp != f) {
        TC_ASSERT(*pp != NULL); /* a linked flight is on its shard's list */
        pp = &(*pp)->next;
    }
    *pp = f->next;
    f->linked = false;
}

/* Drops one reference; the caller holds the shard lock. */
static void flight_put(flight_shard *s, flight *f)
{
    TC_ASSERT_HELD(&s->lock);
    TC_ASSERT(f->refs > 0);
    if (--f->refs > 0)
        return;
    tc_value_release(f->res.value);
    release_tags(f->tags, f->ntags);
    tc_cond_destroy(&f->cond);
    free(f->key);
    free(f);
}

/* A new flight for key, linked, with the leader's reference and the tags
 * recorded; the caller holds the shard lock. */
static flight *flight_start(tc_cache *c, flight_shard *s, const char *key, uint64_t khash,
                            const tc_policy *p, int *err)
{
    TC_ASSERT_HELD(&s->lock);
    flight *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->key = strdup(key)) == NULL) {
        free(f);
        *err = TC_ENOMEM;
        return NULL;
    }
    if ((*err = capture(c, key, p, f->tags, f->gens, &f->ntags)) != 0) {
        free(f->key);
        free(f);
        return NULL;
    }
    tc_cond_init(&f->cond);
    f->khash = khash;
    f->refs = 1;
    f->linked = true;
    f->next = s->head;
    s->head = f;
    return f;
}

/* The leader hands its result to the waiters and lets go. */
static void flight_finish(tc_cache *c, flight *f, int err, const tc_result *res)
{
    flight_shard *s = fshard(c, f->khash);
    pthread_mutex_lock(&s->lock);
    TC_ASSERT(!f->done); /* one leader, one finish */
    f->done = true;
    f->err = err;
    if (err == 0) {
        f->res = *res;
        tc_value_retain(res->value);
    }
    flight_unlink(s, f);
    tc_cond_broadcast(&f->cond);
    flight_waiter *w = f->waiters;
    f->waiters = NULL;
    flight_put(s, f);
    pthread_mutex_unlock(&s->lock);
    while (w != NULL) { /* after the result is stored, without a lock */
        flight_waiter *next = w->next;
        w->cb(w->arg, err);
        free(w);
        w = next;
    }
}

/* ---- L2 ------------------------------------------------------------------- */

enum { L2_DOWN, L2_MISS, L2_FRESH, L2_STALE };

typedef struct l2_read {
    int nversions;
    char versions[TC_TAGS_MAX + 2][24]; /* as Redis returned them */
    const tc_value *value;              /* L2_FRESH or L2_STALE: a reference */
    times t;
} l2_read;

/* Replays invalidations that could not reach Redis; L2 may be used only when
 * none is left, or it could serve what they invalidated. */
static bool flush_pending(tc_cache *c);
static int send_invalidation(tc_cache *c, const char *tag);

static bool l2_usable(tc_cache *c, const tc_policy *p)
{
    return c->redis != NULL && (p == NULL || !(p->flags & TC_POLICY_NO_L2)) && flush_pending(c);
}

static uint64_t ttl_of(const tc_policy *p)
{
    return (uint64_t)p->fresh_ms + p->stale_ms;
}

/* One round trip: the record under key and the current version of each of
 * its tags (0 for one that does not exist; no record carries 0, so a lost
 * counter makes every record that depended on it invalid). A record is usable
 * when its tags are the policy's, no version has moved since it was loaded,
 * and its stale time has not passed. */
static int l2_fetch(tc_cache *c, const char *key, const tc_policy *p, uint64_t now, l2_read *out)
{
    char keys[2 + TC_TAGS_MAX + 1][TC_KEY_MAX + 256];
    const char *argv[2 + TC_TAGS_MAX + 1];
    size_t lens[2 + TC_TAGS_MAX + 1];
    char self[TC_KEY_MAX + 2];
    int ntags = p != NULL ? p->ntags : 0, nkeys = 0;
    /* keys: the value, "*", "#key", the policy's tags; argv: the keys */
    TC_ASSERT(ntags >= 0 && 3 + ntags <= (int)TC_COUNTOF(keys));
    TC_ASSERT(3 + ntags <= (int)TC_COUNTOF(argv));

    lens[nkeys] = redis_key(c, keys[nkeys], "", key), nkeys++;
    lens[nkeys] = redis_key(c, keys[nkeys], "~t:", "*"), nkeys++;
    snprintf(self, sizeof(self), "#%s", key);
    lens[nkeys] = redis_key(c, keys[nkeys], "~t:", self), nkeys++;
    for (int i = 0; i < ntags; i++)
        lens[nkeys] = redis_key(c, keys[nkeys], "~t:", p->tags[i]), nkeys++;
    for (int i = 0; i < nkeys; i++)
        argv[i] = keys[i];

    redisReply *rep = tc__redis_script(c->redis, TC__SCRIPT_READ, nkeys, nkeys, argv, lens);
    if (rep == NULL)
        return L2_DOWN;
    int state = L2_DOWN;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != (size_t)nkeys)
        goto done;
    out->nversions = nkeys - 1;
    int64_t current[TC_TAGS_MAX + 2];
    for (int i = 0; i < out->nversions; i++) {
        redisReply *v = rep->element[i + 1];
        char *end;
        if (v->type != REDIS_REPLY_STRING || v->len == 0 || v->len >= sizeof(out->versions[i]))
            goto done;
        memcpy(out->versions[i], v->str, v->len + 1);
        current[i] = strtoll(v->str, &end, 10);
        if (*end != '\0')
            goto done;
    }
    state = L2_MISS;
    redisReply *val = rep->element[0];
    tc__record r;
    if (val->type != REDIS_REPLY_STRING)
        goto done;
    if (tc__record_decode(val->str, val->len, &r) != 0) { /* not a record: a miss */
        TC__INC(c->metrics.l2_decode_errors);
        goto done;
    }
    if (r.ntags != ntags || now >= r.stale_until)
        goto done;
    for (int i = 0; i < ntags; i++)
        if (r.taglen[i] != strlen(p->tags[i]) || memcmp(r.tags[i], p->tags[i], r.taglen[i]) != 0)
            goto done;
    for (int i = 0; i < out->nversions; i++)
        if (r.versions[i] != current[i])
            goto done;
    if (tc__record_value(&r, &out->value) != 0) { /* a frame that is not its value: a miss */
        TC__INC(c->metrics.l2_decode_errors);
        goto done;
    }
    out->t = (times){r.created_ms, r.fresh_until, r.stale_until, r.load_ms};
    state = now < r.fresh_until ? L2_FRESH : L2_STALE;
done:
    freeReplyObject(rep);
    return state;
}

/* Whether the budget has room for a record of len bytes for ttl_ms; says so
 * once when it fills up and once when there is room again. */
static bool budget_allows(tc_cache *c, const char *key, size_t len, uint64_t ttl_ms)
{
    int v = tc__budget_take(c->budget, tc_mono_ms(), len, ttl_ms);
    if (v < 0)
        TC__INC(c->metrics.budget_refusals);
    if (v == TC__BUDGET_NOW_FULL) {
        uint64_t bytes, keys;
        tc__budget_read(c->budget, tc_mono_ms(), &bytes, &keys);
        say(c, TC_LOG_WARN, "cache",
            "L2 budget reached (%llu keys, %llu bytes held; limits %llu keys, %llu bytes): new "
            "entries are not stored in Redis (first refused: %.80s); still served from L1 and "
            "the loader",
            (unsigned long long)keys, (unsigned long long)bytes,
            (unsigned long long)c->cfg.l2_budget_keys, (unsigned long long)c->cfg.l2_budget_bytes,
            key);
    } else if (v == TC__BUDGET_BACK) {
        say(c, TC_LOG_INFO, "cache", "L2 budget: room again, entries are stored in Redis again");
    }
    return v >= 0;
}

/* Writes the record if no tag version moved since rd was read. */
static void l2_store(tc_cache *c, const char *key, const tc_policy *p, const tc_value *v,
                     const times *t, const l2_read *rd)
{
    tc__record r = {.created_ms = t->created,
                    .fresh_until = t->fresh_until,
                    .stale_until = t->stale_until,
                    .load_ms = t->load_ms,
                    .hash = v->hash,
                    .nversions = rd->nversions,
                    .ntags = p->ntags,
                    .data = v->data,
                    .len = v->len};
    /* the versions the record carries: as read, or for a tag that did not exist,
     * the random epoch WRITE creates it at */
    char carried[TC_TAGS_MAX + 2][24];
    for (int i = 0; i < rd->nversions; i++) {
        r.versions[i] = strtoll(rd->versions[i], NULL, 10);
        if (r.versions[i] == 0)
            r.versions[i] = (int64_t)(tc__random_epoch() + (uint64_t)i);
        snprintf(carried[i], sizeof(carried[i]), "%lld", (long long)r.versions[i]);
    }
    for (int i = 0; i < p->ntags; i++) {
        r.tags[i] = p->tags[i];
        r.taglen[i] = (uint8_t)strlen(p->tags[i]);
    }
    tc_buf rec = {0}, z = {0};
    if (tc__record_compress(&r, c->cfg.l2_compress_min_bytes, &z) == 1) {
        TC__INC(c->metrics.l2_compressed);
        atomic_fetch_add_explicit(&c->metrics.l2_compress_saved, r.raw_len - r.len,
                                  memory_order_relaxed);
    }
    int err = tc__record_encode(&r, &rec);
    free(z.data);
    if (err != 0) {
        free(rec.data);
        return;
    }
    if (c->budget != NULL && !budget_allows(c, key, rec.len, t->stale_until - t->created)) {
        free(rec.data);
        return;
    }
    char keys[2 + TC_TAGS_MAX + 1][TC_KEY_MAX + 256];
    const char *argv[3 * (TC_TAGS_MAX + 2) + 4];
    size_t lens[3 * (TC_TAGS_MAX + 2) + 4];
    char self[TC_KEY_MAX + 2], px[24], tagpx[24];
    int nkeys = 0;
    /* keys as l2_fetch's; argv: the keys, 3 values, the version of each tag as read,
     * then as the record carries it */
    TC_ASSERT(p->ntags >= 0 && 3 + p->ntags <= (int)TC_COUNTOF(keys));
    TC_ASSERT(rd->nversions == 2 + p->ntags);
    TC_ASSERT(3 * (2 + p->ntags) + 4 <= (int)TC_COUNTOF(argv));
    lens[nkeys] = redis_key(c, keys[nkeys], "", key), nkeys++;
    lens[nkeys] = redis_key(c, keys[nkeys], "~t:", "*"), nkeys++;
    snprintf(self, sizeof(self), "#%s", key);
    lens[nkeys] = redis_key(c, keys[nkeys], "~t:", self), nkeys++;
    for (int i = 0; i < p->ntags; i++)
        lens[nkeys] = redis_key(c, keys[nkeys], "~t:", p->tags[i]), nkeys++;
    int argc = 0;
    for (; argc < nkeys; argc++)
        argv[argc] = keys[argc];
    snprintf(px, sizeof(px), "%llu", (unsigned long long)(t->stale_until - t->created));
    snprintf(tagpx, sizeof(tagpx), "%llu",
             (unsigned long long)(t->stale_until - t->created + TAG_TTL_SLACK_MS));
    argv[argc] = rec.data, lens[argc++] = rec.len;
    argv[argc] = px, lens[argc++] = strlen(px);
    argv[argc] = tagpx, lens[argc++] = strlen(tagpx);
    for (int i = 0; i < rd->nversions; i++)
        argv[argc] = rd->versions[i], lens[argc++] = strlen(rd->versions[i]);
    for (int i = 0; i < rd->nversions; i++)
        argv[argc] = carried[i], lens[argc++] = strlen(carried[i]);
    redisReply *rep = tc__redis_script(c->redis, TC__SCRIPT_WRITE, nkeys, argc, argv, lens);
    if (rep != NULL)
        freeReplyObject(rep);
    free(rec.data);
}

/* Cross-process single-flight: true if we hold the lock (or locks are off). */
static bool l2_lock(tc_cache *c, const char *key, const char *token, bool release)
{
    char k[TC_KEY_MAX + 256];
    const char *argv[6];
    size_t lens[6];
    char px[16];
    size_t klen = redis_key(c, k, "~l:", key);
    redisReply *rep;
    if (release) {
        argv[0] = k, lens[0] = klen;
        argv[1] = token, lens[1] = strlen(token);
        rep = tc__redis_script(c->redis, TC__SCRIPT_UNLOCK, 1, 2, argv, lens);
    } else {
        snprintf(px, sizeof(px), "%d", c->cfg.lock_ms);
        const char *av[] = {"SET", k, token, "NX", "PX", px};
        size_t al[] = {3, klen, strlen(token), 2, 2, strlen(px)};
        rep = tc__redis_command(c->redis, 6, av, al);
    }
    bool ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
    if (rep != NULL)
        freeReplyObject(rep);
    return ok;
}

/* ---- loading -------------------------------------------------------------- */

#define GRACE_RETRY_MS 1000 /* a source found down is asked again at most this often */

/* The loader said its source is down: the L1 entry past stale but within its
 * grace, if any and still valid, answers (stale), and answers the reads of the
 * next GRACE_RETRY_MS without asking the loader. */
static bool grace_answer(tc_cache *c, const char *key, uint64_t khash, const tc_policy *p,
                         tc_result *res)
{
    if (!l1_usable(c, p))
        return false;
    size_t klen = strlen(key);
    tc__entry *e = tc__l1_get(c->l1, key, klen, khash);
    if (e == NULL)
        return false;
    uint64_t now = clock_ms(c);
    bool ok = gens_current(e->tags, e->gens, e->ntags) && now < e->grace_until;
    if (ok) {
        atomic_store(&e->grace_serve_until, now + GRACE_RETRY_MS);
        times t = {e->created_ms, e->fresh_until, e->stale_until, e->load_ms};
        fill_result(res, e->value, TC_SRC_L1, &t, now);
        TC__INC(e->ns->stale_served);
    }
    tc__entry_release(e);
    return ok;
}

static void schedule_refresh(tc_cache *c, tc__entry *e, const char *key, uint64_t khash,
                             const tc_policy *p, uint64_t now);

/*
 * Reads L2, then runs the loader, for the flight f; stores what it loaded.
 * background: a refresh — a stale L2 record is not an answer, only the
 * fallback if the loader fails. When the answer is a stale L2 record, *stale
 * is set (with the L1 entry made of it, if any, in *stale_entry) and the
 * caller schedules the refresh once its own flight is over.
 */
static int fetch(tc_cache *c, flight *f, const char *key, const tc_policy *p, bool background,
                 tc_result *res, bool *stale, tc__entry **stale_entry)
{
    tc__ns *ns = tc__metrics_ns(&c->metrics, key);
    uint64_t now = clock_ms(c);
    l2_read rd = {0};
    int state = l2_usable(c, p) ? l2_fetch(c, key, p, now, &rd) : L2_DOWN;

    if (state == L2_FRESH || (state == L2_STALE && !background)) {
        tc__entry *e =
            l1_store(c, key, f->khash, p, rd.value, &rd.t, ns, f->tags, f->gens, f->ntags);
        fill_result(res, rd.value, TC_SRC_L2, &rd.t, now);
        res->source = TC_SRC_L2;
        TC__INC(ns->l2_hits);
        if (state == L2_STALE) {
            TC__INC(ns->stale_served);
            *stale = true;
            *stale_entry = e;
        } else {
            tc__entry_release(e);
        }
        tc_value_release(rd.value);
        return 0;
    }

    char token[24] = "";
    bool locked = false;
    if (c->cfg.lock_ms > 0 && state != L2_DOWN) {
        snprintf(token, sizeof(token), "%s", c->instance);
        locked = l2_lock(c, key, token, false);
        /* Locked: look once more, the previous holder may have just stored it. Not
         * locked: someone else is loading it; wait for their result, up to lock_ms. */
        for (int waited = 0; waited < c->cfg.lock_ms; waited += 5) {
            if (!locked)
                tc_sleep_ms(5);
            l2_read again = {0};
            int st = l2_fetch(c, key, p, clock_ms(c), &again);
            if (st == L2_FRESH) {
                if (locked)
                    l2_lock(c, key, token, true);
                tc_value_release(rd.value);
                tc__entry *e = l1_store(c, key, f->khash, p, again.value, &again.t, ns, f->tags,
                                        f->gens, f->ntags);
                tc__entry_release(e);
                fill_result(res, again.value, TC_SRC_L2, &again.t, clock_ms(c));
                tc_value_release(again.value);
                TC__INC(ns->l2_hits);
                return 0;
            }
            tc_value_release(again.value);
            if (locked || st == L2_DOWN)
                break;
        }
    }

    tc_buf out = {0};
    if (!background) /* a miss: nothing usable cached, the caller waits for the loader */
        TC__INC(ns->misses);
    uint64_t t0 = tc_mono_us();
    int err = p->loader(p->loader_ctx, key, &out);
    uint64_t took = tc_mono_us() - t0;
    tc__hist_add(&ns->load_latency, took);
    if (locked)
        l2_lock(c, key, token, true);
    if (err != 0) {
        free(out.data);
        TC__INC(ns->load_errors);
        if (rd.value != NULL && !background) { /* stale-if-error */
            fill_result(res, rd.value, TC_SRC_L2, &rd.t, clock_ms(c));
            TC__INC(ns->stale_served);
            tc_value_release(rd.value);
            return 0;
        }
        if (err == TC_EUNAVAILABLE && !background && grace_answer(c, key, f->khash, p, res)) {
            tc_value_release(rd.value);
            return 0;
        }
        tc_value_release(rd.value);
        return err < 0 ? err : TC_ELOAD;
    }
    tc_value_release(rd.value);
    const tc_value *v = tc__value_new(out.data, out.len, 0);
    free(out.data);
    if (v == NULL)
        return TC_ENOMEM;
    now = clock_ms(c);
    times t = {now, now + p->fresh_ms, now + ttl_of(p), (uint32_t)(took / 1000)};
    tc__entry_release(l1_store(c, key, f->khash, p, v, &t, ns, f->tags, f->gens, f->ntags));
    if (state != L2_DOWN)
        l2_store(c, key, p, v, &t, &rd);
    fill_result(res, v, TC_SRC_LOADER, &t, now);
    tc_value_release(v);
    if (background)
        TC__INC(ns->refreshes);
    return 0;
}

/* An answer from L2 alone (fresh, or stale within its window), no load and no
 * refresh: 0, TC_ENOTFOUND, or an error from recording the tags. */
static int l2_answer(tc_cache *c, const char *key, uint64_t khash, const tc_policy *p,
                     tc_result *res)
{
    if (!l2_usable(c, p))
        return TC_ENOTFOUND;
    tc__tag *tags[TC_TAGS_MAX + 2];
    uint64_t gens[TC_TAGS_MAX + 2];
    int ntags, err = capture(c, key, p, tags, gens, &ntags);
    if (err != 0)
        return err;
    uint64_t now = clock_ms(c);
    l2_read rd = {0};
    int state = l2_fetch(c, key, p, now, &rd);
    if (state == L2_FRESH || state == L2_STALE) {
        tc__ns *ns = tc__metrics_ns(&c->metrics, key);
        tc__entry_release(l1_store(c, key, khash, p, rd.value, &rd.t, ns, tags, gens, ntags));
        fill_result(res, rd.value, TC_SRC_L2, &rd.t, now);
        TC__INC(ns->l2_hits);
        if (state == L2_STALE)
            TC__INC(ns->stale_served);
        tc_value_release(rd.value);
    }
    release_tags(tags, ntags);
    return state == L2_FRESH || state == L2_STALE ? 0 : TC_ENOTFOUND;
}

/* A foreground load: join the flight for key or lead a new one. */
static int load_through(tc_cache *c, const char *key, uint64_t khash, const tc_policy *p,
                        tc_result *res)
{
    flight_shard *s = fshard(c, khash);
    int err = 0;
    pthread_mutex_lock(&s->lock);
    flight *f = flight_find(s, key, khash);
    if (f != NULL && f->background && gens_current(f->tags, f->gens, f->ntags)) {
        /* A refresh is running, so there was a stale record: with L1 unusable (or
         * the entry evicted), serve it from L2 rather than wait for the refresh. */
        pthread_mutex_unlock(&s->lock);
        if ((err = l2_answer(c, key, khash, p, res)) != TC_ENOTFOUND)
            return err;
        pthread_mutex_lock(&s->lock); /* gone meanwhile: wait for the refresh after all */
        f = flight_find(s, key, khash);
    }
    if (f != NULL && gens_current(f->tags, f->gens, f->ntags)) {
        TC_ASSERT(f->refs > 0); /* found on the list: its leader holds one */
        f->refs++;
        tc_deadline until = tc_deadline_in_ms(c->cfg.wait_timeout_ms);
        while (!f->done && tc_cond_wait_until(&f->cond, &s->lock, until) == 0)
            ;
        if (!f->done)
            err = TC_ETIMEDOUT;
        else if ((err = f->err) == 0) {
            *res = f->res;
            tc_value_retain(res->value);
        }
        flight_put(s, f);
        pthread_mutex_unlock(&s->lock);
        TC__INC(tc__metrics_ns(&c->metrics, key)->coalesced);
        return err;
    }
    if (f != NULL)
        flight_unlink(s, f); /* began before an invalidation: its leader finishes alone */
    f = flight_start(c, s, key, khash, p, &err);
    pthread_mutex_unlock(&s->lock);
    if (f == NULL)
        return err;
    bool stale = false;
    tc__entry *stale_entry = NULL;
    err = fetch(c, f, key, p, false, res, &stale, &stale_entry);
    flight_finish(c, f, err, res);
    if (stale) /* now that our flight is gone, one refresh may start */
        schedule_refresh(c, stale_entry, key, khash, p, clock_ms(c));
    tc__entry_release(stale_entry);
    return err;
}

int tc_await_flight(tc_cache *c, const char *key, void (*cb)(void *arg, int err), void *arg)
{
    if (!key_ok(key) || cb == NULL)
        return TC_EINVAL;
    uint64_t khash = tc__hash(key, strlen(key));
    flight_shard *s = fshard(c, khash);
    pthread_mutex_lock(&s->lock);
    flight *f = flight_find(s, key, khash);
    /* the same flights tc_get_or_load would join */
    if (f == NULL || f->background || !gens_current(f->tags, f->gens, f->ntags)) {
        pthread_mutex_unlock(&s->lock);
        return TC_ENOTFOUND; /* the common case, and no allocation for it */
    }
    flight_waiter *w = malloc(sizeof(*w));
    if (w == NULL) {
        pthread_mutex_unlock(&s->lock);
        return TC_ENOMEM;
    }
    w->cb = cb;
    w->arg = arg;
    w->next = f->waiters;
    f->waiters = w;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* ---- background refresh --------------------------------------------------- */

typedef struct refresh_job {
    tc_cache *c;
    flight *f;
    tc__entry *e; /* the stale entry that asked, or NULL */
    tc_policy p;
    char tagbuf[TC_TAGS_MAX][TC_TAG_MAX + 1];
} refresh_job;

static void refresh_run(void *arg, bool cancelled)
{
    refresh_job *j = arg;
    tc_result res = {0};
    bool stale = false; /* never set for a background fetch */
    tc__entry *stale_entry = NULL;
    int err = cancelled ? TC_ECLOSED
                        : fetch(j->c, j->f, j->f->key, &j->p, true, &res, &stale, &stale_entry);
    if (err != 0 && j->e != NULL) /* stale-if-error: keep serving it, retry later */
        atomic_store(&j->e->refresh_at, clock_ms(j->c) + REFRESH_RETRY_MS);
    flight_finish(j->c, j->f, err, &res);
    tc_value_release(res.value);
    tc__entry_release(j->e);
    free(j);
}

/* Starts one background refresh of key unless one is running. e, if given,
 * is the stale entry: its refresh_at makes "exactly one" hold even for
 * readers still holding it after the refresh replaced it. */
static void schedule_refresh(tc_cache *c, tc__entry *e, const char *key, uint64_t khash,
                             const tc_policy *p, uint64_t now)
{
    if (e != NULL) {
        uint64_t at = atomic_load(&e->refresh_at);
        if (at == UINT64_MAX || (at != 0 && now < at) ||
            !atomic_compare_exchange_strong(&e->refresh_at, &at, UINT64_MAX))
            return;
    }
    tc__ns *ns = tc__metrics_ns(&c->metrics, key);
    refresh_job *j = calloc(1, sizeof(*j));
    flight_shard *s = fshard(c, khash);
    int err = 0;
    if (j == NULL)
        goto dropped;
    j->c = c;
    j->p = *p;
    for (int i = 0; i < p->ntags; i++) {
        snprintf(j->tagbuf[i], sizeof(j->tagbuf[i]), "%s", p->tags[i]);
        j->p.tags[i] = j->tagbuf[i];
    }
    pthread_mutex_lock(&s->lock);
    if (flight_find(s, key, khash) != NULL) { /* a load is running: it will refresh */
        pthread_mutex_unlock(&s->lock);
        free(j);
        if (e != NULL)
            atomic_store(&e->refresh_at, 0);
        return;
    }
    j->f = flight_start(c, s, key, khash, p, &err);
    if (j->f != NULL)
        j->f->background = true;
    pthread_mutex_unlock(&s->lock);
    if (j->f == NULL)
        goto dropped;
    if (e != NULL) {
        atomic_fetch_add(&e->refs, 1);
        j->e = e;
    }
    if (tc__pool_submit(c->pool, refresh_run, j) == 0)
        return;
    flight_finish(c, j->f, TC_ECLOSED, NULL);
    tc__entry_release(j->e);
dropped:
    free(j);
    if (e != NULL)
        atomic_store(&e->refresh_at, 0);
    TC__INC(ns->refresh_dropped);
}

/* ---- public reads --------------------------------------------------------- */

/* The L1 part of a read: 1 (answered), 0 (go on). */
static int l1_lookup(tc_cache *c, const char *key, uint64_t khash, const tc_policy *p,
                     bool may_refresh, tc_result *res)
{
    if (!l1_usable(c, p))
        return 0;
    /* The hit latency is sampled, one hit in 16 per thread: timing every hit cost
     * two clock reads, a third of an L1 hit. */
    static _Thread_local unsigned hits;
    bool timed = (++hits & 15) == 0;
    uint64_t t0 = timed ? tc_mono_us() : 0;
    size_t klen = strlen(key);
    tc__entry *e = tc__l1_get(c->l1, key, klen, khash);
    if (e == NULL)
        return 0;
    uint64_t now = clock_ms(c);
    /* Served until its stale time — or, past it and in its grace, for as long as
     * its loader was last found failing (grace_answer) — and never once invalid. */
    uint64_t until = now < atomic_load(&e->grace_serve_until) ? e->grace_until : e->stale_until;
    bool valid = gens_current(e->tags, e->gens, e->ntags);
    if (!valid || now >= until) {
        if (!valid || now >= e->grace_until) /* else kept for fetch() to fall back on */
            tc__l1_remove(c->l1, key, klen, khash, e);
        tc__entry_release(e);
        return 0;
    }
    times t = {e->created_ms, e->fresh_until, e->stale_until, e->load_ms};
    fill_result(res, e->value, TC_SRC_L1, &t, now);
    if (now >= e->stale_until)
        may_refresh = false; /* a load runs on the next read after grace_serve_until */
    if (may_refresh) {
        bool early = p->xfetch_beta > 0 && now < e->fresh_until &&
                     now - (double)e->load_ms * p->xfetch_beta * log(random_unit()) >=
                         (double)e->fresh_until;
        if (res->stale || early)
            schedule_refresh(c, e, key, khash, p, now);
    }
    if (res->stale)
        TC__INC(e->ns->stale_served);
    TC__INC(e->ns->l1_hits);
    if (timed)
        tc__hist_add(&e->ns->hit_latency, tc_mono_us() - t0);
    tc__entry_release(e);
    return 1;
}

/* A read answered: counted among the hot keys (topk.c). Returns err. */
static int answered(tc_cache *c, const char *key, uint64_t khash, int err)
{
    if (err == 0)
        tc__topk_add(c->hot_keys, key, strlen(key), khash);
    return err;
}

int tc_get_or_load(tc_cache *c, const char *key, const tc_policy *p, tc_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!key_ok(key) || !policy_ok(p, true))
        return TC_EINVAL;
    uint64_t khash = tc__hash(key, strlen(key));
    if (l1_lookup(c, key, khash, p, true, res))
        return answered(c, key, khash, 0);
    return answered(c, key, khash, load_through(c, key, khash, p, res));
}

int tc_peek(tc_cache *c, const char *key, const tc_policy *p, tc_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!key_ok(key) || !policy_ok(p, false))
        return TC_EINVAL;
    bool may_refresh = p != NULL && p->loader != NULL;
    uint64_t khash = tc__hash(key, strlen(key));
    if (l1_lookup(c, key, khash, p, may_refresh, res))
        return answered(c, key, khash, 0);
    return TC_ENOTFOUND;
}

int tc_get(tc_cache *c, const char *key, const tc_policy *p, tc_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!key_ok(key) || !policy_ok(p, false))
        return TC_EINVAL;
    uint64_t khash = tc__hash(key, strlen(key));
    if (l1_lookup(c, key, khash, p, false, res))
        return answered(c, key, khash, 0);
    return answered(c, key, khash, l2_answer(c, key, khash, p, res));
}

int tc_set(tc_cache *c, const char *key, const void *data, size_t len, const tc_policy *p)
{
    if (!key_ok(key) || p == NULL || !policy_ok(p, false) || (data == NULL && len > 0))
        return TC_EINVAL;
    uint64_t khash = tc__hash(key, strlen(key));
    tc__tag *tags[TC_TAGS_MAX + 2];
    uint64_t gens[TC_TAGS_MAX + 2];
    int ntags, err = capture(c, key, p, tags, gens, &ntags);
    if (err != 0)
        return err;
    const tc_value *v = tc__value_new(data, len, 0);
    if (v == NULL) {
        release_tags(tags, ntags);
        return TC_ENOMEM;
    }
    uint64_t now = clock_ms(c);
    times t = {now, now + p->fresh_ms, now + ttl_of(p), 0};
    tc__ns *ns = tc__metrics_ns(&c->metrics, key);
    if (c->l1 != NULL) /* replace what L1 has, even if this value cannot be kept */
        tc__l1_remove(c->l1, key, strlen(key), khash, NULL);
    tc__entry_release(l1_store(c, key, khash, p, v, &t, ns, tags, gens, ntags));
    err = 0;
    if (l2_usable(c, p)) {
        l2_read rd = {0};
        int state = l2_fetch(c, key, p, now, &rd);
        tc_value_release(rd.value);
        if (state != L2_DOWN)
            l2_store(c, key, p, v, &t, &rd);
        else
            err = TC_EREDIS;
    }
    tc_value_release(v);
    release_tags(tags, ntags);
    return err;
}

/* ---- invalidation --------------------------------------------------------- */

/* Applies an invalidation of tag in this process. */
static void apply_local(tc_cache *c, const char *tag)
{
    tc__tags_bump(c->tags, tag, strlen(tag));
    if (c->l1 == NULL)
        return;
    if (tag[0] == '#') /* free the memory now; the bump already made it invalid */
        tc__l1_remove(c->l1, tag + 1, strlen(tag + 1), tc__hash(tag + 1, strlen(tag + 1)), NULL);
    else if (strcmp(tag, "*") == 0)
        tc__l1_clear(c->l1);
}

/* Publishes the invalidation of tags[0..n) in one script (fleet.c): 0, or
 * TC_EREDIS if Redis did not take it. With waitp, *waitp is the writer's wait
 * for the members' acknowledgements (tc__fleet_wait_acks). */
static int send_invalidations(tc_cache *c, const char *const *tags, int n, tc__fleet_wait **waitp)
{
    char tkeys[TC_TAGS_MAX][TC_KEY_MAX + 256], vkeys[TC_TAGS_MAX][TC_KEY_MAX + 256];
    const char *tk[TC_TAGS_MAX], *vk[TC_TAGS_MAX];
    size_t tl[TC_TAGS_MAX], vl[TC_TAGS_MAX];
    int nval = 0;
    TC_ASSERT(n >= 1 && n <= TC_TAGS_MAX);
    for (int i = 0; i < n; i++) {
        tl[i] = redis_key(c, tkeys[i], "~t:", tags[i]);
        tk[i] = tkeys[i];
        if (tags[i][0] == '#') { /* a key's own tag: its value goes too */
            vl[nval] = redis_key(c, vkeys[nval], "", tags[i] + 1);
            vk[nval] = vkeys[nval];
            nval++;
        }
    }
    return tc__fleet_send(c->fleet, tk, tl, vk, vl, nval, tags, n, waitp);
}

static int send_invalidation(tc_cache *c, const char *tag)
{
    return send_invalidations(c, &tag, 1, NULL);
}

static void push_pending(tc_cache *c, const char *tag)
{
    pthread_mutex_lock(&c->pending_lock);
    for (int i = 0; i < c->npending; i++)
        if (strcmp(c->pending[i], tag) == 0 || strcmp(c->pending[i], "*") == 0)
            goto out; /* already covered */
    char *copy = strdup(tag);
    if (copy == NULL || c->npending == c->cfg.pending_invalidations_max) {
        /* Too many to keep: one clear of everything covers them all. */
        free(copy);
        for (int i = 0; i < c->npending; i++)
            free(c->pending[i]);
        copy = strdup("*");
        c->npending = 0;
        if (copy == NULL)
            abort(); /* cannot record an invalidation: refuse to serve stale data */
    }
    c->pending[c->npending++] = copy;
out:
    atomic_store(&c->pending_count, c->npending);
    pthread_mutex_unlock(&c->pending_lock);
}

static bool flush_pending(tc_cache *c)
{
    if (atomic_load(&c->pending_count) == 0)
        return true;
    pthread_mutex_lock(&c->pending_lock);
    while (c->npending > 0 && send_invalidation(c, c->pending[c->npending - 1]) == 0)
        free(c->pending[--c->npending]);
    atomic_store(&c->pending_count, c->npending);
    bool done = c->npending == 0;
    pthread_mutex_unlock(&c->pending_lock);
    return done;
}

static int invalidate(tc_cache *c, const char *const *tags, int n, int wait_ms)
{
    for (int i = 0; i < n; i++) {
        size_t len = strlen(tags[i]);
        tc__topk_add(c->hot_tags, tags[i], len, tc__hash(tags[i], len));
        apply_local(c, tags[i]);
    }
    if (c->redis == NULL)
        return 0;
    uint64_t t0 = tc_mono_us(), give_up = t0 + (uint64_t)wait_ms * 1000u;
    tc__fleet_wait *w = NULL; /* single_instance: nobody else serves an L1 to wait for */
    while (!flush_pending(c) || send_invalidations(c, tags, n, c->bus != NULL ? &w : NULL) != 0) {
        if (tc_mono_us() >= give_up) {
            for (int i = 0; i < n; i++)
                push_pending(c, tags[i]);
            return TC_EREDIS;
        }
        tc_sleep_ms(RETRY_SEND_MS);
    }
    /* Again, now that Redis has the new version: a load here that recorded the
     * first bump may have read L2 before the INCR, i.e. the old record (other
     * processes bump only on the bus message, which follows the INCR). */
    for (int i = 0; i < n; i++)
        apply_local(c, tags[i]);
    if (w != NULL)
        tc__fleet_wait_acks(c->fleet, w);
    tc__hist_add(&c->metrics.invalidate_latency, tc_mono_us() - t0);
    return 0;
}

int tc_invalidate_key(tc_cache *c, const char *key)
{
    if (!key_ok(key))
        return TC_EINVAL;
    char self[TC_KEY_MAX + 2];
    snprintf(self, sizeof(self), "#%s", key);
    TC__INC(tc__metrics_ns(&c->metrics, key)->invalidations);
    const char *tag = self;
    return invalidate(c, &tag, 1, 0);
}

int tc_delete(tc_cache *c, const char *key)
{
    return tc_invalidate_key(c, key);
}

int tc_invalidate_tags(tc_cache *c, const char *const *tags, int ntags, int wait_ms)
{
    if (tags == NULL || ntags < 0 || ntags > TC_TAGS_MAX || wait_ms < 0)
        return TC_EINVAL;
    for (int i = 0; i < ntags; i++) {
        tc_policy one = {.ntags = 1, .tags = {tags[i]}};
        if (tags[i] == NULL || (tags[i][0] == '#' ? !key_ok(tags[i] + 1) : !policy_ok(&one, false)))
            return TC_EINVAL;
    }
    for (int i = 0; i < ntags; i++)
        if (tags[i][0] == '#')
            TC__INC(tc__metrics_ns(&c->metrics, tags[i] + 1)->invalidations);
        else
            TC__INC(c->metrics.tag_invalidations);
    return ntags > 0 ? invalidate(c, tags, ntags, wait_ms) : 0;
}

int tc_invalidate_tag(tc_cache *c, const char *tag)
{
    tc_policy one = {.ntags = 1, .tags = {tag}};
    if (!policy_ok(&one, false)) /* a tag, not "#<key>": that is tc_invalidate_key */
        return TC_EINVAL;
    return tc_invalidate_tags(c, &tag, 1, 0);
}

int tc_clear(tc_cache *c)
{
    TC__INC(c->metrics.clears);
    const char *all = "*";
    return invalidate(c, &all, 1, 0);
}

int tc_ready(tc_cache *c, int wait_ms)
{
    if (wait_ms < 0)
        return TC_EINVAL;
    if (c->redis == NULL)
        return 0;
    uint64_t give_up = tc_mono_us() + (uint64_t)wait_ms * 1000u;
    const char *ping = "PING";
    size_t len = 4;
    for (;;) {
        redisReply *rep = flush_pending(c) ? tc__redis_command(c->redis, 1, &ping, &len) : NULL;
        if (rep != NULL) {
            freeReplyObject(rep);
            return 0;
        }
        if (tc_mono_us() >= give_up)
            return TC_EREDIS;
        tc_sleep_ms(RETRY_SEND_MS);
    }
}

/* ---- shared rate limit ---------------------------------------------------- */

int tc_rate_take(tc_cache *c, const char *name, int burst, int per_minute,
                 int64_t *retry_after_ms)
{
    *retry_after_ms = 0;
    if (!key_ok(name) || burst < 1 || per_minute < 1)
        return TC_EINVAL;
    if (c->redis == NULL)
        return TC_EREDIS;
    char key[TC_KEY_MAX + 256], b[16], step[32];
    const char *argv[3] = {key, b, step};
    size_t lens[3];
    lens[0] = redis_key(c, key, "~rl:", name);
    lens[1] = (size_t)snprintf(b, sizeof(b), "%d", burst);
    lens[2] = (size_t)snprintf(step, sizeof(step), "%.3f", 60000.0 / per_minute);
    redisReply *rep = tc__redis_script(c->redis, TC__SCRIPT_RATE, 1, 3, argv, lens);
    if (rep == NULL)
        return TC_EREDIS;
    int rc = TC_EREDIS;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_INTEGER) {
        rc = rep->element[0]->integer == 1;
        *retry_after_ms = rep->element[1]->integer;
    }
    freeReplyObject(rep);
    return rc;
}

/* ---- the bus -------------------------------------------------------------- */

static void bus_connected(void *ctx)
{
    tc_cache *c = ctx;
    /* Anything loaded while we were deaf may predate a missed message. */
    atomic_fetch_add(&c->global->gen, 1);
    if (c->l1 != NULL)
        tc__l1_clear(c->l1);
    atomic_store(&c->bus_up, true); /* trusted once the first pong is back */
    if (c->bus_lost_at != 0) { /* not the first subscription: a reconnection */
        TC__INC(c->metrics.bus_reconnects);
        say(c, TC_LOG_INFO, "bus", "subscribed again after %.1f s; L1 is used again once the bus "
            "proves it is caught up", (double)(tc_mono_ms() - c->bus_lost_at) / 1000.0);
    }
    c->bus_lost_at = 0;
}

static void bus_lost(void *ctx, const char *cause)
{
    tc_cache *c = ctx;
    atomic_store(&c->bus_up, false);
    tc__fleet_lost(c->fleet);
    atomic_fetch_add(&c->global->gen, 1);
    if (c->l1 != NULL)
        tc__l1_clear(c->l1);
    c->bus_lost_at = tc_mono_ms();
    say(c, TC_LOG_WARN, "bus", "invalidation bus lost (%s): L1 emptied and bypassed until it is "
        "back", cause);
}

static void bus_node(void *ctx, const char *id)
{
    tc_cache *c = ctx;
    tc__fleet_node(c->fleet, id);
}

static void bus_unreachable(void *ctx, const char *cause)
{
    tc_cache *c = ctx;
    if (c->bus_lost_at == 0) /* at start: never subscribed */
        c->bus_lost_at = tc_mono_ms();
    say(c, TC_LOG_WARN, "bus", "cannot subscribe to the invalidation bus (%s): L1 bypassed; "
        "trying again", cause);
}

static void bus_stale(void *ctx)
{
    tc_cache *c = ctx;
    tc__redis_refresh_soon(c->redis);
}

static int bus_address(void *ctx, char *host, size_t n, int *port)
{
    tc_cache *c = ctx;
    return tc__redis_address(c->redis, host, n, port);
}

static void bus_pong(void *ctx, uint64_t sent_us)
{
    tc_cache *c = ctx;
    tc__fleet_pong(c->fleet, sent_us);
}

/* "<seq> <writer id>[@<sent>] <tag>": apply it, and acknowledge it to its writer. */
static void bus_message(void *ctx, const char *msg, size_t len)
{
    tc_cache *c = ctx;
    tc__bus_msg m;
    if (tc__bus_msg_parse(msg, len, &m) != 0)
        return;
    if (m.wlen == strlen(c->instance) && memcmp(m.writer, c->instance, m.wlen) == 0)
        return; /* our own: already applied */
    char tag[TC_KEY_MAX + 2];
    if (m.taglen >= sizeof(tag))
        return;
    memcpy(tag, m.tag, m.taglen);
    tag[m.taglen] = '\0';
    apply_local(c, tag);
    tc__fleet_saw(c->fleet, &m); /* acknowledged after the batch */
}

static void bus_batch_done(void *ctx)
{
    tc_cache *c = ctx;
    tc__fleet_flush_acks(c->fleet);
}

static void bus_direct(void *ctx, const char *msg, size_t len)
{
    tc_cache *c = ctx;
    tc__fleet_acked(c->fleet, msg, len);
}

/* On the bus thread, at least every ping interval, whether subscribed or not:
 * replay invalidations that could not reach Redis as soon as it answers again,
 * not only when this process next reads L2 — until then every other process
 * would still be served the records they invalidate (guarantee 3); keep the
 * membership; notice a lease running out. */
static void bus_tick(void *ctx)
{
    tc_cache *c = ctx;
    flush_pending(c);
    tc__fleet_tick(c->fleet, atomic_load(&c->bus_up));
}

/* A Redis process this instance has not talked to before (redis.c, on the
 * thread that dialed it, before the connection is used). */
static void on_incarnation(void *ctx, const char *run_id)
{
    tc_cache *c = ctx;
    TC__INC(c->metrics.incarnations);
    if (c->cfg.single_instance) { /* no other writer: L1 holds nothing another made stale */
        say(c, TC_LOG_WARN, "redis",
            "a different Redis process answers (run_id %.12s): restarted, restored or "
            "failed over; its records from before are not trusted (L1 kept: single instance)",
            run_id);
        return;
    }
    atomic_fetch_add(&c->global->gen, 1);
    if (c->l1 != NULL)
        tc__l1_clear(c->l1);
    say(c, TC_LOG_WARN, "redis",
        "a different Redis process answers (run_id %.12s): restarted, restored or "
        "failed over; nothing cached before is trusted",
        run_id);
}

/* The sentinels named a new master (on the sentinel thread). */
static void on_master_moved(void *ctx, const char *host, int port)
{
    tc_cache *c = ctx;
    if (tc__redis_set_address(c->redis, host, port) != 1)
        return;
    say(c, TC_LOG_WARN, "sentinel", "the sentinels name a new master, %s:%d: following it", host,
        port);
    tc__bus_reconnect(c->bus);
}

/* ---- life cycle ----------------------------------------------------------- */

void tc_config_init(tc_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->redis_port = 6379;
    cfg->prefix = "tc:";
    cfg->l1_max_bytes = 64u << 20;
    cfg->l1_shards = 16;
    cfg->l1_admission = 1;
    cfg->redis_timeout_ms = 50;
    cfg->connect_timeout_ms = 100;
    cfg->redis_pool_max = 16;
    cfg->breaker_failures = 5;
    cfg->breaker_open_ms = 1000;
    cfg->refresh_workers = 2;
    cfg->refresh_queue = 1024;
    cfg->wait_timeout_ms = 5000;
    cfg->pending_invalidations_max = 4096;
    cfg->lease_ms = 250;
    cfg->l2_compress_min_bytes = 1024;
    cfg->cluster_refresh_ms = 1000;
}

/* A list of cluster nodes that reads as one ("host:port[,host:port...]"). */
static bool nodes_ok(const char *list)
{
    char hosts[16][256];
    int ports[16];
    return tc__sentinel_parse(list, hosts, ports, 16) > 0;
}

tc_cache *tc_cache_create(const tc_config *cfg, int *errp)
{
    int err = TC_EINVAL;
    tc_cache *c = NULL;
    if (cfg == NULL || cfg->prefix == NULL || strlen(cfg->prefix) > 200 ||
        cfg->redis_timeout_ms <= 0 || cfg->connect_timeout_ms <= 0 || cfg->redis_pool_max <= 0 ||
        cfg->breaker_failures <= 0 || cfg->breaker_open_ms <= 0 || cfg->refresh_workers <= 0 ||
        cfg->refresh_queue <= 0 || cfg->wait_timeout_ms <= 0 || cfg->lock_ms < 0 ||
        cfg->pending_invalidations_max <= 0 || cfg->redis_db < 0 || cfg->lease_ms < 5 ||
        cfg->lease_ms > 60000 ||
        /* a cluster has one database, and is not found through sentinels */
        (cfg->cluster_nodes != NULL &&
         (cfg->redis_db != 0 || cfg->sentinels != NULL || cfg->cluster_refresh_ms < 50 ||
          !nodes_ok(cfg->cluster_nodes))) ||
        (cfg->l1_max_bytes > 0 && (cfg->l1_shards <= 0 || (cfg->l1_shards & (cfg->l1_shards - 1)))))
        goto fail;
    err = TC_ENOMEM;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        goto fail;
    c->cfg = *cfg;
    c->log = (tc__logger){cfg->log, cfg->log_ctx};
    tc__metrics_init(&c->metrics);
    pthread_mutex_init(&c->pending_lock, NULL);
    for (int i = 0; i < FLIGHT_SHARDS; i++)
        pthread_mutex_init(&c->flights[i].lock, NULL);
    c->prefix = strdup(cfg->prefix);
    c->prefix_len = strlen(cfg->prefix);
    /* a stripe for each of the server's threads, about; writers are few */
    if ((c->hot_keys = tc__topk_new(16)) == NULL || (c->hot_tags = tc__topk_new(2)) == NULL)
        goto fail;
    c->pending = calloc((size_t)cfg->pending_invalidations_max, sizeof(char *));
    c->tags = tc__tags_new();
    if (c->prefix == NULL || c->pending == NULL || c->tags == NULL ||
        (c->global = tc__tag_get(c->tags, "*", 1)) == NULL)
        goto fail;
    c->cfg.prefix = c->prefix;
    tc_hash_hex(random_u64(), c->instance);
    if (cfg->cluster_nodes != NULL)
        tc__cluster_meta_name(c->prefix, "bus", c->channel, sizeof(c->channel));
    else
        snprintf(c->channel, sizeof(c->channel), "%s~bus:%d", c->prefix, cfg->redis_db);
    if (cfg->l1_max_bytes > 0 &&
        (c->l1 = tc__l1_new(cfg->l1_max_bytes, cfg->l1_shards, cfg->l1_admission != 0)) == NULL)
        goto fail;
    if ((c->pool = tc__pool_new(cfg->refresh_workers, cfg->refresh_queue)) == NULL)
        goto fail;
    char master[256] = "";
    if (cfg->sentinels != NULL) {
        err = TC_EINVAL;
        if (cfg->sentinel_master == NULL ||
            (c->sentinel = tc__sentinel_start(cfg->sentinels, cfg->sentinel_master,
                                              cfg->sentinel_password, cfg->connect_timeout_ms,
                                              on_master_moved, c)) == NULL)
            goto fail;
        err = TC_ENOMEM;
        int port;
        if (tc__sentinel_master(c->sentinel, master, sizeof(master), &port) == 0)
            c->cfg.redis_port = port;
        else
            c->cfg.redis_port = 0; /* nobody knows yet: connects once a sentinel says */
        c->cfg.redis_host = master;
    }
    if (c->cfg.redis_host != NULL || cfg->cluster_nodes != NULL) {
        tc__redis_events ev = {.incarnation = on_incarnation, .ctx = c};
        if ((c->redis = tc__redis_new(&c->cfg, &c->metrics, ev)) == NULL)
            goto fail;
        c->cfg.redis_host = c->cfg.redis_password = NULL; /* owned by redis.c */
        if ((cfg->l2_budget_bytes > 0 || cfg->l2_budget_keys > 0) &&
            (c->budget = tc__budget_new(cfg->l2_budget_bytes, cfg->l2_budget_keys,
                                        tc_mono_ms())) == NULL)
            goto fail;
        if ((c->fleet = tc__fleet_new(&c->cfg, c->redis, &c->metrics, c->instance, c->channel)) ==
            NULL)
            goto fail;
        if (!cfg->single_instance) {
            tc__bus_handler h = {.ctx = c,
                                 .address = bus_address,
                                 .connected = bus_connected,
                                 .node = bus_node,
                                 .lost = bus_lost,
                                 .unreachable = bus_unreachable,
                                 .stale = bus_stale,
                                 .message = bus_message,
                                 .direct = bus_direct,
                                 .pong = bus_pong,
                                 .batch_done = bus_batch_done,
                                 .tick = bus_tick};
            int every = cfg->lease_ms / 5 > 0 ? cfg->lease_ms / 5 : 1;
            if ((c->bus = tc__bus_start(cfg, c->channel, tc__fleet_direct(c->fleet), every, h,
                                        &c->metrics)) == NULL)
                goto fail;
            /* a cache that starts with Redis up starts with its L1 trusted */
            if (tc__bus_wait_connected(c->bus, cfg->connect_timeout_ms * 2))
                for (int i = 0; i < cfg->connect_timeout_ms * 2 && !l1_trusted(c); i++)
                    tc_sleep_ms(1);
        }
        if (c->sentinel != NULL && tc__sentinel_watch(c->sentinel) != 0)
            goto fail;
        if (tc_ready(c, 0) != 0) { /* said once: the breaker's line needs 5 failures */
            char why[512];
            tc__redis_cause(c->redis, why, sizeof(why));
            say(c, TC_LOG_WARN, "redis",
                "not reachable at start (%s): serving from L1 and the loader until it answers",
                why);
        }
    }
    return c;
fail:
    tc_cache_destroy(c);
    if (errp != NULL)
        *errp = err;
    return NULL;
}

void tc_cache_destroy(tc_cache *c)
{
    if (c == NULL)
        return;
    tc__sentinel_stop(c->sentinel); /* first: it may move the others */
    if (c->bus != NULL)
        tc__fleet_leave(c->fleet); /* at once, so writers stop waiting for us */
    tc__bus_stop(c->bus);
    /* finishes or cancels every refresh, so no flight is left; before what a refresh
     * uses (the fleet's lease, the budget, L1, Redis) is freed */
    tc__pool_free(c->pool);
    tc__fleet_free(c->fleet);
    tc__budget_free(c->budget);
    tc__l1_free(c->l1);
    tc__tag_put(c->global);
    tc__tags_free(c->tags);
    tc__redis_free(c->redis);
    for (int i = 0; c->pending != NULL && i < c->npending; i++)
        free(c->pending[i]);
    free(c->pending);
    for (int i = 0; i < FLIGHT_SHARDS; i++)
        pthread_mutex_destroy(&c->flights[i].lock);
    pthread_mutex_destroy(&c->pending_lock);
    tc__metrics_destroy(&c->metrics);
    tc__topk_free(c->hot_keys);
    tc__topk_free(c->hot_tags);
    free(c->prefix);
    free(c);
}

/* ---- metrics -------------------------------------------------------------- */

void tc_metrics_snapshot(tc_cache *c, tc_metrics *m)
{
    memset(m, 0, sizeof(*m));
    int n = atomic_load(&c->metrics.nns);
    const tc__ns *all[TC_NS_MAX];
    for (int i = 0; i < n; i++)
        all[i] = &c->metrics.ns[i];
    all[n++] = &c->metrics.ns[TC_NS_MAX - 1]; /* "other" */
    for (int i = 0; i < n; i++) {
        const tc__ns *s = all[i];
        tc_ns_metrics *d = &m->ns[m->nns];
        if (i == n - 1 && atomic_load(&s->l1_hits) + atomic_load(&s->misses) +
                                  atomic_load(&s->l2_hits) + atomic_load(&s->invalidations) ==
                              0)
            break; /* "other" unused */
        snprintf(d->name, sizeof(d->name), "%s", s->name);
        d->l1_hits = atomic_load(&s->l1_hits);
        d->l2_hits = atomic_load(&s->l2_hits);
        d->misses = atomic_load(&s->misses);
        d->coalesced = atomic_load(&s->coalesced);
        d->stale_served = atomic_load(&s->stale_served);
        d->refreshes = atomic_load(&s->refreshes);
        d->refresh_dropped = atomic_load(&s->refresh_dropped);
        d->load_errors = atomic_load(&s->load_errors);
        d->invalidations = atomic_load(&s->invalidations);
        tc__hist_copy(&s->hit_latency, &d->hit_latency);
        tc__hist_copy(&s->load_latency, &d->load_latency);
        m->nns++;
    }
    m->tag_invalidations = atomic_load(&c->metrics.tag_invalidations);
    m->clears = atomic_load(&c->metrics.clears);
    m->bus_messages = atomic_load(&c->metrics.bus_messages);
    m->bus_reconnects = atomic_load(&c->metrics.bus_reconnects);
    m->pending_invalidations = (uint64_t)atomic_load(&c->pending_count);
    if (c->l1 != NULL) {
        tc__l1_stats(c->l1, &m->l1_entries, &m->l1_bytes, &m->l1_evictions);
        m->l1_rejections = tc__l1_rejections(c->l1);
    }
    m->redis_errors = atomic_load(&c->metrics.redis_errors);
    m->breaker_opens = atomic_load(&c->metrics.breaker_opens);
    m->breaker_open = c->redis != NULL && tc__redis_breaker_open(c->redis);
    m->bus_connected = c->bus != NULL && atomic_load(&c->bus_up);
    m->l1_trusted = l1_trusted(c);
    m->lease_lapses = atomic_load(&c->metrics.lease_lapses);
    m->incarnations = atomic_load(&c->metrics.incarnations);
    m->ack_timeouts = atomic_load(&c->metrics.ack_timeouts);
    m->l2_budget_refusals = atomic_load(&c->metrics.budget_refusals);
    m->cluster_moved = atomic_load(&c->metrics.cluster_moved);
    m->cluster_ask = atomic_load(&c->metrics.cluster_ask);
    m->cluster_retries = atomic_load(&c->metrics.cluster_retries);
    m->cluster_down = atomic_load(&c->metrics.cluster_down);
    m->cluster_refreshes = atomic_load(&c->metrics.cluster_refreshes);
    m->l2_decode_errors = atomic_load(&c->metrics.l2_decode_errors);
    m->l2_compressed_writes = atomic_load(&c->metrics.l2_compressed);
    m->l2_compressed_saved_bytes = atomic_load(&c->metrics.l2_compress_saved);
    if (c->budget != NULL)
        tc__budget_read(c->budget, tc_mono_ms(), &m->l2_budget_bytes, &m->l2_budget_keys);
    tc__hist_copy(&c->metrics.redis_latency, &m->redis_latency);
    tc__hist_copy(&c->metrics.invalidate_latency, &m->invalidate_latency);
    tc__hist_copy(&c->metrics.bus_lag, &m->bus_lag);
}

void tc_hot_snapshot(tc_cache *c, tc_hot *h)
{
    uint64_t skipped_tags;
    memset(h, 0, sizeof(*h));
    h->nkeys = tc__topk_read(c->hot_keys, h->keys, TC_HOT_MAX, &h->key_reads, &h->skipped);
    h->ntags =
        tc__topk_read(c->hot_tags, h->tags, TC_HOT_MAX, &h->tag_invalidations, &skipped_tags);
    h->skipped += skipped_tags;
}

/*
 * The fleet: what lets an instance know it may serve from its L1, and lets a
 * writer know every other instance has applied its invalidation.
 *
 * DESIGN — why no instance serves what another's write replaced.
 *
 * A message on the bus is not an acknowledgement, so an invalidation does not
 * return when it is published; it returns when every instance that could
 * still be serving the old entry from its L1 has either applied it or stopped
 * trusting its L1:
 *   - Lease. An instance trusts its L1 only until trust_until. The bus thread
 *     pings Redis on the subscribed connection every lease/5; the PONG of a
 *     ping sent at s comes after every message published before Redis saw the
 *     ping, so once it is handled the instance has applied all of them and
 *     may trust L1 until s + lease (tc__fleet_pong). An instance cut off from
 *     Redis, stalled, or simply slow stops trusting L1 one lease after its
 *     last answered ping, whatever its threads do: readers compare the clock
 *     with trust_until, no one has to act (tc__fleet_trusted).
 *   - Membership. Every instance registers itself in a sorted set every
 *     lease, for member_ttl, as "<id>/<lease ms>", and trusts L1 only while
 *     its registration is known to hold: an instance the set does not list is
 *     not trusting L1.
 *   - Acknowledgement. The INVALIDATE script bumps the tags, publishes one
 *     message per tag under one sequence number, and returns that number and
 *     the members (tc__fleet_send). Each other member applies the messages and
 *     publishes "ack <its id> <seq>" on the writer's own channel
 *     (tc__fleet_saw, tc__fleet_flush_acks). The writer returns when every
 *     member has acknowledged, or when the longest lease among them has run
 *     out since the script's reply (tc__fleet_wait): a member that did not
 *     answer by then had its last ping answered before the message, so its
 *     lease is over.
 * Bounds: L1 trust ends within one lease (250 ms) of losing Redis; an
 * invalidation costs a round trip plus the slowest member's answer, at most
 * one lease.
 *
 * On a Redis Cluster the same holds per master of the meta slot, where the
 * bus listens and the meta script publishes: a member's entry also names the
 * node its bus listens on ("<id>/<lease>@<node>"), and the meta script does
 * not publish on a node some live member does not listen on (cluster.c).
 *
 * Not for: applying invalidations, the bus connection itself (cache.c,
 * bus.c), what a new Redis means (redis.c's incarnation check).
 *
 * Threads: tc__fleet_trusted on any thread (an atomic and a coarse clock);
 * tc__fleet_send/wait on writers' threads; everything else on the bus thread,
 * which alone touches the fields marked so. Writers' waits and the
 * acknowledgements seen are guarded by ack_lock.
 */
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cache/cluster.h"

#define MEMBERS_MAX 64 /* instances a writer waits for by name; past it, for the lease */
#define ACKS_SEEN 256  /* acknowledgements remembered for writers yet to wait for them */
#define ACK_BATCH 64   /* (writer, seq) pairs acknowledged at once */
#define ID_LEN 16      /* an instance id: 16 hex digits */

/* A writer waiting for the members to acknowledge its invalidation. */
struct tc__fleet_wait {
    struct tc__fleet_wait *next;
    uint64_t seq;
    int n, left;
    uint64_t lease_us; /* the longest lease among the members: the wait's bound */
    char ids[MEMBERS_MAX][ID_LEN + 1];
    bool got[MEMBERS_MAX];
};

struct tc__fleet {
    tc__redis *redis;
    tc__metrics *m;
    tc__logger log;
    char instance[ID_LEN + 1];
    bool cluster;
    pthread_mutex_t member_lock; /* member: the bus thread changes it on a cluster */
    char member[96];       /* "<instance>/<lease ms>", on a cluster "...@<node id>" */
    char registered[96];   /* the entry last registered (bus thread) */
    char channel[256];     /* the bus: <prefix>~bus:<db> */
    char direct[256];      /* ours: <prefix>~me:<db>:<instance> */
    char direct_pfx[256];  /* another's is direct_pfx + its id */
    char members_key[256]; /* <prefix>~members:<db> */
    char seq_key[256];     /* <prefix>~seq */
    uint64_t lease_us, member_ttl_ms, coarse_res_us;
    _Atomic uint64_t trust_until; /* monotonic µs; 0: L1 not trusted */

    /* bus thread only */
    uint64_t pong_until, reg_until, last_reg;
    bool trusted;
    char lag_writer[ID_LEN]; /* the invalidation whose lag was recorded last */
    uint64_t lag_seq;
    struct {
        char writer[ID_LEN + 1];
        uint64_t seq;
    } to_ack[ACK_BATCH];
    int nto_ack;

    pthread_mutex_t ack_lock;
    tc_cond ack_cond;
    tc__fleet_wait *waits;
    struct {
        char id[ID_LEN + 1];
        uint64_t seq;
    } seen[ACKS_SEEN];
    int seen_next;
};

#define say(f, ...) tc__say(&(f)->log, __VA_ARGS__)

tc__fleet *tc__fleet_new(const tc_config *cfg, tc__redis *r, tc__metrics *m, const char *instance,
                         const char *channel)
{
    tc__fleet *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->redis = r;
    f->m = m;
    f->log = (tc__logger){cfg->log, cfg->log_ctx};
    snprintf(f->instance, sizeof(f->instance), "%s", instance);
    snprintf(f->member, sizeof(f->member), "%s/%d", instance, cfg->lease_ms);
    snprintf(f->channel, sizeof(f->channel), "%s", channel);
    f->cluster = cfg->cluster_nodes != NULL;
    if (f->cluster) { /* one slot for all of them: the meta hash tag */
        tc__cluster_meta_name(cfg->prefix, "me:", f->direct_pfx, sizeof(f->direct_pfx));
        tc__cluster_meta_name(cfg->prefix, "members", f->members_key, sizeof(f->members_key));
        tc__cluster_meta_name(cfg->prefix, "seq", f->seq_key, sizeof(f->seq_key));
    } else {
        snprintf(f->direct_pfx, sizeof(f->direct_pfx), "%s~me:%d:", cfg->prefix, cfg->redis_db);
        snprintf(f->members_key, sizeof(f->members_key), "%s~members:%d", cfg->prefix,
                 cfg->redis_db);
        snprintf(f->seq_key, sizeof(f->seq_key), "%s~seq", cfg->prefix);
    }
    snprintf(f->direct, sizeof(f->direct), "%s%s", f->direct_pfx, instance);
    f->lease_us = (uint64_t)cfg->lease_ms * 1000u;
    f->member_ttl_ms = cfg->lease_ms * 8u > 2000u ? cfg->lease_ms * 8u : 2000u;
    f->coarse_res_us = tc_mono_coarse_res_us();
    pthread_mutex_init(&f->member_lock, NULL);
    pthread_mutex_init(&f->ack_lock, NULL);
    tc_cond_init(&f->ack_cond);
    return f;
}

void tc__fleet_free(tc__fleet *f)
{
    if (f == NULL)
        return;
    TC_ASSERT(f->waits == NULL); /* every writer is done before the cache is destroyed */
    tc_cond_destroy(&f->ack_cond);
    pthread_mutex_destroy(&f->ack_lock);
    pthread_mutex_destroy(&f->member_lock);
    free(f);
}

const char *tc__fleet_direct(const tc__fleet *f)
{
    return f->direct;
}

void tc__fleet_node(tc__fleet *f, const char *node)
{
    pthread_mutex_lock(&f->member_lock);
    char *at = strchr(f->member, '@');
    if (at != NULL)
        *at = '\0';
    size_t len = strlen(f->member);
    snprintf(f->member + len, sizeof(f->member) - len, "@%s", node);
    pthread_mutex_unlock(&f->member_lock);
}

/* The entry this instance registers as now. */
static void member_now(tc__fleet *f, char *out, size_t n)
{
    pthread_mutex_lock(&f->member_lock);
    snprintf(out, n, "%s", f->member);
    pthread_mutex_unlock(&f->member_lock);
}

/* ---- the lease -------------------------------------------------------------- */

/* The coarse clock lags by at most one tick, so adding its resolution keeps the
 * answer on the safe side; it costs a few nanoseconds on every hit. */
bool tc__fleet_trusted(tc__fleet *f)
{
    uint64_t until = atomic_load_explicit(&f->trust_until, memory_order_acquire);
    return until != 0 && tc_mono_coarse_us() + f->coarse_res_us < until;
}

/* The lease is the older of the two proofs (DESIGN above). Bus thread only. */
static void update_trust(tc__fleet *f, bool subscribed)
{
    uint64_t until = f->pong_until < f->reg_until ? f->pong_until : f->reg_until;
    atomic_store_explicit(&f->trust_until, until, memory_order_release);
    bool now_trusted = until > tc_mono_us();
    if (now_trusted == f->trusted)
        return;
    f->trusted = now_trusted;
    if (now_trusted) {
        say(f, TC_LOG_INFO, "cache", "L1 trusted again: the invalidation bus is caught up");
    } else if (subscribed) {
        TC__INC(f->m->lease_lapses);
        say(f, TC_LOG_WARN, "cache",
            "L1 not trusted: no proof within %llu ms that every invalidation has arrived (Redis "
            "slow or unreachable); reading through to Redis and the loader",
            (unsigned long long)(f->lease_us / 1000));
    }
}

void tc__fleet_pong(tc__fleet *f, uint64_t sent_us)
{
    if (sent_us + f->lease_us > f->pong_until)
        f->pong_until = sent_us + f->lease_us;
    update_trust(f, true);
}

bool tc__fleet_lost(tc__fleet *f)
{
    /* Both proofs were about the Redis we were subscribed to. A Redis we meet
     * next (restarted, restored, failed over) may list us with an older entry,
     * or not at all: register there before trusting L1 again. */
    f->pong_until = f->reg_until = f->last_reg = 0;
    atomic_store(&f->trust_until, 0);
    f->nto_ack = 0;
    bool was = f->trusted;
    f->trusted = false;
    return was;
}

/* Keeps this instance listed among the members (DESIGN above). */
static void register_member(tc__fleet *f, uint64_t now)
{
    char ttl[24], member[sizeof(f->member)];
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)f->member_ttl_ms);
    member_now(f, member, sizeof(member));
    /* an entry that changed (a cluster's bus moved) replaces the one before */
    bool replaces = f->registered[0] != '\0' && strcmp(f->registered, member) != 0;
    const char *argv[4] = {f->members_key, member, ttl, f->registered};
    size_t lens[4] = {strlen(f->members_key), strlen(member), strlen(ttl), strlen(f->registered)};
    f->last_reg = now;
    redisReply *rep =
        tc__redis_script(f->redis, TC__SCRIPT_REGISTER, 1, replaces ? 4 : 3, argv, lens);
    if (rep == NULL)
        return;
    freeReplyObject(rep);
    memcpy(f->registered, member, sizeof(member));
    f->reg_until = now + f->member_ttl_ms * 1000u; /* now: taken before it was sent */
}

void tc__fleet_tick(tc__fleet *f, bool subscribed)
{
    uint64_t now = tc_mono_us();
    if (subscribed && now - f->last_reg >= f->lease_us) {
        register_member(f, now);
        update_trust(f, subscribed);
    } else if (f->trusted && now >= atomic_load(&f->trust_until)) {
        update_trust(f, subscribed);
    }
}

void tc__fleet_leave(tc__fleet *f)
{
    char member[sizeof(f->member)];
    member_now(f, member, sizeof(member));
    const char *argv[3] = {"ZREM", f->members_key, member};
    size_t lens[3] = {4, strlen(f->members_key), strlen(member)};
    redisReply *rep = tc__redis_command(f->redis, 3, argv, lens);
    if (rep != NULL)
        freeReplyObject(rep);
}

/* ---- acknowledging others' invalidations (bus thread) --------------------- */

static bool all_digits(const char *p, const char *end)
{
    if (p == end)
        return false;
    for (; p < end; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

int tc__bus_msg_parse(const char *msg, size_t len, tc__bus_msg *m)
{
    memset(m, 0, sizeof(*m));
    const char *end = msg + len, *sp1 = memchr(msg, ' ', len);
    const char *sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
    if (sp2 == NULL || sp2 + 1 == end || !all_digits(msg, sp1) || sp1 - msg > 19)
        return TC_EINVAL;
    for (const char *p = msg; p < sp1; p++)
        m->seq = m->seq * 10 + (uint64_t)(*p - '0');
    m->writer = sp1 + 1;
    const char *at = memchr(m->writer, '@', (size_t)(sp2 - m->writer));
    m->wlen = (size_t)((at != NULL ? at : sp2) - m->writer);
    /* A time that is no number is left out; the invalidation still counts. */
    if (at != NULL && all_digits(at + 1, sp2) && sp2 - (at + 1) <= 18)
        for (const char *p = at + 1; p < sp2; p++)
            m->sent_us = m->sent_us * 10 + (*p - '0');
    m->tag = sp2 + 1;
    m->taglen = (size_t)(end - m->tag);
    return 0;
}

void tc__fleet_saw(tc__fleet *f, const tc__bus_msg *msg)
{
    const char *writer = msg->writer;
    uint64_t seq = msg->seq;
    if (msg->wlen != ID_LEN || memcmp(writer, f->instance, ID_LEN) == 0)
        return; /* not an instance's id, or ours: we do not wait for ourselves */
    /* Its delivery lag, once per invalidation: its tags come as messages in a row. */
    if (msg->sent_us != 0 && (seq != f->lag_seq || memcmp(writer, f->lag_writer, ID_LEN) != 0)) {
        memcpy(f->lag_writer, writer, ID_LEN);
        f->lag_seq = seq;
        int64_t lag = tc_wall_us() - msg->sent_us;
        tc__hist_add(&f->m->bus_lag, lag > 0 ? (uint64_t)lag : 0);
    }
    for (int i = 0; i < f->nto_ack; i++)
        if (f->to_ack[i].seq == seq && memcmp(f->to_ack[i].writer, writer, ID_LEN) == 0)
            return; /* the same invalidation's other tags */
    if (f->nto_ack == ACK_BATCH)
        tc__fleet_flush_acks(f);
    memcpy(f->to_ack[f->nto_ack].writer, writer, ID_LEN);
    f->to_ack[f->nto_ack].writer[ID_LEN] = '\0';
    f->to_ack[f->nto_ack].seq = seq;
    f->nto_ack++;
}

/* One "ack <our id> <seq>..." per writer, on its own channel, once every
 * message of the batch has been applied. */
void tc__fleet_flush_acks(tc__fleet *f)
{
    for (int i = 0; i < f->nto_ack; i++) {
        if (f->to_ack[i].writer[0] == '\0')
            continue; /* sent with an earlier one */
        char chan[300], msg[24 + ACK_BATCH * 21];
        int clen = snprintf(chan, sizeof(chan), "%s%s", f->direct_pfx, f->to_ack[i].writer);
        int mlen = snprintf(msg, sizeof(msg), "ack %s", f->instance);
        for (int j = i; j < f->nto_ack; j++) {
            if (strcmp(f->to_ack[j].writer, f->to_ack[i].writer) != 0)
                continue;
            mlen += snprintf(msg + mlen, sizeof(msg) - (size_t)mlen, " %llu",
                             (unsigned long long)f->to_ack[j].seq);
            if (j > i)
                f->to_ack[j].writer[0] = '\0';
        }
        const char *argv[3] = {"PUBLISH", chan, msg};
        size_t lens[3] = {7, (size_t)clen, (size_t)mlen};
        redisReply *rep = tc__redis_command(f->redis, 3, argv, lens);
        if (rep != NULL) /* if not, the writer waits out our lease instead */
            freeReplyObject(rep);
    }
    f->nto_ack = 0;
}

/* ---- a writer's side ---------------------------------------------------------- */

/* "ack <member id> <seq> [<seq>...]" on our own channel (bus thread). */
void tc__fleet_acked(tc__fleet *f, const char *msg, size_t len)
{
    if (len < 4 + ID_LEN || memcmp(msg, "ack ", 4) != 0)
        return;
    char id[ID_LEN + 1];
    memcpy(id, msg + 4, ID_LEN);
    id[ID_LEN] = '\0';
    const char *p = msg + 4 + ID_LEN, *end = msg + len;
    pthread_mutex_lock(&f->ack_lock);
    while (p < end && *p == ' ') {
        uint64_t seq = 0;
        for (p++; p < end && *p >= '0' && *p <= '9'; p++)
            seq = seq * 10 + (uint64_t)(*p - '0');
        memcpy(f->seen[f->seen_next].id, id, sizeof(id));
        f->seen[f->seen_next].seq = seq;
        f->seen_next = (f->seen_next + 1) % ACKS_SEEN;
        for (tc__fleet_wait *w = f->waits; w != NULL; w = w->next)
            if (w->seq == seq)
                for (int j = 0; j < w->n; j++)
                    if (!w->got[j] && strcmp(w->ids[j], id) == 0) {
                        w->got[j] = true;
                        w->left--;
                    }
    }
    tc_cond_broadcast(&f->ack_cond);
    pthread_mutex_unlock(&f->ack_lock);
}

static uint64_t random_step(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != sizeof(v))
        v = tc_mono_us() * 0x9e3779b97f4a7c15ull;
    return 1 + v % 1000000u;
}

/* Reads the members the script returned into w; its lease bound is the longest. */
static void read_members(tc__fleet *f, const redisReply *m, tc__fleet_wait *w)
{
    for (size_t i = 0; i < m->elements; i++) {
        /* "<id>/<its lease in ms>[@<node>]": a member configured with a longer lease
         * than ours is waited for as long as it may trust its L1 */
        const redisReply *id = m->element[i];
        if (id->type != REDIS_REPLY_STRING || id->len < ID_LEN + 2 || id->str[ID_LEN] != '/' ||
            memcmp(id->str, f->instance, ID_LEN) == 0)
            continue; /* not a member, or ourselves */
        char *end;
        unsigned long long lease = strtoull(id->str + ID_LEN + 1, &end, 10);
        if ((*end != '\0' && *end != '@') || lease == 0 ||
            lease > 60000u) /* what tc_cache_create refuses */
            lease = f->lease_us / 1000u;
        if (lease * 1000u > w->lease_us)
            w->lease_us = lease * 1000u;
        w->left++;
        if (w->n == MEMBERS_MAX)
            continue; /* cannot be named: never acknowledged, the lease covers it */
        memcpy(w->ids[w->n], id->str, ID_LEN);
        w->ids[w->n][ID_LEN] = '\0';
        w->n++;
    }
}

int tc__fleet_send(tc__fleet *f, const char *const *tag_keys, const size_t *tag_lens,
                   const char *const *val_keys, const size_t *val_lens, int nval,
                   const char *const *tags, int n, tc__fleet_wait **waitp)
{
    /* KEYS: seq, members, n tags, the values; ARGV: channel, id, n, step, epoch, px, the tags */
    const char *argv[2 + 2 * TC_TAGS_MAX + 6 + TC_TAGS_MAX];
    size_t lens[TC_COUNTOF(argv)];
    char num[12], step[24], epoch[24], px[24], sender[ID_LEN + 24];
    TC_ASSERT(n >= 1 && n <= TC_TAGS_MAX && nval >= 0 && nval <= n);
    int argc = 0;
    argv[argc] = f->seq_key, lens[argc++] = strlen(f->seq_key);
    argv[argc] = f->members_key, lens[argc++] = strlen(f->members_key);
    for (int i = 0; i < n; i++)
        argv[argc] = tag_keys[i], lens[argc++] = tag_lens[i];
    for (int i = 0; i < nval; i++)
        argv[argc] = val_keys[i], lens[argc++] = val_lens[i];
    int nkeys = argc;
    snprintf(num, sizeof(num), "%d", n);
    snprintf(step, sizeof(step), "%llu", (unsigned long long)random_step());
    argv[argc] = f->channel, lens[argc++] = strlen(f->channel);
    /* the writer as the messages name it: our id and the time we send them */
    snprintf(sender, sizeof(sender), "%s@%lld", f->instance, (long long)tc_wall_us());
    argv[argc] = sender, lens[argc++] = strlen(sender);
    argv[argc] = num, lens[argc++] = strlen(num);
    argv[argc] = step, lens[argc++] = strlen(step);
    snprintf(epoch, sizeof(epoch), "%llu", (unsigned long long)tc__random_epoch());
    snprintf(px, sizeof(px), "%d", TC__NEW_TAG_TTL_MS);
    argv[argc] = epoch, lens[argc++] = strlen(epoch);
    argv[argc] = px, lens[argc++] = strlen(px);
    for (int i = 0; i < n; i++)
        argv[argc] = tags[i], lens[argc++] = strlen(tags[i]);
    redisReply *rep = tc__redis_script(f->redis, TC__SCRIPT_INVALIDATE, nkeys, argc, argv, lens);
    if (rep == NULL)
        return TC_EREDIS;
    if (waitp == NULL) { /* a replay: nobody waits for it */
        freeReplyObject(rep);
        return 0;
    }
    tc__fleet_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        freeReplyObject(rep);
        return TC_ENOMEM;
    }
    w->lease_us = f->lease_us;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_ARRAY) {
        w->seq = (uint64_t)rep->element[0]->integer;
        read_members(f, rep->element[1], w);
    } else {
        w->left = 1; /* Redis ran it, but the answer is unreadable: wait out the lease */
    }
    freeReplyObject(rep);
    pthread_mutex_lock(&f->ack_lock);
    for (int i = 0; i < ACKS_SEEN; i++) /* acknowledgements faster than the reply */
        if (f->seen[i].seq == w->seq && w->seq != 0)
            for (int j = 0; j < w->n; j++)
                if (!w->got[j] && strcmp(w->ids[j], f->seen[i].id) == 0) {
                    w->got[j] = true;
                    w->left--;
                }
    w->next = f->waits;
    f->waits = w;
    pthread_mutex_unlock(&f->ack_lock);
    *waitp = w;
    return 0;
}

void tc__fleet_wait_acks(tc__fleet *f, tc__fleet_wait *w)
{
    tc_deadline until = {tc_mono_us() + w->lease_us};
    pthread_mutex_lock(&f->ack_lock);
    while (w->left > 0) {
        if (tc_deadline_expired(until)) {
            TC__INC(f->m->ack_timeouts);
            break;
        }
        tc_cond_wait_until(&f->ack_cond, &f->ack_lock, until);
    }
    tc__fleet_wait **pp = &f->waits;
    while (*pp != w)
        pp = &(*pp)->next;
    *pp = w->next;
    pthread_mutex_unlock(&f->ack_lock);
    free(w);
}

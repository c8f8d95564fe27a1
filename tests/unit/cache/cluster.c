/*
 * Tests the pure parts of src/cache/cluster.c, the routing of the L2 on a Redis
 * Cluster: a key's slot decides which master holds it, so a wrong slot sends a
 * read or an invalidation to a master that does not have the key (a miss at
 * best, a counter read as missing, an invalidation lost at worst). Proves:
 *   - the slot of a key on known vectors (CRC16/XMODEM "123456789" = 0x31C3,
 *     slot 12739; every value below is what Redis 7.0.15's CLUSTER KEYSLOT says),
 *     and the hash-tag rules: "{user1000}.following" and ".followers" share a
 *     slot; "{}x" and "x{" hash the whole key; only the first {...} counts;
 *   - MOVED and ASK replies read exactly, and anything else is no redirection;
 *   - a CLUSTER SLOTS reply becomes the masters and a master per slot ("?" or
 *     an empty address: the host asked), and a malformed one is refused;
 *   - the meta names share one slot whatever the prefix; an incarnation marker
 *     key lands in the slot asked for, or is refused when the prefix's own
 *     hash tag makes that impossible.
 */
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cluster.h"
#include "check.h"

static unsigned slot_of(const char *key)
{
    return tc__cluster_slot(key, strlen(key));
}

static void test_slot_vectors(void)
{
    static const struct {
        const char *key;
        unsigned slot;
    } known[] = {
        {"123456789", 12739},       {"somekey", 11058},
        {"foo", 12182},             {"bar", 5061},
        {"hello", 866},             {"{user1000}.following", 3443},
        {"{user1000}.followers", 3443}, {"{}x", 10595},
        {"x{", 3596},               {"foo{}{bar}", 8363},
        {"foo{{bar}}zap", 4015},    {"foo{bar}{zap}", 5061},
        {"x{y", 2740},              {"{a}", 15495},
        {"tc:~{tc:meta}seq", 14026}, {"tc:~{tc:meta}bus", 14026},
        {"tc:~t:*", 5518},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (!CHECK(slot_of(known[i].key) == known[i].slot))
            fprintf(stderr, "    slot of '%s': %u, Redis says %u\n", known[i].key,
                    slot_of(known[i].key), known[i].slot);
    /* 0x31C3 = 12739 < 16384: the CRC itself, for the reference vector */
    CHECK_EQ_INT(0x31C3 & 16383, 12739);
    /* the tag alone decides */
    CHECK_EQ_INT(slot_of("{bar}anything"), slot_of("bar"));
    CHECK_EQ_INT(slot_of("prefix{bar}"), slot_of("bar"));
    /* bytes after a NUL count (keys are binary), lengths are honoured */
    CHECK(tc__cluster_slot("foo\0x", 5) != tc__cluster_slot("foo", 3));
    CHECK_EQ_INT(tc__cluster_slot("foobar", 3), slot_of("foo"));
    CHECK_EQ_INT(tc__cluster_slot("{ab}", 3), slot_of("{ab")); /* no closing brace in len */
    CHECK(slot_of("") < 16384);
}

static void test_redirects(void)
{
    tc__redirect r;
    const char *moved = "MOVED 3999 127.0.0.1:6381";
    CHECK_EQ_INT(tc__cluster_redirect(moved, strlen(moved), &r), TC__REDIRECT_MOVED);
    CHECK_EQ_INT(r.slot, 3999);
    CHECK_EQ_STR(r.host, "127.0.0.1");
    CHECK_EQ_INT(r.port, 6381);
    const char *ask = "ASK 0 10.1.2.3:7000";
    CHECK_EQ_INT(tc__cluster_redirect(ask, strlen(ask), &r), TC__REDIRECT_ASK);
    CHECK_EQ_INT(r.slot, 0);
    CHECK_EQ_STR(r.host, "10.1.2.3");
    CHECK_EQ_INT(r.port, 7000);
    const char *v6 = "MOVED 16383 ::1:7001"; /* the port follows the last colon */
    CHECK_EQ_INT(tc__cluster_redirect(v6, strlen(v6), &r), TC__REDIRECT_MOVED);
    CHECK_EQ_INT(r.slot, 16383);
    CHECK_EQ_STR(r.host, "::1");
    CHECK_EQ_INT(r.port, 7001);
    const char *unknown = "MOVED 5 ?:7002", *empty = "ASK 5 :7002";
    CHECK_EQ_INT(tc__cluster_redirect(unknown, strlen(unknown), &r), TC__REDIRECT_MOVED);
    CHECK_EQ_STR(r.host, "");
    CHECK_EQ_INT(tc__cluster_redirect(empty, strlen(empty), &r), TC__REDIRECT_ASK);
    CHECK_EQ_STR(r.host, "");
    CHECK_EQ_INT(r.port, 7002);
    /* only the given length is read */
    CHECK_EQ_INT(tc__cluster_redirect(moved, strlen(moved) - 2, &r), TC__REDIRECT_MOVED);
    CHECK_EQ_INT(r.port, 63);

    static const char *const bad[] = {
        "MOVED",         "MOVED ",           "MOVED x 1.2.3.4:5", "MOVED 16384 h:1",
        "MOVED 1 h:",    "MOVED 1 h:99999",  "MOVED 1 h:0",       "MOVED 1 h",
        "MOVED 1",       "MOVED 1 h:12x",    "MOVEDX 1 h:2",      "ASKING",
        "ERR MOVED 1 h:2", "TRYAGAIN Multiple keys", "CLUSTERDOWN The cluster is down",
        "NOSCRIPT No matching script", "MOVED 123456 h:1", "moved 1 h:2",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (!CHECK(tc__cluster_redirect(bad[i], strlen(bad[i]), &r) == TC__REDIRECT_NONE))
            fprintf(stderr, "    '%s' read as a redirection\n", bad[i]);
}

/* ---- CLUSTER SLOTS replies built by hand (freed with freeReplyObject) ----------- */

static redisReply *node(int type)
{
    redisReply *r = calloc(1, sizeof(*r));
    r->type = type;
    return r;
}

static redisReply *integer(long long v)
{
    redisReply *r = node(REDIS_REPLY_INTEGER);
    r->integer = v;
    return r;
}

static redisReply *string(const char *s)
{
    redisReply *r = node(REDIS_REPLY_STRING);
    r->len = strlen(s);
    r->str = strdup(s);
    return r;
}

static redisReply *array(size_t n, ...)
{
    redisReply *r = node(REDIS_REPLY_ARRAY);
    r->elements = n;
    r->element = calloc(n > 0 ? n : 1, sizeof(*r->element));
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

static redisReply *range(long long first, long long last, const char *host, long long port,
                         const char *id)
{
    redisReply *master = id != NULL ? array(3, string(host), integer(port), string(id))
                                    : array(2, string(host), integer(port));
    redisReply *replica = array(3, string("127.0.0.1"), integer(9999), string("replica-id"));
    return array(4, integer(first), integer(last), master, replica);
}

static void test_parse_slots(void)
{
    static int16_t owner[TC__SLOTS];
    tc__node_addr nodes[8];
    redisReply *rep = array(4, range(0, 5460, "127.0.0.1", 7000, "aaaa"),
                            range(5461, 10922, "127.0.0.1", 7001, "bbbb"),
                            range(10923, 16000, "?", 7002, NULL),
                            range(16001, 16383, "127.0.0.1", 7000, "aaaa"));
    int n = tc__cluster_parse_slots(rep, "10.0.0.9", nodes, 8, owner);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(nodes[0].host, "127.0.0.1");
    CHECK_EQ_INT(nodes[0].port, 7000);
    CHECK_EQ_STR(nodes[0].id, "aaaa");
    CHECK_EQ_INT(nodes[1].port, 7001);
    CHECK_EQ_STR(nodes[2].host, "10.0.0.9"); /* "?": the host asked */
    CHECK_EQ_STR(nodes[2].id, "");
    CHECK_EQ_INT(owner[0], 0);
    CHECK_EQ_INT(owner[5460], 0);
    CHECK_EQ_INT(owner[5461], 1);
    CHECK_EQ_INT(owner[10922], 1);
    CHECK_EQ_INT(owner[10923], 2);
    CHECK_EQ_INT(owner[16000], 2);
    CHECK_EQ_INT(owner[16001], 0); /* the same master twice is one master */
    CHECK_EQ_INT(owner[16383], 0);
    freeReplyObject(rep);

    /* a gap: no master for those slots; an empty address is the host asked */
    rep = array(1, range(100, 200, "", 7005, "cccc"));
    n = tc__cluster_parse_slots(rep, "h", nodes, 8, owner);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(nodes[0].host, "h");
    CHECK_EQ_INT(owner[99], -1);
    CHECK_EQ_INT(owner[100], 0);
    CHECK_EQ_INT(owner[200], 0);
    CHECK_EQ_INT(owner[201], -1);
    freeReplyObject(rep);

    /* too many masters for the room given */
    rep = array(2, range(0, 1, "a", 1, NULL), range(2, 3, "b", 2, NULL));
    CHECK_EQ_INT(tc__cluster_parse_slots(rep, "h", nodes, 1, owner), TC_EINVAL);
    freeReplyObject(rep);

    /* malformed replies */
    redisReply *bad[] = {
        string("ERR not a cluster"),
        array(1, string("x")),
        array(1, array(2, integer(0), integer(5))),
        array(1, array(3, integer(5), integer(4), array(2, string("h"), integer(1)))),
        array(1, array(3, integer(0), integer(16384), array(2, string("h"), integer(1)))),
        array(1, array(3, integer(-1), integer(3), array(2, string("h"), integer(1)))),
        array(1, array(3, integer(0), integer(3), array(2, string("h"), integer(0)))),
        array(1, array(3, integer(0), integer(3), array(2, string("h"), integer(65536)))),
        array(1, array(3, integer(0), integer(3), array(1, string("h")))),
        array(1, array(3, integer(0), integer(3), array(2, integer(1), integer(1)))),
        array(1, array(3, string("0"), integer(3), array(2, string("h"), integer(1)))),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (!CHECK(tc__cluster_parse_slots(bad[i], "h", nodes, 8, owner) == TC_EINVAL))
            fprintf(stderr, "    malformed reply %zu accepted\n", i);
        freeReplyObject(bad[i]);
    }
    CHECK_EQ_INT(tc__cluster_parse_slots(NULL, "h", nodes, 8, owner), TC_EINVAL);
}

static void test_meta_names_share_a_slot(void)
{
    static const char *const prefixes[] = {"tc:", "app1:", "a{b", "x}", "", "{p}q", "}{", "{"};
    static const char *const names[] = {"seq", "members", "bus", "me:0123456789abcdef"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        char first[256], other[256];
        CHECK_EQ_INT(tc__cluster_meta_name(prefixes[i], names[0], first, sizeof(first)), 0);
        for (size_t j = 1; j < sizeof(names) / sizeof(names[0]); j++) {
            CHECK_EQ_INT(tc__cluster_meta_name(prefixes[i], names[j], other, sizeof(other)), 0);
            if (!CHECK(slot_of(first) == slot_of(other)))
                fprintf(stderr, "    prefix '%s': %s and %s in different slots\n", prefixes[i],
                        first, other);
        }
    }
    char name[256];
    CHECK_EQ_STR((tc__cluster_meta_name("tc:", "seq", name, sizeof(name)), name),
                 "tc:~{tc:meta}seq");
    CHECK_EQ_INT(tc__cluster_meta_name("tc:", "seq", name, 8), TC_EINVAL);
    /* different prefixes spread their meta slots (not all on one master) */
    char a[64], b[64];
    tc__cluster_meta_name("app1:", "seq", a, sizeof(a));
    tc__cluster_meta_name("app2:", "seq", b, sizeof(b));
    CHECK(slot_of(a) != slot_of(b));
}

static void test_marker_keys(void)
{
    char key[256];
    uint64_t s = 0x9e3779b97f4a7c15ull;
    unsigned slots[64] = {0, 1, 5460, 5461, 10922, 10923, 16383};
    for (int i = 7; i < 64; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        slots[i] = (unsigned)(s % 16384);
    }
    for (int i = 0; i < 64; i++) {
        CHECK_EQ_INT(tc__cluster_marker_key("tc:", slots[i], key, sizeof(key)), 0);
        if (!CHECK(slot_of(key) == slots[i]))
            fprintf(stderr, "    marker %s is in slot %u, not %u\n", key, slot_of(key), slots[i]);
        CHECK(strncmp(key, "tc:~inc{", 8) == 0);
    }
    /* a prefix with a hash tag of its own puts every key in its slot */
    unsigned p = slot_of("{p}");
    CHECK_EQ_INT(tc__cluster_marker_key("{p}", p, key, sizeof(key)), 0);
    CHECK_EQ_INT(slot_of(key), p);
    CHECK_EQ_INT(tc__cluster_marker_key("{p}", (p + 1) % 16384, key, sizeof(key)), TC_ENOTFOUND);
    CHECK_EQ_INT(tc__cluster_marker_key("tc:", 7, key, 6), TC_ENOTFOUND);
}

int main(void)
{
    test_slot_vectors();
    test_redirects();
    test_parse_slots();
    test_meta_names_share_a_slot();
    test_marker_keys();
    return check_report();
}

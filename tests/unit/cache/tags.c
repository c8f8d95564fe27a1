/*
 * Tests src/cache/tags.c, the interned tags whose local generations make
 * invalidation O(1) and clock-free in a process (DESIGN.md guarantee 2, and 5:
 * a bumped generation is what marks an entry invalid). Proves: interning
 * returns the same tag for the same name (and a different one for any other
 * name); a bump changes the generation; references keep a tag alive and the
 * last put frees it; bumping an absent tag is a no-op that returns false.
 * The last test races intern/put/bump for TSan.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cache/internal.h"
#include "check.h"

static tc__tag *get(tc__tags *t, const char *name)
{
    return tc__tag_get(t, name, strlen(name));
}

static bool bump(tc__tags *t, const char *name)
{
    return tc__tags_bump(t, name, strlen(name));
}

static uint64_t gen(const tc__tag *g)
{
    return atomic_load(&g->gen);
}

static void test_interning(void)
{
    tc__tags *t = tc__tags_new();
    REQUIRE(t != NULL);
    tc__tag *a = get(t, "user:42");
    tc__tag *a2 = get(t, "user:42");
    REQUIRE(a != NULL);
    CHECK(a == a2);
    CHECK_EQ_STR(a->name, "user:42");

    /* Names are compared by length, not as C strings: a prefix is another tag, and a
     * name need not be NUL-terminated. */
    tc__tag *prefix = get(t, "user:4");
    tc__tag *longer = get(t, "user:420");
    tc__tag *sliced = tc__tag_get(t, "user:42/extra", 7);
    CHECK(prefix != a && longer != a && prefix != longer);
    CHECK(sliced == a);

    /* Many names: every one distinct and found again (chains, shards). */
    tc__tag *many[500];
    int same = 0;
    for (int i = 0; i < 500; i++) {
        char n[16];
        snprintf(n, sizeof(n), "t%d", i);
        many[i] = get(t, n);
        same += many[i] == a;
    }
    int found = 0;
    for (int i = 0; i < 500; i++) {
        char n[16];
        snprintf(n, sizeof(n), "t%d", i);
        tc__tag *g = get(t, n);
        found += g == many[i];
        tc__tag_put(g);
        tc__tag_put(many[i]);
    }
    CHECK_EQ_INT(same, 0);
    CHECK_EQ_INT(found, 500);

    tc__tag_put(a);
    tc__tag_put(a2);
    tc__tag_put(sliced);
    tc__tag_put(prefix);
    tc__tag_put(longer);
    tc__tags_free(t);
}

static void test_bump_changes_generation(void)
{
    tc__tags *t = tc__tags_new();
    tc__tag *a = get(t, "plan"), *b = get(t, "plans");
    uint64_t a0 = gen(a), b0 = gen(b);
    CHECK(bump(t, "plan"));
    CHECK(gen(a) != a0);
    CHECK(gen(b) == b0); /* only that tag */
    uint64_t a1 = gen(a);
    CHECK(bump(t, "plan"));
    CHECK(gen(a) != a1 && gen(a) != a0);
    CHECK(tc__tags_bump(t, "plans-and-more", 5)); /* by length, like tag_get */
    CHECK(gen(b) != b0);
    tc__tag_put(a);
    tc__tag_put(b);
    tc__tags_free(t);
}

static void test_refcount_frees_on_last_put(void)
{
    tc__tags *t = tc__tags_new();
    tc__tag *a = get(t, "x");
    tc__tag *a2 = get(t, "x");
    tc__tag_ref(a); /* three references */
    tc__tag_put(a);
    tc__tag_put(a2);
    CHECK(bump(t, "x")); /* one left: still interned */
    CHECK_EQ_INT(gen(a), 1);
    tc__tag_put(a); /* the last: freed (ASan would see a use of it after this) */
    CHECK(!bump(t, "x"));

    /* Interned again, it is a new tag with a fresh generation: nothing can hold the
     * old one, so nothing can compare against its old generation. */
    tc__tag *again = get(t, "x");
    CHECK_EQ_INT(gen(again), 0);
    tc__tag_put(again);
    tc__tag_put(NULL); /* a no-op */
    tc__tags_free(t);
    tc__tags_free(NULL);
}

static void test_bump_absent_is_noop(void)
{
    tc__tags *t = tc__tags_new();
    CHECK(!bump(t, "nobody"));
    CHECK(!bump(t, "nobody")); /* and it did not intern it */
    tc__tag *g = get(t, "nobody");
    CHECK_EQ_INT(gen(g), 0);
    tc__tag_put(g);
    tc__tags_free(t);
}

/* ---- many threads --------------------------------------------------------- */

#define RACE_THREADS 4
#define RACE_ROUNDS 20000

typedef struct racer {
    tc__tags *t;
    tc__tag *pinned; /* held for the whole race: its generation only grows */
    int id, bad;
} racer;

static void *race_run(void *arg)
{
    racer *r = arg;
    unsigned s = 2654435761u * (unsigned)(r->id + 1);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        s = s * 1103515245u + 12345u;
        char n[8];
        snprintf(n, sizeof(n), "r%u", (s >> 8) % 8);
        if ((s >> 16) % 4 == 0) {
            bump(r->t, n);
            continue;
        }
        uint64_t before = gen(r->pinned);
        tc__tag *g = get(r->t, n);
        r->bad += g == NULL || strcmp(g->name, n) != 0;
        tc__tag_put(g);
        bump(r->t, "pinned");
        r->bad += gen(r->pinned) <= before;
    }
    return NULL;
}

static void test_concurrent_intern_put_bump(void)
{
    tc__tags *t = tc__tags_new();
    tc__tag *pinned = get(t, "pinned");
    racer r[RACE_THREADS];
    pthread_t th[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        r[i] = (racer){t, pinned, i, 0};
        REQUIRE(pthread_create(&th[i], NULL, race_run, &r[i]) == 0);
    }
    int bad = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_join(th[i], NULL);
        bad += r[i].bad;
    }
    CHECK_EQ_INT(bad, 0);
    for (int i = 0; i < 8; i++) { /* every racer's reference was put: all freed */
        char n[8];
        snprintf(n, sizeof(n), "r%d", i);
        CHECK(!bump(t, n));
    }
    tc__tag_put(pinned);
    tc__tags_free(t);
}

int main(void)
{
    test_interning();
    test_bump_changes_generation();
    test_refcount_frees_on_last_put();
    test_bump_absent_is_noop();
    test_concurrent_intern_put_bump();
    return check_report();
}

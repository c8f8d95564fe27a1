/*
 * The page store (src/app/pagecache.c): a lookup hits only under the ETag the
 * bytes were stored with; a new ETag replaces a key's bytes (one version per
 * key); the bytes a response holds outlive their entry (replaced, evicted, the
 * store freed: ASan would see a use after free); the byte budget holds, the
 * least recently used go first and are counted; a page larger than a shard is
 * served but not kept; no store at all is a miss every time; four threads
 * reading and replacing the same keys (TSan).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/pagecache.h"
#include "check.h"

static char *dup_bytes(const char *s, size_t len)
{
    char *p = malloc(len);
    REQUIRE(p != NULL);
    memcpy(p, s, len);
    return p;
}

static const tc_page_body *put(tc_pagecache *pc, const char *key, const char *etag,
                               const char *text)
{
    const tc_page_body *b =
        tc_pagecache_put(pc, key, strlen(key), etag, dup_bytes(text, strlen(text)), strlen(text));
    REQUIRE(b != NULL);
    return b;
}

static const tc_page_body *get(tc_pagecache *pc, const char *key, const char *etag)
{
    return tc_pagecache_get(pc, key, strlen(key), etag);
}

static bool same(const tc_page_body *b, const char *text)
{
    return b != NULL && b->len == strlen(text) && memcmp(b->data, text, b->len) == 0;
}

static void test_etag_rules(void)
{
    tc_pagecache *pc = tc_pagecache_new(1 << 20);
    REQUIRE(pc != NULL);
    CHECK(get(pc, "post:a:0", "\"1\"") == NULL);
    const tc_page_body *r = put(pc, "post:a:0", "\"1\"", "<p>one</p>");
    CHECK(same(r, "<p>one</p>"));
    const tc_page_body *h = get(pc, "post:a:0", "\"1\"");
    CHECK(same(h, "<p>one</p>"));
    CHECK(h == r);                                /* the stored bytes themselves, not a copy */
    CHECK(get(pc, "post:a:0", "\"2\"") == NULL);  /* another ETag: a miss */
    CHECK(get(pc, "post:b:0", "\"1\"") == NULL);  /* another key: a miss */
    CHECK(get(pc, "post:a:00", "\"1\"") == NULL); /* a longer key */
    CHECK(get(pc, "post:a:", "\"1\"") == NULL);   /* a shorter one */
    /* a changed input: new ETag, new bytes, in place of the old ones */
    const tc_page_body *r2 = put(pc, "post:a:0", "\"2\"", "<p>two</p>");
    CHECK(get(pc, "post:a:0", "\"1\"") == NULL);
    const tc_page_body *h2 = get(pc, "post:a:0", "\"2\"");
    CHECK(same(h2, "<p>two</p>"));
    CHECK(same(r, "<p>one</p>")); /* a response still holding the old bytes reads them */
    tc_pagecache_stats st;
    tc_pagecache_stats_get(pc, &st);
    CHECK_EQ_INT(st.entries, 1);
    CHECK_EQ_INT(st.hits, 2);
    CHECK_EQ_INT(st.misses, 6);
    CHECK_EQ_INT(st.stores, 2);
    CHECK_EQ_INT(st.evictions, 0);
    CHECK(st.bytes >= strlen("<p>two</p>") + strlen("post:a:0"));
    CHECK_EQ_INT(st.max_bytes, 1 << 20);
    tc_pagecache_free(pc);
    CHECK(same(h2, "<p>two</p>")); /* and outlives the store */
    tc_page_body_release(r);
    tc_page_body_release(h);
    tc_page_body_release(r2);
    tc_page_body_release(h2);
    tc_page_body_release(NULL);
}

static void test_budget(void)
{
    enum { MAX = 8 * 16384, PAGE = 1000, N = 400 };
    tc_pagecache *pc = tc_pagecache_new(MAX);
    REQUIRE(pc != NULL);
    char page[PAGE + 1];
    memset(page, 'x', PAGE);
    page[PAGE] = '\0';
    tc_page_body_release(put(pc, "hot", "\"h\"", page));
    const tc_page_body *held = put(pc, "first", "\"f\"", page);
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof(key), "post:p%d:0", i);
        tc_page_body_release(put(pc, key, "\"e\"", page));
        tc_page_body_release(get(pc, "hot", "\"h\"")); /* used all along */
        tc_pagecache_stats st;
        tc_pagecache_stats_get(pc, &st);
        CHECK(st.bytes <= MAX);
    }
    tc_pagecache_stats st;
    tc_pagecache_stats_get(pc, &st);
    CHECK(st.evictions > 0);
    CHECK_EQ_INT(st.entries + st.evictions, N + 2);
    CHECK(st.entries < N / 2);
    const tc_page_body *hot = get(pc, "hot", "\"h\"");
    CHECK(same(hot, page));                   /* the most recently used stays */
    CHECK(get(pc, "first", "\"f\"") == NULL); /* the least recently used went */
    CHECK(same(held, page));                  /* while a response still holds its bytes */
    CHECK(get(pc, "post:p0:0", "\"e\"") == NULL);
    const tc_page_body *last = get(pc, "post:p399:0", "\"e\"");
    CHECK(same(last, page));
    tc_page_body_release(hot);
    tc_page_body_release(held);
    tc_page_body_release(last);

    /* larger than a shard (an eighth of the store): served, not kept */
    size_t big = MAX / 8 + 1;
    char *b = calloc(1, big);
    REQUIRE(b != NULL);
    const tc_page_body *r = tc_pagecache_put(pc, "huge", 4, "\"b\"", b, big);
    REQUIRE(r != NULL);
    CHECK(r->data == b && r->len == big);
    CHECK(get(pc, "huge", "\"b\"") == NULL);
    tc_page_body_release(r);
    tc_pagecache_free(pc);
}

static void test_no_store(void)
{
    CHECK(tc_pagecache_new(0) == NULL);
    tc_pagecache *none = NULL;
    CHECK(get(none, "home::0", "\"1\"") == NULL);
    const tc_page_body *r = put(none, "home::0", "\"1\"", "<html>");
    CHECK(same(r, "<html>"));
    CHECK(get(none, "home::0", "\"1\"") == NULL);
    tc_page_body_release(r);
    tc_pagecache_stats st;
    tc_pagecache_stats_get(none, &st);
    CHECK_EQ_INT(st.hits + st.misses + st.entries + st.max_bytes, 0);
    tc_pagecache_free(NULL);
}

/* ---- threads: readers and writers on the same keys ---------------------------------------- */

static tc_pagecache *shared;
static _Atomic int wrong; /* the check kit is for one thread: the workers count here */

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < 20000; i++) {
        char key[16], etag[16], text[64];
        snprintf(key, sizeof(key), "k%d", i % 7);
        snprintf(etag, sizeof(etag), "\"%d\"", (i / 7) % 3);
        int n = snprintf(text, sizeof(text), "%s/%s", key, etag); /* the bytes name both */
        const tc_page_body *b = get(shared, key, etag);
        if (b == NULL && (i + id) % 5 == 0) {
            char *copy = malloc((size_t)n);
            if (copy != NULL)
                memcpy(copy, text, (size_t)n);
            if (copy == NULL ||
                (b = tc_pagecache_put(shared, key, strlen(key), etag, copy, (size_t)n)) == NULL)
                free(copy), wrong++;
        }
        if (b != NULL && !same(b, text))
            wrong++; /* bytes stored under another key or ETag */
        tc_page_body_release(b);
    }
    return NULL;
}

static void test_threads(void)
{
    shared = tc_pagecache_new(64 << 10);
    REQUIRE(shared != NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ_INT(wrong, 0);
    tc_pagecache_stats st;
    tc_pagecache_stats_get(shared, &st);
    CHECK_EQ_INT(st.hits + st.misses, 4 * 20000);
    CHECK(st.hits > 0);
    CHECK(st.entries <= 7);
    tc_pagecache_free(shared);
}

int main(void)
{
    test_etag_rules();
    test_budget();
    test_no_store();
    test_threads();
    return check_report();
}

/*
 * The rendered bytes of pages, kept by (page key, ETag), so that a page whose
 * inputs are all cached is answered from its bytes: no JSON parsed, no template
 * run. pages.c is its one user.
 *
 * It is for: a bounded, thread-safe map from a page's key (its path, and the
 * signed-in user for a personal page) to the last bytes rendered for it and the
 * ETag they were rendered under, with counters. It is not for: deciding what a
 * page's key or ETag is (pages.c), or anything HTTP.
 *
 * The rule that keeps it correct: the ETag names the bytes (pages.c computes
 * it from everything the body is made of, before rendering), so a lookup hits
 * only when the stored ETag equals the one the request's inputs give now. A
 * changed input changes the ETag: the lookup misses, and the render that
 * follows replaces the key's bytes. One version per key: old ones never pile up.
 *
 * Threads: every function from any thread. Memory: at most max_bytes (bodies,
 * keys and the bookkeeping of each entry), least recently used out first.
 */
#ifndef TC_APP_PAGECACHE_H
#define TC_APP_PAGECACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct tc_pagecache tc_pagecache;

/* Bytes of a page, reference-counted: valid until tc_page_body_release. */
typedef struct tc_page_body {
    const char *data;
    size_t len;
} tc_page_body;

/* A store of at most max_bytes; NULL when max_bytes is 0 (no store) or out of memory. */
tc_pagecache *tc_pagecache_new(size_t max_bytes);
void tc_pagecache_free(tc_pagecache *pc); /* NULL is a no-op; references may outlive it */

/* The bytes stored for key[0..klen) if they were rendered under etag (a hit:
 * a reference the caller releases), else NULL (a miss). Both are counted. */
const tc_page_body *tc_pagecache_get(tc_pagecache *pc, const char *key, size_t klen,
                                     const char *etag);

/* Keeps body[0..len) (malloc'd: the store takes it) as the bytes of key under
 * etag, in place of what key had. Returns a reference to them for the response
 * (release it), also when the store did not keep them (larger than an eighth of
 * the store); NULL only when out of memory, and then body is still the caller's. */
const tc_page_body *tc_pagecache_put(tc_pagecache *pc, const char *key, size_t klen,
                                     const char *etag, char *body, size_t len);

void tc_page_body_release(const tc_page_body *b); /* NULL is a no-op */
/* The same, as tc_http_set_body_ref's release function (arg: the tc_page_body). */
void tc_page_body_release_cb(void *arg);

typedef struct tc_pagecache_stats {
    uint64_t hits, misses;      /* lookups */
    uint64_t stores, evictions; /* bytes kept; entries dropped to stay under the limit */
    uint64_t entries, bytes, max_bytes;
} tc_pagecache_stats;

/* Zeros when pc is NULL. */
void tc_pagecache_stats_get(tc_pagecache *pc, tc_pagecache_stats *out);

#endif

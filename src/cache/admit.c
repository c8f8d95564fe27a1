/*
 * The frequency sketch behind L1's admission policy (TinyLFU: Einziger,
 * Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission Policy",
 * ACM ToS 2017). l1.c keeps one per shard, under the shard's lock, counts
 * every lookup of a key in it (hit or miss), and lets a new entry displace the
 * least recently used ones only if it has been asked for more often than each
 * of them.
 *
 * It is for: estimating how often a key hash was seen lately, in a few bytes a
 * key. It is not for: deciding validity or anything a guarantee rests on — a
 * wrong estimate only keeps a value out of L1 (it is then read from L2) or
 * lets it in.
 *
 * DESIGN. A count-min sketch of 4-bit counters: 4 rows, each of `width`
 * counters (a power of two, at least 4 per entry the shard could hold at
 * most), 16 counters a 64-bit word. A key's counter in row r is picked by a
 * multiplicative hash of its 64-bit hash and r (the key hash's low bits choose
 * the shard, so they are the same for every key here: the high bits of the
 * product are used). Its estimate is the least of its 4 counters; an addition
 * increments only the counters equal to that least one (conservative update:
 * less overestimation) and stops at 15. After 10 additions per entry the
 * table holds now (at least 160), every counter is halved: the sketch
 * forgets, so what was popular an hour ago does not keep today's keys out,
 * and a key read a few times per such period keeps a count well above a
 * scan's 1. 64 MiB of L1 has 2 MiB of sketch (16 shards of 11,650 entries at most).
 */
#include <stdlib.h>

#include "cache/internal.h"

#define ROWS 4
#define WIDTH_MIN 64u
#define WIDTH_MAX (1u << 20)
#define PERIOD_MIN 16 /* entries: a halving every fewer than 160 additions forgets too fast */

static const uint64_t SEED[ROWS] = {0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull,
                                    0x94d049bb133111ebull, 0xd6e8feb86659fd93ull};

int tc__sketch_init(tc__sketch *s, size_t entries)
{
    uint32_t w = WIDTH_MIN;
    while (w < 4 * entries && w < WIDTH_MAX)
        w <<= 1;
    s->table = calloc((size_t)ROWS * w / 16, sizeof(uint64_t));
    if (s->table == NULL)
        return TC_ENOMEM;
    s->mask = w - 1;
    s->words = w / 16;
    s->additions = 0;
    return 0;
}

void tc__sketch_free(tc__sketch *s)
{
    free(s->table);
    s->table = NULL;
}

/* The word and shift of h's counter in row r. */
static uint64_t *counter(const tc__sketch *s, uint64_t h, int r, unsigned *shift)
{
    uint32_t i = (uint32_t)(((h ^ (h >> 31)) * SEED[r]) >> 40) & s->mask;
    *shift = (i & 15u) * 4u;
    return &s->table[(size_t)r * s->words + (i >> 4)];
}

unsigned tc__sketch_freq(const tc__sketch *s, uint64_t h)
{
    unsigned least = 15;
    for (int r = 0; r < ROWS; r++) {
        unsigned sh;
        const uint64_t *w = counter(s, h, r, &sh); /* sets sh: not in the same expression */
        unsigned v = (unsigned)(*w >> sh) & 15u;
        if (v < least)
            least = v;
    }
    return least;
}

static void halve(tc__sketch *s)
{
    size_t n = (size_t)ROWS * s->words;
    for (size_t i = 0; i < n; i++)
        s->table[i] = (s->table[i] >> 1) & 0x7777777777777777ull;
    s->additions /= 2;
}

void tc__sketch_add(tc__sketch *s, uint64_t h, size_t entries)
{
    uint64_t *w[ROWS];
    unsigned sh[ROWS], v[ROWS], least = 15;
    for (int r = 0; r < ROWS; r++) {
        w[r] = counter(s, h, r, &sh[r]);
        v[r] = (unsigned)(*w[r] >> sh[r]) & 15u;
        if (v[r] < least)
            least = v[r];
    }
    if (least == 15)
        return;
    for (int r = 0; r < ROWS; r++)
        if (v[r] == least)
            *w[r] += 1ull << sh[r];
    if (++s->additions >= 10 * (entries > PERIOD_MIN ? entries : PERIOD_MIN))
        halve(s);
}

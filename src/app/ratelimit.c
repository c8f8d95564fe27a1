/*
 * Token buckets in an open-addressing table under one mutex: login is rare
 * and slow (argon2id), so a single lock is no bottleneck here.
 */
#include "app/ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 96

typedef struct bucket {
    char key[KEY_MAX];
    double tokens;
    uint64_t at_ms; /* last refill; 0 = free slot */
} bucket;

struct tc_ratelimit {
    pthread_mutex_t lock;
    int burst, capacity;
    double per_ms;
    bucket *b;
};

tc_ratelimit *tc_ratelimit_new(int burst, int per_minute, int capacity)
{
    tc_ratelimit *rl = calloc(1, sizeof(*rl));
    if (rl == NULL || burst < 1 || per_minute < 1 || capacity < 1 ||
        (rl->b = calloc((size_t)capacity, sizeof(bucket))) == NULL) {
        free(rl);
        return NULL;
    }
    pthread_mutex_init(&rl->lock, NULL);
    rl->burst = burst;
    rl->capacity = capacity;
    rl->per_ms = per_minute / 60000.0;
    return rl;
}

void tc_ratelimit_free(tc_ratelimit *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl->b);
    free(rl);
}

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

bool tc_ratelimit_take(tc_ratelimit *rl, const char *key, uint64_t now_ms, int *retry_after_s)
{
    char k[KEY_MAX];
    strncpy(k, key, KEY_MAX - 1);
    k[KEY_MAX - 1] = '\0';
    if (now_ms == 0)
        now_ms = 1;
    pthread_mutex_lock(&rl->lock);
    /* Probe a short window; reuse our slot, else a free one, else the stalest. */
    size_t start = fnv(k) % (size_t)rl->capacity, pick = start;
    bucket *found = NULL;
    for (size_t i = 0; i < 8 && i < (size_t)rl->capacity; i++) {
        bucket *b = &rl->b[(start + i) % (size_t)rl->capacity];
        if (b->at_ms != 0 && strcmp(b->key, k) == 0) {
            found = b;
            break;
        }
        if (rl->b[pick].at_ms != 0 && (b->at_ms == 0 || b->at_ms < rl->b[pick].at_ms))
            pick = (start + i) % (size_t)rl->capacity;
    }
    if (found == NULL) {
        found = &rl->b[pick];
        memcpy(found->key, k, KEY_MAX);
        found->tokens = rl->burst;
        found->at_ms = now_ms;
    }
    if (now_ms > found->at_ms) {
        found->tokens += (double)(now_ms - found->at_ms) * rl->per_ms;
        if (found->tokens > rl->burst)
            found->tokens = rl->burst;
        found->at_ms = now_ms;
    }
    bool ok = found->tokens >= 1.0;
    if (ok)
        found->tokens -= 1.0;
    else if (retry_after_s != NULL)
        *retry_after_s = (int)((1.0 - found->tokens) / rl->per_ms / 1000.0) + 1;
    pthread_mutex_unlock(&rl->lock);
    return ok;
}

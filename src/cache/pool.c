/*
 * A fixed set of threads over a bounded queue. Background refreshes run here:
 * never a thread per refresh, never an unbounded queue. When the queue is
 * full, submit fails at once and the caller decides (the cache counts the
 * refresh as dropped; the next stale read asks again).
 */
#include <stdlib.h>

#include "cache/internal.h"

typedef struct job {
    tc__job_fn fn;
    void *arg;
} job;

struct tc__pool {
    pthread_mutex_t lock;
    tc_cond nonempty;
    job *ring;
    int cap, head, count;
    bool stopping;
    int nthreads;
    pthread_t threads[];
};

static void *worker(void *arg)
{
    tc__pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->count == 0 && !p->stopping)
            tc_cond_wait(&p->nonempty, &p->lock);
        if (p->count == 0)
            break; /* stopping and drained */
        job j = p->ring[p->head];
        p->head = (p->head + 1) % p->cap;
        p->count--;
        bool cancelled = p->stopping;
        pthread_mutex_unlock(&p->lock);
        j.fn(j.arg, cancelled);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

tc__pool *tc__pool_new(int nthreads, int queue_max)
{
    if (nthreads < 1 || queue_max < 1)
        return NULL;
    tc__pool *p = calloc(1, sizeof(*p) + (size_t)nthreads * sizeof(pthread_t));
    if (p == NULL || (p->ring = calloc((size_t)queue_max, sizeof(job))) == NULL) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    tc_cond_init(&p->nonempty);
    p->cap = queue_max;
    for (; p->nthreads < nthreads; p->nthreads++)
        if (pthread_create(&p->threads[p->nthreads], NULL, worker, p) != 0)
            break;
    if (p->nthreads == 0) {
        tc__pool_free(p);
        return NULL;
    }
    return p;
}

int tc__pool_submit(tc__pool *p, tc__job_fn fn, void *arg)
{
    pthread_mutex_lock(&p->lock);
    if (p->count == p->cap || p->stopping) {
        pthread_mutex_unlock(&p->lock);
        return -1;
    }
    p->ring[(p->head + p->count) % p->cap] = (job){fn, arg};
    p->count++;
    tc_cond_signal(&p->nonempty);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

void tc__pool_free(tc__pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    tc_cond_broadcast(&p->nonempty);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    tc_cond_destroy(&p->nonempty);
    pthread_mutex_destroy(&p->lock);
    free(p->ring);
    free(p);
}

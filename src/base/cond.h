/*
 * A condition variable whose timed waits run on CLOCK_MONOTONIC (header-only).
 *
 * It is for: every condition variable in the tree. pthread_cond_init(c, NULL)
 * makes a condition variable whose timed waits count on the wall clock, so a
 * clock step stretches or cuts them; tc_cond_init sets CLOCK_MONOTONIC once,
 * and the timed waits take a tc_deadline or a number of milliseconds, so no
 * caller builds a timespec. It is not for: anything but waiting under a mutex.
 */
#ifndef TC_BASE_COND_H
#define TC_BASE_COND_H

#include <errno.h>
#include <pthread.h>

#include "base/time.h"

typedef struct tc_cond {
    pthread_cond_t c;
} tc_cond;

static inline void tc_cond_init(tc_cond *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&c->c, &a);
    pthread_condattr_destroy(&a);
}

static inline void tc_cond_destroy(tc_cond *c)
{
    pthread_cond_destroy(&c->c);
}

static inline void tc_cond_signal(tc_cond *c)
{
    pthread_cond_signal(&c->c);
}

static inline void tc_cond_broadcast(tc_cond *c)
{
    pthread_cond_broadcast(&c->c);
}

static inline void tc_cond_wait(tc_cond *c, pthread_mutex_t *m)
{
    pthread_cond_wait(&c->c, m);
}

/* Waits until woken or until d: 0 (woken, perhaps spuriously: check the
 * condition again) or ETIMEDOUT. */
static inline int tc_cond_wait_until(tc_cond *c, pthread_mutex_t *m, tc_deadline d)
{
    struct timespec ts = tc_deadline_timespec(d);
    return pthread_cond_timedwait(&c->c, m, &ts);
}

/* The same for at most ms milliseconds from now. */
static inline int tc_cond_wait_ms(tc_cond *c, pthread_mutex_t *m, int64_t ms)
{
    return tc_cond_wait_until(c, m, tc_deadline_in_ms(ms));
}

#endif

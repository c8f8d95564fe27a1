/*
 * A background thread's start and stop (header-only).
 *
 * It is for: the threads that sleep on a condition variable between rounds of
 * work and leave their loop when a flag says so (the access log writer, the
 * purge thread, the monitor's sampler, the HTTP watchdog). Stopping one is
 * always the same four steps — set the flag under the lock, wake the thread,
 * unlock, join — and must be skipped for a thread that never started; this
 * header holds them once. It is not for: pools of threads (their queue is
 * their stop signal) or threads woken through a file descriptor (the bus).
 */
#ifndef TC_BASE_THREAD_H
#define TC_BASE_THREAD_H

#include <pthread.h>
#include <stdbool.h>

#include "base/cond.h"

typedef struct tc_thread {
    pthread_t id;
    bool running; /* started and not joined yet */
} tc_thread;

/* Starts fn(arg): 0, or -1 when no thread could be made (running stays false). */
static inline int tc_thread_start(tc_thread *t, void *(*fn)(void *), void *arg)
{
    t->running = pthread_create(&t->id, NULL, fn, arg) == 0;
    return t->running ? 0 : -1;
}

/* Sets *stop under lock, wakes the thread waiting on wake, and joins it. A
 * thread that never started (or was stopped already) is left alone. */
static inline void tc_thread_stop(tc_thread *t, pthread_mutex_t *lock, tc_cond *wake, bool *stop)
{
    if (!t->running)
        return;
    pthread_mutex_lock(lock);
    *stop = true;
    tc_cond_broadcast(wake);
    pthread_mutex_unlock(lock);
    pthread_join(t->id, NULL);
    t->running = false;
}

#endif

/*
 * Checked invariants (header-only).
 *
 * It is for: the invariants a comment states and a change could break without
 * any test noticing at once — a reference count that must not go below zero, a
 * state machine's allowed steps, "the caller holds the lock", an array that a
 * computed count must fit. TC_ASSERT(cond) prints file:line, the function and
 * the expression, then aborts: a broken invariant in a cache means serving
 * freed memory or another request's data, and stopping is the safe answer.
 *
 * It is on in every build — tests, sanitizers and the production build that
 * `make run` makes — because each check costs a compare and a predicted branch
 * (STYLE.md: cheap invariant checks stay on in production). So an assertion
 * must be cheap: nothing that walks a list or takes a lock of its own.
 * It is not for: input validation (bad input is an error return, never an abort).
 */
#ifndef TC_BASE_ASSERT_H
#define TC_BASE_ASSERT_H

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((cold, noreturn)) static inline void tc_assert_fail(const char *expr,
                                                                  const char *file, int line,
                                                                  const char *func)
{
    fprintf(stderr, "%s:%d: %s: assertion failed: %s\n", file, line, func, expr);
    abort();
}

#define TC_ASSERT(cond)                                                                            \
    (__builtin_expect(!!(cond), 1) ? (void)0 : tc_assert_fail(#cond, __FILE__, __LINE__, __func__))

/* The mutex is held — by the calling thread, if the caller keeps its contract:
 * a trylock on a held default mutex fails with EBUSY, whoever holds it, so this
 * catches "nobody holds it", the mistake a refactoring makes. */
#define TC_ASSERT_HELD(mutex) TC_ASSERT(pthread_mutex_trylock(mutex) == EBUSY)

/* The number of elements of an array (not a pointer). */
#define TC_COUNTOF(a) (sizeof(a) / sizeof((a)[0]))

#endif

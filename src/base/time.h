/*
 * Clocks, deadlines and sleeps, for every layer (header-only).
 *
 * It is for: durations, timeouts and deadlines, on CLOCK_MONOTONIC, which no
 * clock setting moves (tc_mono_*, tc_deadline); and timestamps that leave the
 * process or are compared across processes — L2 records other instances read,
 * database rows, HTTP dates, log lines — on CLOCK_REALTIME (tc_wall_ms). A wait
 * or a timeout never uses the wall clock: a clock step would stretch or cut it.
 * It is not for: the cache engine's notion of "now", which a test may replace
 * (tc_config.clock; cache.c reads it through one function of its own).
 *
 * Monotonic readings are unsigned (they are only compared and subtracted, never
 * negative); wall-clock readings are signed, like time_t.
 */
#ifndef TC_BASE_TIME_H
#define TC_BASE_TIME_H

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC_COARSE (Linux): the kernel's tick, read without a system call's
 * worth of work. Strict POSIX headers hide its name, so its Linux value is used. */
#if defined(CLOCK_MONOTONIC_COARSE)
#define TC_CLOCK_MONOTONIC_COARSE CLOCK_MONOTONIC_COARSE
#elif defined(__linux__)
#define TC_CLOCK_MONOTONIC_COARSE 6
#else
#define TC_CLOCK_MONOTONIC_COARSE CLOCK_MONOTONIC
#endif

static inline uint64_t tc_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t tc_mono_ms(void)
{
    return tc_mono_us() / 1000u;
}

/* Monotonic milliseconds that may lag by one kernel tick (about 4 ms): for
 * timestamps taken on every request whose limits are seconds (idle timeouts). */
static inline uint64_t tc_mono_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(TC_CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The same in microseconds, for a hot path that must read a clock on every
 * call; it lags the precise clock by at most tc_mono_coarse_res_us(). */
static inline uint64_t tc_mono_coarse_us(void)
{
    struct timespec ts;
    clock_gettime(TC_CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The coarse clock's tick, rounded up (10 ms if the system will not say). */
static inline uint64_t tc_mono_coarse_res_us(void)
{
    struct timespec ts;
    if (clock_getres(TC_CLOCK_MONOTONIC_COARSE, &ts) != 0)
        return 10000;
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u + 1;
}

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
static inline int64_t tc_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Microseconds since the Unix epoch (CLOCK_REALTIME): for a time sent to another
 * process that measures a delay with it (the invalidation bus's delivery lag). */
static inline int64_t tc_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- deadlines ------------------------------------------------------------------------ */

/* A point in monotonic time; a struct so that it is never mixed up with a
 * duration or a wall-clock time. */
typedef struct tc_deadline {
    uint64_t us; /* tc_mono_us() */
} tc_deadline;

/* now + ms (ms <= 0: now, i.e. already expired). */
static inline tc_deadline tc_deadline_in_ms(int64_t ms)
{
    return (tc_deadline){tc_mono_us() + (ms > 0 ? (uint64_t)ms * 1000u : 0)};
}

static inline bool tc_deadline_expired(tc_deadline d)
{
    return tc_mono_us() >= d.us;
}

/* Milliseconds left, rounded up (so a wait of that long reaches the deadline),
 * at most INT_MAX (a poll(2) timeout); 0 once it has passed. */
static inline int tc_deadline_left_ms(tc_deadline d)
{
    uint64_t now = tc_mono_us();
    if (now >= d.us)
        return 0;
    uint64_t ms = (d.us - now + 999u) / 1000u;
    return ms > (uint64_t)INT_MAX ? INT_MAX : (int)ms;
}

/* The deadline as the absolute CLOCK_MONOTONIC time a timed wait takes. */
static inline struct timespec tc_deadline_timespec(tc_deadline d)
{
    return (struct timespec){(time_t)(d.us / 1000000u), (long)(d.us % 1000000u) * 1000L};
}

/* ---- sleeping ------------------------------------------------------------------------- */

/* Sleeps ms milliseconds, the whole of them even if a signal interrupts. */
static inline void tc_sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

#endif

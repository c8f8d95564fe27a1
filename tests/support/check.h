/* check.h: the tests' tiny assertion kit. CHECK* record a failure and go on; REQUIRE stops
 * the test (exit 1). End main() with `return check_report();`, which prints
 * "N passed, M failed" and returns the exit code. Not a framework: no registration.
 * TC_CHECK_FAIL_FAST=1 in the environment stops at the first failed CHECK as well (the
 * mutation run, scripts/mutants.sh: it needs to know that a test fails, not how often).
 * Any thread may CHECK (the counts are atomic). */
#ifndef TC_TEST_CHECK_H
#define TC_TEST_CHECK_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int check__passed, check__failed;

static inline int check__note(int ok, const char *file, int line, const char *expr)
{
    if (ok) {
        check__passed++;
    } else {
        check__failed++;
        fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, expr);
        const char *fast = getenv("TC_CHECK_FAIL_FAST");
        if (fast != NULL && fast[0] != '\0' && strcmp(fast, "0") != 0) {
            fprintf(stderr, "%s:%d: TC_CHECK_FAIL_FAST: stopping at the first failure\n", file,
                    line);
            exit(1);
        }
    }
    return ok;
}

#define CHECK(cond) check__note(!!(cond), __FILE__, __LINE__, #cond)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long check__a = (long long)(a), check__b = (long long)(b);                            \
        if (!check__note(check__a == check__b, __FILE__, __LINE__, #a " == " #b))                  \
            fprintf(stderr, "    %lld != %lld\n", check__a, check__b);                             \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *check__a = (a), *check__b = (b);                                               \
        int check__ok = check__a && check__b && strcmp(check__a, check__b) == 0;                   \
        if (!check__note(check__ok, __FILE__, __LINE__, #a " == " #b))                             \
            fprintf(stderr, "    \"%s\" != \"%s\"\n", check__a ? check__a : "(null)",              \
                    check__b ? check__b : "(null)");                                               \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!check__note(!!(cond), __FILE__, __LINE__, #cond)) {                                   \
            fprintf(stderr, "%s:%d: REQUIRE failed, stopping test\n", __FILE__, __LINE__);         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Prints the totals; returns 0 if every check passed (and at least one ran), else 1. */
static inline int check_report(void)
{
    printf("%d passed, %d failed\n", atomic_load(&check__passed), atomic_load(&check__failed));
    fflush(stdout);
    return (atomic_load(&check__failed) == 0 && atomic_load(&check__passed) > 0) ? 0 : 1;
}

#endif

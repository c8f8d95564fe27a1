/* tests/unit/http/accesslog.c: src/http/accesslog.c — the logfmt line (fields, quoting,
 * escapes, the path cut), Cache-Status parsing, and the writer: every line reaches the file
 * in order, and a destination that stops reading costs dropped lines, never a blocked
 * caller. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "http/accesslog.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_format(void)
{
    char buf[2048];
    const char *path = "/trpc/user.me";
    tc_access_entry e = {.time_ms = 1735787045678LL, /* 2025-01-02T03:04:05.678Z */
                         .method = "GET",
                         .path = path,
                         .path_len = strlen(path),
                         .status = 200,
                         .duration_us = 1834,
                         .cache = "hit",
                         .cache_detail = "l1",
                         .bytes = 212,
                         .route = "user.me",
                         .client = "127.0.0.1"};
    size_t n = tc_access_log_format(buf, sizeof(buf), &e);
    buf[n] = '\0';
    CHECK_EQ_STR(buf, "time=2025-01-02T03:04:05.678Z method=GET path=/trpc/user.me status=200 "
                      "duration_ms=1.834 cache=hit cache_detail=l1 bytes=212 route=user.me "
                      "client=127.0.0.1\n");

    /* a path with a space, a quote, '=' and control bytes is quoted and escaped */
    const char *odd = "/a b\"c=d\\e\nf\x01";
    e.path = odd;
    e.path_len = strlen(odd);
    e.cache = NULL;
    e.cache_detail = NULL;
    e.route = NULL;
    e.client = NULL;
    e.status = 0;
    e.aborted = true;
    n = tc_access_log_format(buf, sizeof(buf), &e);
    buf[n] = '\0';
    CHECK(strstr(buf, " path=\"/a b\\\"c=d\\\\e\\nf\\u0001\" ") != NULL);
    CHECK(strstr(buf, " status=0 ") != NULL);
    CHECK(strstr(buf, " cache=- bytes=212 route=- client=- aborted=true\n") != NULL);
    CHECK(strchr(buf, '\n') == buf + n - 1); /* one line */

    /* a very long path is cut at 512 bytes and says so */
    char *longp = malloc(5000);
    memset(longp, 'a', 5000);
    e.path = longp;
    e.path_len = 5000;
    n = tc_access_log_format(buf, sizeof(buf), &e);
    buf[n] = '\0';
    CHECK(strstr(buf, "aaa... ") != NULL);
    CHECK(n < 700);

    /* a buffer too small still gives one line ending in '\n' */
    char tiny[64];
    n = tc_access_log_format(tiny, sizeof(tiny), &e);
    CHECK_EQ_INT(n, 64);
    CHECK(tiny[63] == '\n');

    /* escapes count against the cut: 600 control bytes cannot push status off the line */
    memset(longp, 0x01, 600);
    e.path_len = 600;
    n = tc_access_log_format(buf, sizeof(buf), &e);
    buf[n] = '\0';
    CHECK(strstr(buf, "\\u0001...\" status=0 ") != NULL);
    free(longp);
}

static void test_cache_status(void)
{
    char w[16], d[16];
    CHECK_EQ_INT(tc_cache_status_parse(NULL, w, sizeof(w), d, sizeof(d)), TC_CSTAT_NONE);
    CHECK_EQ_STR(w, "-");
    CHECK_EQ_INT(
        tc_cache_status_parse("tiercache; hit; ttl=298; detail=l1", w, sizeof(w), d, sizeof(d)),
        TC_CSTAT_HIT);
    CHECK_EQ_STR(w, "hit");
    CHECK_EQ_STR(d, "l1");
    CHECK_EQ_INT(
        tc_cache_status_parse("tiercache; hit; ttl=-4; detail=l2", w, sizeof(w), d, sizeof(d)),
        TC_CSTAT_STALE);
    CHECK_EQ_STR(w, "stale");
    CHECK_EQ_INT(
        tc_cache_status_parse("tiercache; hit; ttl=0; detail=l1-stale", w, sizeof(w), d, sizeof(d)),
        TC_CSTAT_STALE);
    CHECK_EQ_INT(
        tc_cache_status_parse("tiercache; fwd=miss; stored; ttl=300", w, sizeof(w), d, sizeof(d)),
        TC_CSTAT_MISS);
    CHECK_EQ_STR(w, "miss");
    CHECK_EQ_STR(d, "");
    CHECK_EQ_INT(
        tc_cache_status_parse("\"My Cache\"; fwd=uri-miss, Other; hit", w, sizeof(w), d, sizeof(d)),
        TC_CSTAT_FWD);
    CHECK_EQ_STR(w, "uri-miss");
    /* only the first member counts; a quoted detail keeps token characters only */
    CHECK_EQ_INT(tc_cache_status_parse("a; detail=\"x y<z>\", b; hit", w, sizeof(w), d, sizeof(d)),
                 TC_CSTAT_NONE);
    CHECK_EQ_STR(d, "xyz");
    CHECK_EQ_INT(tc_cache_status_parse("garbage", w, sizeof(w), d, sizeof(d)), TC_CSTAT_NONE);
    CHECK_EQ_INT(tc_cache_status_parse("", w, sizeof(w), d, sizeof(d)), TC_CSTAT_NONE);
}

static tc_access_entry entry(int i, char *path, size_t cap)
{
    snprintf(path, cap, "/p/%d", i);
    tc_access_entry e = {.time_ms = 1735787045678LL,
                         .method = "GET",
                         .path = path,
                         .path_len = strlen(path),
                         .status = 200,
                         .duration_us = 10};
    return e;
}

static void test_writer_file(void)
{
    char dir[] = "/tmp/tc-accesslog-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char file[256], err[256];
    snprintf(file, sizeof(file), "%s/access.log", dir);
    tc_access_log *l = tc_access_log_open(file, 8192, err, sizeof(err));
    REQUIRE(l != NULL);
    char path[32];
    for (int i = 0; i < 1000; i++) {
        tc_access_entry e = entry(i, path, sizeof(path));
        tc_access_log_write(l, &e);
        if (i % 100 == 0)
            usleep(2000); /* let the writer swap buffers now and then */
    }
    tc_access_log_stats st;
    tc_access_log_get_stats(l, &st);
    tc_access_log_close(l);
    CHECK_EQ_INT(st.lines + st.dropped, 1000);
    FILE *f = fopen(file, "r");
    REQUIRE(f != NULL);
    char line[512];
    int lines = 0, last = -1, ordered = 1;
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *p = strstr(line, " path=/p/");
        int i = p != NULL ? atoi(p + 9) : -1;
        ordered &= i > last;
        last = i;
        lines++;
    }
    fclose(f);
    CHECK_EQ_INT(lines, (long long)st.lines); /* everything queued was written, at close */
    CHECK(ordered);
    CHECK(st.lines > 0);
    unlink(file);
    rmdir(dir);

    /* an unwritable destination is an error at open */
    CHECK(tc_access_log_open("/nonexistent-dir/x.log", 0, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "/nonexistent-dir/x.log") != NULL);
}

static void *drain(void *arg)
{
    int fd = *(int *)arg;
    char sink[65536];
    while (read(fd, sink, sizeof(sink)) > 0)
        ;
    return NULL;
}

/* A pipe nobody reads: the writer thread blocks in write(2); the callers must not. */
static void test_writer_never_blocks(void)
{
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    char dest[64], err[256];
    snprintf(dest, sizeof(dest), "/proc/self/fd/%d", fds[1]);
    tc_access_log *l = tc_access_log_open(dest, 4096, err, sizeof(err));
    REQUIRE(l != NULL);
    char path[32];
    double t0 = now_s(), worst = 0;
    for (int i = 0; i < 20000; i++) {
        tc_access_entry e = entry(i, path, sizeof(path));
        double a = now_s();
        tc_access_log_write(l, &e);
        double took = now_s() - a;
        worst = took > worst ? took : worst;
    }
    double total = now_s() - t0;
    tc_access_log_stats st;
    tc_access_log_get_stats(l, &st);
    CHECK(st.dropped > 0); /* the pipe (64 KiB) filled: lines were dropped */
    CHECK_EQ_INT(st.lines + st.dropped, 20000);
    CHECK(total < 2.0); /* 20000 lines, nobody reading: no waiting */
    printf("20000 lines into a stalled pipe: %.3f s, worst call %.1f us, %llu dropped\n", total,
           worst * 1e6, (unsigned long long)st.dropped);
    /* a reader drains the pipe while close flushes what is left, then sees EOF */
    pthread_t reader;
    REQUIRE(pthread_create(&reader, NULL, drain, &fds[0]) == 0);
    tc_access_log_close(l);
    close(fds[1]);
    pthread_join(reader, NULL);
    close(fds[0]);
}

int main(void)
{
    test_format();
    test_cache_status();
    test_writer_file();
    test_writer_never_blocks();
    return check_report();
}

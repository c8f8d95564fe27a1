/*
 * Integration test of src/http/purge.c against a real loopback socket: a tiny
 * HTTP responder records every request it gets. Proves: one PURGE per batch
 * with the tags in the configured header and separator, duplicates queued
 * once, three tries then "failed" when the cache refuses or is gone, a full
 * queue drops and counts, bad tags are refused, stop returns with work
 * pending, and with repurge_ms a successful purge is sent once more later. Bounded: every wait has
 * a deadline.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "http/purge.h"

typedef struct responder {
    int fd, port;
    pthread_t th;
    pthread_mutex_t lock;
    char log[16384]; /* requests, one after another */
    int requests;
    _Atomic int status;   /* to answer with */
    _Atomic int delay_ms; /* before answering */
    _Atomic int stop;
} responder;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *responder_main(void *arg)
{
    responder *r = arg;
    while (!atomic_load(&r->stop)) {
        int c = accept(r->fd, NULL, NULL);
        if (c < 0)
            continue;
        char buf[4096];
        size_t got = 0;
        while (got < sizeof(buf) - 1) {
            ssize_t n = recv(c, buf + got, sizeof(buf) - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = '\0';
            if (strstr(buf, "\r\n\r\n") != NULL)
                break;
        }
        buf[got] = '\0';
        if (atomic_load(&r->stop)) {
            close(c);
            break;
        }
        pthread_mutex_lock(&r->lock);
        size_t used = strlen(r->log);
        snprintf(r->log + used, sizeof(r->log) - used, "%s", buf);
        r->requests++;
        pthread_mutex_unlock(&r->lock);
        sleep_ms(atomic_load(&r->delay_ms));
        char resp[128];
        int n = snprintf(resp, sizeof(resp), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n",
                         atomic_load(&r->status));
        send(c, resp, (size_t)n, MSG_NOSIGNAL);
        close(c);
    }
    return NULL;
}

static void responder_start(responder *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    atomic_store(&r->status, 200);
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    REQUIRE(bind(r->fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    REQUIRE(listen(r->fd, 16) == 0);
    REQUIRE(getsockname(r->fd, (struct sockaddr *)&a, &l) == 0);
    r->port = ntohs(a.sin_port);
    REQUIRE(pthread_create(&r->th, NULL, responder_main, r) == 0);
}

static void responder_stop(responder *r)
{
    atomic_store(&r->stop, 1);
    int c = socket(AF_INET, SOCK_STREAM, 0); /* wake accept() */
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)r->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    connect(c, (struct sockaddr *)&a, sizeof(a));
    close(c);
    pthread_join(r->th, NULL);
    close(r->fd);
    pthread_mutex_destroy(&r->lock);
}

static tc_purger *start(int port, const char *header, const char *sep, int queue_max)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    tc_purge_config cfg;
    tc_purge_config_init(&cfg);
    cfg.url = url; /* need not outlive the call */
    if (header != NULL)
        cfg.header = header;
    if (sep != NULL)
        cfg.sep = sep;
    if (queue_max > 0)
        cfg.queue_max = queue_max;
    cfg.timeout_ms = 500;
    int err = 0;
    tc_purger *p = tc_purger_start(&cfg, &err);
    REQUIRE(p != NULL);
    return p;
}

/* Waits until the responder has seen n requests (5 s at most). */
static void wait_requests(responder *r, int n)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&r->lock);
        int got = r->requests;
        pthread_mutex_unlock(&r->lock);
        if (got >= n)
            return;
        sleep_ms(10);
    }
    CHECK(!"the responder did not see the requests in 5 s");
}

/* Waits until nothing is queued or in flight (5 s at most). */
static void drain(tc_purger *p)
{
    tc_purge_stats st;
    for (int i = 0; i < 500; i++) {
        tc_purger_stats(p, &st);
        if (st.waiting == 0)
            return;
        sleep_ms(10);
    }
    CHECK(!"the purge queue did not drain in 5 s");
}

static void test_batches(void)
{
    responder r;
    responder_start(&r);
    tc_purger *p = start(r.port, NULL, NULL, 0);
    atomic_store(&r.delay_ms, 300); /* hold the first request while more tags queue */
    CHECK_EQ_INT(tc_purger_tag(p, "blog:first"), 0);
    wait_requests(&r, 1); /* the first one is in flight */
    CHECK_EQ_INT(tc_purger_tag(p, "blog"), 0);
    CHECK_EQ_INT(tc_purger_tag(p, "blog-list"), 0);
    CHECK_EQ_INT(tc_purger_tag(p, "blog"), 0); /* already waiting: once */
    CHECK_EQ_INT(tc_purger_tag(p, "blog:hello"), 0);
    atomic_store(&r.delay_ms, 0);
    drain(p);
    tc_purge_stats st;
    tc_purger_stats(p, &st);
    CHECK_EQ_INT(st.queued, 4);
    CHECK_EQ_INT(st.sent, 4);
    CHECK_EQ_INT(st.failed, 0);
    CHECK_EQ_INT(st.requests, 2);
    pthread_mutex_lock(&r.lock);
    CHECK_EQ_INT(r.requests, 2);
    CHECK(strstr(r.log, "PURGE / HTTP/1.1\r\n") == r.log);
    CHECK(strstr(r.log, "\r\nxkey: blog:first\r\n") != NULL);
    CHECK(strstr(r.log, "\r\nxkey: blog blog-list blog:hello\r\n") != NULL);
    char host[64];
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", r.port);
    CHECK(strstr(r.log, host) != NULL);
    pthread_mutex_unlock(&r.lock);
    CHECK_EQ_INT(tc_purger_tag(p, ""), TC_HTTP_EINVAL);
    CHECK_EQ_INT(tc_purger_tag(p, "a b"), TC_HTTP_EINVAL); /* holds the separator */
    CHECK_EQ_INT(tc_purger_tag(p, "a\r\nX-Evil: 1"), TC_HTTP_EINVAL);
    char longtag[200];
    memset(longtag, 'x', sizeof(longtag) - 1);
    longtag[sizeof(longtag) - 1] = '\0';
    CHECK_EQ_INT(tc_purger_tag(p, longtag), TC_HTTP_EINVAL);
    tc_purger_stop(p);
    responder_stop(&r);
}

static void test_other_header(void)
{
    responder r;
    responder_start(&r);
    tc_purger *p = start(r.port, "Surrogate-Key", ",", 0);
    atomic_store(&r.delay_ms, 200);
    CHECK_EQ_INT(tc_purger_tag(p, "one"), 0);
    wait_requests(&r, 1);
    CHECK_EQ_INT(tc_purger_tag(p, "two"), 0);
    CHECK_EQ_INT(tc_purger_tag(p, "three"), 0);
    CHECK_EQ_INT(tc_purger_tag(p, "a,b"), TC_HTTP_EINVAL);
    drain(p);
    pthread_mutex_lock(&r.lock);
    CHECK(strstr(r.log, "\r\nSurrogate-Key: two,three\r\n") != NULL);
    pthread_mutex_unlock(&r.lock);
    tc_purger_stop(p);
    responder_stop(&r);
}

static void test_failures(void)
{
    responder r;
    responder_start(&r);
    atomic_store(&r.status, 500);
    tc_purger *p = start(r.port, NULL, NULL, 0);
    CHECK_EQ_INT(tc_purger_tag(p, "blog"), 0);
    drain(p);
    tc_purge_stats st;
    tc_purger_stats(p, &st);
    CHECK_EQ_INT(st.failed, 1);
    CHECK_EQ_INT(st.sent, 0);
    CHECK_EQ_INT(st.requests, 3); /* tried three times */
    atomic_store(&r.status, 200);
    CHECK_EQ_INT(tc_purger_tag(p, "blog"), 0);
    drain(p);
    tc_purger_stats(p, &st);
    CHECK_EQ_INT(st.sent, 1);
    tc_purger_stop(p);
    int port = r.port;
    responder_stop(&r);

    /* nobody listening: refused connections, failed after three tries */
    p = start(port, NULL, NULL, 0);
    CHECK_EQ_INT(tc_purger_tag(p, "x"), 0);
    drain(p);
    tc_purger_stats(p, &st);
    CHECK_EQ_INT(st.failed, 1);
    tc_purger_stop(p);
}

static void test_full_queue_and_stop(void)
{
    responder r;
    responder_start(&r);
    atomic_store(&r.delay_ms, 400);
    tc_purger *p = start(r.port, NULL, NULL, 2);
    CHECK_EQ_INT(tc_purger_tag(p, "t1"), 0);
    wait_requests(&r, 1); /* t1 in flight */
    CHECK_EQ_INT(tc_purger_tag(p, "t2"), 0);
    CHECK_EQ_INT(tc_purger_tag(p, "t3"), 0);
    CHECK_EQ_INT(tc_purger_tag(p, "t4"), TC_HTTP_ETOOBIG);
    tc_purge_stats st;
    tc_purger_stats(p, &st);
    CHECK_EQ_INT(st.dropped, 1);
    CHECK_EQ_INT(st.queued, 3);
    CHECK_EQ_INT(st.waiting, 3);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    tc_purger_stop(p); /* sends t2 t3 once, then returns */
    clock_gettime(CLOCK_MONOTONIC, &b);
    CHECK(b.tv_sec - a.tv_sec < 3);
    pthread_mutex_lock(&r.lock);
    CHECK_EQ_INT(r.requests, 2);
    CHECK(strstr(r.log, "\r\nxkey: t2 t3\r\n") != NULL);
    pthread_mutex_unlock(&r.lock);
    responder_stop(&r);
    tc_purger_stop(NULL);
    CHECK_EQ_INT(tc_purger_tag(NULL, "x"), 0);
}

/* repurge_ms: a purge that succeeded goes out once more, later, with the same tags. */
static void test_repurge(void)
{
    responder r;
    responder_start(&r);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", r.port);
    tc_purge_config cfg;
    tc_purge_config_init(&cfg);
    cfg.url = url;
    cfg.timeout_ms = 500;
    cfg.repurge_ms = 150;
    int err = 0;
    tc_purger *p = tc_purger_start(&cfg, &err);
    REQUIRE(p != NULL);
    CHECK_EQ_INT(tc_purger_tag(p, "blog:again"), 0);
    int requests = 0;
    for (int i = 0; i < 300 && requests < 2; i++) { /* 3 s at most */
        sleep_ms(10);
        pthread_mutex_lock(&r.lock);
        requests = r.requests;
        pthread_mutex_unlock(&r.lock);
    }
    CHECK_EQ_INT(requests, 2);
    pthread_mutex_lock(&r.lock);
    const char *first = strstr(r.log, "xkey: blog:again");
    CHECK(first != NULL && strstr(first + 1, "xkey: blog:again") != NULL);
    pthread_mutex_unlock(&r.lock);
    tc_purge_stats st;
    /* the responder counts a request before the purger has read its answer */
    for (int i = 0; i < 300; i++) {
        tc_purger_stats(p, &st);
        if (st.repurges >= 1)
            break;
        sleep_ms(10);
    }
    CHECK_EQ_INT(st.repurges, 1);
    CHECK_EQ_INT(st.sent, 1); /* tags count once; the second purge is a request */
    sleep_ms(300);            /* and there is no third */
    pthread_mutex_lock(&r.lock);
    CHECK_EQ_INT(r.requests, 2);
    pthread_mutex_unlock(&r.lock);
    tc_purger_stop(p);
    responder_stop(&r);
}

int main(void)
{
    test_batches();
    test_other_header();
    test_failures();
    test_full_queue_and_stop();
    test_repurge();
    return check_report();
}

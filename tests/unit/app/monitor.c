/* tests/unit/app/monitor.c: the pure parts of the monitor (src/app/monitor.c and
 * monitor_prom.c) — latency buckets and percentile estimates (fixed and power-of-two
 * layouts), Prometheus label escaping, the bounded route labels of unlabelled paths, the
 * loopback test of the /metrics access rule, and that the monitoring page's files were
 * compiled in. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "app/monitor.h"
#include "check.h"

#define NB (TC_MON_HIST_BOUNDS + 1)

static void test_buckets(void)
{
    CHECK_EQ_INT(tc_app__mon_bucket(0), 0);
    CHECK_EQ_INT(tc_app__mon_bucket(50), 0); /* le=50us includes 50 */
    CHECK_EQ_INT(tc_app__mon_bucket(51), 1);
    CHECK_EQ_INT(tc_app__mon_bucket(1000), 4);
    CHECK_EQ_INT(tc_app__mon_bucket(10000000), TC_MON_HIST_BOUNDS - 1);
    CHECK_EQ_INT(tc_app__mon_bucket(10000001), TC_MON_HIST_BOUNDS); /* +Inf */
    for (int i = 1; i < TC_MON_HIST_BOUNDS; i++)
        CHECK(tc_app__mon_bounds_us[i] > tc_app__mon_bounds_us[i - 1]);
}

static void test_percentiles(void)
{
    uint64_t b[NB] = {0};
    CHECK(tc_app__mon_percentile(b, NB, 0, 50) < 0); /* empty */
    /* 100 values in (250, 500] us: every percentile lies in that bucket */
    b[tc_app__mon_bucket(400)] = 100;
    double p50 = tc_app__mon_percentile(b, NB, 0, 50), p99 = tc_app__mon_percentile(b, NB, 0, 99);
    CHECK(p50 > 250 && p50 <= 500);
    CHECK(p99 > p50 && p99 <= 500);
    /* 90 fast (<= 50 us) and 10 slow (in (5, 10] ms): p50 fast, p95 and p99 slow */
    memset(b, 0, sizeof(b));
    b[0] = 90;
    b[tc_app__mon_bucket(8000)] = 10;
    CHECK(tc_app__mon_percentile(b, NB, 0, 50) <= 50);
    double p95 = tc_app__mon_percentile(b, NB, 0, 95);
    CHECK(p95 > 5000 && p95 <= 10000);
    /* the +Inf bucket answers its lower bound, never infinity */
    memset(b, 0, sizeof(b));
    b[NB - 1] = 3;
    CHECK(fabs(tc_app__mon_percentile(b, NB, 0, 99) - 10000000) < 1);

    /* the engine's layout: bucket i is [2^(i-1), 2^i) us */
    uint64_t e[24] = {0};
    e[10] = 4; /* [512, 1024) us */
    double x = tc_app__mon_percentile(e, 24, 1, 50);
    CHECK(x >= 512 && x <= 1024);
}

static void test_label_escape(void)
{
    char out[64];
    tc_app__mon_label_escape("plain.name", out, sizeof(out));
    CHECK_EQ_STR(out, "plain.name");
    tc_app__mon_label_escape("a\"b\\c\nd", out, sizeof(out));
    CHECK_EQ_STR(out, "a\\\"b\\\\c\\nd");
    char small[8];
    tc_app__mon_label_escape("\"\"\"\"\"\"\"\"", small, sizeof(small));
    CHECK(strlen(small) < sizeof(small));
    CHECK(small[strlen(small) - 1] == '"' && small[strlen(small) - 2] == '\\'); /* no half escape */
}

static void test_routes(void)
{
#define R(p) tc_app__mon_route_of_path(p, strlen(p))
    CHECK_EQ_STR(R("/trpc/whatever.proc"), "unknown");
    CHECK_EQ_STR(R("/trpc/a,b,c"), "unknown");
    CHECK_EQ_STR(R("/metrics"), "/metrics");
    CHECK_EQ_STR(R("/healthz"), "/healthz");
    CHECK_EQ_STR(R("/admin/cache.json"), "/admin/cache.json");
    CHECK_EQ_STR(R("/static/app.0123abcd.css"), "/static/*");
    CHECK_EQ_STR(R("/blog/any-post"), "/blog/:slug");
    CHECK_EQ_STR(R("/"), "/");
    CHECK_EQ_STR(R("/login"), "/login");
    CHECK_EQ_STR(R("/metrics/extra"), "other");
    CHECK_EQ_STR(R("/some/random/path/1234"), "other");
    CHECK_EQ_STR(R(""), "other");
#undef R
}

static void test_loopback(void)
{
    CHECK(tc_app__mon_is_loopback("127.0.0.1"));
    CHECK(tc_app__mon_is_loopback("127.8.9.10"));
    CHECK(tc_app__mon_is_loopback("::1"));
    CHECK(tc_app__mon_is_loopback("::ffff:127.0.0.1"));
    CHECK(!tc_app__mon_is_loopback("10.0.0.1"));
    CHECK(!tc_app__mon_is_loopback("::ffff:10.0.0.1"));
    CHECK(!tc_app__mon_is_loopback("1270.0.0.1"));
    CHECK(!tc_app__mon_is_loopback("::2"));
    CHECK(!tc_app__mon_is_loopback(NULL));
}

static void test_assets(void)
{
    const char *want[] = {"cache.html", "cache.js", "cache.css"};
    for (int w = 0; w < 3; w++) {
        int found = 0;
        for (const tc_app__asset *a = tc_app__admin_assets; a->name != NULL; a++)
            if (strcmp(a->name, want[w]) == 0 && a->len > 100 && a->data[a->len] == '\0')
                found = 1;
        CHECK(found);
    }
}

int main(void)
{
    test_buckets();
    test_percentiles();
    test_label_escape();
    test_routes();
    test_loopback();
    test_assets();
    return check_report();
}

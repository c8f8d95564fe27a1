/*
 * Unit tests of src/http/purge.c's URL check: a purge goes to this machine
 * only (127.0.0.0/8, ::1, localhost), over plain http, to an explicit port.
 * The purge thread itself is tested against a real socket in
 * tests/integration/http/purge.c.
 */
#include <string.h>

#include "check.h"
#include "http/purge.h"

static void test_urls(void)
{
    static const struct {
        const char *url, *host, *path;
        int port;
    } good[] = {
        {"http://127.0.0.1:6081/", "127.0.0.1", "/", 6081},
        {"http://127.0.0.1:6081", "127.0.0.1", "/", 6081},
        {"http://127.1.2.3:80/purge/here", "127.1.2.3", "/purge/here", 80},
        {"http://localhost:6081/", "127.0.0.1", "/", 6081},
        {"http://[::1]:6081/", "::1", "/", 6081},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char host[64] = "", path[256] = "";
        int port = 0;
        CHECK_EQ_INT(tc_purge_parse_url(good[i].url, host, sizeof(host), &port, path, sizeof(path)),
                     0);
        CHECK_EQ_STR(host, good[i].host);
        CHECK_EQ_STR(path, good[i].path);
        CHECK_EQ_INT(port, good[i].port);
    }
    const char *bad[] = {
        NULL,
        "",
        "127.0.0.1:6081",
        "https://127.0.0.1:6081/",
        "http://127.0.0.1/", /* the port is required */
        "http://127.0.0.1:0/",
        "http://127.0.0.1:65536/",
        "http://127.0.0.1:80x/",
        "http://10.0.0.1:6081/", /* not this machine */
        "http://192.168.1.10:6081/",
        "http://8.8.8.8:80/",
        "http://example.com:6081/",
        "http://[::2]:6081/",
        "http://[::1:6081/",
        "http://127.0.0.1:6081/a b",
        "http://127.0.0.1:6081/?x=1",
        "http://127.0.0.1:6081/\r\nX: y",
        "http://user@127.0.0.1:6081/",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char host[64], path[256];
        int port;
        if (!CHECK(tc_purge_parse_url(bad[i], host, sizeof(host), &port, path, sizeof(path)) ==
                   TC_HTTP_EINVAL))
            fprintf(stderr, "    accepted: %s\n", bad[i]);
    }
}

int main(void)
{
    test_urls();
    return check_report();
}

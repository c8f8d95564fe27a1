/* bus.c: the invalidation bus between two PROCESSES. The test forks a child before any
 * thread exists; parent and child each create their own tc_cache (own L1, own bus
 * subscription) on the same Redis, prefix and database, and talk over two pipes: the parent
 * sends one command per line, the child answers one line. The source of truth is a version
 * number in shared memory, so both loaders see every mutation at once.
 *
 * Proves, from DESIGN.md "The cache engine: what it must get right":
 *   6  L1 coherence across instances: each process sees the other's tag, key and clear
 *      invalidations through the bus; the answer before the invalidation came from L1
 *      (source L1), the first new answer after it from the loader — it was L1 that was
 *      dropped, by a message, within a deadline.
 *   3  read-your-writes across processes, bounded only by bus delivery.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "common.h"

#define TAG "grp:1"
#define FRESH_MS 60000u

typedef struct shared_truth {
    _Atomic int version;
} shared_truth;

static shared_truth *truth; /* MAP_SHARED: one for both processes */
static int port;
static char prefix[64];

static int truth_loader(void *ctx, const char *key, tc_buf *out)
{
    return tc_buf_printf(out, "%s=v%d", key, atomic_load(&truth->version));
}

static tc_policy policy(void)
{
    tc_policy p = {.fresh_ms = FRESH_MS, .stale_ms = FRESH_MS, .loader = truth_loader};
    p.tags[p.ntags++] = TAG;
    return p;
}

static tc_cache *new_cache(void)
{
    tc_config cfg;
    it_config(&cfg, port, 0, prefix);
    return it_cache(&cfg);
}

/* ---- line protocol over pipes, every read with a deadline -------------------------------- */

static int send_line(int fd, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof(line) - 1)
        return -1;
    line[n++] = '\n';
    return write(fd, line, (size_t)n) == n ? 0 : -1;
}

/* Reads one line (without '\n') within ms; 0, or -1 on timeout, EOF or error. */
static int recv_line(int fd, char *line, size_t n, int ms)
{
    int64_t end = it_now_ms() + ms;
    size_t len = 0;
    while (len < n - 1) {
        int64_t left = end - it_now_ms();
        struct pollfd p = {fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return -1;
        char ch;
        if (read(fd, &ch, 1) != 1)
            return -1;
        if (ch == '\n') {
            line[len] = '\0';
            return 0;
        }
        line[len++] = ch;
    }
    return -1;
}

/* ---- the child: a second server process ------------------------------------------------- */

static void reply_read(int out, const it_read *r)
{
    send_line(out, "%d %d %s", r->rc, (int)r->source, r->rc == 0 ? r->data : "-");
}

static void child_main(int in, int out)
{
    tc_policy p = policy();
    tc_cache *c = new_cache();
    int up = 0;
    if (c != NULL)
        IT_WAIT_UNTIL(up, it_bus_connected(c), IT_DEADLINE_MS);
    send_line(out, "READY %d", c != NULL && up);
    char line[512], a[256], b[256];
    int ms;
    /* Commands: GET key | WAIT key want ms | INV_TAG tag | INV_KEY key | CLEAR | BUS | QUIT */
    while (c != NULL && recv_line(in, line, sizeof(line), 120000) == 0) {
        if (sscanf(line, "GET %255s", a) == 1) {
            it_read r = it_get_or_load(c, a, &p);
            reply_read(out, &r);
        } else if (sscanf(line, "WAIT %255s %255s %d", a, b, &ms) == 3) {
            it_read first = {.rc = -1};
            it_read last = it_read_until(c, a, &p, b, ms, &first);
            reply_read(out, first.rc == -1 ? &last : &first);
        } else if (sscanf(line, "INV_TAG %255s", a) == 1) {
            send_line(out, "%d", tc_invalidate_tag(c, a));
        } else if (sscanf(line, "INV_KEY %255s", a) == 1) {
            send_line(out, "%d", tc_invalidate_key(c, a));
        } else if (strcmp(line, "CLEAR") == 0) {
            send_line(out, "%d", tc_clear(c));
        } else if (strcmp(line, "BUS") == 0) {
            tc_metrics m;
            tc_metrics_snapshot(c, &m);
            send_line(out, "%d %llu", m.bus_connected, (unsigned long long)m.bus_messages);
        } else {
            break; /* QUIT, or anything unexpected */
        }
    }
    tc_cache_destroy(c);
    exit(0);
}

/* ---- the parent ------------------------------------------------------------------------- */

static int to_child = -1, from_child = -1;
static pid_t child;

/* Sends a command, reads the child's answer; a missing answer fails the check. */
static int ask(char *reply, size_t n, const char *cmd)
{
    int ok = send_line(to_child, "%s", cmd) == 0 &&
             recv_line(from_child, reply, n, 2 * IT_DEADLINE_MS) == 0;
    if (!CHECK(ok))
        fprintf(stderr, "    no answer from the child to '%s'\n", cmd);
    return ok ? 0 : -1;
}

/* The child reads key once (want NULL), or until it answers want: rc, source, value. */
static it_read child_read(const char *key, const char *want)
{
    char cmd[512], reply[512];
    it_read r = {.rc = -999};
    if (want == NULL)
        snprintf(cmd, sizeof(cmd), "GET %s", key);
    else
        snprintf(cmd, sizeof(cmd), "WAIT %s %s %d", key, want, IT_DEADLINE_MS);
    if (ask(reply, sizeof(reply), cmd) == 0) {
        int src = -1;
        if (sscanf(reply, "%d %d %255s", &r.rc, &src, r.data) != 3)
            r.rc = -998;
        r.source = (tc_source)src;
    }
    return r;
}

/* The child runs an invalidation command; its return code. */
static int child_invalidate(const char *cmd, const char *arg)
{
    char line[512], reply[64];
    snprintf(line, sizeof(line), "%s%s%s", cmd, arg != NULL ? " " : "", arg != NULL ? arg : "");
    return ask(reply, sizeof(reply), line) == 0 ? atoi(reply) : -999;
}

static const char *const kinds[] = {"tag", "key", "clear"};

/* The parent invalidates (kind); the child, which had the key in L1, reloads it. */
static void test_child_sees_parent_invalidations(tc_cache *parent)
{
    for (int k = 0; k < 3; k++) {
        char key[64], old[96], want[96], v[16];
        snprintf(key, sizeof(key), "item:p-%s", kinds[k]);
        int n = atomic_load(&truth->version);
        snprintf(v, sizeof(v), "v%d", n);
        it_expect(old, sizeof(old), key, v);

        it_read r = child_read(key, NULL);
        CHECK_EQ_INT(r.rc, 0);
        CHECK_EQ_STR(r.data, old);
        r = child_read(key, NULL);
        CHECK_EQ_INT(r.source, TC_SRC_L1); /* what the invalidation must drop */
        CHECK_EQ_STR(r.data, old);

        snprintf(v, sizeof(v), "v%d", atomic_fetch_add(&truth->version, 1) + 1);
        it_expect(want, sizeof(want), key, v);
        int rc = k == 0   ? tc_invalidate_tag(parent, TAG)
                 : k == 1 ? tc_invalidate_key(parent, key)
                          : tc_clear(parent);
        CHECK_EQ_INT(rc, 0);

        r = child_read(key, want);
        if (!CHECK(r.rc == 0 && strcmp(r.data, want) == 0))
            fprintf(stderr, "    %s: child still answers '%s' (rc %d)\n", kinds[k], r.data, r.rc);
        CHECK_EQ_INT(r.source, TC_SRC_LOADER);
    }
}

/* The child invalidates (kind); the parent, which had the key in L1, reloads it. */
static void test_parent_sees_child_invalidations(tc_cache *parent)
{
    tc_policy p = policy();
    for (int k = 0; k < 3; k++) {
        char key[64], old[96], want[96], v[16];
        snprintf(key, sizeof(key), "item:c-%s", kinds[k]);
        snprintf(v, sizeof(v), "v%d", atomic_load(&truth->version));
        it_expect(old, sizeof(old), key, v);

        CHECK_EQ_STR(it_get_or_load(parent, key, &p).data, old);
        it_read r = it_get_or_load(parent, key, &p);
        CHECK_EQ_INT(r.source, TC_SRC_L1);
        CHECK_EQ_STR(r.data, old);

        snprintf(v, sizeof(v), "v%d", atomic_fetch_add(&truth->version, 1) + 1);
        it_expect(want, sizeof(want), key, v);
        int rc = k == 0   ? child_invalidate("INV_TAG", TAG)
                 : k == 1 ? child_invalidate("INV_KEY", key)
                          : child_invalidate("CLEAR", NULL);
        CHECK_EQ_INT(rc, 0);

        it_read first = {.rc = -1};
        r = it_read_until(parent, key, &p, want, IT_DEADLINE_MS, &first);
        if (!CHECK(r.rc == 0 && strcmp(r.data, want) == 0))
            fprintf(stderr, "    %s: parent still answers '%s' (rc %d)\n", kinds[k], r.data, r.rc);
        CHECK_EQ_INT(first.source, TC_SRC_LOADER);
    }
}

static void test_messages_went_through_the_bus(tc_cache *parent)
{
    char reply[64];
    int up = 0;
    unsigned long long msgs = 0;
    if (ask(reply, sizeof(reply), "BUS") == 0)
        sscanf(reply, "%d %llu", &up, &msgs);
    CHECK_EQ_INT(up, 1);
    CHECK(msgs >= 3); /* the parent's three; its own are received too, and ignored */
    tc_metrics m;
    tc_metrics_snapshot(parent, &m);
    CHECK_EQ_INT(m.bus_connected, 1);
    CHECK(m.bus_messages >= 3);
}

static int wait_child(int ms)
{
    int status = 0;
    int64_t end = it_now_ms() + ms;
    while (it_now_ms() < end) {
        pid_t w = waitpid(child, &status, WNOHANG);
        if (w == child)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        it_sleep_ms(10);
    }
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    return -1;
}

int main(void)
{
    tct_redis own;
    port = it_redis_port(&own);
    REQUIRE(port > 0);
    snprintf(prefix, sizeof(prefix), "it-bus-%ld:", (long)getpid());
    truth = mmap(NULL, sizeof(*truth), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(truth != MAP_FAILED);
    atomic_store(&truth->version, 1);

    /* Fork while this process has no thread but main (no cache exists yet). */
    int down[2], up[2];
    REQUIRE(pipe(down) == 0 && pipe(up) == 0);
    fflush(NULL);
    pid_t parent_pid = getpid();
    child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent_pid)
            _exit(2);
        close(down[1]);
        close(up[0]);
        child_main(down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    to_child = down[1];
    from_child = up[0];
    signal(SIGPIPE, SIG_IGN); /* a dead child must fail a check, not kill the test */

    char line[64];
    int ready = recv_line(from_child, line, sizeof(line), 2 * IT_DEADLINE_MS) == 0 &&
                strcmp(line, "READY 1") == 0;
    if (!CHECK(ready))
        fprintf(stderr, "    child not ready\n");
    tc_cache *parent = new_cache();
    int bus = 0;
    if (parent != NULL)
        IT_WAIT_UNTIL(bus, it_bus_connected(parent), IT_DEADLINE_MS);
    CHECK(bus);

    if (ready && bus) {
        test_child_sees_parent_invalidations(parent);
        test_parent_sees_child_invalidations(parent);
        test_messages_went_through_the_bus(parent);
    }

    send_line(to_child, "QUIT");
    CHECK_EQ_INT(wait_child(IT_DEADLINE_MS), 0);
    close(to_child);
    close(from_child);
    tc_cache_destroy(parent);
    munmap(truth, sizeof(*truth));
    tct_redis_stop(&own);
    return check_report();
}

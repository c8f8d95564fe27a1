/* proxy.c: the freezable loopback TCP proxy of proxy.h. One thread, poll(). */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAIRS_MAX 128

struct tct_proxy {
    int listen_fd, port, target;
    int wake[2];
    atomic_int frozen, stopping;
    atomic_int seen; /* the value of frozen the thread last acted on, plus 1 */
    pthread_t thread;
    int fds[PAIRS_MAX][2]; /* [client, server]; -1 when the slot is free */
};

static int dial(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void close_pair(tct_proxy *p, int i)
{
    for (int k = 0; k < 2; k++)
        if (p->fds[i][k] >= 0)
            close(p->fds[i][k]);
    p->fds[i][0] = p->fds[i][1] = -1;
}

/* Moves what can be read from one side to the other; false when the pair is over. */
static int pump(int from, int to)
{
    char buf[65536];
    ssize_t n = read(from, buf, sizeof(buf));
    if (n <= 0)
        return 0;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return 0;
        off += w;
    }
    return 1;
}

static void *run(void *arg)
{
    tct_proxy *p = arg;
    while (!atomic_load(&p->stopping)) {
        struct pollfd pf[2 + 2 * PAIRS_MAX];
        int map[2 + 2 * PAIRS_MAX], n = 0;
        pf[n] = (struct pollfd){p->listen_fd, POLLIN, 0}, map[n++] = -1;
        pf[n] = (struct pollfd){p->wake[0], POLLIN, 0}, map[n++] = -2;
        int frozen = atomic_load(&p->frozen);
        atomic_store(&p->seen, frozen + 1);
        for (int i = 0; i < PAIRS_MAX && !frozen; i++)
            for (int k = 0; k < 2; k++)
                if (p->fds[i][k] >= 0)
                    pf[n] = (struct pollfd){p->fds[i][k], POLLIN, 0}, map[n++] = i * 2 + k;
        if (poll(pf, (nfds_t)n, 1000) < 0 && errno != EINTR)
            break;
        if (pf[1].revents) {
            char b[16];
            if (read(p->wake[0], b, sizeof(b)) < 0)
                break;
        }
        if (pf[0].revents) {
            int c = accept(p->listen_fd, NULL, NULL), s = c >= 0 ? dial(p->target) : -1;
            int slot = -1;
            for (int i = 0; i < PAIRS_MAX && slot < 0; i++)
                if (p->fds[i][0] < 0)
                    slot = i;
            if (c >= 0 && s >= 0 && slot >= 0) {
                p->fds[slot][0] = c;
                p->fds[slot][1] = s;
            } else {
                if (c >= 0)
                    close(c);
                if (s >= 0)
                    close(s);
            }
        }
        if (atomic_load(&p->frozen) != frozen)
            continue; /* frozen meanwhile: not one more byte */
        for (int j = 2; j < n; j++) {
            if (!pf[j].revents)
                continue;
            int i = map[j] / 2, k = map[j] % 2;
            if (p->fds[i][k] >= 0 && !pump(p->fds[i][k], p->fds[i][1 - k]))
                close_pair(p, i);
        }
    }
    return NULL;
}

tct_proxy *tct_proxy_start(int target_port)
{
    tct_proxy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    memset(p->fds, -1, sizeof(p->fds));
    p->target = target_port;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(sa);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (p->listen_fd < 0 || bind(p->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(p->listen_fd, 64) != 0 ||
        getsockname(p->listen_fd, (struct sockaddr *)&sa, &len) != 0 || pipe(p->wake) != 0) {
        perror("tct_proxy_start");
        if (p->listen_fd >= 0)
            close(p->listen_fd);
        free(p);
        return NULL;
    }
    p->port = ntohs(sa.sin_port);
    if (pthread_create(&p->thread, NULL, run, p) != 0) {
        close(p->listen_fd);
        close(p->wake[0]);
        close(p->wake[1]);
        free(p);
        return NULL;
    }
    return p;
}

int tct_proxy_port(const tct_proxy *p)
{
    return p->port;
}

void tct_proxy_freeze(tct_proxy *p, int frozen)
{
    atomic_store(&p->seen, 0);
    atomic_store(&p->frozen, frozen);
    if (write(p->wake[1], "w", 1) < 0)
        perror("tct_proxy_freeze");
    while (atomic_load(&p->seen) != frozen + 1) /* returns once the thread acts on it */
        sched_yield();
}

void tct_proxy_stop(tct_proxy *p)
{
    if (p == NULL)
        return;
    atomic_store(&p->stopping, 1);
    if (write(p->wake[1], "s", 1) < 0)
        perror("tct_proxy_stop");
    pthread_join(p->thread, NULL);
    for (int i = 0; i < PAIRS_MAX; i++)
        close_pair(p, i);
    close(p->listen_fd);
    close(p->wake[0]);
    close(p->wake[1]);
    free(p);
}

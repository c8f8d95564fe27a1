/* redis_server.c: start/stop/kill/restart a private redis-server for tests (see .h). */
#include "redis_server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <hiredis/hiredis.h>

#define START_TIMEOUT_MS 10000

void tct_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

long tct_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int tct_free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(sa);
    int port = -1, fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

int tct_env_redis_port(void)
{
    const char *s = getenv("TC_REDIS_PORT");
    char *end;
    long v;
    if (!s || !*s)
        return -1;
    v = strtol(s, &end, 10);
    return (*end == '\0' && v > 0 && v < 65536) ? (int)v : -1;
}

/* 1 if the redis on port answers PING, and (when pid > 0) is that process: INFO's
 * process_id, so a stranger that grabbed the port is not taken for ours. */
static int ping(int port, pid_t pid)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    redisReply *rep;
    int ok = 0;
    if (!c)
        return 0;
    if (!c->err && redisSetTimeout(c, tv) == REDIS_OK && (rep = redisCommand(c, "PING")) != NULL) {
        ok = rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
        freeReplyObject(rep);
    }
    if (ok && pid > 0 && (rep = redisCommand(c, "INFO server")) != NULL) {
        char want[32];
        snprintf(want, sizeof(want), "\nprocess_id:%ld\r", (long)pid);
        ok = rep->type == REDIS_REPLY_STRING && strstr(rep->str, want) != NULL;
        freeReplyObject(rep);
    } else if (ok && pid > 0) {
        ok = 0;
    }
    redisFree(c);
    return ok;
}

static void print_log(const tct_redis *r)
{
    char path[300], line[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/redis.log", r->dir);
    if (!(f = fopen(path, "r")))
        return;
    fprintf(stderr, "---- %s ----\n", path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

/* fork+exec redis-server on r->port in r->dir, wait for PING. -1 if it died or timed out. */
static int spawn(tct_redis *r)
{
    const char *bin = getenv("TC_REDIS_SERVER");
    char port[16], logfile[300];
    pid_t parent = getpid(), pid;
    long deadline;

    if (!bin || !*bin)
        bin = "redis-server";
    snprintf(port, sizeof(port), "%d", r->port);
    snprintf(logfile, sizeof(logfile), "%s/redis.log", r->dir);
    fflush(NULL);
    if ((pid = fork()) < 0) {
        perror("tct_redis: fork");
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) /* parent died before prctl */
            _exit(127);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        const char *argv[32] = {bin,           "--port",      port,     "--bind", "127.0.0.1",
                                "--save",      "",            "--appendonly", "no",
                                "--daemonize", "no",          "--dir",  r->dir,   "--logfile",
                                logfile};
        int argc = 15;
        for (int i = 0; r->extra[i] != NULL && argc < 31; i++)
            argv[argc++] = r->extra[i];
        argv[argc] = NULL;
        execvp(bin, (char *const *)argv);
        fprintf(stderr, "tct_redis: exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    r->pid = pid;
    deadline = tct_now_ms() + START_TIMEOUT_MS;
    while (tct_now_ms() < deadline) {
        int status;
        if (ping(r->port, pid))
            return 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            r->pid = 0;
            return -1;
        }
        tct_sleep_ms(20);
    }
    fprintf(stderr, "tct_redis: no PONG on port %d after %d ms\n", r->port, START_TIMEOUT_MS);
    tct_redis_kill(r);
    return -1;
}

int tct_redis_start(tct_redis *r)
{
    return tct_redis_start_with(r, 0, NULL);
}

int tct_redis_start_with(tct_redis *r, int want_port, const char *const *extra)
{
    const char *tmp = getenv("TMPDIR");
    memset(r, 0, sizeof(*r));
    for (int i = 0; extra != NULL && extra[i] != NULL && i < 15; i++)
        r->extra[i] = extra[i];
    snprintf(r->dir, sizeof(r->dir), "%s/tct-redis-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(r->dir)) {
        perror("tct_redis: mkdtemp");
        r->dir[0] = '\0';
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) { /* the free port may be taken meanwhile */
        if ((r->port = want_port > 0 ? want_port : tct_free_port()) < 0)
            break;
        if (spawn(r) == 0)
            return 0;
        if (want_port > 0)
            break;
    }
    fprintf(stderr, "tct_redis: could not start redis-server\n");
    print_log(r);
    tct_redis_stop(r);
    return -1;
}

int tct_redis_restart(tct_redis *r)
{
    if (r->pid > 0 || r->port <= 0 || !r->dir[0]) {
        fprintf(stderr, "tct_redis_restart: not a killed server\n");
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) { /* old socket may linger briefly */
        if (spawn(r) == 0)
            return 0;
        tct_sleep_ms(200);
    }
    fprintf(stderr, "tct_redis_restart: could not restart on port %d\n", r->port);
    print_log(r);
    return -1;
}

static int reap(pid_t pid, long timeout_ms)
{
    long deadline = tct_now_ms() + timeout_ms;
    int status;
    do {
        pid_t w = waitpid(pid, &status, timeout_ms < 0 ? 0 : WNOHANG);
        if (w == pid || (w < 0 && errno == ECHILD))
            return 0;
        if (w < 0 && errno != EINTR)
            return -1;
        if (timeout_ms >= 0)
            tct_sleep_ms(10);
    } while (timeout_ms < 0 || tct_now_ms() < deadline);
    return -1;
}

int tct_redis_kill(tct_redis *r)
{
    if (r->pid <= 0)
        return 0;
    kill(r->pid, SIGKILL);
    reap(r->pid, -1);
    r->pid = 0;
    return 0;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[600];
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

int tct_redis_stop(tct_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        if (reap(r->pid, 2000) != 0)
            tct_redis_kill(r);
        r->pid = 0;
    }
    if (r->dir[0]) {
        remove_dir(r->dir);
        r->dir[0] = '\0';
    }
    return 0;
}

int tct_redis_snapshot(tct_redis *r)
{
    char from[300], to[300];
    redisContext *c = redisConnect("127.0.0.1", r->port);
    redisReply *rep = NULL;
    int ok = 0;
    /* a child of its own (a replica's first sync forks one) refuses SAVE for a while */
    for (long end = tct_now_ms() + START_TIMEOUT_MS; c != NULL && !c->err; tct_sleep_ms(20)) {
        rep = redisCommand(c, "SAVE");
        ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
        int busy = rep != NULL && rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "progress");
        if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
            fprintf(stderr, "tct_redis_snapshot: SAVE: %s\n", rep->str);
        if (rep != NULL)
            freeReplyObject(rep);
        if (ok || !busy || tct_now_ms() >= end)
            break;
    }
    if (c != NULL)
        redisFree(c);
    snprintf(from, sizeof(from), "%s/dump.rdb", r->dir);
    snprintf(to, sizeof(to), "%s/snapshot.rdb", r->dir);
    if (!ok || rename(from, to) != 0) {
        fprintf(stderr, "tct_redis_snapshot: SAVE on port %d failed\n", r->port);
        return -1;
    }
    return 0;
}

int tct_redis_restore(tct_redis *r)
{
    char from[300], to[300];
    tct_redis_kill(r);
    snprintf(from, sizeof(from), "%s/snapshot.rdb", r->dir);
    snprintf(to, sizeof(to), "%s/dump.rdb", r->dir);
    if (rename(from, to) != 0) {
        fprintf(stderr, "tct_redis_restore: no snapshot in %s\n", r->dir);
        return -1;
    }
    return tct_redis_restart(r);
}

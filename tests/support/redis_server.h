/* redis_server.h: a private redis-server for tests, on a free loopback port in its own
 * temp dir, killed with the test if the test dies. Not for production use.
 * Start it from the main thread: PR_SET_PDEATHSIG fires when the *thread* that forked dies.
 * All functions return 0 on success, -1 on error (with a message on stderr). */
#ifndef TC_TEST_REDIS_SERVER_H
#define TC_TEST_REDIS_SERVER_H

#include <sys/types.h>

typedef struct tct_redis {
    int port;      /* loopback port it listens on (kept across kill/restart) */
    pid_t pid;     /* 0 when not running */
    char dir[256]; /* its --dir; holds redis.log; removed by tct_redis_stop */
    /* more arguments for redis-server (e.g. a cluster node's), NULL-terminated;
     * set by tct_redis_start_with, kept across kill/restart */
    const char *extra[16];
} tct_redis;

/* Starts redis-server ($TC_REDIS_SERVER or "redis-server" on PATH) on a free port and
 * waits until it answers PING. *r is overwritten. */
int tct_redis_start(tct_redis *r);
/* The same, with extra arguments (at most 15, NULL-terminated, static strings), on port if
 * it is > 0 (else a free one). */
int tct_redis_start_with(tct_redis *r, int port, const char *const *extra);
/* SIGTERM, wait; SIGKILL after 2 s. Removes r->dir. Safe on a stopped server. */
int tct_redis_stop(tct_redis *r);
/* SIGKILL and reap (a crash, for fault tests). Keeps port and dir for tct_redis_restart. */
int tct_redis_kill(tct_redis *r);
/* Starts it again on the same port and dir (after kill); data is gone (no persistence). */
int tct_redis_restart(tct_redis *r);

/* SAVE now, and keep that file aside as the snapshot tct_redis_restore brings back. */
int tct_redis_snapshot(tct_redis *r);
/* SIGKILL, then start again on the same port and dir from the snapshot: the Redis an
 * operator restores from an older backup, with every key as it was then. */
int tct_redis_restore(tct_redis *r);

/* $TC_REDIS_PORT (the shared redis started by scripts/test.sh), or -1 if unset/invalid. */
int tct_env_redis_port(void);
/* A port that was free on 127.0.0.1 a moment ago, or -1. */
int tct_free_port(void);

/* Small clock helpers for the test kit: sleep ms (restarting on EINTR), and a
 * monotonic clock in ms. */
void tct_sleep_ms(long ms);
long tct_now_ms(void);

#endif

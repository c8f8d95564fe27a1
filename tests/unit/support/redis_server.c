/* Tests tests/support/redis_server.c: start a private redis, kill it, restart it on the
 * same port, stop it; and the shared redis from scripts/test.sh when TC_REDIS_PORT is set. */
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include <hiredis/hiredis.h>

#include "check.h"
#include "redis_server.h"

/* Runs one command on 127.0.0.1:port; returns the reply (caller frees) or NULL. */
static redisReply *command(int port, const char *cmd)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    redisReply *rep = NULL;
    if (c && !c->err)
        rep = redisCommand(c, cmd);
    redisFree(c);
    return rep;
}

static int pong(int port)
{
    redisReply *rep = command(port, "PING");
    int ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    freeReplyObject(rep);
    return ok;
}

int main(void)
{
    tct_redis r;
    redisReply *rep;
    struct stat st;
    char dir[sizeof(r.dir)];
    int port;

    CHECK(tct_free_port() > 0);

    REQUIRE(tct_redis_start(&r) == 0);
    CHECK(r.port > 0);
    CHECK(r.pid > 0);
    CHECK(pong(r.port));
    rep = command(r.port, "SET tct:key hello");
    CHECK(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);

    port = r.port;
    strcpy(dir, r.dir);
    CHECK_EQ_INT(tct_redis_kill(&r), 0);
    CHECK_EQ_INT(r.pid, 0);
    CHECK(!pong(port));

    REQUIRE(tct_redis_restart(&r) == 0);
    CHECK_EQ_INT(r.port, port);
    CHECK(pong(r.port));
    rep = command(r.port, "GET tct:key"); /* no persistence: a restart comes back empty */
    CHECK(rep && rep->type == REDIS_REPLY_NIL);
    freeReplyObject(rep);

    pid_t pid = r.pid;
    CHECK_EQ_INT(tct_redis_stop(&r), 0);
    CHECK_EQ_INT(r.pid, 0);
    CHECK(kill(pid, 0) != 0); /* reaped, gone */
    CHECK(!pong(port));
    CHECK(stat(dir, &st) != 0);          /* temp dir removed */
    CHECK_EQ_INT(tct_redis_stop(&r), 0); /* stopping twice is harmless */

    if ((port = tct_env_redis_port()) > 0) /* the shared one from scripts/test.sh */
        CHECK(pong(port));

    return check_report();
}

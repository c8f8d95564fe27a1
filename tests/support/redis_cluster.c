/* redis_cluster.c: start/stop/kill/reshard a private Redis Cluster for tests (see .h). */
#include "redis_cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>

#define OK_TIMEOUT_MS 30000

static int port_free(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
    if (fd < 0)
        return 0;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* A port whose cluster bus port (+10000) is free too, both below the ephemeral range. */
static int cluster_port(void)
{
    for (int i = 0; i < 200; i++) {
        int p = 20000 + (int)((unsigned)rand() % 2700u);
        if (port_free(p) && port_free(p + 10000))
            return p;
    }
    return -1;
}

static redisContext *connect_port(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c == NULL || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* One command on node i; the reply or NULL. */
static redisReply *on(tct_cluster *cl, int i, const char *fmt, ...)
{
    redisContext *c = cl->node[i].pid > 0 ? connect_port(cl->node[i].port) : NULL;
    if (c == NULL)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return rep;
}

static int ok_reply(redisReply *rep)
{
    int ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
        fprintf(stderr, "tct_cluster: %s\n", rep->str);
    freeReplyObject(rep);
    return ok;
}

const char *tct_env_cluster_nodes(void)
{
    const char *s = getenv("TC_CLUSTER_NODES");
    return s != NULL && *s != '\0' ? s : NULL;
}

/* Runs redis-cli with args; its exit status (-1 if it could not run). Output goes to log. */
static int redis_cli(const char *log, char *const *args)
{
    const char *bin = getenv("TC_REDIS_CLI");
    if (bin == NULL || *bin == '\0')
        bin = "redis-cli";
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)bin;
    for (int i = 0; args[i] != NULL && argc < 63; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644), null = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (null >= 0)
            dup2(null, 0);
        execvp(bin, argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void print_file(const char *path)
{
    char line[512];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    fprintf(stderr, "---- %s ----\n", path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

/* 1 when every replica has its master link up. */
static int replicas_in_sync(tct_cluster *cl)
{
    for (int i = 0; i < cl->n; i++) {
        redisReply *rep = on(cl, i, "INFO replication");
        int ok = rep != NULL && rep->type == REDIS_REPLY_STRING &&
                 (strstr(rep->str, "role:master") != NULL ||
                  strstr(rep->str, "master_link_status:up") != NULL);
        freeReplyObject(rep);
        if (cl->node[i].pid > 0 && !ok)
            return 0;
    }
    return 1;
}

int tct_cluster_start(tct_cluster *cl, int masters, int node_timeout_ms)
{
    memset(cl, 0, sizeof(*cl));
    if (masters < 3 || masters * 2 > TCT_CLUSTER_NODES_MAX) {
        fprintf(stderr, "tct_cluster_start: 3 to %d masters\n", TCT_CLUSTER_NODES_MAX / 2);
        return -1;
    }
    srand((unsigned)getpid() ^ (unsigned)tct_now_ms());
    snprintf(cl->timeout, sizeof(cl->timeout), "%d", node_timeout_ms);
    /* repl-diskless-sync-delay 0: a replica's first sync at once, not after 5 s */
    const char *extra[] = {"--cluster-enabled",     "yes",      "--cluster-config-file",
                           "nodes.conf",            "--cluster-node-timeout", cl->timeout,
                           "--repl-diskless-sync-delay", "0",  NULL};
    cl->n = masters * 2;
    size_t used = 0;
    for (int i = 0; i < cl->n; i++) {
        int started = -1;
        for (int attempt = 0; attempt < 5 && started != 0; attempt++) {
            int port = cluster_port();
            if (port > 0)
                started = tct_redis_start_with(&cl->node[i], port, extra);
        }
        if (started != 0) {
            fprintf(stderr, "tct_cluster_start: node %d did not start\n", i);
            tct_cluster_stop(cl);
            return -1;
        }
        used += (size_t)snprintf(cl->seeds + used, sizeof(cl->seeds) - used, "%s127.0.0.1:%d",
                                 i ? "," : "", cl->node[i].port);
    }
    char addrs[TCT_CLUSTER_NODES_MAX][32], log[300];
    char *args[TCT_CLUSTER_NODES_MAX + 8];
    int a = 0;
    args[a++] = "--cluster";
    args[a++] = "create";
    for (int i = 0; i < cl->n; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%d", cl->node[i].port);
        args[a++] = addrs[i];
    }
    args[a++] = "--cluster-replicas";
    args[a++] = "1";
    args[a++] = "--cluster-yes";
    args[a] = NULL;
    snprintf(log, sizeof(log), "%s/cluster-create.log", cl->node[0].dir);
    if (redis_cli(log, args) != 0) {
        fprintf(stderr, "tct_cluster_start: redis-cli --cluster create failed\n");
        print_file(log);
        tct_cluster_stop(cl);
        return -1;
    }
    if (tct_cluster_wait_ok(cl, OK_TIMEOUT_MS) != 0) {
        tct_cluster_stop(cl);
        return -1;
    }
    long end = tct_now_ms() + OK_TIMEOUT_MS;
    while (!replicas_in_sync(cl) && tct_now_ms() < end)
        tct_sleep_ms(20);
    if (!replicas_in_sync(cl)) {
        fprintf(stderr, "tct_cluster_start: replicas not in sync\n");
        tct_cluster_stop(cl);
        return -1;
    }
    return 0;
}

int tct_cluster_stop(tct_cluster *cl)
{
    for (int i = 0; i < cl->n; i++)
        tct_redis_stop(&cl->node[i]);
    cl->n = 0;
    return 0;
}

static int index_of_port(tct_cluster *cl, long long port)
{
    for (int i = 0; i < cl->n; i++)
        if (cl->node[i].port == port)
            return i;
    return -1;
}

/* CLUSTER SLOTS as asked of node i: for each slot, the index of its master (-1: none).
 * Returns 0, or -1 if node i did not answer. */
static int slot_map(tct_cluster *cl, int i, short *owner)
{
    redisReply *rep = on(cl, i, "CLUSTER SLOTS");
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return -1;
    }
    for (int s = 0; s < 16384; s++)
        owner[s] = -1;
    for (size_t r = 0; r < rep->elements; r++) {
        redisReply *e = rep->element[r];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3)
            continue;
        int m = index_of_port(cl, e->element[2]->element[1]->integer);
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
            owner[s] = (short)m;
    }
    freeReplyObject(rep);
    return 0;
}

static int cluster_ok(tct_cluster *cl)
{
    static short owner[16384];
    for (int i = 0; i < cl->n; i++) {
        if (cl->node[i].pid <= 0)
            continue;
        redisReply *rep = on(cl, i, "CLUSTER INFO");
        int ok = rep != NULL && rep->type == REDIS_REPLY_STRING &&
                 strstr(rep->str, "cluster_state:ok") != NULL;
        freeReplyObject(rep);
        if (!ok || slot_map(cl, i, owner) != 0)
            return 0;
        for (int s = 0; s < 16384; s++)
            if (owner[s] < 0 || cl->node[owner[s]].pid <= 0)
                return 0;
    }
    return 1;
}

int tct_cluster_wait_ok(tct_cluster *cl, int ms)
{
    long end = tct_now_ms() + ms;
    while (!cluster_ok(cl)) {
        if (tct_now_ms() >= end) {
            fprintf(stderr, "tct_cluster: not ok after %d ms\n", ms);
            for (int i = 0; i < cl->n; i++) {
                redisReply *rep = on(cl, i, "CLUSTER NODES");
                if (rep != NULL && rep->type == REDIS_REPLY_STRING)
                    fprintf(stderr, "node %d (port %d):\n%s", i, cl->node[i].port, rep->str);
                freeReplyObject(rep);
            }
            return -1;
        }
        tct_sleep_ms(50);
    }
    return 0;
}

int tct_cluster_master_of(tct_cluster *cl, unsigned slot)
{
    static short owner[16384];
    for (int i = 0; i < cl->n; i++)
        if (cl->node[i].pid > 0 && slot_map(cl, i, owner) == 0)
            return slot < 16384 ? owner[slot] : -1;
    return -1;
}

int tct_cluster_id(tct_cluster *cl, int i, char *out)
{
    redisReply *rep = on(cl, i, "CLUSTER MYID");
    int ok = rep != NULL && rep->type == REDIS_REPLY_STRING && rep->len < 41;
    if (ok)
        memcpy(out, rep->str, rep->len + 1);
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

int tct_cluster_kill(tct_cluster *cl, int i)
{
    return tct_redis_kill(&cl->node[i]);
}

int tct_cluster_restart(tct_cluster *cl, int i)
{
    return tct_redis_restart(&cl->node[i]);
}

/* The master of slot, where it is migrating from while it is open. */
static int source_of(tct_cluster *cl, unsigned slot)
{
    return tct_cluster_master_of(cl, slot);
}

int tct_cluster_slot_open(tct_cluster *cl, unsigned slot, int to)
{
    int from = source_of(cl, slot);
    char from_id[41], to_id[41];
    if (from < 0 || to < 0 || to >= cl->n || from == to || tct_cluster_id(cl, from, from_id) != 0 ||
        tct_cluster_id(cl, to, to_id) != 0)
        return -1;
    return ok_reply(on(cl, to, "CLUSTER SETSLOT %u IMPORTING %s", slot, from_id)) &&
                   ok_reply(on(cl, from, "CLUSTER SETSLOT %u MIGRATING %s", slot, to_id))
               ? 0
               : -1;
}

/* MIGRATEs one key of slot from its source to `to`: 1 moved, 0 it was not there, -1. */
static int migrate_one(tct_cluster *cl, int from, int to, const char *key, size_t len)
{
    redisReply *m = on(cl, from, "MIGRATE 127.0.0.1 %d %b 0 5000 KEYS %b", cl->node[to].port, "",
                       (size_t)0, key, len);
    if (m != NULL && m->type == REDIS_REPLY_STATUS && strcmp(m->str, "NOKEY") == 0) {
        freeReplyObject(m); /* gone meanwhile */
        return 0;
    }
    return ok_reply(m) ? 1 : -1;
}

int tct_cluster_slot_migrate(tct_cluster *cl, unsigned slot, int to, const char *key)
{
    int from = source_of(cl, slot);
    if (from < 0)
        return -1;
    if (key != NULL)
        return migrate_one(cl, from, to, key, strlen(key)) < 0 ? -1 : 0;
    for (;;) {
        redisReply *keys = on(cl, from, "CLUSTER GETKEYSINSLOT %u 10", slot);
        if (keys == NULL || keys->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(keys);
            return -1;
        }
        size_t n = keys->elements;
        int rc = 0;
        for (size_t k = 0; k < n && rc == 0; k++)
            rc = migrate_one(cl, from, to, keys->element[k]->str, keys->element[k]->len) < 0 ? -1
                                                                                              : 0;
        freeReplyObject(keys);
        if (rc != 0 || n == 0)
            return rc;
    }
}

int tct_cluster_slot_close(tct_cluster *cl, unsigned slot, int to)
{
    int from = source_of(cl, slot);
    char to_id[41];
    if (from < 0 || tct_cluster_id(cl, to, to_id) != 0)
        return -1;
    /* the new owner first, then the old one, then the other masters */
    if (!ok_reply(on(cl, to, "CLUSTER SETSLOT %u NODE %s", slot, to_id)) ||
        (from != to && !ok_reply(on(cl, from, "CLUSTER SETSLOT %u NODE %s", slot, to_id))))
        return -1;
    for (int i = 0; i < cl->n; i++) {
        if (i == to || i == from || cl->node[i].pid <= 0)
            continue;
        redisReply *rep = on(cl, i, "CLUSTER SETSLOT %u NODE %s", slot, to_id);
        freeReplyObject(rep); /* a replica refuses: it learns from its master */
    }
    return 0;
}

int tct_cluster_move_slot(tct_cluster *cl, unsigned slot, int to, int pause_ms)
{
    int from = source_of(cl, slot);
    if (from < 0 || to < 0)
        return -1;
    if (from == to)
        return 0;
    if (tct_cluster_slot_open(cl, slot, to) != 0)
        return -1;
    redisReply *keys = on(cl, from, "CLUSTER GETKEYSINSLOT %u 1", slot);
    if (keys != NULL && keys->type == REDIS_REPLY_ARRAY && keys->elements == 1 &&
        migrate_one(cl, from, to, keys->element[0]->str, keys->element[0]->len) < 0) {
        freeReplyObject(keys);
        return -1;
    }
    freeReplyObject(keys);
    if (pause_ms > 0) /* split between the two: ASK for what moved, the rest here */
        tct_sleep_ms(pause_ms);
    if (tct_cluster_slot_migrate(cl, slot, to, NULL) != 0)
        return -1;
    return tct_cluster_slot_close(cl, slot, to);
}

static int moved_port(const redisReply *rep)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ERROR || strncmp(rep->str, "MOVED ", 6) != 0)
        return -1;
    const char *colon = strrchr(rep->str, ':');
    return colon != NULL ? atoi(colon + 1) : -1;
}

redisReply *tct_cluster_command(tct_cluster *cl, const char *fmt, ...)
{
    int port = -1;
    for (int i = 0; i < cl->n && port < 0; i++)
        if (cl->node[i].pid > 0)
            port = cl->node[i].port;
    redisReply *rep = NULL;
    for (int hops = 0; hops < 4 && port > 0; hops++) {
        redisContext *c = connect_port(port);
        if (c == NULL)
            return NULL;
        va_list ap;
        va_start(ap, fmt);
        rep = redisvCommand(c, fmt, ap);
        va_end(ap);
        redisFree(c);
        if ((port = moved_port(rep)) < 0)
            break;
        freeReplyObject(rep);
        rep = NULL;
    }
    return rep;
}

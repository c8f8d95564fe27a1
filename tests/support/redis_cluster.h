/* redis_cluster.h: a private Redis Cluster for tests — masters and one replica each, every
 * node a redis-server on a private loopback port (tct_redis, in its own temp dir, killed with
 * the test if the test dies), made a cluster by `redis-cli --cluster create`. Not for
 * production use. Start it from the main thread (see redis_server.h).
 * Functions return 0 on success, -1 on error (with a message on stderr). */
#ifndef TC_TEST_REDIS_CLUSTER_H
#define TC_TEST_REDIS_CLUSTER_H

#include <hiredis/hiredis.h>

#include "redis_server.h"

#define TCT_CLUSTER_NODES_MAX 12

typedef struct tct_cluster {
    int n;                                    /* nodes: masters first, then their replicas */
    tct_redis node[TCT_CLUSTER_NODES_MAX];    /* node[i].port, .pid (0 while killed) */
    char seeds[TCT_CLUSTER_NODES_MAX * 24];   /* "127.0.0.1:p,..." of every node */
    char timeout[16];                         /* --cluster-node-timeout, ms */
} tct_cluster;

/* Starts masters (3..6) with one replica each; node_timeout_ms: how long a master may be
 * silent before its replica takes over (1000: a fast failover for fault tests; 5000:
 * nothing of the sort under load). Waits until every node says cluster_state:ok and every
 * replica is in sync. *cl is overwritten. */
int tct_cluster_start(tct_cluster *cl, int masters, int node_timeout_ms);
/* Stops every node and removes their dirs. Safe on a stopped cluster. */
int tct_cluster_stop(tct_cluster *cl);

/* $TC_CLUSTER_NODES (the shared cluster scripts/test.sh starts), or NULL. */
const char *tct_env_cluster_nodes(void);

/* Until every running node says cluster_state:ok and every slot has a master that
 * answers, at most ms. */
int tct_cluster_wait_ok(tct_cluster *cl, int ms);
/* The index of the node that is master of slot now (asked of a running node), or -1. */
int tct_cluster_master_of(tct_cluster *cl, unsigned slot);
/* The node's id (CLUSTER MYID) into out (41 bytes). */
int tct_cluster_id(tct_cluster *cl, int i, char *out);
/* SIGKILL node i (a crash). Its replica takes over after the node timeout. */
int tct_cluster_kill(tct_cluster *cl, int i);
/* Starts node i again on its port and dir (its nodes.conf: it rejoins; its data is gone). */
int tct_cluster_restart(tct_cluster *cl, int i);

/* Moves slot to node `to` as redis-cli --cluster reshard does: IMPORTING on the target,
 * MIGRATING on the source, every key MIGRATEd, then the target named its owner everywhere.
 * pause_ms > 0: waits that long once the first keys are moved (while the slot is split). */
int tct_cluster_move_slot(tct_cluster *cl, unsigned slot, int to, int pause_ms);
/* The same in steps, for a test that acts while the slot is split: open (IMPORTING on `to`,
 * MIGRATING on the slot's master), migrate one key (or, key NULL, every key left), close
 * (the target named the slot's owner: itself, the source, then every other master). */
int tct_cluster_slot_open(tct_cluster *cl, unsigned slot, int to);
int tct_cluster_slot_migrate(tct_cluster *cl, unsigned slot, int to, const char *key);
int tct_cluster_slot_close(tct_cluster *cl, unsigned slot, int to);

/* A command for the master of its key, following MOVED (the test's own routing, not the
 * engine's): sent to a running node first. The reply (freeReplyObject), or NULL. */
redisReply *tct_cluster_command(tct_cluster *cl, const char *fmt, ...);

#endif

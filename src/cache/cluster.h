/*
 * The L2 on a Redis Cluster (cluster.c): which master holds a key, how a
 * command reaches it, and the engine's operations whose keys live on several
 * masters. redis.c hands a cluster every call made on a tc__redis that was
 * configured with cluster seeds (tc_config.cluster_nodes), so the rest of the
 * engine calls the same functions on one Redis or on a cluster.
 *
 * It is for: the slot of a key, the slot map, a pool and a breaker per master,
 * MOVED / ASK / TRYAGAIN / CLUSTERDOWN, and the names of the keys that must
 * share a slot. It is not for: talking to replicas, or a general-purpose
 * cluster client (only the commands and scripts the engine sends).
 */
#ifndef TC_CACHE_CLUSTER_H
#define TC_CACHE_CLUSTER_H

#include "cache/internal.h"

#define TC__SLOTS 16384

/* ---- pure ------------------------------------------------------------------ */

/* The hash slot of a key: CRC16 (XMODEM) mod 16384 of the key — or of its hash
 * tag, the bytes between its first '{' and the first '}' after it, when that is
 * not empty. */
unsigned tc__cluster_slot(const char *key, size_t len);

/* A redirection in an error reply: "MOVED <slot> <host>:<port>", "ASK ...". */
enum { TC__REDIRECT_NONE, TC__REDIRECT_MOVED, TC__REDIRECT_ASK };
typedef struct tc__redirect {
    int kind;
    unsigned slot;
    char host[256]; /* "" when the reply names none: the node that answered */
    int port;
} tc__redirect;
/* Reads err (an error reply's text) into *out; returns out->kind (NONE for
 * anything else, or a malformed redirection). */
int tc__cluster_redirect(const char *err, size_t len, tc__redirect *out);

/* A master as CLUSTER SLOTS names it. */
typedef struct tc__node_addr {
    char host[256];
    int port;
    char id[41]; /* "" if the reply names none */
} tc__node_addr;
/* Reads a CLUSTER SLOTS reply: its masters into nodes (each once, at most
 * max) and, for every slot, the index of its master in nodes into owner[16384]
 * (-1: none). A master whose address is empty or "?" is at `asked`, the host
 * that answered. Returns the number of masters, or TC_EINVAL for a reply that
 * is not one. */
int tc__cluster_parse_slots(const struct redisReply *rep, const char *asked,
                            tc__node_addr *nodes, int max, int16_t *owner);

/* "<prefix>~{<prefix>meta}<name>": the engine's keys and channels that one
 * script or one subscription uses together (the invalidation sequence, the
 * members, the bus and the instances' own channels) share this hash tag, so
 * they share a slot. 0, or TC_EINVAL when out is too small. */
int tc__cluster_meta_name(const char *prefix, const char *name, char *out, size_t n);

/* A key "<prefix>~inc{<t>}" whose slot is slot: where the incarnation marker of
 * the master serving that slot lives. 0, or TC_ENOTFOUND (a prefix whose own
 * hash tag puts every key in one slot, or out too small). */
int tc__cluster_marker_key(const char *prefix, unsigned slot, char *out, size_t n);

/* ---- a cluster ----------------------------------------------------------------- */

typedef struct tc__cluster tc__cluster;

/* Seeds from cfg->cluster_nodes ("host:port[,host:port...]"), a pool per master
 * made from cfg (timeouts, pool size, breaker, password), ev as each node's
 * events (incarnation).
 * The slot map is asked at once; a cluster that does not answer yet is asked
 * again on use. NULL on a malformed list or ENOMEM. */
tc__cluster *tc__cluster_new(const tc_config *cfg, tc__metrics *m, tc__redis_events ev);
void tc__cluster_free(tc__cluster *cl); /* NULL is a no-op */

/* What tc__redis_command / tc__redis_script / ... do on a cluster (redis.c
 * calls them). A command is routed by its first argument (argv[1]); PUBLISH is
 * sent as SPUBLISH (the bus is sharded pub/sub); PING goes to every master and
 * answers only if every one does. A script's keys are argv[0..nkeys-1]; the
 * scripts whose keys span slots (READ, WRITE, INVALIDATE) run as the steps
 * that do the same on a cluster (their DESIGN comment in cluster.c). */
struct redisReply *tc__cluster_command(tc__cluster *cl, int argc, const char **argv,
                                       const size_t *lens);
struct redisReply *tc__cluster_script(tc__cluster *cl, int script, int nkeys, int argc,
                                      const char **argv, const size_t *lens);
/* The master that serves the meta slot (where the bus subscribes): 0, or
 * TC_EREDIS when none is known. Refreshes the slot map first when it is due. */
int tc__cluster_address(tc__cluster *cl, char *host, size_t n, int *port);
bool tc__cluster_breaker_open(tc__cluster *cl); /* any master's */
void tc__cluster_refresh_soon(tc__cluster *cl);
void tc__cluster_cause(tc__cluster *cl, char *out, size_t n);

#endif

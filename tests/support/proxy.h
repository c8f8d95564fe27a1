/* proxy.h: a TCP proxy on loopback for fault tests, between a client and a server on
 * 127.0.0.1. Frozen, it stops moving bytes in both directions while every connection stays
 * open: to both ends it is a network partition, not a closed socket. Not for production use.
 * Functions return 0 or -1 (with a message on stderr); the proxy runs on a thread of its own. */
#ifndef TC_TEST_PROXY_H
#define TC_TEST_PROXY_H

typedef struct tct_proxy tct_proxy;

/* Listens on a free loopback port and forwards every connection to 127.0.0.1:target_port. */
tct_proxy *tct_proxy_start(int target_port);
int tct_proxy_port(const tct_proxy *p);
/* 1: stop forwarding (bytes wait in the kernel's buffers); 0: forward again. New connections
 * are still accepted while frozen (as a partition would let a SYN through a dead route: not
 * at all, but a client cannot tell the difference before its timeout). */
void tct_proxy_freeze(tct_proxy *p, int frozen);
/* Closes every connection and the listener, joins the thread. NULL is a no-op. */
void tct_proxy_stop(tct_proxy *p);

#endif

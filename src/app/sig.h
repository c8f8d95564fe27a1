/*
 * Billing webhook signatures: `Billing-Signature: t=<unix>,v1=<hex>` where
 * hex is HMAC-SHA256(secret, "<t>.<body>"). Pure functions (no I/O, no
 * clock: the caller passes now), fuzzed by fuzz/app_sig.c.
 */
#ifndef TC_APP_SIG_H
#define TC_APP_SIG_H

#include <stddef.h>
#include <stdint.h>

enum {
    TC_SIG_OK = 0,
    TC_SIG_EMALFORMED = -1, /* header missing or not of the form above */
    TC_SIG_EEXPIRED = -2,   /* t is more than tolerance away from now */
    TC_SIG_EMISMATCH = -3,  /* no v1 matches */
};

/* Checks header against body. Several v1= entries may be present (secret
 * rotation); any match passes. Comparison is constant-time. */
int tc_sig_verify(const char *header, const char *body, size_t body_len, const char *secret,
                  int64_t now, int64_t tolerance_s);

/* Writes the header for (t, body) into out (at least 80 bytes); for tests
 * and for clients. Returns 0, or -1 if out is too small. */
int tc_sig_sign(char *out, size_t outlen, const char *body, size_t body_len, const char *secret,
                int64_t t);

const char *tc_sig_strerror(int err);

#endif

/*
 * Billing webhook signatures (see sig.h). HMAC-SHA256 and the constant-time
 * comparison come from libsodium; this file only parses the header.
 */
#include "app/sig.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mac(unsigned char out[crypto_auth_hmacsha256_BYTES], const char *ts, size_t tslen,
                const char *body, size_t body_len, const char *secret)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, tslen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, body_len);
    crypto_auth_hmacsha256_final(&st, out);
}

int tc_sig_verify(const char *header, const char *body, size_t body_len, const char *secret,
                  int64_t now, int64_t tolerance_s)
{
    if (header == NULL || secret == NULL || secret[0] == '\0')
        return TC_SIG_EMALFORMED;
    const char *ts = NULL;
    size_t tslen = 0;
    const char *v1[8];
    int nv1 = 0;
    /* Comma-separated key=value items; unknown keys (v0, future schemes) are skipped. */
    for (const char *p = header; *p != '\0';) {
        while (*p == ' ')
            p++;
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if (n > 2 && strncmp(p, "t=", 2) == 0) {
            if (ts != NULL)
                return TC_SIG_EMALFORMED; /* two timestamps: refuse to guess */
            ts = p + 2;
            tslen = n - 2;
        } else if (n == 3 + 2 * crypto_auth_hmacsha256_BYTES && strncmp(p, "v1=", 3) == 0) {
            if (nv1 < 8)
                v1[nv1++] = p + 3;
        } else if (n == 0 || memchr(p, '=', n) == NULL) {
            return TC_SIG_EMALFORMED;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    if (ts == NULL || nv1 == 0 || tslen > 12)
        return TC_SIG_EMALFORMED;
    int64_t t = 0;
    for (size_t i = 0; i < tslen; i++) {
        if (ts[i] < '0' || ts[i] > '9')
            return TC_SIG_EMALFORMED;
        t = t * 10 + (ts[i] - '0');
    }
    if (t < now - tolerance_s || t > now + tolerance_s)
        return TC_SIG_EEXPIRED;
    unsigned char want[crypto_auth_hmacsha256_BYTES], got[crypto_auth_hmacsha256_BYTES];
    mac(want, ts, tslen, body, body_len, secret);
    int ok = 0;
    for (int i = 0; i < nv1; i++) {
        size_t len = 0;
        if (sodium_hex2bin(got, sizeof(got), v1[i], 2 * sizeof(got), NULL, &len, NULL) == 0 &&
            len == sizeof(got))
            ok |= sodium_memcmp(got, want, sizeof(want)) == 0;
    }
    sodium_memzero(want, sizeof(want));
    return ok ? TC_SIG_OK : TC_SIG_EMISMATCH;
}

int tc_sig_sign(char *out, size_t outlen, const char *body, size_t body_len, const char *secret,
                int64_t t)
{
    char ts[24];
    unsigned char m[crypto_auth_hmacsha256_BYTES];
    char hex[2 * crypto_auth_hmacsha256_BYTES + 1];
    int n = snprintf(ts, sizeof(ts), "%lld", (long long)t);
    mac(m, ts, (size_t)n, body, body_len, secret);
    sodium_bin2hex(hex, sizeof(hex), m, sizeof(m));
    n = snprintf(out, outlen, "t=%s,v1=%s", ts, hex);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

const char *tc_sig_strerror(int err)
{
    switch (err) {
    case TC_SIG_OK:
        return "ok";
    case TC_SIG_EMALFORMED:
        return "malformed Billing-Signature header";
    case TC_SIG_EEXPIRED:
        return "signature timestamp outside the tolerance";
    case TC_SIG_EMISMATCH:
        return "signature does not match";
    default:
        return "unknown error";
    }
}

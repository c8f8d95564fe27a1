/*
 * libFuzzer target for the session token of a request (tc_token_of_request,
 * src/app/token.c): the Authorization and Cookie headers are anyone's bytes,
 * and what it returns is looked up as a session. It must not crash or read
 * out of bounds; what it returns is 43 base64url characters found in one of
 * the headers; and it agrees with a second, plainer reading of the rules
 * written here: a Bearer credential (the scheme in any case, then spaces) is
 * the whole rest of Authorization; otherwise the Cookie header is split into
 * name=value pairs at ';' (RFC 6265), and the token is the value of the first
 * pair named exactly "session" — never text inside another cookie's value.
 *
 * Input layout: byte 0 (bit 0: no Authorization, bit 1: no Cookie), then the
 * Authorization value, NUL, the Cookie value.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DTC_FUZZ=ON && cmake --build build-fuzz
 *        --target fuzz_token;  run: scripts/fuzz.sh --seconds 60 token
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* s[0..n) with trailing blanks dropped is a token: copied into out. */
static bool shaped(const char *s, size_t n, char *out)
{
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n != TC_TOKEN_CHARS)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!b64url(s[i]))
            return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

static bool reference(const char *authorization, const char *cookie, char *out)
{
    if (authorization != NULL && strncasecmp(authorization, "Bearer ", 7) == 0) {
        const char *t = authorization + 7;
        while (*t == ' ')
            t++;
        return shaped(t, strlen(t), out);
    }
    if (cookie == NULL)
        return false;
    size_t len = strlen(cookie);
    for (size_t i = 0; i <= len;) {
        size_t end = i;
        while (end < len && cookie[end] != ';')
            end++;
        size_t s = i;
        while (s < end && (cookie[s] == ' ' || cookie[s] == '\t'))
            s++;
        const char *eq = memchr(cookie + s, '=', end - s);
        if (eq != NULL && (size_t)(eq - (cookie + s)) == 7 && memcmp(cookie + s, "session", 7) == 0)
            return shaped(eq + 1, (size_t)(cookie + end - (eq + 1)), out);
        i = end + 1;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    const char *auth = buf, *nul = memchr(buf, '\0', size), *cookie = nul + 1;
    if (cookie > buf + size - 1)
        cookie = buf + size - 1; /* "" */
    if (data[0] & 1)
        auth = NULL;
    if (data[0] & 2)
        cookie = NULL;

    char tok[TC_TOKEN_CHARS + 1], want[TC_TOKEN_CHARS + 1];
    bool got = tc_token_of_request(auth, cookie, tok);
    bool ref = reference(auth, cookie, want);
    if (got != ref || (got && strcmp(tok, want) != 0))
        abort(); /* the two readings of the rules disagree */
    if (got && (strlen(tok) != TC_TOKEN_CHARS || ((auth == NULL || strstr(auth, tok) == NULL) &&
                                                  (cookie == NULL || strstr(cookie, tok) == NULL))))
        abort(); /* not a token from the headers */
    free(buf);
    return 0;
}

/*
 * The session token of a request (see token.h). Strict on purpose: a Bearer
 * credential is the whole rest of the header, and the session cookie is a
 * name=value pair of its own (RFC 6265: pairs separated by ';'), never text
 * inside another cookie's value, which a page on a sibling domain may set.
 */
#include "app/token.h"

#include <string.h>
#include <strings.h>

#define B64URL "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

/* t starts with a token followed by blanks, then '\0' or one of stop: copied into tok. */
static bool take(const char *t, const char *stop, char tok[TC_TOKEN_CHARS + 1])
{
    size_t n = strspn(t, B64URL);
    const char *rest = t + n + strspn(t + n, " \t");
    if (n != TC_TOKEN_CHARS || (*rest != '\0' && strchr(stop, *rest) == NULL))
        return false;
    memcpy(tok, t, TC_TOKEN_CHARS);
    tok[TC_TOKEN_CHARS] = '\0';
    return true;
}

bool tc_token_of_request(const char *authorization, const char *cookie,
                         char tok[TC_TOKEN_CHARS + 1])
{
    if (authorization != NULL && strncasecmp(authorization, "Bearer ", 7) == 0)
        return take(authorization + 7 + strspn(authorization + 7, " "), "", tok);
    for (const char *p = cookie; p != NULL;) {
        p += strspn(p, " \t");
        if (strncmp(p, "session=", 8) == 0)
            return take(p + 8, ";", tok); /* the first session cookie: the most specific */
        p = strchr(p, ';');
        if (p != NULL)
            p++;
    }
    return false;
}

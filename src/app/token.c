/*
 * The session token of a request (see token.h).
 */
#include "app/token.h"

#include <string.h>
#include <strings.h>

bool tc_token_of_request(const char *authorization, const char *cookie,
                         char tok[TC_TOKEN_CHARS + 1])
{
    const char *t = NULL;
    if (authorization != NULL && strncasecmp(authorization, "Bearer ", 7) == 0) {
        t = authorization + 7;
        while (*t == ' ')
            t++;
    } else if (cookie != NULL) {
        for (const char *p = cookie; (p = strstr(p, "session=")) != NULL; p += 8)
            if (p == cookie || p[-1] == ' ' || p[-1] == ';') {
                t = p + 8;
                break;
            }
    }
    if (t == NULL)
        return false;
    size_t n = strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
    if (n != TC_TOKEN_CHARS || (t[n] != '\0' && t[n] != ';' && t[n] != ' '))
        return false;
    memcpy(tok, t, TC_TOKEN_CHARS);
    tok[TC_TOKEN_CHARS] = '\0';
    return true;
}

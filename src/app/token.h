/*
 * The session token a request carries: `Authorization: Bearer <token>`, else
 * the cookie `session=<token>`. A token is 32 random bytes, base64url without
 * padding: 43 characters of [A-Za-z0-9_-]. Pure: header values in, the token
 * or none out (fuzz/token.c).
 *
 * It is for: finding the token to look up (auth.c). It is not for: deciding
 * whether it names a session, or reading any other cookie.
 */
#ifndef TC_APP_TOKEN_H
#define TC_APP_TOKEN_H

#include <stdbool.h>

#define TC_TOKEN_CHARS 43

/* authorization and cookie are the header values, or NULL when absent. A Bearer
 * credential ("Bearer", in any case, spaces, then the token and nothing but blanks)
 * wins: when there is one, the cookie is not read, and a malformed one is no token.
 * Otherwise the token is the value of the first cookie named exactly "session" (the
 * header split into pairs at ';'). Copies the token, NUL-terminated, into tok and
 * returns true; false when there is none of the right shape. */
bool tc_token_of_request(const char *authorization, const char *cookie,
                         char tok[TC_TOKEN_CHARS + 1]);

#endif

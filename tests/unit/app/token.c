/*
 * The session token of a request (src/app/token.c): a Bearer credential, else
 * the session cookie among others; a Bearer wins over the cookie; anything
 * not exactly 43 base64url characters, a Bearer with more after it, and a
 * "session=" inside another cookie's value are no token.
 */
#include <stdio.h>
#include <string.h>

#include "app/token.h"
#include "check.h"

#define TOK "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde" /* 43 */

static const char *token(const char *authorization, const char *cookie)
{
    static char tok[TC_TOKEN_CHARS + 1];
    return tc_token_of_request(authorization, cookie, tok) ? tok : NULL;
}

static void bearer(void)
{
    CHECK(strlen(TOK) == TC_TOKEN_CHARS);
    CHECK_EQ_STR(token("Bearer " TOK, NULL), TOK);
    CHECK_EQ_STR(token("bearer " TOK, NULL), TOK); /* the scheme is case-insensitive */
    CHECK_EQ_STR(token("Bearer    " TOK, NULL), TOK);
    CHECK(token("Bearer " TOK "x", NULL) == NULL); /* 44 characters */
    CHECK(token("Bearer " TOK "=", NULL) == NULL); /* padding: not what we hand out */
    CHECK(token("Bearer ab+/cd", NULL) == NULL);   /* base64, not base64url */
    CHECK(token("Bearer", NULL) == NULL);
    CHECK(token("Basic " TOK, NULL) == NULL);
    /* the credential is the whole rest of the header (fuzz/token.c) */
    CHECK(token("Bearer " TOK "; ", NULL) == NULL);
    CHECK(token("Bearer " TOK " junk", NULL) == NULL);
    CHECK_EQ_STR(token("Bearer " TOK " ", NULL), TOK);
    /* a Bearer wins: the cookie is not read, even when the Bearer is malformed */
    CHECK_EQ_STR(token("Bearer " TOK, "session=" TOK "; x=1"), TOK);
    CHECK(token("Bearer nope", "session=" TOK) == NULL);
    /* another scheme: the cookie is read */
    CHECK_EQ_STR(token("Basic dXNlcjpwYXNz", "session=" TOK), TOK);
}

static void cookie(void)
{
    CHECK_EQ_STR(token(NULL, "session=" TOK), TOK);
    CHECK_EQ_STR(token(NULL, "theme=dark; session=" TOK "; lang=en"), TOK);
    CHECK_EQ_STR(token(NULL, "theme=dark;session=" TOK), TOK);
    CHECK(token(NULL, "xsession=" TOK) == NULL);        /* another cookie's name */
    CHECK(token(NULL, "session=" TOK "x") == NULL);     /* 44 characters */
    CHECK(token(NULL, "session=\"" TOK "\"") == NULL);  /* quoted: not what we set */
    CHECK(token(NULL, "session=; theme=dark") == NULL); /* cleared by logout */
    CHECK(token(NULL, "Session=" TOK) == NULL);         /* names are case-sensitive */
    CHECK(token(NULL, "") == NULL);
    /* a pair of its own: never text inside another cookie's value (fuzz/token.c) */
    CHECK(token(NULL, "theme=dark9 session=" TOK "; lang=en") == NULL);
    CHECK(token(NULL, "a=\"session=" TOK "\"") == NULL);
    CHECK_EQ_STR(token(NULL, "theme=x session=y; session=" TOK), TOK);
    CHECK_EQ_STR(token(NULL, "\tsession=" TOK "\t; x=1"), TOK);
    CHECK(token(NULL, "session=" TOK " x") == NULL);
    CHECK(token(NULL, "session=nope; session=" TOK) == NULL); /* the first one counts */
    CHECK(token(NULL, NULL) == NULL);
}

int main(void)
{
    bearer();
    cookie();
    return check_report();
}

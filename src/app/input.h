/*
 * Input validation for procedures: each procedure declares its fields once;
 * tc_input_check() accepts exactly those (unknown fields are an error), with
 * their types and bounds, and writes a precise message for the client
 * otherwise ("input.name: expected a string of at most 100 characters").
 * Pure: no I/O.
 */
#ifndef TC_APP_INPUT_H
#define TC_APP_INPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum { TC_IN_STRING, TC_IN_INT, TC_IN_BOOL, TC_IN_OBJECT } tc_in_type;

typedef struct tc_in_field {
    const char *name;
    tc_in_type type;
    bool required;
    bool nullable;           /* null accepted (and means "clear" for updates) */
    size_t min_len, max_len; /* strings: length in characters (UTF-8 code points) */
    long long min, max;      /* integers */
    /* strings: an extra check; returns NULL or what is wrong ("not an email address") */
    const char *(*check)(const char *s);
} tc_in_field;

/* input may be NULL (absent). A procedure with no fields accepts absent, null
 * and {}. Returns 0, or -1 with msg filled. */
int tc_input_check(const json_t *input, const tc_in_field *fields, int nfields, char *msg,
                   size_t msglen);

/* Checks for the check hook. */
const char *tc_in_email(const char *s);
const char *tc_in_url(const char *s);  /* http(s)://, no spaces or control characters */
const char *tc_in_slug(const char *s); /* [a-z0-9-], not starting or ending with '-' */

/* A blog.list cursor, "<published_at>.<id>" exactly as blog.list prints it:
 * [0-9]{1,19} "." [0-9]{1,19}, each at most INT64_MAX and without a leading zero
 * (no sign, space, or anything else: the text ends up in a cache key, and a post has
 * one spelling). 0 with *pub and *id, or -1. */
int tc_in_cursor(const char *s, long long *pub, long long *id);

#endif

/*
 * Procedure input validation (see input.h). jansson has already rejected
 * malformed JSON and invalid UTF-8; this checks shape, types and bounds.
 */
#include "app/input.h"

#include <stdio.h>
#include <stdint.h>
#include <string.h>

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool has_control(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

static int fail(char *msg, size_t msglen, const char *fmt, const char *a, const char *b)
{
    snprintf(msg, msglen, fmt, a, b);
    return -1;
}

static int check_field(const json_t *v, const tc_in_field *f, char *msg, size_t msglen)
{
    if (json_is_null(v)) {
        return f->nullable ? 0 : fail(msg, msglen, "input.%s: must not be null%s", f->name, "");
    }
    switch (f->type) {
    case TC_IN_STRING: {
        if (!json_is_string(v))
            return fail(msg, msglen, "input.%s: expected a string%s", f->name, "");
        const char *s = json_string_value(v);
        if (strlen(s) != json_string_length(v))
            return fail(msg, msglen, "input.%s: must not contain NUL characters%s", f->name, "");
        size_t n = utf8_chars(s);
        if (n < f->min_len || (f->max_len > 0 && n > f->max_len)) {
            char bounds[64];
            snprintf(bounds, sizeof(bounds), "between %zu and %zu characters", f->min_len,
                     f->max_len);
            return fail(msg, msglen, "input.%s: must be %s", f->name, bounds);
        }
        const char *why = f->check != NULL ? f->check(s) : NULL;
        if (why != NULL)
            return fail(msg, msglen, "input.%s: %s", f->name, why);
        return 0;
    }
    case TC_IN_INT: {
        if (!json_is_integer(v))
            return fail(msg, msglen, "input.%s: expected an integer%s", f->name, "");
        long long x = json_integer_value(v);
        if (x < f->min || x > f->max) {
            char bounds[64];
            snprintf(bounds, sizeof(bounds), "between %lld and %lld", f->min, f->max);
            return fail(msg, msglen, "input.%s: must be %s", f->name, bounds);
        }
        return 0;
    }
    case TC_IN_BOOL:
        return json_is_boolean(v)
                   ? 0
                   : fail(msg, msglen, "input.%s: expected a boolean%s", f->name, "");
    case TC_IN_OBJECT:
        return json_is_object(v) ? 0
                                 : fail(msg, msglen, "input.%s: expected an object%s", f->name, "");
    }
    return fail(msg, msglen, "input.%s: unsupported type%s", f->name, "");
}

int tc_input_check(const json_t *input, const tc_in_field *fields, int nfields, char *msg,
                   size_t msglen)
{
    if (input == NULL || json_is_null(input)) {
        for (int i = 0; i < nfields; i++)
            if (fields[i].required)
                return fail(msg, msglen, "input.%s: required%s", fields[i].name, "");
        return 0;
    }
    if (!json_is_object(input))
        return fail(msg, msglen, "input: expected an object%s%s", "", "");
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)input, name, v)
    {
        int i = 0;
        while (i < nfields && strcmp(fields[i].name, name) != 0)
            i++;
        if (i == nfields) {
            char shown[64];
            snprintf(shown, sizeof(shown), "%.40s%s", name, strlen(name) > 40 ? "..." : "");
            return fail(msg, msglen, "input: unknown field '%s'%s",
                        has_control(shown) ? "?" : shown, "");
        }
    }
    for (int i = 0; i < nfields; i++) {
        const json_t *fv = json_object_get(input, fields[i].name);
        if (fv == NULL) {
            if (fields[i].required)
                return fail(msg, msglen, "input.%s: required%s", fields[i].name, "");
            continue;
        }
        if (check_field(fv, &fields[i], msg, msglen) != 0)
            return -1;
    }
    return 0;
}

const char *tc_in_email(const char *s)
{
    const char *at = strchr(s, '@');
    if (at == NULL || at == s || strchr(at + 1, '@') != NULL || strchr(at + 1, '.') == NULL ||
        at[1] == '.' || s[strlen(s) - 1] == '.' || strpbrk(s, " \t<>()[]\\,;:\"") != NULL ||
        has_control(s))
        return "not an email address";
    return NULL;
}

const char *tc_in_url(const char *s)
{
    if ((strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0) ||
        strpbrk(s, " \"<>\\^`{|}") != NULL || has_control(s))
        return "not an http(s) URL";
    const char *host = strstr(s, "//") + 2;
    if (*host == '\0' || *host == '/')
        return "not an http(s) URL";
    return NULL;
}

const char *tc_in_slug(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || s[0] == '-' || s[n - 1] == '-')
        return "not a slug (a-z, 0-9 and '-')";
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return "not a slug (a-z, 0-9 and '-')";
    return NULL;
}

/* [0-9]{1,19} within INT64_MAX, without a leading zero (but "0"), ending at *end. */
static int int64_digits(const char *s, const char **end, long long *out)
{
    unsigned long long v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9' && p - s < 19; p++)
        v = v * 10 + (unsigned long long)(*p - '0');
    if (p == s || (*p >= '0' && *p <= '9') || v > (unsigned long long)INT64_MAX ||
        (s[0] == '0' && p - s > 1))
        return -1;
    *end = p;
    *out = (long long)v;
    return 0;
}

int tc_in_cursor(const char *s, long long *pub, long long *id)
{
    const char *p;
    if (int64_digits(s, &p, pub) != 0 || *p != '.' || int64_digits(p + 1, &p, id) != 0 ||
        *p != '\0')
        return -1;
    return 0;
}

/*
 * libFuzzer target for the page templates (src/http/tmpl.c): values are
 * anyone's text (a post's title and body, a user's name), and the template
 * language must never let one through raw. Rendering must not crash, leak or
 * read out of bounds, whatever the template; and:
 *   - no value emits a markup character: the output has exactly as many
 *     '<', '>', '"' and '\'' as the template (values and the lookup's answers
 *     are full of them; the one HTML value has none);
 *   - tc_html_escape's output, with its five entities decoded, is its input;
 *   - a buffer with a maximum is never filled past it: rendering either fits
 *     or fails.
 *
 * Input layout: byte 0 (bit 0: a 64-byte maximum), then value 1, NUL, value 2,
 * NUL, the template (missing parts are empty).
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DTC_FUZZ=ON && cmake --build build-fuzz
 *        --target fuzz_tmpl;  run: scripts/fuzz.sh --seconds 60 tmpl
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/tmpl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *part(const char **p, const char *end, size_t *len)
{
    const char *s = *p, *z = s < end ? memchr(s, '\0', (size_t)(end - s)) : NULL;
    *len = z != NULL ? (size_t)(z - s) : (size_t)(end - s);
    *p = z != NULL ? z + 1 : end;
    return s;
}

static void count_markup(const char *s, size_t n, size_t c[4])
{
    memset(c, 0, 4 * sizeof(size_t));
    for (size_t i = 0; i < n; i++)
        c[0] += s[i] == '<', c[1] += s[i] == '>', c[2] += s[i] == '"', c[3] += s[i] == '\'';
}

/* Names the page does not set: static:NAME answers value 2, "echo" a markup string. */
static const char *lookup(void *ctx, const char *name)
{
    if (strncmp(name, "static:", 7) == 0)
        return ctx;
    return strcmp(name, "echo") == 0 ? "<script>alert('x')</script>\"" : NULL;
}

/* Decodes the five entities tc_html_escape writes; -1 on anything else after '&'. */
static int unescape(const char *s, size_t n, char *out, size_t *olen)
{
    static const char *const ent[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};
    static const char ch[] = {'&', '<', '>', '"', '\''};
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '&') {
            out[o++] = s[i++];
            continue;
        }
        size_t k = 0;
        while (k < 5 && (n - i < strlen(ent[k]) || memcmp(s + i, ent[k], strlen(ent[k])) != 0))
            k++;
        if (k == 5)
            return -1;
        out[o++] = ch[k];
        i += strlen(ent[k]);
    }
    *olen = o;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    size_t l1, l2, tl;
    const char *v1 = part(&p, end, &l1), *v2 = part(&p, end, &l2), *t = part(&p, end, &tl);
    char *s1 = strndup(v1, l1), *s2 = strndup(v2, l2);
    if (s1 == NULL || s2 == NULL)
        abort();
    tc_tmpl_var vars[] = {
        {.name = "title", .value = s1},
        {.name = "body", .value = s2},
        {.name = "name", .value = "O'Brien & <Co> \"quoted\""},
        {.name = "none", .value = NULL},
        {.name = "items", .value = "&lt;li&gt;built by our code&lt;/li&gt;", .html = true},
    };
    tc_buf out = {.max = (data[0] & 1) ? 64 : 0};
    int err = tc_tmpl_render(&out, t, tl, vars, 5, lookup, s2);
    if (out.max != 0 && out.len > out.max)
        abort(); /* past the maximum */
    if (err == 0) {
        size_t want[4], got[4];
        count_markup(t, tl, want);
        count_markup(out.data, out.len, got);
        if (memcmp(want, got, sizeof(want)) != 0)
            abort(); /* a value emitted markup */
    } else if (out.max == 0) {
        abort(); /* no maximum: rendering cannot fail but for memory */
    }
    free(out.data);

    tc_buf esc = {0};
    if (tc_html_escape(&esc, s1, l1) != 0)
        abort();
    size_t c[4], ul = 0;
    count_markup(esc.data, esc.len, c);
    char *u = malloc(esc.len + 1);
    if (c[0] + c[1] + c[2] + c[3] != 0 || u == NULL || unescape(esc.data, esc.len, u, &ul) != 0 ||
        ul != l1 || (l1 > 0 && memcmp(u, v1, l1) != 0))
        abort(); /* escaping left markup, or does not decode back to its input */
    free(u);
    free(esc.data);
    free(s1);
    free(s2);
    return 0;
}

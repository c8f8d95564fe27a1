/*
 * Page templates (see tmpl.h): one pass over the template, names looked up in
 * a small array (a page has a handful), values escaped on the way out.
 */
#include "http/tmpl.h"

#include <string.h>

int tc_html_escape(tc_buf *out, const char *s, size_t len)
{
    size_t from = 0;
    for (size_t i = 0; i < len; i++) {
        const char *rep;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            continue;
        }
        int err = tc_buf_append(out, s + from, i - from);
        if (err == 0)
            err = tc_buf_append(out, rep, strlen(rep));
        if (err != 0)
            return err;
        from = i + 1;
    }
    return tc_buf_append(out, s + from, len - from);
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

#define NAME_MAX_LEN 64

int tc_tmpl_render(tc_buf *out, const char *tmpl, size_t len, const tc_tmpl_var *vars, int nvars,
                   tc_tmpl_lookup_fn lookup, void *ctx)
{
    size_t i = 0, from = 0;
    while (i + 1 < len) {
        if (tmpl[i] != '{' || tmpl[i + 1] != '{') {
            i++;
            continue;
        }
        size_t s = i + 2, e = s;
        while (e < len && e - s <= NAME_MAX_LEN && name_char(tmpl[e]))
            e++;
        if (e == s || e - s > NAME_MAX_LEN || e + 1 >= len || tmpl[e] != '}' ||
            tmpl[e + 1] != '}') {
            i++; /* not a name: copied as it is */
            continue;
        }
        int err = tc_buf_append(out, tmpl + from, i - from);
        if (err != 0)
            return err;
        char name[NAME_MAX_LEN + 1];
        memcpy(name, tmpl + s, e - s);
        name[e - s] = '\0';
        const char *value = NULL;
        bool html = false, found = false;
        for (int v = 0; v < nvars && !found; v++) {
            if (strcmp(vars[v].name, name) == 0) {
                value = vars[v].value;
                html = vars[v].html;
                found = true;
            }
        }
        if (!found && lookup != NULL)
            value = lookup(ctx, name);
        if (value != NULL) {
            err = html ? tc_buf_append(out, value, strlen(value))
                       : tc_html_escape(out, value, strlen(value));
            if (err != 0)
                return err;
        }
        i = from = e + 2;
    }
    return tc_buf_append(out, tmpl + from, len - from);
}

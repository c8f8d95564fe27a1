/*
 * The page templates' language, as pure functions: a template and values in,
 * HTML out; no I/O, no global state (fuzz/tmpl.c).
 *
 * `{{name}}` (name: letters, digits, '_', '.', ':', '-') is replaced by the
 * value of name. A value is HTML-escaped unless the code that made it marks
 * it as HTML (tc_tmpl_var.html) — the template cannot turn escaping off, so a
 * template edit can never let user data through raw. Anything else, including
 * a `{{` that does not open a valid name, is copied as it is. A name with no
 * value renders as nothing.
 *
 * It is for: the templates in web/templates. It is not for: loops or conditions (the
 * code renders repeated parts from a partial and passes them as HTML), or
 * anything but HTML text and double-quoted attribute values.
 */
#ifndef TC_HTTP_TMPL_H
#define TC_HTTP_TMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "tiercache/cache.h" /* tc_buf */

typedef struct tc_tmpl_var {
    const char *name;
    const char *value; /* NULL renders as nothing */
    bool html;         /* value is HTML built by our code from escaped parts: copied as is */
} tc_tmpl_var;

/* Looks up a name that vars do not have; returns its value (escaped like a
 * plain var) or NULL. */
typedef const char *(*tc_tmpl_lookup_fn)(void *ctx, const char *name);

/* Appends tmpl[0..len) with its names replaced to out. lookup may be NULL.
 * Returns 0, or the error of tc_buf_append (TC_ENOMEM; out->max reached). */
int tc_tmpl_render(tc_buf *out, const char *tmpl, size_t len, const tc_tmpl_var *vars, int nvars,
                   tc_tmpl_lookup_fn lookup, void *ctx);

/* Appends s[0..len) to out with & < > " ' escaped (&amp; &lt; &gt; &quot; &#39;):
 * safe in text and in quoted attribute values. */
int tc_html_escape(tc_buf *out, const char *s, size_t len);

#endif

/*
 * Conditional requests (RFC 9110 §13) and Accept-Encoding, as pure functions:
 * field values in, a verdict out; no I/O, no clock, no global state. Every
 * reader of untrusted bytes here has a fuzz target (fuzz/cond.c).
 *
 * It is for: matching If-None-Match / If-Match lists against an entity tag
 * (weak and strong comparison, `*`), reading and writing HTTP-dates, the
 * precondition order of RFC 9110 §13.2.2, and the q-value a client gives a
 * content coding. It is not for: deciding which headers a response carries
 * (cachehdr.h does that, and calls this), or computing entity tags.
 *
 * Entity tags are passed as they appear on the wire, quotes included:
 * "\"3f9a1c2b\"" (strong) or "W/\"3f9a1c2b\"" (weak).
 */
#ifndef TC_HTTP_COND_H
#define TC_HTTP_COND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* If-None-Match (RFC 9110 §13.1.2) with the weak comparison it requires: true
 * when the field value `inm` names `etag` (W/"x" and "x" are the same tag
 * here), or is `*` and the resource has a current representation (etag not
 * NULL). A list is `#entity-tag` with optional whitespace and empty members.
 * A malformed field value matches nothing (the full response is sent). */
bool tc_cond_none_match(const char *inm, const char *etag);

/* If-Match (RFC 9110 §13.1.1) with the strong comparison it requires: true
 * when `im` is `*` and etag is not NULL, or names etag and both are strong.
 * A malformed field value matches nothing. */
bool tc_cond_match(const char *im, const char *etag);

/* An HTTP-date (RFC 9110 §5.6.7) as seconds since 1970: IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT"), and the obsolete RFC 850 and asctime
 * forms a recipient must accept. -1 when s is NULL or not a valid date. */
int64_t tc_cond_parse_date(const char *s);

#define TC_COND_DATE_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */
/* Writes t (seconds since 1970, >= 0) as an IMF-fixdate and a NUL. */
void tc_cond_format_date(int64_t t, char out[TC_COND_DATE_LEN + 1]);

/* The request's preconditions; NULL fields are absent. */
typedef struct tc_cond_request {
    bool get_or_head;              /* If-None-Match fails with 304 for GET/HEAD, 412 otherwise */
    const char *if_match;          /* all members of all If-Match fields, comma-joined */
    const char *if_none_match;     /* likewise */
    const char *if_modified_since; /* one field value */
    const char *if_unmodified_since;
} tc_cond_request;

/* What to answer (RFC 9110 §13.2.2, evaluated in its order: If-Match, else
 * If-Unmodified-Since; then If-None-Match, else If-Modified-Since for GET and
 * HEAD only). etag is the selected representation's tag or NULL;
 * last_modified its date in seconds or -1 when unknown. If-Modified-Since is
 * ignored when If-None-Match is present, when the date is invalid, or when the
 * representation has no Last-Modified. The caller evaluates this only where
 * the response would otherwise be 2xx, after authentication. */
typedef enum tc_cond_verdict {
    TC_COND_PROCEED = 200,      /* send the full response */
    TC_COND_NOT_MODIFIED = 304, /* send 304 with the 200's caching headers, no body */
    TC_COND_FAILED = 412,       /* Precondition Failed */
} tc_cond_verdict;

tc_cond_verdict tc_cond_evaluate(const tc_cond_request *rq, const char *etag,
                                 int64_t last_modified);

/* The q-value (0..1000, thousandths) that an Accept-Encoding field value
 * gives `coding` ("gzip", "br"): the coding's own member, else `*`, else 0.
 * "x-gzip" counts as gzip. For "identity" an absent member means 1000 unless
 * `*;q=0` or `identity;q=0` says otherwise. A NULL field (no Accept-Encoding)
 * gives identity 1000 and every other coding 0: we compress only when asked.
 * A malformed member is skipped. */
int tc_cond_accept_q(const char *accept_encoding, const char *coding);

#endif

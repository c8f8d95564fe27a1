/*
 * Conditional requests and Accept-Encoding (see cond.h): pure parsers of
 * untrusted field values. Each walks the bytes once, never reads past the
 * NUL, and treats anything off-grammar as "no match" / "skip", which always
 * falls back to sending the full response.
 */
#include "http/cond.h"

#include <string.h>
#include <strings.h>
#include <time.h>

static const char *ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* One entity-tag at p ([W/] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E /
 * obs-text). Sets the opaque tag's bytes (inside the quotes) and weakness;
 * returns the byte after it, or NULL when malformed. */
static const char *parse_etag(const char *p, bool *weak, const char **tag, size_t *len)
{
    *weak = false;
    if (p[0] == 'W' && p[1] == '/') {
        *weak = true;
        p += 2;
    }
    if (*p != '"')
        return NULL;
    const char *s = ++p;
    for (;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (!(c == 0x21 || (c >= 0x23 && c != 0x7f)))
            return NULL; /* also the NUL: an unterminated tag */
    }
    *tag = s;
    *len = (size_t)(p - s);
    return p + 1;
}

/* 1: the list names etag (strong: both strong and equal; weak: equal opaque
 * tags); 0: it does not; -1: malformed. */
static int list_match(const char *field, const char *etag, bool strong)
{
    if (field == NULL)
        return 0;
    const char *p = ows(field);
    if (*p == '*') {
        p = ows(p + 1);
        if (*p != '\0')
            return -1;
        return etag != NULL;
    }
    bool have = false, eweak = false;
    const char *etag_tag = NULL;
    size_t etag_len = 0;
    if (etag != NULL) {
        const char *end = parse_etag(etag, &eweak, &etag_tag, &etag_len);
        have = end != NULL && *end == '\0';
    }
    int found = 0;
    for (;;) {
        p = ows(p);
        if (*p == ',') { /* an empty list member */
            p++;
            continue;
        }
        if (*p == '\0')
            break;
        bool weak;
        const char *tag;
        size_t len;
        const char *q = parse_etag(p, &weak, &tag, &len);
        if (q == NULL)
            return -1;
        if (have && len == etag_len && memcmp(tag, etag_tag, len) == 0 &&
            (!strong || (!weak && !eweak)))
            found = 1;
        p = ows(q);
        if (*p == ',')
            p++;
        else if (*p != '\0')
            return -1;
    }
    return found;
}

bool tc_cond_none_match(const char *inm, const char *etag)
{
    return list_match(inm, etag, false) == 1;
}

bool tc_cond_match(const char *im, const char *etag)
{
    return list_match(im, etag, true) == 1;
}

/* ---- HTTP-date ------------------------------------------------------------------------- */

static const char MONTHS[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char DAYS[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const LONG_DAYS[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                         "Thursday", "Friday", "Saturday"};

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int n[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : n[m - 1];
}

/* n decimal digits at *p (exactly n); -1 if not. */
static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    return v;
}

static bool lit(const char **p, const char *s)
{
    size_t n = strlen(s);
    if (strncmp(*p, s, n) != 0)
        return false;
    *p += n;
    return true;
}

static int month(const char **p)
{
    for (int i = 0; i < 12; i++)
        if (lit(p, MONTHS[i]))
            return i + 1;
    return -1;
}

/* "HH:MM:SS" */
static bool hms(const char **p, int *h, int *mi, int *s)
{
    *h = digits(p, 2);
    if (*h < 0 || !lit(p, ":"))
        return false;
    *mi = digits(p, 2);
    if (*mi < 0 || !lit(p, ":"))
        return false;
    *s = digits(p, 2);
    return *s >= 0 && *h <= 23 && *mi <= 59 && *s <= 60;
}

int64_t tc_cond_parse_date(const char *s)
{
    if (s == NULL)
        return -1;
    const char *p = s;
    int y, mo, d, h, mi, sec;
    int wd = -1;
    for (int i = 0; i < 7 && wd < 0; i++) /* the long names first: "Sunday" starts with "Sun" */
        if (lit(&p, LONG_DAYS[i]))
            wd = 7 + i;
    for (int i = 0; i < 7 && wd < 0; i++)
        if (lit(&p, DAYS[i]))
            wd = i;
    if (wd < 0)
        return -1;
    if (wd < 7 && lit(&p, ", ")) { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        if ((d = digits(&p, 2)) < 0 || !lit(&p, " ") || (mo = month(&p)) < 0 || !lit(&p, " ") ||
            (y = digits(&p, 4)) < 0 || !lit(&p, " ") || !hms(&p, &h, &mi, &sec) || !lit(&p, " GMT"))
            return -1;
    } else if (wd >= 7 && lit(&p, ", ")) { /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        if ((d = digits(&p, 2)) < 0 || !lit(&p, "-") || (mo = month(&p)) < 0 || !lit(&p, "-") ||
            (y = digits(&p, 2)) < 0 || !lit(&p, " ") || !hms(&p, &h, &mi, &sec) || !lit(&p, " GMT"))
            return -1;
        y += y < 70 ? 2000 : 1900; /* no clock here: a fixed pivot instead of "50 years ahead" */
    } else if (wd < 7 && lit(&p, " ")) { /* asctime: Sun Nov  6 08:49:37 1994 */
        if ((mo = month(&p)) < 0 || !lit(&p, " "))
            return -1;
        if (*p == ' ') {
            p++;
            d = digits(&p, 1);
        } else {
            d = digits(&p, 2);
        }
        if (d < 0 || !lit(&p, " ") || !hms(&p, &h, &mi, &sec) || !lit(&p, " ") ||
            (y = digits(&p, 4)) < 0)
            return -1;
    } else {
        return -1;
    }
    if (*p != '\0' || d < 1 || d > days_in_month(y, mo))
        return -1;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (sec == 60 ? 59 : sec);
    return t < 0 ? 0 : t;
}

void tc_cond_format_date(int64_t t, char out[TC_COND_DATE_LEN + 1])
{
    time_t tt = (time_t)(t < 0 ? 0 : t);
    struct tm tm;
    gmtime_r(&tt, &tm);
    /* by hand: strftime's names follow the locale */
    char *o = out;
    memcpy(o, DAYS[tm.tm_wday], 3);
    o += 3;
    *o++ = ',';
    *o++ = ' ';
    *o++ = (char)('0' + tm.tm_mday / 10);
    *o++ = (char)('0' + tm.tm_mday % 10);
    *o++ = ' ';
    memcpy(o, MONTHS[tm.tm_mon], 3);
    o += 3;
    *o++ = ' ';
    int y = tm.tm_year + 1900;
    for (int div = 1000; div > 0; div /= 10)
        *o++ = (char)('0' + (y / div) % 10);
    int f[3] = {tm.tm_hour, tm.tm_min, tm.tm_sec};
    for (int i = 0; i < 3; i++) {
        *o++ = i == 0 ? ' ' : ':';
        *o++ = (char)('0' + f[i] / 10);
        *o++ = (char)('0' + f[i] % 10);
    }
    memcpy(o, " GMT", 5);
}

/* ---- preconditions ------------------------------------------------------------------------ */

tc_cond_verdict tc_cond_evaluate(const tc_cond_request *rq, const char *etag, int64_t last_modified)
{
    /* 1. If-Match; 2. else If-Unmodified-Since */
    if (rq->if_match != NULL) {
        if (!tc_cond_match(rq->if_match, etag))
            return TC_COND_FAILED;
    } else if (rq->if_unmodified_since != NULL && last_modified >= 0) {
        int64_t t = tc_cond_parse_date(rq->if_unmodified_since);
        if (t >= 0 && last_modified > t)
            return TC_COND_FAILED;
    }
    /* 3. If-None-Match; 4. else If-Modified-Since (GET and HEAD only) */
    if (rq->if_none_match != NULL) {
        if (tc_cond_none_match(rq->if_none_match, etag))
            return rq->get_or_head ? TC_COND_NOT_MODIFIED : TC_COND_FAILED;
    } else if (rq->get_or_head && rq->if_modified_since != NULL && last_modified >= 0) {
        int64_t t = tc_cond_parse_date(rq->if_modified_since);
        if (t >= 0 && last_modified <= t)
            return TC_COND_NOT_MODIFIED;
    }
    return TC_COND_PROCEED;
}

/* ---- Accept-Encoding ------------------------------------------------------------------------ */

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ); -1 when malformed. */
static int qvalue(const char *p, size_t n)
{
    if (n == 0 || (p[0] != '0' && p[0] != '1'))
        return -1;
    int v = (p[0] - '0') * 1000;
    if (n == 1)
        return v;
    if (p[1] != '.' || n > 5)
        return -1;
    int scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9' || (v == 1000 && p[i] != '0'))
            return -1;
        v += (p[i] - '0') * scale;
    }
    return v;
}

static bool is_token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool same_coding(const char *tok, size_t n, const char *coding)
{
    if (strlen(coding) == n && strncasecmp(tok, coding, n) == 0)
        return true;
    return strcasecmp(coding, "gzip") == 0 && n == 6 && strncasecmp(tok, "x-gzip", 6) == 0;
}

int tc_cond_accept_q(const char *ae, const char *coding)
{
    bool identity = strcasecmp(coding, "identity") == 0;
    if (ae == NULL)
        return identity ? 1000 : 0;
    int own = -1, star = -1;
    const char *p = ae;
    while (*p != '\0') {
        p = ows(p);
        const char *tok = p;
        while (is_token_char(*p))
            p++;
        size_t tlen = (size_t)(p - tok);
        int q = 1000;
        bool bad = tlen == 0;
        p = ows(p);
        while (!bad && *p == ';') { /* parameters: only q= means anything here */
            p = ows(p + 1);
            const char *name = p;
            while (is_token_char(*p))
                p++;
            size_t nlen = (size_t)(p - name);
            if (*p != '=') {
                bad = true;
                break;
            }
            const char *val = ++p;
            while (is_token_char(*p))
                p++;
            if (nlen == 1 && (*name == 'q' || *name == 'Q'))
                q = qvalue(val, (size_t)(p - val));
            bad = q < 0;
            p = ows(p);
        }
        if (*p != ',' && *p != '\0')
            bad = true;
        while (*p != ',' && *p != '\0') /* skip the rest of a malformed member */
            p++;
        if (*p == ',')
            p++;
        if (bad)
            continue;
        if (tlen == 1 && *tok == '*')
            star = q > star ? q : star;
        else if (same_coding(tok, tlen, coding))
            own = q > own ? q : own;
    }
    if (own >= 0)
        return own;
    if (star >= 0)
        return star;
    return identity ? 1000 : 0;
}

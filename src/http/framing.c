/*
 * Request framing fields (framing.h). Pure: no I/O.
 */
#include "http/framing.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

static bool tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

int tc_http_te_status(const char *v, size_t n)
{
    if (v == NULL)
        return 400;
    if (n == 7 && strncasecmp(v, "chunked", 7) == 0)
        return 0;
    /* transfer-coding = token *( OWS ";" OWS transfer-parameter ), in a list
     * (RFC 9110 5.6.1: empty elements are allowed and ignored) */
    int codings = 0, chunked = 0;
    bool last_chunked = false, chunked_params = false;
    size_t i = 0;
    while (i < n) {
        while (i < n && (ows(v[i]) || v[i] == ','))
            i++;
        if (i == n)
            break;
        size_t t0 = i;
        while (i < n && tchar((unsigned char)v[i]))
            i++;
        if (i == t0)
            return 400; /* not a token */
        bool is_chunked = i - t0 == 7 && strncasecmp(v + t0, "chunked", 7) == 0;
        codings++;
        chunked += is_chunked;
        last_chunked = is_chunked;
        while (i < n && ows(v[i]))
            i++;
        while (i < n && v[i] == ';') { /* parameters: name=token or a quoted string */
            chunked_params |= is_chunked;
            i++;
            while (i < n && ows(v[i]))
                i++;
            size_t p0 = i;
            while (i < n && tchar((unsigned char)v[i]))
                i++;
            if (i == p0 || i == n || v[i] != '=')
                return 400;
            i++;
            if (i < n && v[i] == '"') {
                for (i++; i < n && v[i] != '"'; i++)
                    if (v[i] == '\\' && ++i == n)
                        return 400;
                if (i == n)
                    return 400;
                i++;
            } else {
                size_t q0 = i;
                while (i < n && tchar((unsigned char)v[i]))
                    i++;
                if (i == q0)
                    return 400;
            }
            while (i < n && ows(v[i]))
                i++;
        }
        if (i < n && v[i] != ',')
            return 400;
    }
    if (codings == 0 || !last_chunked || chunked != 1 || chunked_params)
        return 400;
    return codings > 1 ? 501 : 400; /* chunked alone but not as libmicrohttpd reads it */
}

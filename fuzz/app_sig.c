/*
 * libFuzzer target for the billing webhook's signature header parser
 * (src/app/sig.c) and the procedure input checker (src/app/input.c): the
 * first byte picks which; neither may crash, read out of bounds, or accept a
 * header whose MAC does not match.
 */
#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "app/input.h"
#include "app/sig.h"

static const tc_in_field FIELDS[] = {
    {.name = "name", .type = TC_IN_STRING, .min_len = 1, .max_len = 10},
    {.name = "url", .type = TC_IN_STRING, .nullable = true, .max_len = 100, .check = tc_in_url},
    {.name = "email", .type = TC_IN_STRING, .max_len = 100, .check = tc_in_email},
    {.name = "slug", .type = TC_IN_STRING, .max_len = 100, .check = tc_in_slug},
    {.name = "n", .type = TC_IN_INT, .min = -5, .max = 5},
    {.name = "b", .type = TC_IN_BOOL},
    {.name = "o", .type = TC_IN_OBJECT, .nullable = true},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    char buf[4097];
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    if (data[0] & 1) {
        /* header, then the body after the first newline */
        char *nl = strchr(buf, '\n');
        const char *body = nl != NULL ? nl + 1 : "";
        if (nl != NULL)
            *nl = '\0';
        int r = tc_sig_verify(buf, body, strlen(body), "whsec_fuzz_secret", 1700000000, 300);
        if (r == TC_SIG_OK) {
            /* Only a header carrying the right MAC for some t in the window may pass (its
             * hex in either case: the same bytes). */
            char lower[4097];
            for (size_t i = 0; i <= strlen(buf); i++)
                lower[i] = (char)tolower((unsigned char)buf[i]);
            int found = 0;
            for (int64_t t = 1700000000 - 300; t <= 1700000000 + 300 && !found; t++) {
                char want[160];
                tc_sig_sign(want, sizeof(want), body, strlen(body), "whsec_fuzz_secret", t);
                found = strstr(lower, strchr(want, ',') + 1) != NULL;
            }
            if (!found)
                __builtin_trap();
        }
    } else {
        json_t *in = json_loadb(buf, size - 1, JSON_DECODE_ANY, NULL);
        char msg[200];
        tc_input_check(in, FIELDS, (int)(sizeof(FIELDS) / sizeof(FIELDS[0])), msg, sizeof(msg));
        json_decref(in);
    }
    return 0;
}

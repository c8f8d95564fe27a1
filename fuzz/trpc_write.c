/*
 * libFuzzer target for the response writer of src/http/trpc.c: error messages
 * and paths carry arbitrary bytes (a procedure path from the URL, a message
 * quoting input), and pre-serialized data is copied as it is. Whatever the
 * bytes, an error body must be valid JSON whose message and path read back as
 * the input with invalid UTF-8 replaced; and the fast path must be exactly
 * prefix + data + suffix.
 *
 * Input layout: byte 0 picks the code, then message and path separated by NUL.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DTC_FUZZ=ON && cmake --build build-fuzz
 *        --target fuzz_trpc_write;  run: build-fuzz/fuzz_trpc_write -max_total_time=60 DIR
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/trpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    tc_trpc_code code = (tc_trpc_code)(data[0] % (TC_TRPC_CODE_COUNT + 2));
    char *msg = malloc(size);
    if (msg == NULL)
        return 0;
    memcpy(msg, data + 1, size - 1);
    msg[size - 1] = '\0'; /* message runs to the first NUL; the path follows it */
    size_t ml = strlen(msg);
    const char *path = ml + 1 < size - 1 ? msg + ml + 1 : NULL;

    size_t len;
    int status;
    char *body = tc_trpc_error_body(code, msg, path, &len, &status);
    if (body == NULL)
        abort();
    json_t *j = json_loadb(body, len, 0, NULL);
    if (j == NULL || strlen(body) != len)
        abort();
    json_t *err = json_object_get(j, "error");
    const char *m = json_string_value(json_object_get(err, "message"));
    if (m == NULL)
        abort();
    /* valid UTF-8 comes back unchanged */
    json_t *probe = json_stringn(msg, ml); /* NULL when msg is not valid UTF-8 */
    if (probe != NULL && strcmp(m, msg) != 0)
        abort();
    json_decref(probe);
    json_decref(j);
    free(body);

    /* the fast path copies bytes verbatim */
    size_t wl;
    char *w = tc_trpc_wrap_data(msg, ml, &wl);
    if (w == NULL || wl != tc_trpc_wrap_data_size(ml))
        abort();
    if (ml > 0 && (memcmp(w, TC_TRPC_DATA_PREFIX, sizeof TC_TRPC_DATA_PREFIX - 1) != 0 ||
                   memcmp(w + sizeof TC_TRPC_DATA_PREFIX - 1, msg, ml) != 0))
        abort();
    free(w);
    free(msg);
    return 0;
}

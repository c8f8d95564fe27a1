/*
 * libFuzzer target for tc__bus_msg_parse (src/cache/fleet.c), the parser of invalidation
 * messages read from the bus (bytes anyone who can publish on that Redis channel may send).
 * It must never read out of bounds or crash; what it accepts must be what the format says:
 * the digits of seq, then the writer (no blank or '@' in it), then the tag, which is the
 * whole rest of the message and not empty; a send time only when the writer field carries
 * "@<digits>"; and the same message parses the same way again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *msg = (const char *)data, *end = msg + size;
    tc__bus_msg m;
    if (tc__bus_msg_parse(msg, size, &m) != 0)
        return 0;
    if (m.writer <= msg || m.writer + m.wlen > end || m.tag <= m.writer + m.wlen || m.taglen == 0 ||
        m.tag + m.taglen != end)
        abort(); /* fields outside the message, or not in order */
    if (memchr(m.writer, ' ', m.wlen) != NULL || memchr(m.writer, '@', m.wlen) != NULL ||
        m.writer[-1] != ' ' || m.tag[-1] != ' ')
        abort(); /* a field that spans a separator */
    for (const char *p = msg; p < m.writer - 1; p++)
        if (*p < '0' || *p > '9')
            abort(); /* a seq that is not digits */
    if (m.sent_us < 0 || (m.sent_us != 0 && m.writer[m.wlen] != '@'))
        abort(); /* a time from nowhere */
    tc__bus_msg again;
    if (tc__bus_msg_parse(msg, size, &again) != 0 || memcmp(&again, &m, sizeof(m)) != 0)
        abort();
    return 0;
}

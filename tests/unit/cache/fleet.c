/*
 * Tests the pure part of src/cache/fleet.c: the parser of an invalidation message on the
 * bus (tc__bus_msg_parse), "<seq> <writer>[@<sent µs>] <tag>". The format of builds before
 * the send time (no "@") still parses, with no time; a time that is not a number is left
 * out but the invalidation is not lost; anything that is not a message is refused. The
 * fleet itself (leases, acknowledgements, the lag recorded) is proven against Redis in
 * tests/integration/cache/fleet.c.
 */
#include <string.h>

#include "cache/internal.h"
#include "check.h"

static int parse(const char *s, tc__bus_msg *m)
{
    return tc__bus_msg_parse(s, strlen(s), m);
}

static int field_is(const char *p, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

static void test_current_format(void)
{
    tc__bus_msg m;
    CHECK_EQ_INT(parse("42 0123456789abcdef@1700000000123456 user:7", &m), 0);
    CHECK_EQ_INT(m.seq, 42);
    CHECK(field_is(m.writer, m.wlen, "0123456789abcdef"));
    CHECK_EQ_INT(m.sent_us, 1700000000123456LL);
    CHECK(field_is(m.tag, m.taglen, "user:7"));
    /* a tag may hold spaces: everything after the second space */
    CHECK_EQ_INT(parse("1 w@5 a tag with spaces", &m), 0);
    CHECK(field_is(m.tag, m.taglen, "a tag with spaces"));
    CHECK(field_is(m.writer, m.wlen, "w"));
    CHECK_EQ_INT(m.sent_us, 5);
    CHECK_EQ_INT(parse("9 0123456789abcdef@1 #user:7", &m), 0);
    CHECK(field_is(m.tag, m.taglen, "#user:7"));
}

static void test_old_format_and_bad_times(void)
{
    tc__bus_msg m;
    CHECK_EQ_INT(parse("7 0123456789abcdef acct", &m), 0);
    CHECK_EQ_INT(m.seq, 7);
    CHECK(field_is(m.writer, m.wlen, "0123456789abcdef"));
    CHECK_EQ_INT(m.sent_us, 0);
    CHECK(field_is(m.tag, m.taglen, "acct"));
    /* a time that is no number, or too long to be one: the tag still counts */
    static const char *const bad_time[] = {"3 w@ t", "3 w@12x t", "3 w@-5 t",
                                           "3 w@1234567890123456789012 t"};
    for (size_t i = 0; i < sizeof(bad_time) / sizeof(bad_time[0]); i++) {
        CHECK_EQ_INT(parse(bad_time[i], &m), 0);
        CHECK_EQ_INT(m.sent_us, 0);
        CHECK(field_is(m.writer, m.wlen, "w"));
        CHECK(field_is(m.tag, m.taglen, "t"));
    }
}

static void test_not_messages(void)
{
    tc__bus_msg m;
    static const char *const bad[] = {
        "", "7", "7 w", "7 w ", " w t", "x7 w t", "7x w t", "-1 w t", "12345678901234567890 w t"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (!CHECK(parse(bad[i], &m) != 0))
            fprintf(stderr, "    accepted '%s'\n", bad[i]);
    /* bytes after a NUL are the message's too: no C-string reading */
    const char nul[] = "7 w t\0x";
    CHECK_EQ_INT(tc__bus_msg_parse(nul, sizeof(nul) - 1, &m), 0);
    CHECK_EQ_INT(m.taglen, 3);
}

int main(void)
{
    test_current_format();
    test_old_format_and_bad_times();
    test_not_messages();
    return check_report();
}

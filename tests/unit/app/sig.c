/*
 * Billing webhook signatures (src/app/sig.c): a signed body verifies; a
 * changed body, another secret, an old or future timestamp, and every
 * malformed header are refused with the right code.
 */
#include <string.h>

#include "app/sig.h"
#include "check.h"

static const char *BODY = "{\"id\":\"evt_1\",\"type\":\"invoice.paid\"}";
static const char *SECRET = "whsec_test";

static void signed_body_verifies(void)
{
    char h[160];
    REQUIRE(tc_sig_sign(h, sizeof(h), BODY, strlen(BODY), SECRET, 1700000000) == 0);
    CHECK_EQ_INT(tc_sig_verify(h, BODY, strlen(BODY), SECRET, 1700000000, 300), TC_SIG_OK);
    CHECK_EQ_INT(tc_sig_verify(h, BODY, strlen(BODY), SECRET, 1700000300, 300), TC_SIG_OK);
}

static void tampering_is_refused(void)
{
    char h[160];
    tc_sig_sign(h, sizeof(h), BODY, strlen(BODY), SECRET, 1700000000);
    CHECK_EQ_INT(tc_sig_verify(h, BODY, strlen(BODY) - 1, SECRET, 1700000000, 300),
                 TC_SIG_EMISMATCH);
    CHECK_EQ_INT(tc_sig_verify(h, BODY, strlen(BODY), "other", 1700000000, 300), TC_SIG_EMISMATCH);
    /* the timestamp is part of what is signed */
    char moved[160];
    strcpy(moved, h);
    moved[11] = moved[11] == '0' ? '1' : '0'; /* a digit of t */
    CHECK_EQ_INT(tc_sig_verify(moved, BODY, strlen(BODY), SECRET, 1700000000, 1000000000),
                 TC_SIG_EMISMATCH);
}

static void timestamps_outside_tolerance(void)
{
    char h[160];
    tc_sig_sign(h, sizeof(h), BODY, strlen(BODY), SECRET, 1700000000);
    CHECK_EQ_INT(tc_sig_verify(h, BODY, strlen(BODY), SECRET, 1700000301, 300), TC_SIG_EEXPIRED);
    CHECK_EQ_INT(tc_sig_verify(h, BODY, strlen(BODY), SECRET, 1699999699, 300), TC_SIG_EEXPIRED);
}

static void rotation_any_v1_matches(void)
{
    char h[160], both[320];
    tc_sig_sign(h, sizeof(h), BODY, strlen(BODY), SECRET, 1700000000);
    snprintf(both, sizeof(both), "t=1700000000,v1=%064d,%s", 0, strstr(h, "v1="));
    CHECK_EQ_INT(tc_sig_verify(both, BODY, strlen(BODY), SECRET, 1700000000, 300), TC_SIG_OK);
}

static void malformed_headers(void)
{
    const char *bad[] = {
        "",
        "garbage",
        "t=1700000000",                               /* no v1 */
        "v1=0000000000000000000000000000000000000000000000000000000000000000", /* no t */
        "t=abc,v1=0000000000000000000000000000000000000000000000000000000000000000",
        "t=1,t=2,v1=0000000000000000000000000000000000000000000000000000000000000000",
        "t=99999999999999999999,v1=0000000000000000000000000000000000000000000000000000000000000000",
        ",,,",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(tc_sig_verify(bad[i], BODY, strlen(BODY), SECRET, 1700000000, 300),
                     TC_SIG_EMALFORMED);
    CHECK_EQ_INT(tc_sig_verify(NULL, BODY, strlen(BODY), SECRET, 1700000000, 300),
                 TC_SIG_EMALFORMED);
    /* a v1 of the wrong length is not a candidate; with no other v1, malformed */
    CHECK_EQ_INT(tc_sig_verify("t=1700000000,v1=abcd", BODY, strlen(BODY), SECRET, 1700000000, 300),
                 TC_SIG_EMALFORMED);
    /* a non-hex v1 of the right length never matches */
    char h[160];
    snprintf(h, sizeof(h), "t=1700000000,v1=%s", "zz00000000000000000000000000000000000000000000000000000000000000");
    CHECK_EQ_INT(tc_sig_verify(h, BODY, strlen(BODY), SECRET, 1700000000, 300), TC_SIG_EMISMATCH);
}

int main(void)
{
    signed_body_verifies();
    tampering_is_refused();
    timestamps_outside_tolerance();
    rotation_any_v1_matches();
    malformed_headers();
    return check_report();
}

/*
 * A billing event's body (src/app/billing_event.c): each type parses to its
 * fields; a type that changes nothing needs no data; every malformed field
 * is refused with the message that names it, the first one first.
 */
#include <string.h>

#include "app/billing_event.h"
#include "check.h"

static int parse(tc_bill_event *ev, const char *body, char *msg)
{
    return tc_bill_event_parse(ev, body, strlen(body), msg, 300);
}

static void each_type(void)
{
    tc_bill_event ev;
    char msg[300];
    REQUIRE(parse(&ev,
                  "{\"id\":\"evt_1\",\"type\":\"subscription.updated\",\"created\":1700000000,"
                  "\"data\":{\"userId\":42,\"planId\":\"pro\",\"status\":\"trialing\","
                  "\"currentPeriodEnd\":1702592000000,\"seats\":5}}",
                  msg) == 0);
    CHECK_EQ_STR(ev.id, "evt_1");
    CHECK_EQ_STR(ev.type, "subscription.updated");
    CHECK_EQ_INT(ev.kind, TC_BILL_UPSERT);
    CHECK_EQ_INT(ev.created_ms, 1700000000000LL);
    CHECK_EQ_INT(ev.user_id, 42);
    CHECK_EQ_STR(ev.plan_id, "pro");
    CHECK_EQ_STR(ev.status, "trialing");
    CHECK_EQ_INT(ev.period_end_ms, 1702592000000LL);
    CHECK_EQ_INT(ev.seats, 5);
    tc_bill_event_free(&ev);

    REQUIRE(
        parse(&ev,
              "{\"id\":\"e\",\"type\":\"subscription.created\",\"created\":1,\"data\":"
              "{\"userId\":7,\"planId\":\"team\",\"status\":\"active\",\"currentPeriodEnd\":9}}",
              msg) == 0);
    CHECK_EQ_INT(ev.kind, TC_BILL_UPSERT);
    CHECK_EQ_INT(ev.seats, 0); /* absent: the plan's */
    tc_bill_event_free(&ev);

    REQUIRE(parse(&ev,
                  "{\"id\":\"e\",\"type\":\"subscription.canceled\",\"created\":5,"
                  "\"data\":{\"userId\":3}}",
                  msg) == 0);
    CHECK_EQ_INT(ev.kind, TC_BILL_CANCEL);
    CHECK_EQ_INT(ev.user_id, 3);
    CHECK_EQ_INT(ev.period_end_ms, 0);
    tc_bill_event_free(&ev);

    REQUIRE(parse(&ev,
                  "{\"id\":\"e\",\"type\":\"invoice.paid\",\"created\":5,"
                  "\"data\":{\"userId\":3,\"currentPeriodEnd\":77}}",
                  msg) == 0);
    CHECK_EQ_INT(ev.kind, TC_BILL_PAID);
    CHECK_EQ_INT(ev.period_end_ms, 77);
    CHECK(ev.plan_id == NULL);
    tc_bill_event_free(&ev);

    REQUIRE(parse(&ev, "{\"id\":\"e\",\"type\":\"x\",\"created\":9223372036854775}", msg) == 0);
    CHECK_EQ_INT(ev.created_ms, 9223372036854775000LL); /* the largest that fits */
    tc_bill_event_free(&ev);

    /* another type: recorded, nothing applied, no data needed */
    REQUIRE(parse(&ev, "{\"id\":\"e\",\"type\":\"customer.created\",\"created\":5}", msg) == 0);
    CHECK_EQ_INT(ev.kind, TC_BILL_OTHER);
    CHECK_EQ_INT(ev.user_id, 0);
    tc_bill_event_free(&ev);
    REQUIRE(parse(&ev, "{\"id\":\"e\",\"type\":\"subscription.paused\",\"created\":5}", msg) == 0);
    CHECK_EQ_INT(ev.kind, TC_BILL_OTHER);
    tc_bill_event_free(&ev);
}

static void refusals(void)
{
    static const struct {
        const char *body, *msg;
    } cases[] = {
        {"{\"id\":", "invalid JSON: "},
        {"[1]", "the body must be a JSON object"},
        {"{\"type\":\"invoice.paid\",\"created\":1}", "id: a string of 1 to 255"},
        {"{\"id\":\"\",\"type\":\"invoice.paid\",\"created\":1}", "id: a string of 1 to 255"},
        {"{\"id\":7,\"type\":\"invoice.paid\",\"created\":1}", "id: a string of 1 to 255"},
        {"{\"id\":\"e\",\"type\":\"\",\"created\":1}", "type: a string is required"},
        {"{\"id\":\"e\",\"type\":\"x\",\"created\":0}", "created: a positive integer"},
        {"{\"id\":\"e\",\"type\":\"x\",\"created\":\"1\"}", "created: a positive integer"},
        /* in ms it would overflow (UBSan, fuzz/billing_event.c) */
        {"{\"id\":\"e\",\"type\":\"x\",\"created\":9223372036854776}", "created: a positive"},
        {"{\"id\":\"e\",\"type\":\"x\",\"created\":9223372036854775807}", "created: a pos"},
        {"{\"id\":\"e\",\"type\":\"invoice.paid\",\"created\":1}", "data: an object is required"},
        {"{\"id\":\"e\",\"type\":\"invoice.paid\",\"created\":1,\"data\":{\"userId\":\"4\"}}",
         "data.userId: a positive integer"},
        {"{\"id\":\"e\",\"type\":\"invoice.paid\",\"created\":1,\"data\":{\"userId\":4}}",
         "data.currentPeriodEnd: a positive integer"},
        {"{\"id\":\"e\",\"type\":\"subscription.updated\",\"created\":1,\"data\":{\"userId\":4,"
         "\"currentPeriodEnd\":1,\"status\":\"active\"}}",
         "data.planId: a string is required"},
        {"{\"id\":\"e\",\"type\":\"subscription.updated\",\"created\":1,\"data\":{\"userId\":4,"
         "\"currentPeriodEnd\":1,\"planId\":\"pro\",\"status\":\"gone\"}}",
         "data.status: one of active"},
        {"{\"id\":\"e\",\"type\":\"subscription.updated\",\"created\":1,\"data\":{\"userId\":4,"
         "\"currentPeriodEnd\":1,\"planId\":\"pro\",\"status\":\"active\",\"seats\":0}}",
         "data.seats: an integer from 1 to 100000"},
        {"{\"id\":\"e\",\"type\":\"subscription.updated\",\"created\":1,\"data\":{\"userId\":4,"
         "\"currentPeriodEnd\":1,\"planId\":\"pro\",\"status\":\"active\",\"seats\":null}}",
         "data.seats: an integer from 1 to 100000"},
        /* the first wrong field is the one named */
        {"{\"id\":\"\",\"type\":\"\",\"created\":0}", "id: "},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tc_bill_event ev;
        char msg[300] = "";
        int rc = parse(&ev, cases[i].body, msg);
        if (!CHECK(rc == -1 && strncmp(msg, cases[i].msg, strlen(cases[i].msg)) == 0))
            fprintf(stderr, "    %s -> %d \"%s\"\n", cases[i].body, rc, msg);
        CHECK(ev.root == NULL);
        tc_bill_event_free(&ev); /* refused: nothing to free, a no-op */
    }
    char longid[400];
    snprintf(longid, sizeof(longid), "{\"id\":\"%0256d\",\"type\":\"x\",\"created\":1}", 0);
    tc_bill_event ev;
    char msg[300];
    CHECK(parse(&ev, longid, msg) == -1);
    snprintf(longid, sizeof(longid), "{\"id\":\"%0255d\",\"type\":\"x\",\"created\":1}", 0);
    CHECK(parse(&ev, longid, msg) == 0);
    tc_bill_event_free(&ev);
}

int main(void)
{
    each_type();
    refusals();
    return check_report();
}

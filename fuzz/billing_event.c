/*
 * libFuzzer target for the billing webhook's event body (tc_bill_event_parse,
 * src/app/billing_event.c). The signature proves who sent it, not that it is
 * well-formed: a provider's bug, or a leaked secret, puts anyone's bytes here,
 * and an accepted event is written to the database. Parsing must not crash,
 * leak, overflow or read out of bounds; and:
 *   - a refusal has a message, one of the documented ones, NUL-terminated
 *     even in a small buffer;
 *   - an accepted event is what the header promises: id 1..255 and type
 *     1..100 bytes, planId 1..64, no NUL inside any of them (the database
 *     would store a shorter string than the one checked), created > 0 in ms
 *     exactly, the kind its type names, a user for every kind but OTHER, a
 *     status of the four, a period end where one is required, seats 0 or
 *     1..100000;
 *   - the event survives a round trip: its JSON, printed and parsed again,
 *     gives the same verdict and fields.
 *
 * Input: the body's bytes.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DTC_FUZZ=ON && cmake --build build-fuzz
 *        --target fuzz_billing_event;  run: scripts/fuzz.sh --seconds 60 billing_event
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app/billing_event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const MESSAGES[] = {
    "invalid JSON: ",
    "the body must be a JSON object",
    "id: a string of 1 to 255 characters is required",
    "type: a string is required",
    "created: a positive integer (unix seconds) is required",
    "data: an object is required",
    "data.userId: a positive integer is required",
    "data.currentPeriodEnd: a positive integer (unix ms) is required",
    "data.planId: a string is required",
    "data.status: one of active, trialing, past_due, canceled",
    "data.seats: an integer from 1 to 100000",
};

static bool known_message(const char *m)
{
    for (size_t i = 0; i < sizeof(MESSAGES) / sizeof(MESSAGES[0]); i++)
        if (i == 0 ? strncmp(m, MESSAGES[0], strlen(MESSAGES[0])) == 0
                   : strcmp(m, MESSAGES[i]) == 0)
            return true;
    return false;
}

/* s is the whole of the JSON string at key of obj: no NUL cuts it short. */
static bool whole(const json_t *obj, const char *key, const char *s, size_t min, size_t max)
{
    const json_t *j = json_object_get(obj, key);
    size_t n = s != NULL ? strlen(s) : 0;
    return s != NULL && json_string_value(j) == s && json_string_length(j) == n && n >= min &&
           n <= max;
}

static void check_accepted(const tc_bill_event *ev)
{
    const json_t *root = ev->root, *d = json_object_get(root, "data");
    if (!whole(root, "id", ev->id, 1, 255) || !whole(root, "type", ev->type, 1, 100))
        abort();
    json_int_t created = json_integer_value(json_object_get(root, "created"));
    if (created <= 0 || created > INT64_MAX / 1000 || ev->created_ms != created * 1000)
        abort();
    tc_bill_kind k = strcmp(ev->type, "subscription.created") == 0 ||
                             strcmp(ev->type, "subscription.updated") == 0
                         ? TC_BILL_UPSERT
                     : strcmp(ev->type, "subscription.canceled") == 0 ? TC_BILL_CANCEL
                     : strcmp(ev->type, "invoice.paid") == 0          ? TC_BILL_PAID
                                                                      : TC_BILL_OTHER;
    if (ev->kind != k || (k == TC_BILL_OTHER) != (ev->user_id == 0) || ev->user_id < 0)
        abort();
    if (k != TC_BILL_OTHER && json_integer_value(json_object_get(d, "userId")) != ev->user_id)
        abort();
    if ((k == TC_BILL_UPSERT || k == TC_BILL_PAID) != (ev->period_end_ms > 0))
        abort();
    if (k == TC_BILL_UPSERT) {
        const char *st = ev->status;
        if (!whole(d, "planId", ev->plan_id, 1, 64) || !whole(d, "status", st, 1, 8) ||
            (strcmp(st, "active") != 0 && strcmp(st, "trialing") != 0 &&
             strcmp(st, "past_due") != 0 && strcmp(st, "canceled") != 0) ||
            ev->seats < 0 || ev->seats > 100000 ||
            (ev->seats == 0) != (json_object_get(d, "seats") == NULL))
            abort();
    } else if (ev->plan_id != NULL || ev->status != NULL || ev->seats != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tc_bill_event ev;
    char msg[300];
    if (tc_bill_event_parse(&ev, (const char *)data, size, msg, sizeof(msg)) != 0) {
        char small[8];
        if (ev.root != NULL || !known_message(msg) ||
            tc_bill_event_parse(&ev, (const char *)data, size, small, sizeof(small)) == 0 ||
            memchr(small, '\0', sizeof(small)) == NULL || strncmp(small, msg, 7) != 0)
            abort();
        return 0;
    }
    check_accepted(&ev);
    /* printed and parsed again: the same event */
    char *again = json_dumps(ev.root, JSON_COMPACT | JSON_ENCODE_ANY);
    tc_bill_event ev2;
    if (again == NULL || tc_bill_event_parse(&ev2, again, strlen(again), msg, sizeof(msg)) != 0 ||
        strcmp(ev.id, ev2.id) != 0 || strcmp(ev.type, ev2.type) != 0 || ev.kind != ev2.kind ||
        ev.created_ms != ev2.created_ms || ev.user_id != ev2.user_id ||
        ev.period_end_ms != ev2.period_end_ms || ev.seats != ev2.seats ||
        (ev.plan_id != NULL) != (ev2.plan_id != NULL) ||
        (ev.plan_id != NULL && strcmp(ev.plan_id, ev2.plan_id) != 0) ||
        (ev.status != NULL && strcmp(ev.status, ev2.status) != 0))
        abort();
    free(again);
    tc_bill_event_free(&ev2);
    tc_bill_event_free(&ev);
    return 0;
}

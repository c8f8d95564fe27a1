/*
 * A billing event's body (see billing_event.h): jansson parses it, then each
 * field is checked in a fixed order, so the message names the first field
 * that is wrong.
 */
#include "app/billing_event.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool valid_status(const char *s)
{
    return s != NULL && (strcmp(s, "active") == 0 || strcmp(s, "trialing") == 0 ||
                         strcmp(s, "past_due") == 0 || strcmp(s, "canceled") == 0);
}

static tc_bill_kind kind_of(const char *type)
{
    if (strcmp(type, "subscription.created") == 0 || strcmp(type, "subscription.updated") == 0)
        return TC_BILL_UPSERT;
    if (strcmp(type, "subscription.canceled") == 0)
        return TC_BILL_CANCEL;
    if (strcmp(type, "invoice.paid") == 0)
        return TC_BILL_PAID;
    return TC_BILL_OTHER;
}

/* What is wrong with the event's fields, or NULL with *ev filled. */
static const char *check(const json_t *root, tc_bill_event *ev)
{
    ev->id = json_string_value(json_object_get(root, "id"));
    ev->type = json_string_value(json_object_get(root, "type"));
    if (!json_is_object(root))
        return "the body must be a JSON object";
    if (ev->id == NULL || ev->id[0] == '\0' || strlen(ev->id) > 255)
        return "id: a string of 1 to 255 characters is required";
    if (ev->type == NULL || ev->type[0] == '\0' || strlen(ev->type) > 100)
        return "type: a string is required";
    const json_t *created = json_object_get(root, "created");
    if (!json_is_integer(created) || json_integer_value(created) <= 0 ||
        json_integer_value(created) > INT64_MAX / 1000) /* in ms, it must fit */
        return "created: a positive integer (unix seconds) is required";
    ev->created_ms = json_integer_value(created) * 1000;
    ev->kind = kind_of(ev->type);
    if (ev->kind == TC_BILL_OTHER)
        return NULL; /* acknowledged, ignored */
    const json_t *data = json_object_get(root, "data");
    if (!json_is_object(data))
        return "data: an object is required";
    const json_t *u = json_object_get(data, "userId");
    if (!json_is_integer(u) || json_integer_value(u) <= 0)
        return "data.userId: a positive integer is required";
    ev->user_id = json_integer_value(u);
    const json_t *end = json_object_get(data, "currentPeriodEnd"),
                 *seats = json_object_get(data, "seats");
    if (ev->kind != TC_BILL_CANCEL) {
        if (!json_is_integer(end) || json_integer_value(end) <= 0)
            return "data.currentPeriodEnd: a positive integer (unix ms) is required";
        ev->period_end_ms = json_integer_value(end);
    }
    if (ev->kind == TC_BILL_UPSERT) {
        ev->plan_id = json_string_value(json_object_get(data, "planId"));
        if (ev->plan_id == NULL || ev->plan_id[0] == '\0' || strlen(ev->plan_id) > 64)
            return "data.planId: a string is required";
        ev->status = json_string_value(json_object_get(data, "status"));
        if (!valid_status(ev->status))
            return "data.status: one of active, trialing, past_due, canceled";
        if (seats != NULL && (!json_is_integer(seats) || json_integer_value(seats) < 1 ||
                              json_integer_value(seats) > 100000))
            return "data.seats: an integer from 1 to 100000";
        ev->seats = seats != NULL ? json_integer_value(seats) : 0;
    }
    return NULL;
}

int tc_bill_event_parse(tc_bill_event *ev, const char *body, size_t len, char *msg, size_t msglen)
{
    memset(ev, 0, sizeof(*ev));
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (root == NULL) {
        snprintf(msg, msglen, "invalid JSON: %s", jerr.text);
        return -1;
    }
    const char *bad = check(root, ev);
    if (bad != NULL) {
        json_decref(root);
        memset(ev, 0, sizeof(*ev));
        snprintf(msg, msglen, "%s", bad);
        return -1;
    }
    ev->root = root;
    return 0;
}

void tc_bill_event_free(tc_bill_event *ev)
{
    json_decref(ev->root);
    ev->root = NULL;
}

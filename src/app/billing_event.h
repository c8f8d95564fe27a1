/*
 * The body of a billing webhook event, parsed and checked: bytes in, a
 * verdict out (the event's fields, or the message of a 400). Pure: no I/O, no
 * global state (fuzz/billing_event.c).
 *
 *   {"id":"evt_1","type":"subscription.updated","created":<unix s>,
 *    "data":{"userId":42,"planId":"pro","status":"active",
 *            "currentPeriodEnd":<ms>,"seats":5}}
 *
 * Types: subscription.created / .updated (userId, planId, status,
 * currentPeriodEnd, seats optional), subscription.canceled (userId),
 * invoice.paid (userId, currentPeriodEnd). Any other type is well-formed with
 * id, type and created alone: it is recorded and changes nothing.
 *
 * It is for: the body of POST /webhooks/billing once its signature has been
 * verified (sig.h). It is not for: the signature, or what an event does to
 * the database (billing.c).
 */
#ifndef TC_APP_BILLING_EVENT_H
#define TC_APP_BILLING_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    TC_BILL_OTHER,  /* a type that changes nothing: recorded and acknowledged */
    TC_BILL_UPSERT, /* subscription.created, subscription.updated */
    TC_BILL_CANCEL, /* subscription.canceled */
    TC_BILL_PAID,   /* invoice.paid */
} tc_bill_kind;

typedef struct tc_bill_event {
    json_t *root;     /* the parsed body, which the strings below point into */
    const char *id;   /* 1 to 255 bytes */
    const char *type; /* 1 to 100 bytes */
    tc_bill_kind kind;
    int64_t created_ms;    /* "created" (unix seconds, > 0, fits in ms) in milliseconds */
    int64_t user_id;       /* > 0; 0 for TC_BILL_OTHER */
    int64_t period_end_ms; /* UPSERT, PAID: "currentPeriodEnd", > 0 */
    const char *plan_id;   /* UPSERT: 1 to 64 bytes */
    const char *status;    /* UPSERT: active, trialing, past_due or canceled */
    int64_t seats;         /* UPSERT: 1 to 100000, or 0 when absent (the plan's) */
} tc_bill_event;

/* Parses and checks body[0..len). Returns 0 with *ev filled (give it back with
 * tc_bill_event_free), or -1 with what is wrong in msg, NUL-terminated ("invalid
 * JSON: ...", "data.userId: a positive integer is required"), and nothing to free. */
int tc_bill_event_parse(tc_bill_event *ev, const char *body, size_t len, char *msg, size_t msglen);

/* Frees what tc_bill_event_parse filled in; an event it refused, or a zeroed one, is a
 * no-op. */
void tc_bill_event_free(tc_bill_event *ev);

#endif

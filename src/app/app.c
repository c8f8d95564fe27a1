/*
 * The app's life cycle and its HTTP face: routing, the tRPC request cycle, and
 * the pieces every cycle shares (pages.c and the monitor use them too). Every
 * caching header is decided by src/http/cachehdr.c from the response's route
 * class; this file says which class an answer is.
 *
 * The request cycle runs twice at most. On the event thread it runs with
 * may_block = false: sessions and query results come from L1 only
 * (tc_peek), so a cached request is answered there and then, with no lock
 * held on anything slow. The first step that would block (an L1 miss, a
 * mutation, the database) answers CALL_NEED_BLOCK, and the whole request is
 * handed to a worker (tc_app__offload), which runs the cycle again with
 * may_block = true. Parsing twice costs microseconds; a slow query never holds
 * up a cached one.
 *
 * A tRPC request goes through named steps (resolve, run, validators, body,
 * send) over one trpc_cycle; serve_trpc runs them in order and is their single
 * exit: it hands the request over or sends the answer, then releases the calls.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "app/internal.h"
#include "app/paths.h"

#define TRPC_PREFIX "/trpc/"
#define BODY_LIMIT (1u << 20)

/* ---- small things ------------------------------------------------------------- */

static void cache_log(void *ctx, int level, const char *component, const char *msg)
{
    (void)ctx;
    tc_app__log_line(level, component, msg);
}

static void http_log(void *ctx, const char *line)
{
    (void)ctx;
    tc_app__log_line(TC_LOG_WARN, "http", line);
}

void tc_app__inval_add(tc_inval *inv, const char *fmt, ...)
{
    char tag[TC_TAG_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tag, sizeof(tag), fmt, ap);
    va_end(ap);
    for (int i = 0; i < inv->n; i++)
        if (strcmp(inv->tags[i], tag) == 0 || strcmp(inv->tags[i], "*") == 0)
            return;
    if (inv->n == TC_TAGS_MAX) { /* more than a write ever makes: drop everything */
        inv->n = 0;
        snprintf(tag, sizeof(tag), "*");
    }
    memcpy(inv->tags[inv->n++], tag, sizeof(tag));
}

int tc_app__write_ready(tc_app *app)
{
    return app->cache != NULL ? tc_ready(app->cache, app->cfg.invalidate_wait_ms) : 0;
}

int tc_app__inval_commit(tc_app *app, tc_inval *inv)
{
    if (inv->n == 0)
        return 0;
    const char *tags[TC_TAGS_MAX];
    for (int i = 0; i < inv->n; i++)
        tags[i] = inv->tags[i];
    int err = 0;
    if (app->cache != NULL) {
        /* "*" is tc_clear: the engine keeps it out of the tags a caller names */
        err = inv->n == 1 && strcmp(tags[0], "*") == 0
                  ? tc_clear(app->cache)
                  : tc_invalidate_tags(app->cache, tags, inv->n, app->cfg.invalidate_wait_ms);
        for (int i = 0; i < inv->n && err != TC_EINVAL; i++)
            if (tags[i][0] != '#')
                tc_app__monitor_tag_invalidated(app->monitor, tags[i]);
    }
    if (err != 0)
        tc_app__log(TC_LOG_ERROR, "cache",
                    "invalidation of %s%s not taken by Redis within %d ms (%s): the write is "
                    "made and answered 503; the invalidation is applied here, kept, and replayed "
                    "when Redis answers",
                    tags[0], inv->n > 1 ? " and others" : "", app->cfg.invalidate_wait_ms,
                    tc_strerror(err));
    /* After our own cache: a shared cache that refetches at once gets the new value.
     * Queued, not sent here: the purge thread does the network (purge.h). */
    for (int i = 0; i < inv->n && app->purger != NULL; i++)
        if (tc_app__tag_is_public(tags[i]))
            tc_purger_tag(app->purger, tags[i]); /* a full queue is counted and logged there */
    inv->n = 0;
    return err == TC_EREDIS ? err : 0; /* TC_EINVAL: a bug, logged; nothing to wait for */
}

static void respond_text(tc_http_exchange *x, int status, const char *text)
{
    tc_cachehdr_simple(x, status < 300 ? TC_ROUTE_NO_STORE : TC_ROUTE_ERROR);
    tc_http_respond(x, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* ---- what every request cycle shares (tRPC, pages, the monitor) ------------------- */

void tc_app__call_init(tc_call *c, tc_app *app, tc_http_exchange *x, bool may_block,
                       const tc_session *session, const char *path, json_t *input)
{
    *c = (tc_call){.app = app,
                   .x = x,
                   .may_block = may_block,
                   .may_park = may_block,
                   .session = session,
                   .path = path,
                   .input = input};
}

void tc_app__calls_release(tc_call *calls, size_t n)
{
    for (size_t i = 0; calls != NULL && i < n; i++) {
        tc_value_release(calls[i].value);
        json_decref(calls[i].data);
        calls[i].value = NULL;
        calls[i].data = NULL;
    }
}

tc_http_action tc_app__offload(tc_http_exchange *x, tc_call_status st, tc_http_blocking_fn fn)
{
    if (st == CALL_PARKED) /* no response: this runs again once the load it waits for is over */
        return TC_HTTP_DONE;
    if (tc_http_offload(x, fn) == 0)
        return TC_HTTP_OFFLOAD;
    /* only a handler may offload: a cycle that would block on a worker is a bug */
    tc_http_add_header(x, "X-Content-Type-Options", "nosniff");
    respond_text(x, 500, "could not offload the request\n");
    return TC_HTTP_DONE;
}

/* ---- the tRPC request cycle ------------------------------------------------------ */

/* What the calls of a tRPC answer were; cachehdr.h turns it into headers. */
typedef struct answer_class {
    bool mutation, personal, error;
    uint32_t stale_s; /* the smallest server stale window of the calls (dashboard: 300) */
    bool stale, miss; /* for Cache-Status */
    int64_t ttl_ms;   /* smallest ttl among cached answers */
    int source;       /* worst source: 0 L1, 1 L2, 2 loader */
} answer_class;

static tc_route_class answer_route(const answer_class *a)
{
    if (a->error)
        return TC_ROUTE_ERROR;
    if (a->mutation)
        return TC_ROUTE_NO_STORE;
    if (a->personal)
        return a->stale_s > 0 ? TC_ROUTE_QUERY_SWR : TC_ROUTE_QUERY_PRIVATE;
    return TC_ROUTE_QUERY_PUBLIC;
}

/* What call i (run, with status st) adds to the class of the answer. */
static void answer_add(answer_class *a, const tc_call *c, const tc_proc *p, tc_trpc_kind kind,
                       tc_call_status st, size_t i)
{
    a->mutation |= kind == TC_TRPC_MUTATION;
    a->personal |= p->auth != AUTH_PUBLIC;
    bool cached = st == CALL_OK && c->from_cache;
    if (cached) {
        a->stale |= c->cache.stale;
        a->miss |= c->cache.source == TC_SRC_LOADER;
        a->source = (int)c->cache.source > a->source ? (int)c->cache.source : a->source;
        a->ttl_ms = c->cache.ttl_ms < a->ttl_ms ? c->cache.ttl_ms : a->ttl_ms;
    }
    uint32_t swr = cached ? p->stale_ms / 1000 : 0;
    a->stale_s = i == 0 || swr < a->stale_s ? swr : a->stale_s;
}

/* The validator of an answer made of cached values only: the value's own
 * content hash for one call, a hash of the hashes for a batch. false when a
 * call has no cached value (the cache is off): then the body is hashed. */
static bool answer_hash(const tc_trpc_request *req, const tc_call *calls, uint64_t *out)
{
    uint64_t hs[TC_TRPC_BATCH_MAX];
    for (size_t i = 0; i < req->ncalls; i++) {
        if (calls[i].value == NULL)
            return false;
        hs[i] = calls[i].value->hash;
    }
    *out = req->batch ? XXH3_64bits(hs, req->ncalls * sizeof(hs[0])) : hs[0];
    return true;
}

#define ANSWER_TAGS_MAX 16

/* The shared-cache tags of a public answer: every call's, once each. */
static int answer_tags(const tc_trpc_request *req, const tc_call *calls,
                       const tc_proc *const *procs, char tags[ANSWER_TAGS_MAX][TC_TAG_MAX + 1],
                       const char *tagv[ANSWER_TAGS_MAX])
{
    int n = 0;
    for (size_t i = 0; i < req->ncalls; i++) {
        char t[TC_TAGS_MAX][TC_TAG_MAX + 1];
        int k = tc_app__call_tags(&calls[i], procs[i], t);
        for (int j = 0; j < k && n < ANSWER_TAGS_MAX; j++) {
            bool seen = false;
            for (int m = 0; m < n && !seen; m++)
                seen = strcmp(tags[m], t[j]) == 0;
            if (!seen) {
                memcpy(tags[n], t[j], sizeof(tags[n]));
                tagv[n] = tags[n];
                n++;
            }
        }
    }
    return n;
}

/* One tRPC request on its way through the cycle. serve_trpc runs the steps in
 * order; each reads what the ones before it filled in, and says what comes next. */
typedef struct trpc_cycle {
    tc_app *app;
    tc_http_exchange *x;
    bool may_block;
    /* resolve */
    tc_trpc_request req;
    const tc_proc *procs[TC_TRPC_BATCH_MAX];
    tc_trpc_kind kinds[TC_TRPC_BATCH_MAX];
    bool need_session;
    /* run */
    tc_session sess;
    tc_call *calls; /* req.ncalls of them, or NULL */
    answer_class a;
    bool allow_hdr;           /* a call's method did not fit its kind */
    tc_call_status hand_over; /* CALL_NEED_BLOCK or CALL_PARKED, for tc_app__offload */
    /* the answer: its caching headers go on at the end, once the class is final */
    tc_cachehdr h;
    char etag[TC_ETAG_MAX], cstat[TC_CACHE_STATUS_MAX], tags[ANSWER_TAGS_MAX][TC_TAG_MAX + 1];
    const char *tagv[ANSWER_TAGS_MAX];
    char *out; /* the body, or NULL */
    size_t olen;
    int status;
} trpc_cycle;

static bool cacheable(tc_route_class cls)
{
    return cls != TC_ROUTE_ERROR && cls != TC_ROUTE_NO_STORE;
}

/* An answer that is one tRPC error (no-store). */
static tc_step answer_error(trpc_cycle *t, tc_trpc_code code, const char *message)
{
    free(t->out);
    t->out = tc_trpc_error_body(code, message, NULL, &t->olen, &t->status);
    t->h.cls = TC_ROUTE_ERROR;
    return STEP_ANSWER;
}

/* The request's preconditions against the validators now in t->h: 200 goes
 * on; 304 is the 200's caching headers without a body; 412 a tRPC error. */
static tc_step precondition(trpc_cycle *t)
{
    if ((t->status = tc_cachehdr_precondition(t->x, &t->h)) == 200)
        return STEP_NEXT;
    free(t->out);
    t->out = NULL;
    if (t->status == 412)
        return answer_error(t, TC_TRPC_PRECONDITION_FAILED, NULL);
    return STEP_ANSWER;
}

/* Step 1, resolve: the request parsed (pure), its procedures looked up, their
 * kinds checked against one another; the route label set. */
static tc_step trpc_resolve(trpc_cycle *t)
{
    size_t plen, qlen = 0, blen;
    const char *raw = tc_http_raw_path(t->x, &plen);
    const char *query = tc_http_raw_query(t->x, &qlen);
    const char *body = tc_http_body(t->x, &blen);
    tc_trpc_http in = {.method = tc_http_method(t->x),
                       .path = raw + strlen(TRPC_PREFIX),
                       .path_len = plen - strlen(TRPC_PREFIX),
                       .query = query,
                       .query_len = qlen,
                       .content_type = tc_http_header(t->x, "Content-Type"),
                       .body = blen > 0 ? body : NULL,
                       .body_len = blen};
    int err = tc_trpc_parse(&t->req, &in, NULL);
    if (err == TC_HTTP_EPROTO) {
        t->out = tc_trpc_request_error_body(&t->req, &t->olen, &t->status);
        return STEP_ANSWER;
    }
    if (err != 0)
        return answer_error(t, TC_TRPC_INTERNAL_SERVER_ERROR, NULL);
    if (t->req.ncalls > TC_TRPC_BATCH_MAX) /* parsed with the default limits: a guard */
        return answer_error(t, TC_TRPC_BAD_REQUEST, "too many calls in one batch");
    for (size_t i = 0; i < t->req.ncalls; i++) {
        const tc_proc *p = tc_app__proc_find(t->req.calls[i].path);
        t->procs[i] = p;
        t->kinds[i] = p != NULL ? p->kind : TC_TRPC_UNKNOWN;
        t->need_session |= p != NULL && p->auth != AUTH_PUBLIC;
    }
    /* the metrics label: a bounded set (procedure names from the table) */
    tc_http_set_route(t->x, t->req.batch || t->req.ncalls != 1 ? "batch"
                            : t->procs[0] != NULL              ? t->procs[0]->path
                                                               : "unknown");
    char msg[256];
    if (tc_trpc_check_kinds(&t->req, t->kinds, msg, sizeof(msg)) != TC_TRPC_OK)
        return answer_error(t, TC_TRPC_BAD_REQUEST, msg);
    return STEP_NEXT;
}

/* Step 2, run: the session (when a call needs one), then every call in order,
 * each adding to the class of the answer. The first that would block, or
 * parks, hands the whole request over. */
static tc_step trpc_run(trpc_cycle *t)
{
    if ((t->calls = calloc(t->req.ncalls, sizeof(*t->calls))) == NULL)
        return answer_error(t, TC_TRPC_INTERNAL_SERVER_ERROR, "out of memory");
    if (t->need_session) {
        tc_call probe = {.app = t->app, .x = t->x, .may_block = t->may_block};
        tc_call_status st = tc_app__auth_session(&probe, &t->sess);
        if (st == CALL_NEED_BLOCK) {
            t->hand_over = st;
            return STEP_HAND_OVER;
        }
        if (st == CALL_ERROR)
            return answer_error(t, probe.code, probe.message);
    }
    const tc_session *session = t->need_session && t->sess.user_id != 0 ? &t->sess : NULL;
    for (size_t i = 0; i < t->req.ncalls; i++) {
        tc_call *c = &t->calls[i];
        tc_app__call_init(c, t->app, t->x, t->may_block, session, t->req.calls[i].path,
                          t->req.calls[i].input);
        tc_trpc_code verdict = tc_trpc_check_call(&t->req, t->kinds[i]);
        if (verdict != TC_TRPC_OK) {
            tc_trpc_call_message(c->message, sizeof(c->message), &t->req, i, t->kinds[i], verdict);
            c->code = verdict;
            t->allow_hdr |= verdict == TC_TRPC_METHOD_NOT_SUPPORTED;
            continue;
        }
        tc_call_status st = tc_app__call_run(c, t->procs[i]);
        if (st == CALL_NEED_BLOCK || st == CALL_PARKED) {
            t->hand_over = st;
            return STEP_HAND_OVER;
        }
        answer_add(&t->a, c, t->procs[i], t->kinds[i], st, i);
    }
    for (size_t i = 0; i < t->req.ncalls; i++)
        t->a.error |= t->calls[i].code != TC_TRPC_OK;
    return STEP_NEXT;
}

/* Step 3, validators: the class decides the caching headers (cachehdr.h). When
 * every call has a cached value the ETag is known now, so a matching
 * revalidation is answered 304 before any body is built: a cache lookup, no
 * serialisation. */
static tc_step trpc_validators(trpc_cycle *t)
{
    t->h.cls = answer_route(&t->a);
    t->h.swr_s = t->a.stale_s;
    if (!cacheable(t->h.cls))
        return STEP_NEXT;
    if (t->app->cache != NULL) {
        tc_cache_outcome o = {
            .miss = t->a.miss, .stale = t->a.stale, .source = t->a.source, .ttl_ms = t->a.ttl_ms};
        t->h.cache_status = tc_cachehdr_cache_status(&o, t->cstat);
    }
    if (t->h.cls == TC_ROUTE_QUERY_PUBLIC)
        t->h.ntags = answer_tags(&t->req, t->calls, t->procs, t->tags, t->tagv);
    uint64_t hash;
    if (!answer_hash(&t->req, t->calls, &hash))
        return STEP_NEXT;
    t->h.etag = tc_cachehdr_etag(hash, NULL, t->etag);
    return precondition(t);
}

/* Step 4, body: a single cached query is its cached bytes, wrapped, unparsed;
 * anything else goes through the writer. Then the calls' own headers; with no
 * cached values (the cache is off) the body is hashed for the ETag. */
static tc_step trpc_body(trpc_cycle *t)
{
    const tc_call *c0 = &t->calls[0];
    if (!t->req.batch && c0->code == TC_TRPC_OK && c0->value != NULL) {
        t->out = tc_trpc_wrap_data(c0->value->data, c0->value->len, &t->olen);
        t->status = 200;
        if (t->out == NULL)
            return answer_error(t, TC_TRPC_INTERNAL_SERVER_ERROR, "out of memory");
    } else {
        tc_trpc_out w;
        tc_trpc_out_init(&w, t->req.batch);
        for (size_t i = 0; i < t->req.ncalls; i++) {
            const tc_call *c = &t->calls[i];
            if (c->code != TC_TRPC_OK)
                tc_trpc_out_error(&w, c->code, c->message, c->path);
            else if (c->value != NULL)
                tc_trpc_out_data_raw(&w, c->value->data, c->value->len);
            else
                tc_trpc_out_data(&w, c->data);
        }
        if (tc_trpc_out_finish(&w, &t->out, &t->olen, &t->status) != 0)
            return answer_error(t, TC_TRPC_INTERNAL_SERVER_ERROR, "out of memory");
    }
    bool session_set = false;
    for (size_t i = 0; i < t->req.ncalls; i++) {
        const tc_call *c = &t->calls[i];
        const tc_proc *p = t->procs[i];
        bool clears = p != NULL && p->clears_site &&
                      (c->code == TC_TRPC_OK || c->code == TC_TRPC_UNAUTHORIZED);
        t->h.clear_site_data |= clears;
        session_set |= !clears && c->set_cookie[0] != '\0';
        if (c->set_cookie[0] != '\0')
            tc_http_add_header(t->x, "Set-Cookie", c->set_cookie);
    }
    /* a batch that signs out and in again: clearing the cookies could drop the new one */
    t->h.keep_cookies = session_set;
    if (t->allow_hdr)
        tc_http_add_header(t->x, "Allow", tc_trpc_allow(t->kinds[0]));
    if (cacheable(t->h.cls) && t->h.etag == NULL) {
        t->h.etag = tc_cachehdr_etag(XXH3_64bits(t->out, t->olen), NULL, t->etag);
        return precondition(t);
    }
    return STEP_NEXT;
}

/* Step 5, send: every answer's last step. */
static void trpc_send(trpc_cycle *t)
{
    if (t->out == NULL && t->status != 304)
        t->h.cls = TC_ROUTE_ERROR;
    tc_cachehdr_apply(t->x, &t->h);
    tc_http_set_status(t->x, t->status);
    if (t->status != 304)
        tc_http_set_content_type(t->x, "application/json");
    if (t->out != NULL)
        tc_http_take_body(t->x, t->out, t->olen);
    t->out = NULL;
}

static void blocking_trpc(void *ctx, tc_http_exchange *x);

static tc_http_action serve_trpc(tc_app *app, tc_http_exchange *x, bool may_block)
{
    trpc_cycle t = {.app = app,
                    .x = x,
                    .may_block = may_block,
                    .a = {.ttl_ms = INT64_MAX},
                    .h = {.cls = TC_ROUTE_ERROR,
                          .last_modified = -1,
                          .tag_header = &app->tag_header,
                          .cdn_max_age_s = app->cdn_max_age_s},
                    .status = 500};
    t.h.tags = t.tagv;
    tc_step step = trpc_resolve(&t);
    if (step == STEP_NEXT)
        step = trpc_run(&t);
    if (step == STEP_NEXT)
        step = trpc_validators(&t);
    if (step == STEP_NEXT)
        step = trpc_body(&t);
    tc_http_action act = TC_HTTP_DONE;
    if (step == STEP_HAND_OVER)
        act = tc_app__offload(x, t.hand_over, blocking_trpc);
    else
        trpc_send(&t);
    tc_app__calls_release(t.calls, t.req.ncalls);
    free(t.calls);
    free(t.out);
    tc_trpc_request_free(&t.req);
    return act;
}

static void blocking_trpc(void *ctx, tc_http_exchange *x)
{
    serve_trpc(ctx, x, true);
}

/* ---- routing ------------------------------------------------------------------------ */

static tc_http_action handle(void *ctx, tc_http_exchange *x)
{
    tc_app *app = ctx;
    size_t len;
    const char *raw = tc_http_raw_path(x, &len);
    tc_http_method_id m = tc_http_method_id_of(x);
    tc_http_action act;
    switch (tc_path_classify(raw, len)) { /* paths.c: pure */
    case TC_PATH_TRPC:
        return serve_trpc(app, x, false);
    case TC_PATH_MONITOR:
        if (tc_app__monitor_route(app, x, &act))
            return act;
        break;
    case TC_PATH_STATIC:
        return tc_app__static_serve(app, x);
    case TC_PATH_PAGE:
        return tc_app__page_serve(app, x, false);
    case TC_PATH_BILLING:
        if (m != TC_HTTP_M_POST) {
            tc_http_add_header(x, "Allow", "POST");
            respond_text(x, 405, "POST only\n");
            return TC_HTTP_DONE;
        }
        return tc_app__offload(x, CALL_NEED_BLOCK, tc_app__billing_webhook);
    case TC_PATH_HEALTH:
        if (m != TC_HTTP_M_GET && m != TC_HTTP_M_HEAD) {
            tc_http_add_header(x, "Allow", "GET, HEAD");
            respond_text(x, 405, "GET only\n");
        } else if (raw[1] == 'r') { /* readiness: the truth, from a worker */
            return tc_app__readyz(app, x);
        } else { /* liveness: the process answers */
            respond_text(x, 200, "ok\n");
        }
        return TC_HTTP_DONE;
    case TC_PATH_NONE:
        break;
    }
    respond_text(x, 404, "not found\n");
    return TC_HTTP_DONE;
}

static size_t body_limit(void *ctx, const tc_http_exchange *x)
{
    (void)ctx;
    (void)x;
    return BODY_LIMIT;
}

static void reject(void *ctx, tc_http_exchange *x, int status)
{
    size_t len, plen;
    const char *raw = tc_http_raw_path(x, &plen);
    bool trpc = tc_path_classify(raw, plen) == TC_PATH_TRPC;
    tc_cachehdr_simple(x, TC_ROUTE_ERROR);
    if (!trpc) {
        const char *t = status == 413   ? "request body too large\n"
                        : status == 503 ? "busy, retry later\n"
                                        : "bad request\n";
        tc_http_respond(x, status, "text/plain; charset=utf-8", t, strlen(t));
        return;
    }
    tc_trpc_code code = status == 413   ? TC_TRPC_PAYLOAD_TOO_LARGE
                        : status == 503 ? TC_TRPC_SERVICE_UNAVAILABLE
                                        : TC_TRPC_BAD_REQUEST;
    int st;
    char *body = tc_trpc_error_body(code, NULL, NULL, &len, &st);
    tc_http_set_content_type(x, "application/json");
    if (body != NULL)
        tc_http_take_body(x, body, len);
}

/* ---- life cycle ----------------------------------------------------------------------- */

void tc_app_config_init(tc_app_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->db_url = "sqlite:tiercache.db";
    cfg->db_pool = 8;
    cfg->db_timeout_ms = 5000;
    cfg->cache = true;
    cfg->redis_port = 6379;
    cfg->prefix = "tc:";
    cfg->l1_bytes = 64u << 20;
    cfg->page_cache_bytes = 16u << 20;
    cfg->lease_ms = 250;
    cfg->l2_budget_bytes = 256u << 20;
    cfg->l2_budget_keys = 500000;
    cfg->invalidate_wait_ms = 5000;
    cfg->l1_admission = true;
    cfg->l2_compress_min_bytes = 1024;
    cfg->webhook_tolerance_s = 300;
    cfg->session_ttl_s = 30 * 24 * 3600;
    cfg->login_burst = 10;
    cfg->login_per_minute = 10;
    cfg->access_log = "stderr";
    cfg->tag_header = "xkey";
    cfg->tag_sep = " ";
    cfg->cdn_max_age_s = -1;
}

tc_app *tc_app_new(const tc_app_config *cfg, char *err, size_t errlen)
{
    tc_app *app = calloc(1, sizeof(*app));
    if (app == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    app->cfg = *cfg;
    pthread_mutex_init(&app->health_lock, NULL);
    app->tag_header = (tc_tag_header){.name = cfg->tag_header, .sep = cfg->tag_sep};
    /* a CDN may keep public responses longer than Cache-Control says only when it is purged */
    app->cdn_max_age_s = cfg->cdn_max_age_s >= 0  ? (uint32_t)cfg->cdn_max_age_s
                         : cfg->purge_url != NULL ? TC_CDN_MAX_AGE
                                                  : 0;
    if (cfg->web_dir == NULL) {
        snprintf(err, errlen, "no web directory (templates and static files)");
        goto fail;
    }
    if ((app->assets = tc_app__assets_load(cfg->web_dir, err, errlen)) == NULL ||
        (app->pages = tc_app__pages_load(cfg->web_dir, app->assets,
                                         cfg->cache ? cfg->page_cache_bytes : 0, err, errlen)) ==
            NULL)
        goto fail;
    if (cfg->purge_url != NULL) {
        tc_purge_config pc;
        tc_purge_config_init(&pc);
        pc.url = cfg->purge_url;
        pc.header = cfg->tag_header;
        pc.sep = cfg->tag_sep;
        /* A response fetched before an invalidation may reach the shared cache after
         * the purge; a second purge 2 s later drops it (docs/http-caching.md). */
        pc.repurge_ms = 2000;
        int perr;
        if ((app->purger = tc_purger_start(&pc, &perr)) == NULL) {
            snprintf(err, errlen, "purge %s: %s", cfg->purge_url, tc_http_strerror(perr));
            goto fail;
        }
        /* pages stored before this start may name other templates and assets (a deploy) */
        tc_purger_tag(app->purger, TC_APP_PAGE_TAG);
    }
    if (tc_app__auth_init(app) != 0) {
        snprintf(err, errlen, "libsodium failed to start");
        goto fail;
    }
    app->login_by_addr = tc_ratelimit_new(cfg->login_burst, cfg->login_per_minute, 65536);
    app->login_by_email = tc_ratelimit_new(cfg->login_burst, cfg->login_per_minute, 65536);
    if (app->login_by_addr == NULL || app->login_by_email == NULL) {
        snprintf(err, errlen, "invalid login rate limits");
        goto fail;
    }
    if ((app->db = tc_db_pool_open(cfg->db_url, cfg->db_pool, cfg->db_timeout_ms, err, errlen)) ==
        NULL)
        goto fail;
    tc_db *db;
    int rc = tc_db_pool_acquire(app->db, cfg->db_timeout_ms, &db);
    if (rc == 0) {
        rc = tc_db_migrate(db, NULL);
        if (rc != 0)
            snprintf(err, errlen, "migrating the database: %s: %s", tc_db_strerror(rc),
                     tc_db_errmsg(db));
        tc_db_pool_release(app->db, db);
    } else {
        snprintf(err, errlen, "database: %s", tc_db_strerror(rc));
    }
    if (rc != 0)
        goto fail;
    if (cfg->cache) {
        tc_config cc;
        tc_config_init(&cc);
        cc.redis_host = cfg->redis_host;
        cc.sentinels = cfg->sentinels;
        cc.sentinel_master = cfg->sentinel_master;
        cc.cluster_nodes = cfg->cluster_nodes;
        cc.redis_port = cfg->redis_port;
        cc.redis_db = cfg->redis_db;
        cc.redis_password = cfg->redis_password;
        cc.prefix = cfg->prefix;
        cc.l1_max_bytes = cfg->l1_bytes;
        cc.lease_ms = cfg->lease_ms;
        cc.l2_budget_bytes = cfg->l2_budget_bytes;
        cc.l2_budget_keys = cfg->l2_budget_keys;
        cc.l1_admission = cfg->l1_admission;
        cc.l2_compress_min_bytes = cfg->l2_compress_min_bytes;
        cc.log = cache_log;
        int cerr;
        if ((app->cache = tc_cache_create(&cc, &cerr)) == NULL) {
            snprintf(err, errlen, "cache: %s", tc_strerror(cerr));
            goto fail;
        }
    }
    tc_monitor_config mc = {.access_log = cfg->access_log,
                            .metrics_token = cfg->metrics_token,
                            .l1_max_bytes = cfg->cache ? cfg->l1_bytes : 0};
    if ((app->monitor = tc_app__monitor_new(app, &mc, err, errlen)) == NULL)
        goto fail;
    return app;
fail:
    tc_app_free(app);
    return NULL;
}

void tc_app_free(tc_app *app)
{
    if (app == NULL)
        return;
    tc_app__monitor_free(app->monitor);
    tc_purger_stop(app->purger);
    tc_cache_destroy(app->cache);
    tc_db_pool_close(app->db);
    tc_app__pages_free(app->pages);
    tc_app__assets_free(app->assets);
    tc_ratelimit_free(app->login_by_addr);
    tc_ratelimit_free(app->login_by_email);
    tc_app__auth_free(app);
    pthread_mutex_destroy(&app->health_lock);
    free(app);
}

void tc_app_http_config(tc_app *app, tc_http_config *hc)
{
    hc->handler = handle;
    hc->body_limit = body_limit;
    hc->on_done = tc_app__monitor_done;
    hc->reject = reject;
    hc->log = http_log;
    hc->ctx = app;
}

void tc_app_attach_server(tc_app *app, tc_http_server *srv)
{
    tc_app__monitor_attach(app->monitor, srv);
}

void tc_app_reopen_logs(tc_app *app)
{
    tc_app__monitor_reopen_log(app->monitor);
}

void tc_app_draining(tc_app *app)
{
    atomic_store(&app->draining, true);
}

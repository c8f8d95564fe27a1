/*
 * The app's life cycle and its HTTP face: routing, the tRPC request cycle,
 * and the headers every response carries.
 *
 * The request cycle runs twice at most. On the event thread it runs with
 * may_block = false: sessions and query results come from L1 only
 * (tc_peek), so a cached request is answered there and then, with no lock
 * held on anything slow. The first step that would block (an L1 miss, a
 * mutation, the database) answers CALL_NEED_BLOCK, and the whole request is
 * handed to a worker, which runs the cycle again with may_block = true.
 * Parsing twice costs microseconds; a slow query never holds up a cached one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/internal.h"

#define TRPC_PREFIX "/trpc/"
#define BODY_LIMIT (1u << 20)

/* ---- small things ------------------------------------------------------------- */

uint64_t tc__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tc__log(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "tiercache: %s\n", line);
}

void tc__invalidate(tc_app *app, const char *fmt, ...)
{
    if (app->cache == NULL)
        return;
    char tag[TC_TAG_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tag, sizeof(tag), fmt, ap);
    va_end(ap);
    int err = tc_invalidate_tag(app->cache, tag);
    if (err != 0)
        tc__log("invalidate %s: %s (applied here; kept and replayed to Redis)", tag,
                tc_strerror(err));
}

static void respond_text(tc_http_exchange *x, int status, const char *text)
{
    tc_http_add_header(x, "Cache-Control", "no-store");
    tc_http_respond(x, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* ---- the tRPC request cycle ------------------------------------------------------ */

/* Response headers for a tRPC answer, from what the calls were. */
typedef struct answer_class {
    bool mutation, personal, error;
    uint32_t stale_s; /* a stale window the browser may use too (dashboard) */
    bool stale, miss; /* for Cache-Status */
    int64_t ttl_ms;   /* smallest ttl among cached answers */
    int source;       /* worst source: 0 L1, 1 L2, 2 loader */
} answer_class;

static void cache_headers(tc_http_exchange *x, const answer_class *a, const tc_value *etag_of)
{
    char cc[128];
    if (a->mutation || a->error) {
        tc_http_add_header(x, "Cache-Control", "no-store");
        return;
    }
    if (a->personal) {
        if (a->stale_s > 0)
            snprintf(cc, sizeof(cc), "private, max-age=30, stale-while-revalidate=%u", a->stale_s);
        else
            snprintf(cc, sizeof(cc), "private, max-age=30");
        tc_http_add_header(x, "Cache-Control", cc);
        tc_http_add_header(x, "Vary", "Authorization, Cookie");
    } else {
        tc_http_add_header(x, "Cache-Control",
                           "public, max-age=60, s-maxage=300, stale-while-revalidate=600");
    }
    if (etag_of != NULL) {
        char hex[17], etag[24];
        tc_hash_hex(etag_of->hash, hex);
        snprintf(etag, sizeof(etag), "\"%s\"", hex);
        tc_http_add_header(x, "ETag", etag);
    }
}

static void cache_status(tc_http_exchange *x, const answer_class *a, bool cached)
{
    char v[96];
    if (!cached)
        return;
    if (a->miss)
        snprintf(v, sizeof(v), "tiercache; fwd=miss; stored");
    else
        snprintf(v, sizeof(v), "tiercache; hit; ttl=%lld; detail=%s", (long long)(a->ttl_ms / 1000),
                 a->source == 0 ? "l1" : "l2");
    tc_http_add_header(x, "Cache-Status", v);
}

static void free_calls(tc_call *calls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tc_value_release(calls[i].value);
        json_decref(calls[i].data);
    }
}

static void blocking_trpc(void *ctx, tc_http_exchange *x);

static tc_http_action serve_trpc(tc_app *app, tc_http_exchange *x, bool may_block)
{
    size_t plen, qlen = 0, blen;
    const char *raw = tc_http_raw_path(x, &plen);
    const char *query = tc_http_raw_query(x, &qlen);
    const char *body = tc_http_body(x, &blen);
    tc_trpc_http in = {.method = tc_http_method(x),
                       .path = raw + strlen(TRPC_PREFIX),
                       .path_len = plen - strlen(TRPC_PREFIX),
                       .query = query,
                       .query_len = qlen,
                       .content_type = tc_http_header(x, "Content-Type"),
                       .body = blen > 0 ? body : NULL,
                       .body_len = blen};
    tc_trpc_request req;
    tc_call *calls = NULL;
    char *out = NULL;
    size_t olen = 0;
    int status = 500;
    answer_class a = {.ttl_ms = INT64_MAX};
    int err = tc_trpc_parse(&req, &in, NULL);
    if (err != 0) {
        out = err == TC_HTTP_EPROTO
                  ? tc_trpc_request_error_body(&req, &olen, &status)
                  : tc_trpc_error_body(TC_TRPC_INTERNAL_SERVER_ERROR, NULL, NULL, &olen, &status);
        a.error = true;
        goto send;
    }

    tc_trpc_kind kinds[64];
    const tc_proc *procs[64];
    bool need_session = false;
    if (req.ncalls > 64) { /* the parser's default limit is 64; stay in step with it */
        out = tc_trpc_error_body(TC_TRPC_BAD_REQUEST, "too many calls in one batch", NULL, &olen,
                                 &status);
        a.error = true;
        goto send;
    }
    for (size_t i = 0; i < req.ncalls; i++) {
        procs[i] = tc__proc_find(req.calls[i].path);
        kinds[i] = procs[i] != NULL ? procs[i]->kind : TC_TRPC_UNKNOWN;
        need_session |= procs[i] != NULL && procs[i]->auth != AUTH_PUBLIC;
    }
    char msg[256];
    if (tc_trpc_check_kinds(&req, kinds, msg, sizeof(msg)) != TC_TRPC_OK) {
        out = tc_trpc_error_body(TC_TRPC_BAD_REQUEST, msg, NULL, &olen, &status);
        a.error = true;
        goto send;
    }

    calls = calloc(req.ncalls, sizeof(*calls));
    tc_session sess;
    tc_call probe = {.app = app, .x = x, .may_block = may_block};
    if (calls == NULL)
        goto oom;
    if (need_session) {
        tc_call_status st = tc__auth_session(&probe, &sess);
        if (st == CALL_NEED_BLOCK)
            goto offload;
        if (st == CALL_ERROR) {
            out = tc_trpc_error_body(probe.code, probe.message, NULL, &olen, &status);
            a.error = true;
            goto send;
        }
    }
    bool allow_hdr = false;
    for (size_t i = 0; i < req.ncalls; i++) {
        tc_call *c = &calls[i];
        *c = (tc_call){.app = app,
                       .x = x,
                       .may_block = may_block,
                       .session = need_session && sess.user_id != 0 ? &sess : NULL,
                       .path = req.calls[i].path,
                       .input = req.calls[i].input};
        tc_trpc_code verdict = tc_trpc_check_call(&req, kinds[i]);
        if (verdict != TC_TRPC_OK) {
            tc_trpc_call_message(c->message, sizeof(c->message), &req, i, kinds[i], verdict);
            c->code = verdict;
            allow_hdr |= verdict == TC_TRPC_METHOD_NOT_SUPPORTED;
            continue;
        }
        tc_call_status st = tc__call_run(c, procs[i]);
        if (st == CALL_NEED_BLOCK)
            goto offload;
        a.mutation |= kinds[i] == TC_TRPC_MUTATION;
        a.personal |= procs[i]->auth != AUTH_PUBLIC;
        if (st == CALL_OK && c->from_cache) {
            a.stale |= c->cache.stale;
            a.miss |= c->cache.source == TC_SRC_LOADER;
            a.source = (int)c->cache.source > a.source ? (int)c->cache.source : a.source;
            a.ttl_ms = c->cache.ttl_ms < a.ttl_ms ? c->cache.ttl_ms : a.ttl_ms;
            if (procs[i]->stale_ms > 0)
                a.stale_s = procs[i]->stale_ms / 1000;
        }
    }

    /* The answer. A single cached query is its cached bytes, wrapped, unparsed. */
    if (!req.batch && calls[0].code == TC_TRPC_OK && calls[0].value != NULL) {
        out = tc_trpc_wrap_data(calls[0].value->data, calls[0].value->len, &olen);
        status = 200;
        if (out == NULL)
            goto oom;
    } else {
        tc_trpc_out w;
        tc_trpc_out_init(&w, req.batch);
        for (size_t i = 0; i < req.ncalls; i++) {
            tc_call *c = &calls[i];
            if (c->code != TC_TRPC_OK) {
                a.error = true;
                tc_trpc_out_error(&w, c->code, c->message, c->path);
            } else if (c->value != NULL) {
                tc_trpc_out_data_raw(&w, c->value->data, c->value->len);
            } else {
                tc_trpc_out_data(&w, c->data);
            }
        }
        if (tc_trpc_out_finish(&w, &out, &olen, &status) != 0)
            goto oom;
    }
    for (size_t i = 0; i < req.ncalls; i++)
        if (calls[i].set_cookie[0] != '\0')
            tc_http_add_header(x, "Set-Cookie", calls[i].set_cookie);
    if (allow_hdr)
        tc_http_add_header(x, "Allow", tc_trpc_allow(kinds[0]));
    cache_status(x, &a, !a.mutation && !a.error && app->cache != NULL);
    cache_headers(x, &a, !req.batch && !a.error ? calls[0].value : NULL);
    goto send;

offload:
    free_calls(calls, req.ncalls);
    free(calls);
    tc_trpc_request_free(&req);
    if (tc_http_offload(x, blocking_trpc) == 0)
        return TC_HTTP_OFFLOAD;
    respond_text(x, 500, "could not offload the request\n");
    return TC_HTTP_DONE;
oom:
    free(out);
    out = tc_trpc_error_body(TC_TRPC_INTERNAL_SERVER_ERROR, "out of memory", NULL, &olen, &status);
    a.error = true;
send:
    if (a.error || out == NULL)
        tc_http_add_header(x, "Cache-Control", "no-store");
    tc_http_set_status(x, status);
    tc_http_set_content_type(x, "application/json");
    if (out != NULL)
        tc_http_take_body(x, out, olen);
    if (calls != NULL) {
        free_calls(calls, req.ncalls);
        free(calls);
    }
    tc_trpc_request_free(&req);
    return TC_HTTP_DONE;
}

static void blocking_trpc(void *ctx, tc_http_exchange *x)
{
    serve_trpc(ctx, x, true);
}

/* ---- routing ------------------------------------------------------------------------ */

static bool path_is(const char *raw, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(raw, want, len) == 0;
}

static tc_http_action handle(void *ctx, tc_http_exchange *x)
{
    tc_app *app = ctx;
    size_t len;
    const char *raw = tc_http_raw_path(x, &len);
    tc_http_method_id m = tc_http_method_id_of(x);
    if (len > strlen(TRPC_PREFIX) && memcmp(raw, TRPC_PREFIX, strlen(TRPC_PREFIX)) == 0)
        return serve_trpc(app, x, false);
    if (path_is(raw, len, "/webhooks/billing")) {
        if (m != TC_HTTP_M_POST) {
            tc_http_add_header(x, "Allow", "POST");
            respond_text(x, 405, "POST only\n");
            return TC_HTTP_DONE;
        }
        if (tc_http_offload(x, tc__billing_webhook) == 0)
            return TC_HTTP_OFFLOAD;
        respond_text(x, 500, "could not offload the request\n");
        return TC_HTTP_DONE;
    }
    if (path_is(raw, len, "/healthz") || path_is(raw, len, "/readyz")) {
        if (m != TC_HTTP_M_GET && m != TC_HTTP_M_HEAD) {
            tc_http_add_header(x, "Allow", "GET, HEAD");
            respond_text(x, 405, "GET only\n");
        } else {
            respond_text(x, 200, "ok\n");
        }
        return TC_HTTP_DONE;
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
    bool trpc = plen > strlen(TRPC_PREFIX) && memcmp(raw, TRPC_PREFIX, strlen(TRPC_PREFIX)) == 0;
    tc_http_add_header(x, "Cache-Control", "no-store");
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
    cfg->webhook_tolerance_s = 300;
    cfg->session_ttl_s = 30 * 24 * 3600;
    cfg->login_burst = 10;
    cfg->login_per_minute = 10;
}

tc_app *tc_app_new(const tc_app_config *cfg, char *err, size_t errlen)
{
    tc_app *app = calloc(1, sizeof(*app));
    if (app == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    app->cfg = *cfg;
    if (tc__auth_init(app) != 0) {
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
        cc.redis_port = cfg->redis_port;
        cc.redis_db = cfg->redis_db;
        cc.redis_password = cfg->redis_password;
        cc.prefix = cfg->prefix;
        cc.l1_max_bytes = cfg->l1_bytes;
        int cerr;
        if ((app->cache = tc_cache_create(&cc, &cerr)) == NULL) {
            snprintf(err, errlen, "cache: %s", tc_strerror(cerr));
            goto fail;
        }
    }
    return app;
fail:
    tc_app_free(app);
    return NULL;
}

void tc_app_free(tc_app *app)
{
    if (app == NULL)
        return;
    tc_cache_destroy(app->cache);
    tc_db_pool_close(app->db);
    tc_ratelimit_free(app->login_by_addr);
    tc_ratelimit_free(app->login_by_email);
    free(app);
}

void tc_app_http_config(tc_app *app, tc_http_config *hc)
{
    hc->handler = handle;
    hc->body_limit = body_limit;
    hc->reject = reject;
    hc->ctx = app;
}

/*
 * The server-rendered pages: `/` (the latest posts), `/blog/<slug>` (a post),
 * `/login`, and `/dashboard` (the signed-in user's dashboard, with a script
 * that refreshes its widgets through tRPC).
 *
 * Each page is built from the same procedure calls the API serves — the same
 * cache keys, so `/blog/hello` and `blog.bySlug {"slug":"hello"}` share one
 * entry — and from templates in <web>/templates (tmpl.h: every value is
 * HTML-escaped unless our code built it as HTML).
 *
 * DESIGN — ETags without rendering. A page's bytes are a function of the
 * templates, the asset names and the values of its calls, so its ETag is a
 * hash of (build hash, page, the values' content hashes). A revalidation that
 * matches is answered 304 from cache lookups alone; the JSON is parsed and the
 * HTML rendered only for a 200. With the cache off (no value hashes) the body
 * is rendered and hashed instead. Like the tRPC cycle, a request runs on the
 * event thread while everything it needs is in L1 and is handed to a worker
 * at the first step that would block.
 *
 * DESIGN — pages from their bytes. Since the ETag names the bytes, a 200 is
 * answered from the page store (pagecache.h) when it holds bytes rendered
 * under the same ETag for the same key: the page's path, and for the personal
 * page the signed-in user (nothing else varies: public pages name nobody, no
 * page is content-encoded, HEAD is GET without the body). Only a miss parses
 * the values and renders, then stores what it rendered; renders are counted
 * per page (tc_app__pages_stats), so a test can see a hit rendered nothing.
 *
 * Routing is strict: exactly "/", "/login", "/dashboard" and "/blog/" plus a
 * slug (a-z, 0-9, '-'); anything else, including a trailing segment, a ';'
 * parameter or a %-escape, is 404 (web cache deception: a cache keyed on
 * "/dashboard/x.css" must never get the dashboard). The routing itself is
 * paths.c's tc_path_page (pure, fuzzed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "app/internal.h"
#include "app/pagecache.h"
#include "app/paths.h"
#include "http/tmpl.h"

#define PAGE_BYTES_MAX (4u << 20)
#define TEMPLATE_BYTES_MAX (256u << 10)

enum { T_LAYOUT, T_HOME, T_POST_ITEM, T_POST, T_LOGIN, T_DASHBOARD, T_NOT_FOUND, T_COUNT };
static const char *const TEMPLATE_FILES[T_COUNT] = {
    "layout.html", "home.html",      "post_item.html", "post.html",
    "login.html",  "dashboard.html", "not_found.html",
};

struct tc_pages {
    char *t[T_COUNT];
    size_t tlen[T_COUNT];
    const tc_assets *assets;
    uint64_t build;      /* templates + asset names: part of every page's ETag */
    tc_pagecache *store; /* rendered bytes by (key, ETag); NULL: none */
    _Atomic uint64_t renders[TC_APP_PAGE_KINDS]; /* 200 bodies rendered, by tc_page_kind */
};

/* ---- loading ------------------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "template %s: cannot open it", path);
        return NULL;
    }
    char *buf = malloc(TEMPLATE_BYTES_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, TEMPLATE_BYTES_MAX + 1, f) : 0;
    fclose(f);
    if (buf == NULL || n > TEMPLATE_BYTES_MAX) {
        snprintf(err, errlen, "template %s: over %u bytes", path, TEMPLATE_BYTES_MAX);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static const char *static_lookup(void *ctx, const char *name)
{
    const tc_pages *p = ctx;
    return strncmp(name, "static:", 7) == 0 ? tc_app__asset_url(p->assets, name + 7) : NULL;
}

/* Every {{static:NAME}} of a template must name an asset: checked at start-up. */
static int check_assets(const tc_pages *p, int t, char *err, size_t errlen)
{
    for (const char *s = p->t[t]; (s = strstr(s, "{{static:")) != NULL; s++) {
        const char *name = s + 9, *end = strstr(name, "}}");
        char n[128];
        if (end == NULL || (size_t)(end - name) >= sizeof(n))
            continue;
        memcpy(n, name, (size_t)(end - name));
        n[end - name] = '\0';
        if (tc_app__asset_url(p->assets, n) == NULL) {
            snprintf(err, errlen, "template %s: no static file %s", TEMPLATE_FILES[t], n);
            return -1;
        }
    }
    return 0;
}

tc_pages *tc_app__pages_load(const char *dir, const tc_assets *assets, size_t store_bytes,
                             char *err, size_t errlen)
{
    tc_pages *p = calloc(1, sizeof(*p));
    if (p == NULL || (store_bytes > 0 && (p->store = tc_pagecache_new(store_bytes)) == NULL)) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->assets = assets;
    XXH3_state_t *s = XXH3_createState();
    if (s == NULL)
        goto fail;
    XXH3_64bits_reset(s);
    uint64_t ah = tc_app__assets_hash(assets);
    XXH3_64bits_update(s, &ah, sizeof(ah));
    for (int i = 0; i < T_COUNT; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/templates/%s", dir, TEMPLATE_FILES[i]);
        if ((p->t[i] = read_file(path, &p->tlen[i], err, errlen)) == NULL ||
            check_assets(p, i, err, errlen) != 0) {
            XXH3_freeState(s);
            goto fail;
        }
        XXH3_64bits_update(s, p->t[i], p->tlen[i] + 1);
    }
    p->build = XXH3_64bits_digest(s);
    XXH3_freeState(s);
    return p;
fail:
    tc_app__pages_free(p);
    return NULL;
}

void tc_app__pages_free(tc_pages *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < T_COUNT; i++)
        free(p->t[i]);
    tc_pagecache_free(p->store);
    free(p);
}

void tc_app__pages_stats(tc_pages *p, tc_app__page_stats *out)
{
    for (int k = 0; k < TC_APP_PAGE_KINDS; k++)
        out->renders[k] = atomic_load_explicit(&p->renders[k], memory_order_relaxed);
    tc_pagecache_stats_get(p->store, &out->store);
}

/* ---- rendering helpers ------------------------------------------------------------------------
 */

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

static long long num(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static void day(long long ms, char out[16])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, 16, "%Y-%m-%d", &tm) == 0)
        snprintf(out, 16, "-");
}

/* Renders template t into a NUL-terminated malloc'd string (html var). */
static char *render_part(const tc_pages *p, int t, const tc_tmpl_var *v, int n)
{
    tc_buf b = {.max = PAGE_BYTES_MAX};
    if (tc_tmpl_render(&b, p->t[t], p->tlen[t], v, n, static_lookup, (void *)p) != 0 ||
        tc_buf_append(&b, "", 1) != 0) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

/* The whole page: content (HTML) inside the layout. who: the signed-in user's
 * name for a personal page's header, or NULL for a page anyone may be sent (it
 * offers "Sign in": shared caches may keep public pages). */
static int render_page(const tc_pages *p, tc_buf *out, const char *title, const char *content,
                       const char *script, const char *who)
{
    char tag[256] = "";
    const char *url = script != NULL ? tc_app__asset_url(p->assets, script) : NULL;
    if (url != NULL)
        snprintf(tag, sizeof(tag), "<script src=\"%s\" defer></script>", url);
    tc_buf account = {.max = 4096};
    int err = who == NULL ? tc_buf_printf(&account, "<a href=\"/login\">Sign in</a>")
                          : tc_buf_printf(&account, "<a class=\"account\" href=\"/dashboard\">");
    if (err == 0 && who != NULL && (err = tc_html_escape(&account, who, strlen(who))) == 0)
        err = tc_buf_append(&account, "</a>", 4);
    if (err == 0)
        err = tc_buf_append(&account, "", 1);
    if (err != 0) {
        free(account.data);
        return err;
    }
    tc_tmpl_var v[] = {
        {"title", title, false},
        {"content", content, true},
        {"page_script", tag, true},
        {"account", account.data, true},
    };
    err = tc_tmpl_render(out, p->t[T_LAYOUT], p->tlen[T_LAYOUT], v, 4, static_lookup, (void *)p);
    free(account.data);
    return err;
}

/* A post's body: paragraphs separated by blank lines, each escaped. */
static int paragraphs(tc_buf *b, const char *text)
{
    int err = 0;
    while (err == 0 && *text != '\0') {
        while (*text == '\n' || *text == '\r' || *text == ' ')
            text++;
        if (*text == '\0')
            break;
        const char *end = strstr(text, "\n\n");
        size_t n = end != NULL ? (size_t)(end - text) : strlen(text);
        while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\r'))
            n--;
        err = tc_buf_append(b, "<p>", 3);
        if (err == 0)
            err = tc_html_escape(b, text, n);
        if (err == 0)
            err = tc_buf_append(b, "</p>\n", 5);
        text += end != NULL ? (size_t)(end - text) : strlen(text);
    }
    return err == 0 ? tc_buf_append(b, "", 1) : err;
}

/* ---- the pages ---------------------------------------------------------------------------------
 */

static char *home_content(const tc_pages *p, const json_t *list)
{
    tc_buf items = {.max = PAGE_BYTES_MAX};
    const json_t *arr = json_object_get(list, "items");
    size_t i;
    const json_t *it;
    int err = 0;
    json_array_foreach(arr, i, it)
    {
        char date[16];
        day(num(it, "publishedAt"), date);
        tc_tmpl_var v[] = {{"slug", str(it, "slug"), false},
                           {"title", str(it, "title"), false},
                           {"excerpt", str(it, "excerpt"), false},
                           {"date", date, false}};
        if (err == 0)
            err = tc_tmpl_render(&items, p->t[T_POST_ITEM], p->tlen[T_POST_ITEM], v, 4, NULL, NULL);
    }
    if (err == 0)
        err = tc_buf_append(&items, "", 1);
    char *out = NULL;
    if (err == 0) {
        tc_tmpl_var v[] = {{"items", items.data, true},
                           {"empty", json_array_size(arr) == 0 ? "No posts yet." : "", false}};
        out = render_part(p, T_HOME, v, 2);
    }
    free(items.data);
    return out;
}

static char *post_content(const tc_pages *p, const json_t *post, char *title, size_t tcap)
{
    tc_buf body = {.max = PAGE_BYTES_MAX};
    if (paragraphs(&body, str(post, "body")) != 0) {
        free(body.data);
        return NULL;
    }
    char date[16];
    day(num(post, "publishedAt"), date);
    snprintf(title, tcap, "%s", str(post, "title"));
    tc_tmpl_var v[] = {{"title", str(post, "title"), false},
                       {"author", str(json_object_get(post, "author"), "name"), false},
                       {"date", date, false},
                       {"slug", str(post, "slug"), false},
                       {"body", body.data, true}};
    char *out = render_part(p, T_POST, v, 5);
    free(body.data);
    return out;
}

/* The dashboard's widgets from dashboard.summary and user.me. */
static char *dashboard_content(const tc_pages *p, const json_t *d, const json_t *me)
{
    const json_t *usage = json_object_get(d, "usage"), *act = json_object_get(d, "activity"),
                 *sub = json_object_get(d, "subscription"), *plan = json_object_get(sub, "plan"),
                 *last7 = json_object_get(act, "last7d"), *daily = json_object_get(act, "daily");
    tc_buf kinds = {.max = PAGE_BYTES_MAX}, recent = {.max = PAGE_BYTES_MAX},
           chart = {.max = PAGE_BYTES_MAX};
    int err = 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(last7, "byKind"), k, v)
    {
        if (err == 0)
            err = tc_buf_append(&kinds, "<li><span class=\"k\">", 20);
        if (err == 0)
            err = tc_html_escape(&kinds, k, strlen(k));
        if (err == 0)
            err = tc_buf_printf(&kinds, "</span> <span class=\"n\">%lld</span></li>",
                                (long long)json_integer_value(v));
    }
    size_t i;
    json_array_foreach(json_object_get(d, "recent"), i, v)
    {
        char date[16];
        day(num(v, "createdAt"), date);
        if (err == 0)
            err = tc_buf_append(&recent, "<li><span class=\"k\">", 20);
        if (err == 0)
            err = tc_html_escape(&recent, str(v, "kind"), strlen(str(v, "kind")));
        if (err == 0)
            err = tc_buf_printf(&recent, "</span> <time>%s</time></li>", date);
    }
    /* 30 bars, scaled to the busiest day; attributes only (the CSP allows no inline style) */
    long long maxd = 1;
    json_array_foreach(daily, i, v) if (json_integer_value(v) > maxd) maxd = json_integer_value(v);
    json_array_foreach(daily, i, v)
    {
        long long n = json_integer_value(v);
        long long hgt = n * 60 / maxd;
        if (err == 0)
            err = tc_buf_printf(&chart,
                                "<rect x=\"%zu\" y=\"%lld\" width=\"8\" height=\"%lld\">"
                                "<title>%lld</title></rect>",
                                i * 10, 60 - hgt, hgt, n);
    }
    if (err == 0)
        err = tc_buf_append(&kinds, "", 1);
    if (err == 0)
        err = tc_buf_append(&recent, "", 1);
    if (err == 0)
        err = tc_buf_append(&chart, "", 1);
    char *out = NULL;
    if (err == 0) {
        char uid[24], events[24], limit[24], pct[24], total7[24], seats[24];
        snprintf(uid, sizeof(uid), "%lld", num(d, "userId"));
        snprintf(events, sizeof(events), "%lld", num(usage, "events30d"));
        snprintf(limit, sizeof(limit), "%lld", num(usage, "limit"));
        snprintf(pct, sizeof(pct), "%.1f", json_number_value(json_object_get(usage, "percent")));
        snprintf(total7, sizeof(total7), "%lld", num(last7, "total"));
        snprintf(seats, sizeof(seats), "%lld", num(sub, "seats"));
        tc_tmpl_var vars[] = {
            {"user_id", uid, false},
            {"name", str(me, "name"), false},
            {"email", str(me, "email"), false},
            {"plan", str(plan, "name"), false},
            {"status", str(sub, "status"), false},
            {"seats", seats, false},
            {"events30d", events, false},
            {"limit", limit, false},
            {"percent", pct, false},
            {"total7", total7, false},
            {"kinds7", kinds.data, true},
            {"recent", recent.data, true},
            {"chart", chart.data, true},
        };
        out = render_part(p, T_DASHBOARD, vars, (int)(sizeof(vars) / sizeof(vars[0])));
    }
    free(kinds.data);
    free(recent.data);
    free(chart.data);
    return out;
}

/* ---- serving
 * ------------------------------------------------------------------------------------- */

/* The call's value as JSON (parsed from the cached bytes, or the uncached data). */
static json_t *data_of(const tc_call *c)
{
    if (c->value != NULL)
        return json_loadb(c->value->data, c->value->len, JSON_DECODE_ANY, NULL);
    return json_incref(c->data);
}

static void security_headers(tc_http_exchange *x)
{
    tc_http_add_header(x, "Content-Security-Policy",
                       "default-src 'self'; script-src 'self'; style-src 'self'; "
                       "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                       "frame-ancestors 'none'; form-action 'self'");
    tc_http_add_header(x, "X-Content-Type-Options", "nosniff");
    tc_http_add_header(x, "Referrer-Policy", "same-origin");
}

/* Sends an error page (no-store) with the layout, or plain text if that fails.
 * sec: the security headers are on the response already. */
static void error_page(tc_app *app, tc_http_exchange *x, int status, const char *title,
                       const char *message, bool sec)
{
    const tc_pages *p = app->pages;
    tc_tmpl_var v[] = {{"title", title, false}, {"message", message, false}};
    char *content = render_part(p, T_NOT_FOUND, v, 2);
    tc_buf b = {.max = PAGE_BYTES_MAX};
    tc_cachehdr_simple(x, TC_ROUTE_ERROR);
    if (!sec)
        security_headers(x);
    if (content != NULL && render_page(p, &b, title, content, NULL, NULL) == 0) {
        tc_http_respond(x, status, "text/html; charset=utf-8", NULL, 0);
        tc_http_take_body(x, b.data, b.len);
    } else {
        free(b.data);
        tc_http_respond(x, status, "text/plain; charset=utf-8", message, strlen(message));
    }
    free(content);
}

/* The ETag of a page: the build, the page, and its values' content hashes. */
static const char *page_etag(const tc_pages *p, tc_page_kind k, const tc_call *calls, int n,
                             char out[TC_ETAG_MAX])
{
    uint64_t in[2 + 4] = {p->build, (uint64_t)k};
    for (int i = 0; i < n; i++) {
        if (calls[i].value == NULL)
            return NULL; /* the cache is off: hash the body instead */
        in[2 + i] = calls[i].value->hash;
    }
    return tc_cachehdr_etag(XXH3_64bits(in, (size_t)(2 + n) * sizeof(in[0])), NULL, out);
}

/* One page request on its way through the cycle; like the tRPC one (app.c),
 * tc_app__page_serve runs the steps in order, each saying what comes next. */
typedef struct page_cycle {
    tc_app *app;
    tc_pages *p;
    tc_http_exchange *x;
    bool may_block;
    /* resolve */
    tc_page_kind kind;
    char slug[TC_PATH_SLUG_MAX + 1];
    /* run */
    json_t *input; /* blog.bySlug's, or NULL */
    tc_session sess;
    tc_call calls[2];
    int ncalls;
    tc_call_status hand_over; /* CALL_NEED_BLOCK or CALL_PARKED, for tc_app__offload */
    /* validators */
    bool sec; /* the security headers are on the response */
    tc_cachehdr h;
    char etag[TC_ETAG_MAX], cstat[TC_CACHE_STATUS_MAX], tags[TC_TAGS_MAX][TC_TAG_MAX + 1];
    const char *tagv[TC_TAGS_MAX];
} page_cycle;

/* One procedure call, exactly as the tRPC cycle makes it (same cache key). */
static tc_call_status page_call(page_cycle *t, const tc_session *s, const char *path, json_t *input)
{
    tc_call *c = &t->calls[t->ncalls++];
    tc_app__call_init(c, t->app, t->x, t->may_block, s, path, input);
    return tc_app__call_run(c, tc_app__proc_find(path));
}

/* Step 1, resolve: the page of the path (404 for anything else), GET or HEAD. */
static tc_step page_resolve(page_cycle *t)
{
    size_t len;
    const char *raw = tc_http_raw_path(t->x, &len);
    if ((t->kind = tc_path_page(raw, len, t->slug)) == TC_PAGE_NONE) { /* paths.c: pure */
        error_page(t->app, t->x, 404, "Not found", "There is no page here.", false);
        return STEP_ANSWER;
    }
    tc_http_method_id m = tc_http_method_id_of(t->x);
    if (m != TC_HTTP_M_GET && m != TC_HTTP_M_HEAD) {
        tc_http_add_header(t->x, "Allow", "GET, HEAD");
        error_page(t->app, t->x, 405, "Method not allowed", "This page answers GET and HEAD.",
                   false);
        return STEP_ANSWER;
    }
    return STEP_NEXT;
}

/* Step 2, run: the page's procedure calls; the dashboard's after its session
 * (authentication before anything else, preconditions included). The first
 * that would block, or parks, hands the request over; a failed one is an
 * error page. */
static tc_step page_run(page_cycle *t)
{
    tc_call_status st = CALL_OK;
    switch (t->kind) {
    case TC_PAGE_HOME:
        st = page_call(t, NULL, "blog.list", NULL);
        break;
    case TC_PAGE_POST:
        if ((t->input = json_pack("{s:s}", "slug", t->slug)) == NULL) {
            error_page(t->app, t->x, 500, "Something went wrong", "Out of memory.", false);
            return STEP_ANSWER;
        }
        st = page_call(t, NULL, "blog.bySlug", t->input);
        break;
    case TC_PAGE_DASHBOARD: {
        tc_call probe = {.app = t->app, .x = t->x, .may_block = t->may_block};
        st = tc_app__auth_session(&probe, &t->sess);
        if (st == CALL_ERROR) {
            error_page(t->app, t->x, 503, "Try again", "Sessions cannot be checked just now.",
                       false);
            return STEP_ANSWER;
        }
        if (st == CALL_NEED_BLOCK)
            break;
        if (t->sess.user_id == 0) {
            tc_cachehdr_simple(t->x, TC_ROUTE_ERROR);
            tc_http_add_header(t->x, "Location", "/login");
            tc_http_respond(t->x, 303, "text/plain; charset=utf-8", "sign in first\n", 14);
            return STEP_ANSWER;
        }
        t->h.cls = TC_ROUTE_PAGE_PRIVATE;
        st = page_call(t, &t->sess, "dashboard.summary", NULL);
        if (st == CALL_OK)
            st = page_call(t, &t->sess, "user.me", NULL);
        break;
    }
    default:
        break;
    }
    if (st == CALL_NEED_BLOCK || st == CALL_PARKED) {
        t->hand_over = st;
        return STEP_HAND_OVER;
    }
    for (int i = 0; i < t->ncalls; i++) {
        if (t->calls[i].code == TC_TRPC_NOT_FOUND) {
            error_page(t->app, t->x, 404, "Not found", "There is no post here.", false);
            return STEP_ANSWER;
        }
        if (t->calls[i].code != TC_TRPC_OK) {
            error_page(t->app, t->x, 500, "Something went wrong", "The page could not be built.",
                       false);
            return STEP_ANSWER;
        }
    }
    return STEP_NEXT;
}

/* Cache-Status of a page made of cached values: the worst of its calls, as a
 * tRPC batch reports it; NULL for a page without calls or with the cache off. */
static const char *page_cache_status(const page_cycle *t, char out[TC_CACHE_STATUS_MAX])
{
    tc_cache_outcome o = {.ttl_ms = INT64_MAX};
    for (int i = 0; i < t->ncalls; i++) {
        const tc_call *c = &t->calls[i];
        if (!c->from_cache)
            return NULL;
        o.miss |= c->cache.source == TC_SRC_LOADER;
        o.stale |= c->cache.stale;
        o.source = (int)c->cache.source > o.source ? (int)c->cache.source : o.source;
        o.ttl_ms = c->cache.ttl_ms < o.ttl_ms ? c->cache.ttl_ms : o.ttl_ms;
    }
    return t->ncalls > 0 ? tc_cachehdr_cache_status(&o, out) : NULL;
}

/* Step 3, validators: a public page's tags, the security headers, and the
 * ETag from the values' hashes: a revalidation that matches is answered 304
 * from the cache lookups alone. */
static tc_step page_validators(page_cycle *t)
{
    t->h.cache_status = page_cache_status(t, t->cstat);
    for (int i = 0; i < t->ncalls && t->h.cls == TC_ROUTE_PAGE; i++) {
        int n = tc_app__call_tags(&t->calls[i], tc_app__proc_find(t->calls[i].path), t->tags);
        for (int j = 0; j < n && t->h.ntags < TC_TAGS_MAX; j++)
            t->tagv[t->h.ntags++] = t->tags[j];
    }
    if (t->h.cls == TC_ROUTE_PAGE && t->h.ntags < TC_TAGS_MAX)
        t->tagv[t->h.ntags++] = TC_APP_PAGE_TAG; /* purged at start-up: a deploy changes it */
    t->h.tags = t->tagv;
    security_headers(t->x);
    t->sec = true;
    t->h.etag = page_etag(t->p, t->kind, t->calls, t->ncalls, t->etag);
    if (t->h.etag != NULL && tc_cachehdr_precondition(t->x, &t->h) != 200) {
        tc_cachehdr_respond(t->x, &t->h); /* 304 with the caching headers, or 412 */
        return STEP_ANSWER;
    }
    return STEP_NEXT;
}

/* The content of a page from its calls' data d0, d1; its title, the signed-in
 * user's name (who: personal pages only) and its script. NULL: out of memory. */
static char *page_content(const tc_pages *p, tc_page_kind kind, const json_t *d0, const json_t *d1,
                          char title[256], char who[256], const char **script)
{
    switch (kind) {
    case TC_PAGE_HOME:
        snprintf(title, 256, "Blog");
        return d0 != NULL ? home_content(p, d0) : NULL;
    case TC_PAGE_POST:
        return d0 != NULL ? post_content(p, d0, title, 256) : NULL;
    case TC_PAGE_LOGIN:
        snprintf(title, 256, "Sign in");
        return render_part(p, T_LOGIN, NULL, 0);
    case TC_PAGE_DASHBOARD:
        snprintf(title, 256, "Dashboard");
        *script = "dashboard.js";
        if (d1 != NULL) { /* the header names the user: private pages only */
            const char *name = json_string_value(json_object_get(d1, "name"));
            if (name == NULL || name[0] == '\0')
                name = json_string_value(json_object_get(d1, "email"));
            snprintf(who, 256, "%s", name != NULL ? name : "your account");
        }
        return d0 != NULL && d1 != NULL ? dashboard_content(p, d0, d1) : NULL;
    default:
        return NULL;
    }
}

const char *tc_app__page_name(int kind)
{
    switch (kind) {
    case TC_PAGE_HOME:
        return "home";
    case TC_PAGE_LOGIN:
        return "login";
    case TC_PAGE_DASHBOARD:
        return "dashboard";
    case TC_PAGE_POST:
        return "post";
    default:
        return NULL;
    }
}

/* The key of a page's bytes in the store: what they vary on besides the ETag —
 * the page, its post, and for the personal page its user. Returns its length. */
static size_t page_key(const page_cycle *t, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s:%s:%lld", tc_app__page_name(t->kind), t->slug,
                     (long long)t->sess.user_id);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The page's bytes: the values parsed, the content rendered inside the layout
 * (counted). NULL when out of memory. */
static char *page_render(page_cycle *t, size_t *len)
{
    json_t *d0 = t->ncalls > 0 ? data_of(&t->calls[0]) : NULL,
           *d1 = t->ncalls > 1 ? data_of(&t->calls[1]) : NULL;
    char title[256] = "", who[256] = "";
    const char *script = NULL;
    char *content = page_content(t->p, t->kind, d0, d1, title, who, &script);
    json_decref(d0);
    json_decref(d1);
    tc_buf b = {.max = PAGE_BYTES_MAX};
    int err = content == NULL
                  ? TC_ENOMEM
                  : render_page(t->p, &b, title, content, script, who[0] != '\0' ? who : NULL);
    free(content);
    if (err != 0) {
        free(b.data);
        return NULL;
    }
    atomic_fetch_add_explicit(&t->p->renders[t->kind], 1, memory_order_relaxed);
    *len = b.len;
    return b.data;
}

/* Step 4, body: the bytes stored under this ETag, or rendered (and stored);
 * with no cached values (the cache is off) the rendered body is the validator. */
static void page_body(page_cycle *t)
{
    tc_pagecache *store = t->h.etag != NULL ? t->p->store : NULL;
    char key[TC_PATH_SLUG_MAX + 64];
    size_t klen = store != NULL ? page_key(t, key, sizeof(key)) : 0;
    const tc_page_body *pb = klen > 0 ? tc_pagecache_get(store, key, klen, t->h.etag) : NULL;
    char *data = NULL;
    size_t len = 0;
    if (pb == NULL && (data = page_render(t, &len)) == NULL) {
        error_page(t->app, t->x, 500, "Something went wrong", "Out of memory.", t->sec);
        return;
    }
    if (t->h.etag == NULL) /* no cached values: the body is the validator */
        t->h.etag = tc_cachehdr_etag(XXH3_64bits(data, len), NULL, t->etag);
    if (pb == NULL && klen > 0 &&
        (pb = tc_pagecache_put(store, key, klen, t->h.etag, data, len)) != NULL)
        data = NULL; /* the store's now */
    if (tc_cachehdr_respond(t->x, &t->h) != 200) {
        free(data);
        tc_page_body_release(pb);
        return;
    }
    tc_http_set_content_type(t->x, "text/html; charset=utf-8");
    if (pb != NULL) /* sent from the stored bytes; released once they are sent */
        tc_http_set_body_ref(t->x, pb->data, pb->len, tc_page_body_release_cb, (void *)pb);
    else
        tc_http_take_body(t->x, data, len);
}

static void blocking_page(void *ctx, tc_http_exchange *x)
{
    tc_app__page_serve(ctx, x, true);
}

tc_http_action tc_app__page_serve(tc_app *app, tc_http_exchange *x, bool may_block)
{
    page_cycle t = {.app = app,
                    .p = app->pages,
                    .x = x,
                    .may_block = may_block,
                    .h = {.cls = TC_ROUTE_PAGE,
                          .last_modified = -1,
                          .tag_header = &app->tag_header,
                          .cdn_max_age_s = app->cdn_max_age_s}};
    tc_step step = page_resolve(&t);
    if (step == STEP_NEXT)
        step = page_run(&t);
    if (step == STEP_NEXT)
        step = page_validators(&t);
    if (step == STEP_NEXT)
        page_body(&t);
    tc_http_action act = TC_HTTP_DONE;
    if (step == STEP_HAND_OVER)
        act = tc_app__offload(x, t.hand_over, blocking_page);
    tc_app__calls_release(t.calls, (size_t)t.ncalls);
    json_decref(t.input);
    return act;
}

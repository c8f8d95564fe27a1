/*
 * Sessions and passwords.
 *
 * A session token is 32 random bytes, sent to the client base64url-encoded
 * (as JSON from auth.login, and as an HttpOnly, SameSite=Lax cookie). The
 * database keeps only its SHA-256, with an expiry; so does the cache, under
 * "session:<sha256>", holding "<user id> <role> <expires ms>", fresh for a
 * minute and then served stale for up to SESSION_STALE_MS while one refresh
 * runs — or, when the database is down, for as long as it is (stale-if-error):
 * signed-in users keep reading what is cached through a database outage.
 * Logout deletes the row and invalidates that key everywhere, and an
 * invalidated entry is never served stale: a logout ends a session at once.
 *
 * A token that matches nothing is not cached: anyone can make up tokens, and
 * each would be a key in Redis. It is remembered in a small table of this
 * process instead (NEG_SLOTS, a minute each), so a flood of made-up tokens
 * costs the database one lookup a minute per token at most, and Redis nothing.
 *
 * Passwords are argon2id (libsodium's crypto_pwhash_str). An unknown email
 * still costs one verification against a dummy hash, so response time does
 * not tell which emails exist. Login is rate limited per client address and
 * per email.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/internal.h"
#include "app/token.h"

#define TOKEN_BYTES 32
#define SESSION_FRESH_MS 60000
#define SESSION_STALE_MS (3600 * 1000) /* after fresh: SWR, and stale-if-error */
#define NEG_SLOTS 4096                   /* unknown tokens remembered (16 bytes each) */
#define NEG_TTL_MS 60000

struct tc_app__neg {
    pthread_mutex_t lock;
    struct {
        uint64_t h, until_ms; /* the token hash's first 8 bytes (never 0); mono ms */
    } slot[NEG_SLOTS];
};

int tc_app_hash_password(const char *password, bool fast, char *out, size_t outlen)
{
    if (outlen < crypto_pwhash_STRBYTES || sodium_init() < 0)
        return -1;
    return crypto_pwhash_str(out, password, strlen(password),
                             fast ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE,
                             fast ? crypto_pwhash_MEMLIMIT_MIN
                                  : crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

int tc_app__auth_init(tc_app *app)
{
    char pw[24];
    unsigned char raw[16];
    if (sodium_init() < 0 || (app->neg = calloc(1, sizeof(*app->neg))) == NULL)
        return -1;
    pthread_mutex_init(&app->neg->lock, NULL);
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(pw, sizeof(pw), raw, 11);
    return tc_app_hash_password(pw, app->cfg.pwhash_fast, app->dummy_hash, sizeof(app->dummy_hash));
}

void tc_app__auth_free(tc_app *app)
{
    if (app->neg == NULL)
        return;
    pthread_mutex_destroy(&app->neg->lock);
    free(app->neg);
    app->neg = NULL;
}

/* ---- tokens that match nothing ---------------------------------------------------- */

static uint64_t neg_hash(const char *token_hash) /* 16 hex digits of the SHA-256 */
{
    uint64_t h = 0;
    for (int i = 0; i < 16; i++) {
        char c = token_hash[i];
        h = h << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return h != 0 ? h : 1;
}

static bool neg_known(tc_app *app, const char *token_hash)
{
    uint64_t h = neg_hash(token_hash), now = tc_mono_ms();
    size_t i = h % NEG_SLOTS;
    pthread_mutex_lock(&app->neg->lock);
    bool known = app->neg->slot[i].h == h && now < app->neg->slot[i].until_ms;
    pthread_mutex_unlock(&app->neg->lock);
    return known;
}

static void neg_remember(tc_app *app, const char *token_hash)
{
    uint64_t h = neg_hash(token_hash);
    size_t i = h % NEG_SLOTS; /* a collision forgets the older one: it costs a lookup */
    pthread_mutex_lock(&app->neg->lock);
    app->neg->slot[i].h = h;
    app->neg->slot[i].until_ms = tc_mono_ms() + NEG_TTL_MS;
    pthread_mutex_unlock(&app->neg->lock);
}

static void sha256_hex(const char *s, size_t len, char out[65])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)s, len);
    sodium_bin2hex(out, 65, h, sizeof(h));
}

/* The token of the request (token.c), copied into tok; false when there is none
 * of the right shape. */
static bool request_token(tc_http_exchange *x, char tok[TC_TOKEN_CHARS + 1])
{
    return tc_token_of_request(tc_http_header(x, "Authorization"), tc_http_header(x, "Cookie"),
                               tok);
}

static int session_db(tc_db *db, const char *key, tc_buf *out)
{
    tc_db_param p[] = {tc_db_text(key + strlen("session:"))};
    tc_db_rows *r;
    if (tc_db_query(db,
                    "SELECT s.user_id, u.role, s.expires_at FROM sessions s "
                    "JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
                    p, 1, &r) != 0)
        return APP_EDB;
    int rc = tc_db_rows_next(r), err = rc < 0 ? APP_EDB : APP_ENOTFOUND;
    if (rc == 1)
        err = tc_buf_printf(out, "%lld %s %lld", (long long)tc_db_col_int64(r, 0),
                            tc_db_col_text(r, 1, NULL), (long long)tc_db_col_int64(r, 2));
    tc_db_rows_free(r);
    return err;
}

static int load_session(void *app, const char *key, tc_buf *out)
{
    return tc_app__with_db(app, session_db, key, out);
}

/* "<user id> <role> <expires ms>" (what session_db stores); "-" or anything
 * else is no session. On the hot path of every authenticated request: no sscanf. */
static bool parse_session(const char *v, size_t len, tc_session *s)
{
    char buf[96], *p, *end;
    if (len >= sizeof(buf))
        return false;
    memcpy(buf, v, len);
    buf[len] = '\0';
    long long uid = strtoll(buf, &end, 10);
    if (end == buf || *end != ' ' || uid <= 0)
        return false;
    p = end + 1;
    char *sp = strchr(p, ' ');
    if (sp == NULL)
        return false;
    bool admin = (size_t)(sp - p) == 5 && memcmp(p, "admin", 5) == 0;
    long long exp = strtoll(sp + 1, &end, 10);
    if (end == sp + 1 || *end != '\0')
        return false;
    s->user_id = uid;
    s->role = admin ? ROLE_ADMIN : ROLE_USER;
    s->expires_ms = exp;
    return true;
}

tc_call_status tc_app__auth_session(tc_call *c, tc_session *s)
{
    char tok[TC_TOKEN_CHARS + 1], key[80];
    memset(s, 0, sizeof(*s));
    if (!request_token(c->x, tok))
        return CALL_OK;
    sha256_hex(tok, TC_TOKEN_CHARS, s->token_hash);
    snprintf(key, sizeof(key), "session:%s", s->token_hash);
    tc_buf b = {0};
    const char *v;
    size_t len;
    tc_result r = {0};
    int err;
    if (c->app->cache == NULL) {
        if (!c->may_block)
            return CALL_NEED_BLOCK;
        err = load_session(c->app, key, &b);
        v = b.data, len = b.len;
    } else {
        tc_policy p = {.fresh_ms = SESSION_FRESH_MS,
                       .stale_ms = SESSION_STALE_MS,
                       .loader = load_session,
                       .loader_ctx = c->app};
        if (c->app->cfg.test_fresh_ms > 0) /* --test-fresh-ms: tests only */
            p.fresh_ms = c->app->cfg.test_fresh_ms;
        err = c->may_block ? tc_get_or_load(c->app->cache, key, &p, &r)
                           : tc_peek(c->app->cache, key, &p, &r);
        if (err == TC_ENOTFOUND && !c->may_block) {
            if (!neg_known(c->app, s->token_hash))
                return CALL_NEED_BLOCK;
            err = APP_ENOTFOUND; /* looked up a moment ago: still nobody's */
        }
        v = r.value != NULL ? r.value->data : NULL, len = r.value != NULL ? r.value->len : 0;
    }
    tc_call_status st = CALL_OK;
    if (err == APP_ENOTFOUND) {
        neg_remember(c->app, s->token_hash); /* anonymous; not cached (above) */
        s->user_id = 0;
    } else if (err == APP_EDOWN || err == TC_ETIMEDOUT) { /* logged in tc_app__with_db */
        tc_http_add_header(c->x, "Retry-After", "1");
        st = tc_app__call_fail(c, TC_TRPC_SERVICE_UNAVAILABLE,
                               "the database is unavailable: could not check the session");
    } else if (err != 0) {
        if (err != APP_EDB)
            tc_app__log(TC_LOG_ERROR, "auth", "could not check a session: %s",
                        tc_strerror(err));
        st = tc_app__call_fail(c, TC_TRPC_INTERNAL_SERVER_ERROR, "could not check the session");
    } else if (!parse_session(v, len, s) || s->expires_ms <= tc_wall_ms()) {
        s->user_id = 0; /* expired: anonymous */
    }
    free(b.data);
    tc_value_release(r.value);
    return st;
}

static void client_key(tc_call *c, char *out, size_t cap)
{
    const char *addr = tc_http_client_addr(c->x);
    snprintf(out, cap, "addr:%s", addr != NULL ? addr : "?");
}

/* One token from the login limit for rlkey: this process's bucket first (it
 * holds even without Redis), then the bucket every instance on this Redis
 * shares. Where Redis cannot tell, the per-process limit stands alone. */
static bool login_take(tc_app *app, tc_ratelimit *local, const char *rlkey, uint64_t now,
                       int *retry)
{
    if (!tc_ratelimit_take(local, rlkey, now, retry))
        return false;
    if (app->cache == NULL)
        return true;
    char name[TC_KEY_MAX];
    snprintf(name, sizeof(name), "login:%s", rlkey);
    int64_t ms = 0;
    if (tc_rate_take(app->cache, name, app->cfg.login_burst, app->cfg.login_per_minute, &ms) != 0)
        return true;
    *retry = ms > 1000 ? (int)((ms + 999) / 1000) : 1;
    return false;
}

tc_call_status tc_app__auth_login(tc_call *c, tc_db *db)
{
    tc_app *app = c->app;
    char email[256], rlkey[300];
    snprintf(email, sizeof(email), "%s", json_string_value(json_object_get(c->input, "email")));
    for (char *p = email; *p != '\0'; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    const char *password = json_string_value(json_object_get(c->input, "password"));
    int retry = 0;
    uint64_t now = tc_mono_ms(); /* the local buckets measure durations */
    client_key(c, rlkey, sizeof(rlkey));
    bool ok = login_take(app, app->login_by_addr, rlkey, now, &retry);
    snprintf(rlkey, sizeof(rlkey), "email:%s", email);
    if (ok)
        ok = login_take(app, app->login_by_email, rlkey, now, &retry);
    if (!ok) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", retry);
        tc_http_add_header(c->x, "Retry-After", ra);
        return tc_app__call_fail(c, TC_TRPC_TOO_MANY_REQUESTS,
                                 "too many login attempts; try again in %d s", retry);
    }

    tc_db_param p[] = {tc_db_text(email)};
    tc_db_rows *r;
    if (tc_db_query(db, "SELECT id, password_hash FROM users WHERE email = ?", p, 1, &r) != 0)
        return tc_app__db_fail(c, tc_db_errcode(db), db, "auth.login");
    int rc = tc_db_rows_next(r);
    int64_t uid = rc == 1 ? tc_db_col_int64(r, 0) : 0;
    char hash[crypto_pwhash_STRBYTES];
    snprintf(hash, sizeof(hash), "%s", uid != 0 ? tc_db_col_text(r, 1, NULL) : app->dummy_hash);
    tc_db_rows_free(r);
    if (rc < 0)
        return tc_app__db_fail(c, rc, db, "auth.login");
    bool match = crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
    if (uid == 0 || !match)
        return tc_app__call_fail(c, TC_TRPC_UNAUTHORIZED, "invalid email or password");

    unsigned char raw[TOKEN_BYTES];
    char tok[TC_TOKEN_CHARS + 1], th[65];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(tok, sizeof(tok), raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sha256_hex(tok, TC_TOKEN_CHARS, th);
    int64_t expires = tc_wall_ms() + (int64_t)app->cfg.session_ttl_s * 1000; /* stored */
    tc_db_param ins[] = {tc_db_text(th), tc_db_int64(uid), tc_db_int64(expires),
                         tc_db_int64((int64_t)now)};
    if (tc_db_exec(db,
                   "INSERT INTO sessions (token_hash, user_id, expires_at, created_at) "
                   "VALUES (?, ?, ?, ?)",
                   ins, 4, NULL) != 0)
        return tc_app__db_fail(c, tc_db_errcode(db), db, "auth.login");
    tc_buf user = {0};
    json_t *uj = NULL;
    if (tc_app__user_json(db, uid, &user) == 0)
        uj = json_loadb(user.data, user.len, 0, NULL);
    free(user.data);
    if (uj == NULL)
        return tc_app__db_fail(c, tc_db_errcode(db), db, "auth.login");
    c->data =
        json_pack("{s:s,s:I,s:o}", "token", tok, "expiresAt", (json_int_t)expires, "user", uj);
    snprintf(c->set_cookie, sizeof(c->set_cookie),
             "session=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%d%s", tok,
             app->cfg.session_ttl_s, app->cfg.cookie_secure ? "; Secure" : "");
    sodium_memzero(tok, sizeof(tok));
    return CALL_OK;
}

tc_call_status tc_app__auth_logout(tc_call *c, tc_db *db)
{
    tc_db_param p[] = {tc_db_text(c->session->token_hash)};
    if (tc_db_exec(db, "DELETE FROM sessions WHERE token_hash = ?", p, 1, NULL) != 0)
        return tc_app__db_fail(c, tc_db_errcode(db), db, "auth.logout");
    tc_app__inval_add(&c->inval, "#session:%s", c->session->token_hash);
    c->data = json_pack("{s:b}", "ok", 1);
    snprintf(c->set_cookie, sizeof(c->set_cookie),
             "session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0%s",
             c->app->cfg.cookie_secure ? "; Secure" : "");
    return CALL_OK;
}

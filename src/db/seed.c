/*
 * seed.c — the demo-data generator: users, subscriptions, about a million activity rows
 * and a blog, deterministic for a given RNG seed, written fast enough to run at first
 * start (see tc_db_seed in db.h for what it writes).
 * Not for: password hashing (the caller passes one precomputed hash), schema (migrate.c),
 * drawing the progress bar (the caller's callback does).
 *
 * DESIGN (speed): everything goes through the public db.h API, so both engines share one
 * path. Rows are written with multi-row INSERTs of up to BATCH_PARAMS parameters each
 * (one prepared statement per table, plus one for the last, shorter batch), all inside
 * ONE transaction: on PostgreSQL that turns a million round trips into a few thousand; on
 * SQLite it saves the per-statement VM overhead. Activity is generated user by user with
 * sorted timestamps, so index inserts on (user_id, created_at) land at the right edge.
 * The single transaction also makes a seed all-or-nothing. On PostgreSQL the activity
 * table's foreign keys and secondary indexes are dropped and re-created around the load,
 * inside that transaction (see pg_drop_activity_extras). Afterwards: ANALYZE (and on SQLite
 * a WAL checkpoint), so the first dashboard query has statistics and a small WAL.
 * Measured on the 2-core dev machine, default size (10k users, ~1M activity rows):
 * SQLite ~3-4 s, PostgreSQL ~7 s (default durability settings).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/time.h"
#include "db/internal.h"

#define DAY_MS (24LL * 3600 * 1000)
#define BATCH_PARAMS 1000 /* per INSERT: well under SQLite's 32766 and PostgreSQL's 65535 */
#define SLOT 256          /* bytes of generated text per row (email+name+bio, or meta) */

/* ---- deterministic randomness (splitmix64) ----------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rnd_u64(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) */
static double rnd_unit(rng *r)
{
    return (double)(rnd_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* uniform in [0, n) */
static int64_t rnd_below(rng *r, int64_t n)
{
    return n > 0 ? (int64_t)(rnd_u64(r) % (uint64_t)n) : 0;
}

static double rnd_normal(rng *r)
{
    double u = rnd_unit(r), v = rnd_unit(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

static const char *pick(rng *r, const char *const *list, int n)
{
    return list[rnd_below(r, n)];
}
#define PICK(r, list) pick(r, list, (int)(sizeof(list) / sizeof(list[0])))

/* ---- batched multi-row INSERTs ----------------------------------------------------- */

typedef struct batch {
    tc_db *db;
    const char *head; /* "INSERT INTO t (a, b) VALUES " */
    int ncols, rows_max, nrows;
    char *sql_full;       /* head + rows_max "(?, ?)" groups */
    tc_db_param *params;  /* rows_max * ncols */
    char *slots;          /* rows_max * SLOT bytes of text the params point into */
    int64_t *done, total; /* progress */
    tc_seed_progress_fn progress;
    void *arg;
} batch;

/* head + n groups of ncols placeholders; malloc'd. */
static char *values_sql(const char *head, int ncols, int n)
{
    size_t group = 2 + (size_t)ncols * 3, len = strlen(head) + (size_t)n * group + 1, o;
    char *sql = malloc(len);
    if (!sql)
        return NULL;
    o = (size_t)sprintf(sql, "%s", head);
    for (int i = 0; i < n; i++) {
        sql[o++] = i ? ',' : ' ';
        sql[o++] = '(';
        for (int c = 0; c < ncols; c++) {
            if (c) {
                sql[o++] = ',';
                sql[o++] = ' ';
            }
            sql[o++] = '?';
        }
        sql[o++] = ')';
    }
    sql[o] = '\0';
    return sql;
}

static int batch_init(batch *b, tc_db *db, const char *head, int ncols)
{
    memset(b, 0, sizeof(*b));
    b->db = db;
    b->head = head;
    b->ncols = ncols;
    b->rows_max = BATCH_PARAMS / ncols;
    b->sql_full = values_sql(head, ncols, b->rows_max);
    b->params = calloc((size_t)b->rows_max * (size_t)ncols, sizeof(tc_db_param));
    b->slots = malloc((size_t)b->rows_max * SLOT);
    if (!b->sql_full || !b->params || !b->slots)
        return tc_db__fail(db, TC_DB_ENOMEM, "out of memory");
    return 0;
}

static void batch_free(batch *b)
{
    free(b->sql_full);
    free(b->params);
    free(b->slots);
}

static int batch_flush(batch *b)
{
    char *sql = b->sql_full;
    int rc;
    if (b->nrows == 0)
        return 0;
    if (b->nrows < b->rows_max && !(sql = values_sql(b->head, b->ncols, b->nrows)))
        return tc_db__fail(b->db, TC_DB_ENOMEM, "out of memory");
    rc = tc_db_exec(b->db, sql, b->params, b->nrows * b->ncols, NULL);
    if (sql != b->sql_full)
        free(sql);
    if (rc != 0)
        return rc;
    *b->done += b->nrows;
    b->nrows = 0;
    if (b->progress)
        b->progress(*b->done, b->total, b->arg);
    return 0;
}

/* The params of the next row, and its SLOT bytes of text space. */
static tc_db_param *batch_row(batch *b, char **slot)
{
    *slot = b->slots + (size_t)b->nrows * SLOT;
    return b->params + (size_t)b->nrows * (size_t)b->ncols;
}

static int batch_push(batch *b)
{
    return ++b->nrows == b->rows_max ? batch_flush(b) : 0;
}

/* ---- vocabulary -------------------------------------------------------------------- */

static const char *const first_names[] = {
    "Ada",    "Alan",    "Grace",   "Linus", "Barbara",  "Ken",    "Dennis", "Margaret",
    "Edsger", "Donald",  "Frances", "John",  "Radia",    "Leslie", "Sophie", "Tim",
    "Hedy",   "Niklaus", "Joan",    "Guido", "Yukihiro", "Bjarne", "Anders", "Karen"};
static const char *const last_names[] = {
    "Lovelace", "Turing",      "Hopper", "Torvalds", "Liskov",   "Thompson",   "Ritchie",
    "Hamilton", "Dijkstra",    "Knuth",  "Allen",    "McCarthy", "Perlman",    "Lamport",
    "Wilson",   "Berners-Lee", "Lamarr", "Wirth",    "Clarke",   "van Rossum", "Matsumoto"};
static const char *const bios[] = {
    "Building things on the web.", "Caching all the things.",
    "Data nerd, coffee person.",   "Ships on Fridays.",
    "Writes SQL for fun.",         "Ops by day, music by night.",
    "Ex-physicist, now in infra.", "Café au lait et café de Paris ☕"};
static const char *const paths[] = {"/dashboard", "/projects", "/settings", "/billing",
                                    "/blog",      "/docs",     "/usage",    "/team"};
static const char *const endpoints[] = {"/v1/events", "/v1/projects", "/v1/usage",
                                        "/v1/keys",   "/v1/exports",  "/v1/team"};
static const char *const settings[] = {"timezone", "email",    "name",
                                       "avatar",   "password", "notifications"};
static const char *const words[] = {
    "cache", "latency",    "tags",    "stale",  "revalidate", "redis",   "edge",
    "tier",  "invalidate", "fresh",   "origin", "shared",     "private", "etag",
    "vary",  "budget",     "scaling", "fleet",  "queue",      "metrics", "percentile",
    "warm",  "cold",       "write",   "read",   "path",       "signal"};

/* Kinds of activity with their weights (of 100). */
static const struct {
    const char *kind;
    int weight;
} kinds[] = {{"page_view", 50}, {"api_call", 30},       {"login", 8},
             {"export", 5},     {"project_created", 4}, {"settings_changed", 3}};

static int pick_kind(rng *r)
{
    int64_t x = rnd_below(r, 100);
    for (int i = 0; i < (int)(sizeof(kinds) / sizeof(kinds[0])); i++)
        if ((x -= kinds[i].weight) < 0)
            return i;
    return 0;
}

/* Small JSON meta for kinds[kind], written to out (SLOT bytes). Returns its length. */
static int make_meta(rng *r, int kind, char *out)
{
    switch (kind) {
    case 0: /* page_view */
        return snprintf(out, SLOT, "{\"path\":\"%s\"}", PICK(r, paths));
    case 1: /* api_call */
        return snprintf(out, SLOT, "{\"endpoint\":\"%s\",\"status\":%d,\"ms\":%d}",
                        PICK(r, endpoints), rnd_below(r, 50) ? 200 : 429,
                        (int)(5 + rnd_below(r, 200)));
    case 2: /* login */
        return snprintf(out, SLOT, "{\"method\":\"%s\"}", rnd_below(r, 5) ? "password" : "token");
    case 3: /* export */
        return snprintf(out, SLOT, "{\"format\":\"%s\",\"rows\":%d}",
                        rnd_below(r, 2) ? "csv" : "json", (int)rnd_below(r, 100000));
    case 4: /* project_created */
        return snprintf(out, SLOT, "{\"project\":\"project-%d\"}", (int)rnd_below(r, 10000));
    default: /* settings_changed */
        return snprintf(out, SLOT, "{\"field\":\"%s\"}", PICK(r, settings));
    }
}

/* ---- the tables -------------------------------------------------------------------- */

typedef struct seed {
    tc_db *db;
    rng r;
    int64_t now, done, total;
    const tc_seed_opts *o;
    int users, per_user, posts;
    tc_seed_progress_fn progress;
    void *arg;
} seed;

static void batch_progress(batch *b, seed *s)
{
    b->done = &s->done;
    b->total = s->total;
    b->progress = s->progress;
    b->arg = s->arg;
}

static int insert_user(seed *s, const char *email, const char *name, const char *role, int64_t *id)
{
    int64_t t = s->now - 400 * DAY_MS;
    tc_db_param p[6] = {tc_db_text(email), tc_db_text(s->o->password_hash),
                        tc_db_text(name),  tc_db_text(role),
                        tc_db_int64(t),    tc_db_int64(t)};
    int rc = tc_db_query_int64(s->db,
                               "INSERT INTO users (email, password_hash, name, role, created_at, "
                               "updated_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                               p, 6, id);
    if (rc == 0)
        s->done++;
    return rc;
}

static int insert_users(seed *s)
{
    batch b;
    int rc = batch_init(&b, s->db,
                        "INSERT INTO users (email, password_hash, name, bio, avatar_url, role, "
                        "created_at, updated_at) VALUES",
                        8);
    batch_progress(&b, s);
    for (int i = 1; rc == 0 && i <= s->users; i++) {
        char *t;
        tc_db_param *p = batch_row(&b, &t);
        int64_t created = s->now - 60 * DAY_MS - rnd_below(&s->r, 340 * DAY_MS);
        int el = snprintf(t, 64, "user%d@example.com", i);
        int nl = snprintf(t + 64, 64, "%s %s", PICK(&s->r, first_names), PICK(&s->r, last_names));
        int al = snprintf(t + 128, 128, "https://avatars.example.com/u/%d.png", i);
        const char *bio = rnd_below(&s->r, 10) < 7 ? PICK(&s->r, bios) : NULL;
        p[0] = tc_db_textn(t, (size_t)el);
        p[1] = tc_db_text(s->o->password_hash);
        p[2] = tc_db_textn(t + 64, (size_t)nl);
        p[3] = tc_db_text(bio);
        p[4] = rnd_below(&s->r, 2) ? tc_db_textn(t + 128, (size_t)al) : tc_db_null();
        p[5] = tc_db_text("user");
        p[6] = tc_db_int64(created);
        p[7] = tc_db_int64(created + rnd_below(&s->r, s->now - created));
        rc = batch_push(&b);
    }
    if (rc == 0)
        rc = batch_flush(&b);
    batch_free(&b);
    return rc;
}

/* The ids of the regular users in creation order, into *ids (malloc'd, s->users long). */
static int regular_ids(seed *s, int64_t **ids)
{
    tc_db_rows *rows;
    int rc, n = 0;

    if (!(*ids = malloc((size_t)s->users * sizeof(int64_t))))
        return tc_db__fail(s->db, TC_DB_ENOMEM, "out of memory");
    rc = tc_db_query(s->db,
                     "SELECT id FROM users WHERE role = 'user' AND email <> 'demo@example.com' "
                     "ORDER BY id",
                     NULL, 0, &rows);
    while (rc == 0 && (rc = tc_db_rows_next(rows)) == 1) {
        if (n < s->users)
            (*ids)[n] = tc_db_col_int64(rows, 0);
        n++;
        rc = 0;
    }
    tc_db_rows_free(rows);
    if (rc == 0 && n != s->users)
        rc = tc_db__fail(s->db, TC_DB_ERROR, "seed: expected %d users, found %d", s->users, n);
    return rc;
}

static int push_subscription(seed *s, batch *b, int64_t user_id, const char *plan,
                             const char *status, int64_t seats)
{
    char *t;
    tc_db_param *p = batch_row(b, &t);
    int64_t end = strcmp(status, "canceled") == 0 ? s->now - rnd_below(&s->r, 30 * DAY_MS)
                                                  : s->now + DAY_MS + rnd_below(&s->r, 29 * DAY_MS);
    p[0] = tc_db_int64(user_id);
    p[1] = tc_db_text(plan);
    p[2] = tc_db_text(status);
    p[3] = tc_db_int64(end);
    p[4] = tc_db_int64(seats);
    p[5] = tc_db_int64(s->now - rnd_below(&s->r, 30 * DAY_MS));
    return batch_push(b);
}

static int insert_subscriptions(seed *s, const int64_t *ids, int64_t admin, int64_t demo)
{
    batch b;
    int rc = batch_init(&b, s->db,
                        "INSERT INTO subscriptions (user_id, plan_id, status, "
                        "current_period_end, seats, updated_at) VALUES",
                        6);
    batch_progress(&b, s);
    if (rc == 0)
        rc = push_subscription(s, &b, admin, "team", "active", 10);
    if (rc == 0)
        rc = push_subscription(s, &b, demo, "pro", "active", 1);
    for (int i = 0; rc == 0 && i < s->users; i++) {
        int64_t x = rnd_below(&s->r, 100), y = rnd_below(&s->r, 100);
        const char *plan = x < 70 ? "free" : x < 92 ? "pro" : "team";
        const char *status = plan[0] == 'f' || y < 85 ? "active"
                             : y < 92                 ? "trialing"
                             : y < 97                 ? "past_due"
                                                      : "canceled";
        int64_t seats = plan[0] == 't' ? 3 + rnd_below(&s->r, 23) : 1;
        rc = push_subscription(s, &b, ids[i], plan, status, seats);
    }
    if (rc == 0)
        rc = batch_flush(&b);
    batch_free(&b);
    return rc;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* count activity rows for one user, oldest first, into the batch. times: scratch. */
static int push_activity(seed *s, batch *b, int64_t user_id, int64_t count, int64_t *times)
{
    int rc = 0;
    for (int64_t k = 0; k < count; k++) /* recent days a little busier than old ones */
        times[k] = s->now - (int64_t)(60.0 * DAY_MS * pow(rnd_unit(&s->r), 1.3));
    qsort(times, (size_t)count, sizeof(int64_t), cmp_i64);
    for (int64_t k = 0; k < count && rc == 0; k++) {
        char *t;
        tc_db_param *p = batch_row(b, &t);
        int kind = pick_kind(&s->r), ml = make_meta(&s->r, kind, t);
        p[0] = tc_db_int64(user_id);
        p[1] = tc_db_text(kinds[kind].kind);
        p[2] = tc_db_textn(t, (size_t)ml);
        p[3] = tc_db_int64(times[k]);
        rc = batch_push(b);
    }
    return rc;
}

static int insert_activity(seed *s, const int64_t *ids, int64_t demo)
{
    int64_t total = (int64_t)s->users * s->per_user, assigned = 0, most = 2LL * s->per_user;
    int64_t *counts = calloc((size_t)s->users, sizeof(int64_t)), *times = NULL;
    double *w = calloc((size_t)s->users, sizeof(double)), sum = 0;
    batch b;
    int rc =
        batch_init(&b, s->db, "INSERT INTO activity (user_id, kind, meta, created_at) VALUES", 4);

    batch_progress(&b, s);
    if (rc == 0 && (!counts || !w))
        rc = tc_db__fail(s->db, TC_DB_ENOMEM, "out of memory");
    /* Log-normal weights: most users are light, a few are heavy (tens of times the mean). */
    for (int i = 0; rc == 0 && i < s->users; i++)
        sum += (w[i] = exp(1.2 * rnd_normal(&s->r)));
    for (int i = 0; rc == 0 && i < s->users; i++) {
        counts[i] = (int64_t)((double)total * w[i] / sum);
        assigned += counts[i];
    }
    for (int i = 0; rc == 0 && assigned < total; i = (i + 1) % s->users, assigned++)
        counts[i]++; /* the rounding remainder: exactly total rows */
    for (int i = 0; rc == 0 && i < s->users; i++)
        most = counts[i] > most ? counts[i] : most;
    if (rc == 0 && !(times = malloc((size_t)(most ? most : 1) * sizeof(int64_t))))
        rc = tc_db__fail(s->db, TC_DB_ENOMEM, "out of memory");
    if (rc == 0)
        rc = push_activity(s, &b, demo, 2LL * s->per_user, times);
    for (int i = 0; rc == 0 && i < s->users; i++)
        rc = push_activity(s, &b, ids[i], counts[i], times);
    if (rc == 0)
        rc = batch_flush(&b);
    batch_free(&b);
    free(times);
    free(counts);
    free(w);
    return rc;
}

/*
 * PostgreSQL bulk load, as its manual's "Populating a Database" advises: inside the seed's
 * transaction, activity's foreign keys and secondary indexes are dropped before the load
 * and re-created after it (one join and one sort instead of a per-row trigger and index
 * insert: about 4x faster at a million rows). Their definitions are read from the catalog,
 * so migrations stay the one place that defines them. SQLite checks foreign keys and
 * maintains indexes cheaply in-process: nothing to do there.
 */
#define MAX_DEFERRED 16

typedef struct deferred {
    char *restore[MAX_DEFERRED];
    int n;
} deferred;

static int pg_drop_activity_extras(seed *s, deferred *d)
{
    char *drop[MAX_DEFERRED] = {0};
    tc_db_rows *rows;
    int rc = tc_db_query(
        s->db,
        "SELECT 'ALTER TABLE activity ADD CONSTRAINT ' || quote_ident(conname) || ' ' || "
        "       pg_get_constraintdef(oid),"
        "       'ALTER TABLE activity DROP CONSTRAINT ' || quote_ident(conname) "
        "FROM pg_constraint WHERE conrelid = 'activity'::regclass AND contype = 'f' "
        "UNION ALL "
        "SELECT pg_get_indexdef(indexrelid), 'DROP INDEX ' || indexrelid::regclass::text "
        "FROM pg_index WHERE indrelid = 'activity'::regclass AND NOT indisunique",
        NULL, 0, &rows);
    int n = 0;

    while (rc == 0 && (rc = tc_db_rows_next(rows)) == 1) {
        rc = 0;
        if (n == MAX_DEFERRED)
            continue; /* more than we keep: those stay in place (slower, still correct) */
        d->restore[n] = strdup(tc_db_col_text(rows, 0, NULL));
        drop[n] = strdup(tc_db_col_text(rows, 1, NULL));
        if (!d->restore[n] || !drop[n])
            rc = tc_db__fail(s->db, TC_DB_ENOMEM, "out of memory");
        n++;
    }
    tc_db_rows_free(rows);
    d->n = n;
    for (int i = 0; i < n; i++) {
        if (rc == 0)
            rc = tc_db_exec_script(s->db, drop[i]);
        free(drop[i]);
    }
    return rc;
}

static int pg_restore_activity_extras(seed *s, deferred *d)
{
    int rc = 0;
    for (int i = 0; i < d->n; i++) {
        if (rc == 0)
            rc = tc_db_exec_script(s->db, d->restore[i]);
        free(d->restore[i]);
    }
    d->n = 0;
    return rc;
}

static int insert_posts(seed *s, int64_t author)
{
    size_t cap = 8192;
    char *body = malloc(cap), slug[96], title[160];
    int rc = body ? 0 : tc_db__fail(s->db, TC_DB_ENOMEM, "out of memory");

    for (int i = 1; rc == 0 && i <= s->posts; i++) {
        const char *w1 = PICK(&s->r, words), *w2 = PICK(&s->r, words), *w3 = PICK(&s->r, words);
        int64_t published = s->now - rnd_below(&s->r, 365 * DAY_MS);
        int draft = i > 1 && rnd_below(&s->r, 10) == 0;
        size_t o = 0;
        if (i == 1) {
            snprintf(slug, sizeof(slug), "welcome-to-tiercache");
            snprintf(title, sizeof(title), "Welcome to tiercache");
        } else {
            snprintf(slug, sizeof(slug), "%s-%s-%s-%d", w1, w2, w3, i);
            snprintf(title, sizeof(title), "%c%s, %s and %s", (char)(w1[0] - 32), w1 + 1, w2, w3);
        }
        for (int para = 0, np = 3 + (int)rnd_below(&s->r, 5); para < np; para++) {
            for (int sent = 0, ns = 2 + (int)rnd_below(&s->r, 4); sent < ns; sent++) {
                for (int k = 0, nw = 6 + (int)rnd_below(&s->r, 10); k < nw && o + 40 < cap; k++) {
                    const char *w = PICK(&s->r, words);
                    size_t at = o + (k ? 1 : 0);
                    o += (size_t)snprintf(body + o, cap - o, "%s%s", k ? " " : "", w);
                    if (!k)
                        body[at] = (char)(body[at] - 32); /* capitalise the sentence */
                }
                if (o + 4 < cap)
                    o += (size_t)snprintf(body + o, cap - o, ". ");
            }
            if (o + 4 < cap)
                o += (size_t)snprintf(body + o, cap - o, "\n\n");
        }
        rc = tc_db_exec(s->db,
                        "INSERT INTO blog_posts (slug, title, body, author_id, published_at, "
                        "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (tc_db_param[]){tc_db_text(slug), tc_db_text(title), tc_db_textn(body, o),
                                        tc_db_int64(author),
                                        draft ? tc_db_null() : tc_db_int64(published),
                                        tc_db_int64(draft ? s->now : published)},
                        6, NULL);
        if (rc == 0)
            s->done++;
    }
    free(body);
    if (rc == 0 && s->progress)
        s->progress(s->done, s->total, s->arg);
    return rc;
}

int tc_db_seed(tc_db *db, const tc_seed_opts *o, tc_seed_progress_fn progress, void *arg)
{
    seed s = {.db = db, .o = o, .progress = progress, .arg = arg};
    int64_t n = 0, admin = 0, demo = 0, *ids = NULL;
    deferred deferred_ddl = {{0}, 0};
    int rc;

    if (!db)
        return TC_DB_EINVAL;
    if (!o || !o->password_hash || !*o->password_hash)
        return tc_db__fail(db, TC_DB_EINVAL, "seed: a password hash is required");
    if (o->users < 0 || o->activity_per_user < 0)
        return tc_db__fail(db, TC_DB_EINVAL, "seed: negative users or activity_per_user");
    s.users = o->users ? o->users : 10000;
    s.per_user = o->activity_per_user ? o->activity_per_user : 100;
    s.posts = o->posts > 0 ? o->posts : o->posts < 0 ? 0 : 50;
    s.r.s = o->seed ? o->seed : 42;
    s.now = o->now_ms ? o->now_ms : tc_wall_ms();
    s.total = 2 * (s.users + 2LL) + (s.users + 2LL) * s.per_user + s.posts;

    if ((rc = tc_db_begin(db)) != 0)
        return rc;
    rc = tc_db_query_int64(db, "SELECT count(*) FROM users", NULL, 0, &n);
    if (rc == 0 && n > 0)
        rc = tc_db__fail(db, TC_DB_EEXIST, "seed: the database already has %lld user(s)",
                         (long long)n);
    if (rc == 0)
        rc = insert_user(&s, "admin@example.com", "Admin", "admin", &admin);
    if (rc == 0)
        rc = insert_user(&s, "demo@example.com", "Demo User", "user", &demo);
    if (rc == 0)
        rc = insert_users(&s);
    if (rc == 0)
        rc = regular_ids(&s, &ids);
    if (rc == 0)
        rc = insert_subscriptions(&s, ids, admin, demo);
    if (rc == 0 && db->dialect == TC_DB_POSTGRES)
        rc = pg_drop_activity_extras(&s, &deferred_ddl);
    if (rc == 0)
        rc = insert_activity(&s, ids, demo);
    if (rc == 0 && db->dialect == TC_DB_POSTGRES)
        rc = pg_restore_activity_extras(&s, &deferred_ddl);
    for (int i = 0; i < deferred_ddl.n; i++) /* on error */
        free(deferred_ddl.restore[i]);
    if (rc == 0)
        rc = insert_posts(&s, admin);
    free(ids);
    if (rc == 0)
        rc = tc_db_commit(db);
    else
        tc_db_rollback(db);
    if (rc == 0 && db->dialect == TC_DB_POSTGRES)
        rc = tc_db_exec_script(db, "ANALYZE"); /* fresh statistics for the planner */
    else if (rc == 0)
        rc = tc_db_exec_script(db, "PRAGMA wal_checkpoint(TRUNCATE); ANALYZE");
    return rc;
}

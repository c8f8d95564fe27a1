/* The demo-data generator on SQLite and PostgreSQL, at a small size (200 users x 20):
 * exact row counts, the admin and demo users, a subscription each, activity inside the
 * last 60 days with several kinds and a skew towards heavy users, progress reports, the
 * same data on both engines for the same RNG seed, and a second seed refused unchanged. */
#include "both.h"

#define USERS 200
#define PER 20
#define POSTS 12
#define NOW 1750000000000LL
#define DAY (24LL * 3600 * 1000)

typedef struct progress {
    int64_t calls, last_done, total;
    int monotonic;
} progress;

static void on_progress(int64_t done, int64_t total, void *arg)
{
    progress *p = arg;
    if (done < p->last_done || done > total)
        p->monotonic = 0;
    p->calls++;
    p->last_done = done;
    p->total = total;
}

static int64_t one(tc_db *db, const char *sql)
{
    int64_t n = -1;
    CHECK_RC(db, tc_db_query_int64(db, sql, NULL, 0, &n), 0);
    return n;
}

/* what both engines must agree on, from the first run */
static int64_t first_fingerprint[4] = {-1, -1, -1, -1};

static void body(const backend *b)
{
    tc_db *db = backend_open_migrated(b);
    tc_seed_opts o = {.users = USERS,
                      .activity_per_user = PER,
                      .posts = POSTS,
                      .seed = 7,
                      .now_ms = NOW,
                      .password_hash = "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA"};
    progress pr = {.monotonic = 1};
    int64_t fp[4];
    REQUIRE(db);

    tc_seed_opts bad = o;
    bad.password_hash = NULL;
    CHECK_RC(db, tc_db_seed(db, &bad, NULL, NULL), TC_DB_EINVAL);
    CHECK_RC(db, tc_db_seed(db, &o, on_progress, &pr), 0);

    CHECK_EQ_INT(one(db, "SELECT count(*) FROM users"), USERS + 2);
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM users WHERE role = 'admin'"), 1);
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM users WHERE email = 'admin@example.com' "
                         "AND role = 'admin'"),
                 1);
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM users WHERE email = 'demo@example.com'"), 1);
    CHECK_EQ_INT(one(db, "SELECT count(DISTINCT password_hash) FROM users"), 1);
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM subscriptions"), USERS + 2);
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM subscriptions s JOIN users u ON u.id = s.user_id "
                         "WHERE u.email = 'demo@example.com' AND s.plan_id = 'pro'"),
                 1);
    CHECK(one(db, "SELECT count(DISTINCT plan_id) FROM subscriptions") == 3);
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM activity"), (USERS + 2) * PER);
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM activity a JOIN users u ON u.id = a.user_id "
                         "WHERE u.email = 'demo@example.com'"),
                 2 * PER);
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM activity a JOIN users u ON u.id = a.user_id "
                         "WHERE u.role = 'admin'"),
                 0);
    /* (60 * 86400000 would overflow PostgreSQL's 32-bit integer constants: spelled out) */
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM activity WHERE created_at > 1750000000000 "
                         "OR created_at < 1744816000000"),
                 0);
    CHECK(one(db, "SELECT count(DISTINCT kind) FROM activity") >= 5);
    /* skew: the heaviest user has several times the mean */
    CHECK(one(db, "SELECT max(n) FROM (SELECT count(*) AS n FROM activity GROUP BY user_id) x") >
          3 * PER);
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM blog_posts"), POSTS);
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM blog_posts WHERE slug = 'welcome-to-tiercache' "
                         "AND published_at IS NOT NULL"),
                 1);
    CHECK(one(db, "SELECT count(DISTINCT slug) FROM blog_posts") == POSTS);

    CHECK(pr.calls >= 3);
    CHECK(pr.monotonic);
    CHECK_EQ_INT(pr.last_done, pr.total);
    CHECK_EQ_INT(pr.total, 2 * (USERS + 2) + (USERS + 2) * PER + POSTS);

    /* the same seed gives the same data on both engines */
    fp[0] = one(db, "SELECT sum(created_at % 1000003) FROM activity");
    fp[1] = one(db, "SELECT count(*) FROM activity WHERE kind = 'page_view'");
    fp[2] = one(db, "SELECT sum(seats) FROM subscriptions");
    fp[3] = one(db, "SELECT sum(length(body)) FROM blog_posts");
    for (int i = 0; i < 4; i++) {
        if (first_fingerprint[i] < 0)
            first_fingerprint[i] = fp[i];
        else
            CHECK_EQ_INT(fp[i], first_fingerprint[i]);
    }

    /* seeding again is refused, and changes nothing */
    pr.calls = 0;
    CHECK_RC(db, tc_db_seed(db, &o, on_progress, &pr), TC_DB_EEXIST);
    CHECK(!tc_db_in_transaction(db));
    CHECK_EQ_INT(pr.calls, 0);
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM users"), USERS + 2);
    CHECK_EQ_INT(one(db, "SELECT count(*) FROM activity"), (USERS + 2) * PER);
    tc_db_close(db);
}

int main(void)
{
    return run_both(body);
}

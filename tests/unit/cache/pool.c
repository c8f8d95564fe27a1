/*
 * Tests src/cache/pool.c, the bounded pool background refreshes run on
 * (DESIGN.md guarantee 4 runs its "one background refresh" here, and
 * guarantee 10 needs the queue bounded). Proves: submitted jobs run, once
 * each, not cancelled; submit fails at once when the queue is full (workers
 * held on a gate); free lets running jobs finish, calls every queued job with
 * cancelled = true, and runs none twice. Every wait has a deadline.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "cache/internal.h"
#include "check.h"

#define DEADLINE_MS 10000
#define MAX_JOBS 256

/* What the jobs saw. Blocking jobs wait on the gate while it is closed. */
typedef struct joblog {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool gate_closed;
    int started;             /* blocking jobs that have begun */
    int calls[MAX_JOBS];     /* per job id */
    int cancelled[MAX_JOBS]; /* per job id: calls with cancelled = true */
    int total;
} log_t;

typedef struct job {
    log_t *log;
    int id;
    bool blocks;
} job;

static log_t *log_new(void)
{
    static log_t l;
    memset(&l, 0, sizeof(l));
    pthread_mutex_init(&l.lock, NULL);
    pthread_cond_init(&l.cond, NULL);
    return &l;
}

static void log_free(log_t *l)
{
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
}

static struct timespec deadline(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += DEADLINE_MS / 1000;
    return ts;
}

static void job_run(void *arg, bool cancelled)
{
    job *j = arg;
    log_t *l = j->log;
    pthread_mutex_lock(&l->lock);
    l->calls[j->id]++;
    l->cancelled[j->id] += cancelled;
    l->total++;
    if (j->blocks && !cancelled) {
        l->started++;
        pthread_cond_broadcast(&l->cond); /* to wait_count(&started) */
        struct timespec ts = deadline();
        while (l->gate_closed && pthread_cond_timedwait(&l->cond, &l->lock, &ts) == 0)
            ;
    }
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static void gate(log_t *l, bool closed)
{
    pthread_mutex_lock(&l->lock);
    l->gate_closed = closed;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

/* Waits until *counter >= n (counter is a field of l); false at the deadline. */
static bool wait_count(log_t *l, const int *counter, int n)
{
    struct timespec ts = deadline();
    pthread_mutex_lock(&l->lock);
    int rc = 0;
    while (*counter < n && rc == 0)
        rc = pthread_cond_timedwait(&l->cond, &l->lock, &ts);
    bool ok = *counter >= n;
    pthread_mutex_unlock(&l->lock);
    return ok;
}

static int submit(tc__pool *p, job *jobs, log_t *l, int id, bool blocks)
{
    jobs[id] = (job){l, id, blocks};
    return tc__pool_submit(p, job_run, &jobs[id]);
}

/* Every job in [from, to) was called exactly once, with cancelled as given. */
static void check_called_once(log_t *l, int from, int to, bool cancelled)
{
    int once = 0, right_flag = 0;
    pthread_mutex_lock(&l->lock);
    for (int i = from; i < to; i++) {
        once += l->calls[i] == 1;
        right_flag += l->cancelled[i] == (cancelled ? 1 : 0);
    }
    pthread_mutex_unlock(&l->lock);
    CHECK_EQ_INT(once, to - from);
    CHECK_EQ_INT(right_flag, to - from);
}

static void test_jobs_run(void)
{
    log_t *l = log_new();
    static job jobs[MAX_JOBS];
    tc__pool *p = tc__pool_new(3, 64);
    REQUIRE(p != NULL);
    int refused = 0;
    for (int i = 0; i < 50; i++)
        refused += submit(p, jobs, l, i, false) != 0;
    CHECK_EQ_INT(refused, 0);
    CHECK(wait_count(l, &l->total, 50));
    tc__pool_free(p);
    check_called_once(l, 0, 50, false);
    log_free(l);

    CHECK(tc__pool_new(0, 4) == NULL);
    CHECK(tc__pool_new(2, 0) == NULL);
    tc__pool_free(NULL);
}

static void test_submit_fails_when_full(void)
{
    enum { WORKERS = 2, QUEUE = 3 };
    log_t *l = log_new();
    static job jobs[MAX_JOBS];
    tc__pool *p = tc__pool_new(WORKERS, QUEUE);
    gate(l, true);
    for (int i = 0; i < WORKERS; i++) /* occupy every worker */
        CHECK_EQ_INT(submit(p, jobs, l, i, true), 0);
    CHECK(wait_count(l, &l->started, WORKERS)); /* both taken off the queue */
    for (int i = WORKERS; i < WORKERS + QUEUE; i++)
        CHECK_EQ_INT(submit(p, jobs, l, i, false), 0);
    CHECK_EQ_INT(submit(p, jobs, l, WORKERS + QUEUE, false), -1); /* full: refused at once */
    CHECK_EQ_INT(submit(p, jobs, l, WORKERS + QUEUE, false), -1);

    gate(l, false);
    CHECK(wait_count(l, &l->total, WORKERS + QUEUE));
    CHECK_EQ_INT(submit(p, jobs, l, WORKERS + QUEUE, false), 0); /* room again */
    CHECK(wait_count(l, &l->total, WORKERS + QUEUE + 1));
    tc__pool_free(p);
    check_called_once(l, 0, WORKERS + QUEUE + 1, false);
    log_free(l);
}

typedef struct freer {
    tc__pool *p;
    atomic_bool done;
} freer;

static void *free_run(void *arg)
{
    freer *f = arg;
    tc__pool_free(f->p);
    atomic_store(&f->done, true);
    return NULL;
}

static void test_free_cancels_queued(void)
{
    enum { QUEUED = 5, CAP = MAX_JOBS - 1 };
    log_t *l = log_new();
    static job jobs[MAX_JOBS];
    tc__pool *p = tc__pool_new(1, CAP);
    gate(l, true);
    CHECK_EQ_INT(submit(p, jobs, l, 0, true), 0);
    CHECK(wait_count(l, &l->started, 1)); /* the only worker is busy */
    int n = 1;
    for (; n < 1 + QUEUED; n++)
        CHECK_EQ_INT(submit(p, jobs, l, n, false), 0);

    /* Free from another thread: it waits for the running job. Once it has begun,
     * submit is refused although the queue has room; every job accepted before that
     * is queued and must be cancelled. */
    freer f = {p, false};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, free_run, &f) == 0);
    struct timespec pause = {0, 1000000};
    bool stopping = false;
    for (int i = 0; i < DEADLINE_MS && n < CAP && !stopping; i++) {
        if (submit(p, jobs, l, n, false) == 0)
            n++;
        else
            stopping = true;
        if (!stopping)
            nanosleep(&pause, NULL);
    }
    CHECK(stopping);
    CHECK(!atomic_load(&f.done)); /* free is still waiting for the running job */

    gate(l, false);
    pthread_join(th, NULL);
    CHECK(atomic_load(&f.done));
    check_called_once(l, 0, 1, false); /* the running job finished normally */
    check_called_once(l, 1, n, true);  /* every queued one: cancelled, once */
    CHECK_EQ_INT(l->total, n);         /* and nothing else ran */
    log_free(l);
}

int main(void)
{
    test_jobs_run();
    test_submit_fails_when_full();
    test_free_cancels_queued();
    return check_report();
}

// The API end to end, against SQLite and against PostgreSQL: every procedure's success and
// error classes, the seed's cache validation (Redis keys and TTLs, invalidation on update,
// billing events, blog publish/edit), billing events out of order (an older one never
// overwrites newer state), sessions, and no cross-user leak under concurrency (each user
// reads their own subscription, under their own key sub:{id}).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, call, login, redis, sign, sleep, postBilling, eventTime, subState, DEMO_PASSWORD } from './lib.mjs';
import { scrape, value } from './prom.mjs';

for (const kind of ['sqlite', 'pg']) {
  describe(`API on ${kind}`, () => {
    let srv, demo, admin;
    before(async () => {
      srv = await startServer({ db: kind });
      demo = await login(srv);
      admin = await login(srv, 'admin@example.com');
    });
    after(async () => { assert.equal(await srv.stop(), 0, 'graceful exit 0'); });

    it('user.me: miss, then hit from L1, same ETag; Redis key user:{id} with a 5 min TTL', async () => {
      const a = await call(srv, 'user.me', { token: demo.token });
      assert.equal(a.status, 200);
      assert.equal(a.body.result.data.email, 'demo@example.com');
      assert.match(a.headers.get('cache-status'), /fwd=miss/);
      const b = await call(srv, 'user.me', { token: demo.token });
      assert.match(b.headers.get('cache-status'), /hit.*detail=l1/);
      assert.equal(b.headers.get('etag'), a.headers.get('etag'));
      assert.equal(b.headers.get('cache-control'), 'private, max-age=30');
      assert.equal(b.headers.get('vary'), 'Authorization, Cookie');
      const ttl = Number(redis('PTTL', `${srv.prefix}user:${demo.user.id}`));
      assert.ok(ttl > 290000 && ttl <= 300000, `user TTL ${ttl}`);
    });

    it('subscription.get and dashboard.summary: keys sub:{id} (1 min) and dash:{id} (30 s + stale)', async () => {
      const s = await call(srv, 'subscription.get', { token: demo.token });
      assert.equal(s.status, 200);
      assert.equal(s.body.result.data.plan.id, 'pro');
      const d = await call(srv, 'dashboard.summary', { token: demo.token });
      assert.equal(d.status, 200);
      const dash = d.body.result.data;
      assert.equal(dash.userId, demo.user.id);
      assert.equal(dash.activity.daily.length, 30);
      assert.ok(dash.activity.last30d.total > 0, 'a real aggregation over activity rows');
      assert.match(d.headers.get('cache-control'), /^private, max-age=30, stale-while-revalidate=\d+$/);
      const st = Number(redis('PTTL', `${srv.prefix}sub:${demo.user.id}`));
      assert.ok(st > 50000 && st <= 60000, `sub TTL ${st}`);
      const dt = Number(redis('PTTL', `${srv.prefix}dash:${demo.user.id}`));
      assert.ok(dt > 30000 && dt <= 330000, `dash TTL ${dt}`);
    });

    it('update profile -> invalidated -> next read comes from the database with the new value', async () => {
      await call(srv, 'user.me', { token: demo.token }); // cached
      const u = await call(srv, 'user.update', { token: demo.token, input: { name: `Renamed ${kind}`, bio: null } });
      assert.equal(u.status, 200, JSON.stringify(u.body));
      assert.equal(u.headers.get('cache-control'), 'no-store');
      const r = await call(srv, 'user.me', { token: demo.token });
      assert.match(r.headers.get('cache-status'), /fwd=miss/);
      assert.equal(r.body.result.data.name, `Renamed ${kind}`);
    });

    it('blog: bySlug and list are public and cached for an hour; publish and edit invalidate', async () => {
      const list = await call(srv, 'blog.list', { input: { limit: 5 } });
      assert.equal(list.status, 200);
      assert.equal(list.body.result.data.items.length, 5);
      assert.match(list.headers.get('cache-control'), /^public, /);
      const slug = list.body.result.data.items[0].slug;
      const p1 = await call(srv, 'blog.bySlug', { input: { slug } });
      assert.equal(p1.status, 200);
      const ttl = Number(redis('PTTL', `${srv.prefix}blog:${slug}`));
      assert.ok(ttl > 3500000 && ttl <= 3600000, `blog TTL ${ttl}`);
      const ed = await call(srv, 'blog.update', { token: admin.token, input: { slug, title: `Edited ${kind}` } });
      assert.equal(ed.status, 200, JSON.stringify(ed.body));
      const p2 = await call(srv, 'blog.bySlug', { input: { slug } });
      assert.equal(p2.body.result.data.title, `Edited ${kind}`);
      assert.match(p2.headers.get('cache-status'), /fwd=miss/);
      await call(srv, 'blog.list', { input: { limit: 5 } }); // the list cached again
      const newSlug = `fresh-post-${kind}`;
      const pub = await call(srv, 'blog.publish', { token: admin.token, input: { slug: newSlug, title: 'Fresh', body: 'Hello' } });
      assert.equal(pub.status, 200, JSON.stringify(pub.body));
      const l2 = await call(srv, 'blog.list', { input: { limit: 5 } });
      assert.equal(l2.body.result.data.items[0].slug, newSlug, 'the list was invalidated');
      assert.match(l2.headers.get('cache-status'), /fwd=miss/);
      const dup = await call(srv, 'blog.publish', { token: admin.token, input: { slug: newSlug, title: 'x', body: 'y' } });
      assert.equal(dup.status, 409);
      const nf = await call(srv, 'blog.bySlug', { input: { slug: 'no-such-post' } });
      assert.equal(nf.status, 404);
      assert.equal(nf.body.error.data.code, 'NOT_FOUND');
    });

    it("an author's rename reaches the byline of cached posts", async () => {
      const list = await call(srv, 'blog.list', { input: { limit: 1 } });
      const slug = list.body.result.data.items[0].slug;
      const before = await call(srv, 'blog.bySlug', { input: { slug } });
      assert.equal(before.status, 200);
      const r = await call(srv, 'user.update', { token: admin.token, input: { name: `Editor ${kind}` } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const after = await call(srv, 'blog.bySlug', { input: { slug } });
      assert.equal(after.body.result.data.author.name, `Editor ${kind}`);
      assert.match(after.headers.get('cache-status'), /fwd=miss/);
    });

    it('auth: 401 without a session, 403 for a user calling an admin procedure, bad password 401', async () => {
      const a = await call(srv, 'user.me');
      assert.equal(a.status, 401);
      assert.equal(a.body.error.code, -32001);
      assert.equal(a.body.error.data.code, 'UNAUTHORIZED');
      assert.equal(a.body.error.data.path, 'user.me');
      const f = await call(srv, 'blog.publish', { token: demo.token, input: { slug: 'x', title: 'x', body: 'x' } });
      assert.equal(f.status, 403);
      const bad = await call(srv, 'auth.login', { input: { email: 'demo@example.com', password: 'wrong' } });
      assert.equal(bad.status, 401);
      const forged = await call(srv, 'user.me', { token: 'A'.repeat(43) });
      assert.equal(forged.status, 401);
    });

    it('the session cookie works too, and logout ends the session at once', async () => {
      const r = await call(srv, 'auth.login', { input: { email: 'user1@example.com', password: DEMO_PASSWORD } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const cookie = r.headers.get('set-cookie');
      assert.match(cookie, /^session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=\d+/);
      const c = cookie.split(';')[0];
      const me = await call(srv, 'user.me', { headers: { cookie: `theme=dark; ${c}` } });
      assert.equal(me.status, 200);
      assert.equal(me.body.result.data.email, 'user1@example.com');
      const out = await call(srv, 'auth.logout', { token: r.body.result.data.token });
      assert.equal(out.status, 200);
      assert.match(out.headers.get('set-cookie'), /Max-Age=0/);
      const after = await call(srv, 'user.me', { headers: { cookie: c } });
      assert.equal(after.status, 401, 'the cached session was invalidated');
    });

    it('bad input: malformed JSON, wrong types, unknown fields, unknown procedure, wrong method, mixed batch', async () => {
      const r1 = await fetch(`${srv.base}/trpc/blog.bySlug?input=%7Bnot-json`);
      assert.equal(r1.status, 400);
      assert.equal((await r1.json()).error.data.code, 'PARSE_ERROR');
      const r2 = await call(srv, 'blog.bySlug', { input: { slug: 42 } });
      assert.equal(r2.status, 400);
      assert.equal(r2.body.error.message, 'input.slug: expected a string');
      const r3 = await call(srv, 'user.update', { token: demo.token, input: { name: 'x', admin: true } });
      assert.equal(r3.status, 400);
      assert.equal(r3.body.error.message, "input: unknown field 'admin'");
      const r4 = await call(srv, 'nope.nothing', { token: demo.token });
      assert.equal(r4.status, 404);
      const r5 = await call(srv, 'user.me', { token: demo.token, method: 'POST' });
      assert.equal(r5.status, 405);
      assert.equal(r5.headers.get('allow'), 'GET, HEAD');
      const r6 = await call(srv, 'user.update', { token: demo.token, method: 'GET' });
      assert.equal(r6.status, 405);
      assert.equal(r6.headers.get('allow'), 'POST');
      const r7 = await fetch(`${srv.base}/trpc/user.me,user.update?batch=1`, { headers: { authorization: `Bearer ${demo.token}` } });
      assert.equal(r7.status, 400);
      const r8 = await call(srv, 'user.update', { token: demo.token, raw: '{"name":' });
      assert.equal(r8.status, 400);
      const r9 = await call(srv, 'activity.track', { token: demo.token, input: { kind: 'Page View' } });
      assert.equal(r9.status, 400);
    });

    it('a 10 MiB body to a JSON endpoint is refused early with 413 and stores nothing', async () => {
      // Raw socket: the server answers from the headers alone, before the body is sent.
      const head = [`POST /trpc/user.update HTTP/1.1`, `Host: 127.0.0.1`, `Content-Type: application/json`,
        `Authorization: Bearer ${demo.token}`, `Content-Length: ${10 * 1024 * 1024}`, '', ''].join('\r\n');
      const answer = await new Promise((resolve, reject) => {
        const s = net.connect(srv.port, '127.0.0.1', () => s.write(head));
        let got = '';
        s.on('data', (d) => { got += d; if (got.includes('\r\n\r\n')) { s.destroy(); resolve(got); } });
        s.on('error', reject);
        s.setTimeout(10000, () => { s.destroy(); reject(new Error('no answer before the body')); });
      });
      assert.match(answer, /^HTTP\/1\.1 413 /);
      const me = await call(srv, 'user.me', { token: demo.token });
      assert.equal(me.status, 200);
      assert.ok(me.body.result.data.name.length < 1000);
    });

    it('batches: results in request order, 207 when statuses differ', async () => {
      const input = encodeURIComponent(JSON.stringify({ 1: { slug: 'no-such-post' } }));
      const r = await fetch(`${srv.base}/trpc/user.me,blog.bySlug?batch=1&input=${input}`,
        { headers: { authorization: `Bearer ${demo.token}` } });
      assert.equal(r.status, 207);
      const b = await r.json();
      assert.equal(b[0].result.data.id, demo.user.id);
      assert.equal(b[1].error.data.code, 'NOT_FOUND');
    });

    it('billing: a signed event invalidates the subscription; replay applied once; forged and expired refused', async () => {
      const uid = demo.user.id;
      await call(srv, 'subscription.get', { token: demo.token }); // cached
      const ev = JSON.stringify({ id: `evt_${kind}_1`, type: 'subscription.updated', created: Math.floor(Date.now() / 1000),
        data: { userId: uid, planId: 'team', status: 'active', currentPeriodEnd: Date.now() + 30 * 86400000, seats: 7 } });
      const post = async (body, sig) => fetch(`${srv.base}/webhooks/billing`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'billing-signature': sig }, body });
      const r1 = await post(ev, await sign(ev));
      assert.equal(r1.status, 200);
      assert.deepEqual(await r1.json(), { received: true });
      const s = await call(srv, 'subscription.get', { token: demo.token });
      assert.equal(s.body.result.data.plan.id, 'team', 'invalidated: the new plan is visible');
      assert.equal(s.body.result.data.seats, 7);
      assert.match(s.headers.get('cache-status'), /fwd=miss/);
      const r2 = await post(ev, await sign(ev));
      assert.equal(r2.status, 200);
      assert.deepEqual(await r2.json(), { received: true, duplicate: true });
      const forged = await post(ev.replace('team', 'free'), await sign(ev));
      assert.equal(forged.status, 401);
      const old = await post(ev, await sign(ev, undefined, Math.floor(Date.now() / 1000) - 3600));
      assert.equal(old.status, 401);
      const noSig = await post(ev, '');
      assert.equal(noSig.status, 400);
      const wrongSecret = await post(ev, await sign(ev, 'whsec_not_the_right_one'));
      assert.equal(wrongSecret.status, 401);
      const s2 = await call(srv, 'subscription.get', { token: demo.token });
      assert.equal(s2.body.result.data.plan.id, 'team', 'nothing refused was applied');
      const ghost = JSON.stringify({ id: `evt_${kind}_2`, type: 'subscription.updated', created: eventTime(),
        data: { userId: 99999999, planId: 'pro', status: 'active', currentPeriodEnd: 1 } });
      assert.equal((await post(ghost, await sign(ghost))).status, 422);
      const junk = '{"id":';
      assert.equal((await post(junk, await sign(junk))).status, 400);
    });

    it('billing: an older event delivered after a newer one never overwrites it, for every event type', async () => {
      // billing.c applies an event only if it is not older (by "created") than what the
      // subscription reflects. For each type the webhook applies, the older event is of that
      // type and arrives last; each case has a user of its own. t0 < t1 < t2 (unix s).
      const t0 = eventTime(), t1 = t0 + 60, t2 = t0 + 120;
      const day = 86400000, e0 = Date.now() + 10 * day, e1 = e0 + 10 * day, e2 = e0 + 20 * day;
      const sub = (type, data) => ({ type, data });
      const cases = [
        { type: 'subscription.created', email: 'user10@example.com',
          newer: sub('subscription.created', { planId: 'team', status: 'active', currentPeriodEnd: e2, seats: 9 }),
          older: sub('subscription.created', { planId: 'pro', status: 'trialing', currentPeriodEnd: e1, seats: 2 }),
          want: { plan: 'team', status: 'active', seats: 9, currentPeriodEnd: e2 } },
        { type: 'subscription.updated', email: 'user11@example.com',
          newer: sub('subscription.updated', { planId: 'team', status: 'past_due', currentPeriodEnd: e2, seats: 3 }),
          older: sub('subscription.updated', { planId: 'pro', status: 'active', currentPeriodEnd: e1, seats: 1 }),
          want: { plan: 'team', status: 'past_due', seats: 3, currentPeriodEnd: e2 } },
        { type: 'subscription.canceled', email: 'user12@example.com',
          newer: sub('subscription.updated', { planId: 'pro', status: 'active', currentPeriodEnd: e2, seats: 2 }),
          older: sub('subscription.canceled', {}),
          want: { plan: 'pro', status: 'active', seats: 2, currentPeriodEnd: e2 } },
        { type: 'invoice.paid', email: 'user13@example.com',
          base: sub('subscription.updated', { planId: 'pro', status: 'past_due', currentPeriodEnd: e0, seats: 4 }),
          newer: sub('invoice.paid', { currentPeriodEnd: e2 }),
          older: sub('invoice.paid', { currentPeriodEnd: e1 }),
          want: { plan: 'pro', status: 'active', seats: 4, currentPeriodEnd: e2 } },
        { type: 'invoice.paid (after a cancellation)', email: 'user14@example.com',
          base: sub('subscription.updated', { planId: 'team', status: 'active', currentPeriodEnd: e0, seats: 5 }),
          newer: sub('subscription.canceled', {}),
          older: sub('invoice.paid', { currentPeriodEnd: e1 }),
          want: { plan: 'team', status: 'canceled', seats: 5, currentPeriodEnd: e0 } },
      ];
      let n = 0;
      const deliver = async (u, ev, created) => {
        const body = { id: `evt_${kind}_order_${++n}`, type: ev.type, created, data: { userId: u.user.id, ...ev.data } };
        const r = await postBilling(srv, body);
        const text = await r.text();
        assert.equal(r.status, 200, `${ev.type} at ${created}: ${text}`);
        assert.deepEqual(JSON.parse(text), { received: true });
      };
      for (const c of cases) {
        const u = await login(srv, c.email);
        if (c.base) await deliver(u, c.base, t0);
        await deliver(u, c.newer, t2);
        const before = await call(srv, 'subscription.get', { token: u.token });
        assert.deepEqual(subState(before.body.result.data), c.want, `${c.type}: the newer event applied`);
        await deliver(u, c.older, t1);
        const after = await call(srv, 'subscription.get', { token: u.token });
        assert.match(after.headers.get('cache-status'), /fwd=miss/, `${c.type}: read from the database after the older event`);
        assert.deepEqual(subState(after.body.result.data), c.want, `${c.type}: an older event overwrote newer state`);
      }
    });

    it('no cross-user leak: two users hammering the same procedures concurrently, each gets their own subscription', async () => {
      const other = await login(srv, 'user2@example.com');
      // Two subscriptions nobody could take for each other's, set by signed billing events.
      const t = eventTime(), end = Date.now() + 20 * 86400000;
      const want = new Map([
        [demo.user.id, { plan: 'pro', status: 'active', seats: 2, currentPeriodEnd: end }],
        [other.user.id, { plan: 'team', status: 'trialing', seats: 6, currentPeriodEnd: end + 86400000 }],
      ]);
      for (const [uid, w] of want) {
        const r = await postBilling(srv, { id: `evt_${kind}_leak_${uid}`, type: 'subscription.updated', created: t,
          data: { userId: uid, planId: w.plan, status: w.status, currentPeriodEnd: w.currentPeriodEnd, seats: w.seats } });
        assert.equal(r.status, 200, await r.text());
      }
      const who = [demo, other];
      const reqs = [];
      for (let i = 0; i < 200; i++) {
        const u = who[i % 2];
        const path = ['user.me', 'subscription.get', 'dashboard.summary'][i % 3];
        reqs.push(call(srv, path, { token: u.token }).then((r) => ({ r, u, path })));
      }
      for (const { r, u, path } of await Promise.all(reqs)) {
        assert.equal(r.status, 200);
        const d = r.body.result.data;
        if (path === 'user.me') assert.equal(d.id, u.user.id);
        if (path === 'subscription.get') {
          assert.deepEqual(subState(d), want.get(u.user.id), `subscription.get as ${u.user.email}: their own subscription`);
        }
        if (path === 'dashboard.summary') {
          assert.equal(d.userId, u.user.id);
          assert.deepEqual(subState(d.subscription), want.get(u.user.id), `the dashboard of ${u.user.email}`);
        }
      }
      for (const u of who) {
        assert.equal(redis('EXISTS', `${srv.prefix}sub:${u.user.id}`), '1', `Redis key ${srv.prefix}sub:${u.user.id}`);
      }
      const anon = await call(srv, 'dashboard.summary');
      assert.equal(anon.status, 401);
    });
  });
}

describe('login rate limit', () => {
  let srv;
  before(async () => { srv = await startServer({ loginLimit: 3 }); });
  after(async () => { await srv.stop(); });
  it('after the limit: 429 TOO_MANY_REQUESTS with Retry-After, even with the right password', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await call(srv, 'auth.login', { input: { email: 'user4@example.com', password: 'wrong' } });
      assert.equal(r.status, 401);
    }
    const last = await call(srv, 'auth.login', { input: { email: 'user4@example.com', password: 'wrong' } });
    assert.equal(last.status, 429);
    assert.equal(last.body.error.data.code, 'TOO_MANY_REQUESTS');
    assert.ok(Number(last.headers.get('retry-after')) >= 1);
    const ok = await call(srv, 'auth.login', { input: { email: 'user4@example.com', password: DEMO_PASSWORD } });
    assert.equal(ok.status, 429);
  });

  it('the limit is shared by every instance on the same Redis, in Redis under the prefix', async () => {
    // a pair of its own: the test above has used up this client address's bucket
    const one = await startServer({ loginLimit: 3 });
    const other = await startServer({ loginLimit: 3, dbHandle: one.db, prefix: one.prefix });
    try {
      const email = 'user5@example.com';
      const wrong = (s) => call(s, 'auth.login', { input: { email, password: 'wrong' } });
      assert.equal((await wrong(one)).status, 401);
      assert.equal((await wrong(other)).status, 401);
      assert.equal((await wrong(one)).status, 401);
      // three in all, one of them here: this process's own bucket still has two
      const r = await call(other, 'auth.login', { input: { email, password: DEMO_PASSWORD } });
      assert.equal(r.status, 429);
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
      const ttl = Number(redis('PTTL', `${one.prefix}~rl:login:email:${email}`));
      assert.ok(ttl > 0 && ttl <= 60000, `the bucket expires by itself (PTTL ${ttl})`);
    } finally {
      await other.stop();
      await one.stop();
    }
  });
});

describe('a slow database never holds up a cached request', () => {
  // Every database use waits 1 s (--test-db-delay-ms) and there are two workers: four
  // mutations keep both busy for two seconds. A cached read is answered on the event
  // thread meanwhile, before the first of them.
  let srv, a, b;
  before(async () => {
    srv = await startServer({ extra: ['--test-db-delay-ms', '1000', '--workers', '2'] });
    [a, b] = await Promise.all([login(srv, 'user1@example.com'), login(srv, 'user2@example.com')]);
    assert.equal((await call(srv, 'user.me', { token: a.token })).status, 200); // now cached
  });
  after(async () => { await srv.stop(); });

  it('user.me from the cache while every worker waits on the database', async () => {
    const order = [];
    const t0 = Date.now();
    const slow = [0, 1, 2, 3].map((i) => call(srv, 'user.update', { token: b.token, input: { bio: `slow ${i}` } })
      .then((r) => { order.push(`update ${r.status}`); return Date.now() - t0; }));
    await sleep(100); // both workers have taken one
    const fast = await call(srv, 'user.me', { token: a.token });
    order.push(`user.me ${fast.status}`);
    assert.match(fast.headers.get('cache-status'), /hit/);
    const took = await Promise.all(slow);
    assert.deepEqual(order, ['user.me 200', 'update 200', 'update 200', 'update 200', 'update 200']);
    assert.ok(Math.max(...took) >= 2000, `the updates queued behind the slow database (${took} ms)`);
  });

  it('pages park too: five /dashboard loads right after a change, one load, all answered', async () => {
    assert.equal((await call(srv, 'user.update', { token: a.token, input: { bio: 'pages' } })).status, 200);
    const m0 = (await scrape(srv)).samples;
    const pages = await Promise.all(Array.from({ length: 5 }, async () => {
      const r = await fetch(`${srv.base}/dashboard`, { headers: { cookie: `session=${a.token}` } });
      return [r.status, await r.text()];
    }));
    for (const [status, html] of pages) {
      assert.equal(status, 200);
      assert.match(html, /<a class="account" href="\/dashboard">/);
    }
    const m1 = (await scrape(srv)).samples;
    const d = (name, labels) => value(m1, name, labels) - value(m0, name, labels);
    assert.equal(d('tiercache_cache_misses_total', { namespace: 'dash' }), 1);
    assert.equal(d('tiercache_cache_misses_total', { namespace: 'user' }), 1);
    assert.ok(d('tiercache_http_parked_total') > 0, 'some waited for the first one\'s load without a worker');
  });

  it('a stampede on one key leaves the workers free: its waiters give them back', async () => {
    // A post is put in Redis by a second server on the same prefix, so that reading it on
    // the first one takes a worker but no database. Then ten reads of an invalidated
    // user.me: one loads (1 s), the others wait for it — without a worker each, so the
    // post is served meanwhile by the second of the two workers.
    const T = await startServer({ dbHandle: srv.db, prefix: srv.prefix });
    try {
      const slug = (await call(T, 'blog.list', { input: { limit: 1 } })).body.result.data.items[0].slug;
      assert.equal((await call(T, 'blog.bySlug', { input: { slug } })).status, 200);
      assert.equal((await call(srv, 'user.update', { token: a.token, input: { bio: 'herd' } })).status, 200);
      const order = [];
      const herd = Array.from({ length: 10 }, () => call(srv, 'user.me', { token: a.token })
        .then((r) => order.push(`user.me ${r.status} ${r.body.result?.data?.bio}`)));
      await sleep(200); // the load has begun and the others have reached a worker
      const post = await call(srv, 'blog.bySlug', { input: { slug } });
      order.push(`post ${post.status}`);
      assert.match(post.headers.get('cache-status'), /hit.*detail=l2/);
      await Promise.all(herd);
      assert.deepEqual(order, ['post 200', ...Array(10).fill('user.me 200 herd')]);
    } finally {
      await T.stop();
    }
  });
});

describe('cache turned off', () => {
  let srv;
  before(async () => { srv = await startServer({ cache: false }); });
  after(async () => { await srv.stop(); });
  it('answers from the database, without Cache-Status and without Redis keys', async () => {
    const me = await login(srv);
    const r = await call(srv, 'user.me', { token: me.token });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('cache-status'), null);
    assert.equal(redis('EXISTS', `${srv.prefix}user:${me.user.id}`), '0');
  });
});

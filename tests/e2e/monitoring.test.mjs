// Monitoring end to end (issue 5): /metrics counters move exactly as the traffic says (N hits,
// M misses, an L2 hit on a second instance, one stale read and one refresh, one invalidation per
// mutation, the bus), route labels stay bounded, the format passes promtool, who may read
// /metrics and the feed, the page's access rules, the access log, and `tiercache stats`; and
// the two ways concurrent requests for one value share its load: parking (a query's key) and
// the engine's single-flight (a session).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startServer, call, login, sleep, BIN } from './lib.mjs';
import { scrape, validate, value, promtool, until, logfmt } from './prom.mjs';

const run = promisify(execFile);
const METRICS_TOKEN = 'mtok_e2e_0123456789abcdef';

// The change of every sample of name (with labels) between two scrapes.
const delta = (a, b, name, labels = {}) => value(b.samples, name, labels) - value(a.samples, name, labels);

describe('monitoring: counters, labels, format', () => {
  let A, demo, admin;
  before(async () => {
    A = await startServer({ db: 'sqlite' });
    demo = await login(A);
    admin = await login(A, 'admin@example.com');
  });
  after(async () => { assert.equal(await A.stop(), 0); });

  it('GET /metrics: Prometheus text 0.0.4, HELP and TYPE for every family, promtool is happy', async () => {
    await call(A, 'user.me', { token: demo.token });
    const m = await scrape(A);
    assert.equal(m.status, 200);
    assert.equal(m.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(m.headers.get('cache-control'), 'no-store');
    validate(m.text);
    assert.equal(promtool(m.text), '', 'promtool check metrics');
    for (const fam of ['tiercache_cache_hits_total', 'tiercache_cache_misses_total', 'tiercache_cache_stale_served_total',
      'tiercache_cache_refreshes_total', 'tiercache_cache_load_errors_total', 'tiercache_cache_invalidations_total',
      'tiercache_cache_l1_bytes', 'tiercache_cache_l1_entries', 'tiercache_cache_l1_evictions_total',
      'tiercache_redis_command_duration_seconds', 'tiercache_redis_errors_total', 'tiercache_redis_breaker_open',
      'tiercache_bus_connected', 'tiercache_http_requests_total', 'tiercache_http_request_duration_seconds',
      'tiercache_db_query_duration_seconds', 'tiercache_http_connections', 'tiercache_http_offloaded_total']) {
      assert.ok(m.type.has(fam), `family ${fam}`);
    }
    assert.equal(value(m.samples, 'tiercache_bus_connected'), 1);
    assert.equal(value(m.samples, 'tiercache_redis_breaker_open'), 0);
    assert.ok(value(m.samples, 'tiercache_redis_command_duration_seconds_count') > 0, 'Redis round trips are timed');
    assert.ok(value(m.samples, 'tiercache_db_query_duration_seconds_count', { dialect: 'sqlite', operation: 'query' }) > 0);
    assert.ok(value(m.samples, 'tiercache_cache_l1_bytes') > 0);
  });

  it('N hits and M misses, per namespace and layer, per route and status, by cache outcome', async () => {
    const list = await call(A, 'blog.list', { input: { limit: 3 } });
    const slugs = list.body.result.data.items.map((p) => p.slug);
    assert.equal(slugs.length, 3);
    const b0 = await scrape(A);
    const u = await call(A, 'user.update', { token: demo.token, input: { bio: 'reset' } }); // user.me misses next
    assert.equal(u.status, 200);
    const m0 = await scrape(A);
    const N = 7;
    assert.match((await call(A, 'user.me', { token: demo.token })).headers.get('cache-status'), /fwd=miss/);
    for (let i = 0; i < N; i++) {
      const r = await call(A, 'user.me', { token: demo.token });
      assert.match(r.headers.get('cache-status'), /hit.*detail=l1/);
    }
    for (const slug of slugs) assert.equal((await call(A, 'blog.bySlug', { input: { slug } })).status, 200);
    for (let i = 0; i < 2; i++) for (const slug of slugs) await call(A, 'blog.bySlug', { input: { slug } });
    const m1 = await scrape(A);
    assert.equal(delta(m0, m1, 'tiercache_cache_hits_total', { namespace: 'user', layer: 'l1' }), N);
    assert.equal(delta(m0, m1, 'tiercache_cache_hits_total', { namespace: 'user', layer: 'l2' }), 0);
    assert.equal(delta(m0, m1, 'tiercache_cache_misses_total', { namespace: 'user' }), 1);
    assert.equal(delta(m0, m1, 'tiercache_cache_misses_total', { namespace: 'blog' }), 3);
    assert.equal(delta(m0, m1, 'tiercache_cache_hits_total', { namespace: 'blog', layer: 'l1' }), 6);
    assert.equal(delta(m0, m1, 'tiercache_cache_stale_served_total', { namespace: 'user' }), 0);
    assert.equal(delta(m0, m1, 'tiercache_http_requests_total', { route: 'user.me', code: '200' }), N + 1);
    assert.equal(delta(m0, m1, 'tiercache_http_requests_total', { route: 'blog.bySlug', code: '200' }), 9);
    assert.equal(delta(m0, m1, 'tiercache_http_request_duration_seconds_count', { route: 'user.me' }), N + 1);
    assert.equal(delta(m0, m1, 'tiercache_http_request_duration_by_cache_seconds_count', { cache: 'miss' }), 4);
    assert.equal(delta(m0, m1, 'tiercache_http_request_duration_by_cache_seconds_count', { cache: 'hit' }), N + 6);
    // the mutation in between: one tag invalidation, in the tag's namespace, nothing else
    assert.equal(delta(b0, m0, 'tiercache_cache_invalidations_total', { reason: 'tag' }), 1);
    assert.equal(delta(b0, m0, 'tiercache_cache_invalidations_total', { namespace: 'user', reason: 'tag' }), 1);
    assert.equal(delta(b0, m0, 'tiercache_cache_invalidations_total', { reason: 'key' }), 0);
    assert.equal(delta(b0, m0, 'tiercache_http_requests_total', { route: 'user.update', code: '200' }), 1);
    assert.ok(delta(m0, m1, 'tiercache_db_query_duration_seconds_count', { dialect: 'sqlite', operation: 'query' }) >= 4,
      'each miss ran database queries');
  });

  it('a second instance: L2 hits there, and one mutation is one invalidation, delivered by the bus', async () => {
    const B = await startServer({ dbHandle: A.db, prefix: A.prefix });
    try {
      await call(A, 'user.me', { token: demo.token }); // in L1 and L2 on A
      const a0 = await scrape(A), b0 = await scrape(B);
      const r = await call(B, 'user.me', { token: demo.token });
      assert.match(r.headers.get('cache-status'), /hit.*detail=l2/);
      const b1 = await scrape(B);
      assert.equal(delta(b0, b1, 'tiercache_cache_hits_total', { namespace: 'user', layer: 'l2' }), 1);
      assert.equal(delta(b0, b1, 'tiercache_cache_misses_total', { namespace: 'user' }), 0);

      assert.equal((await call(A, 'user.update', { token: demo.token, input: { name: 'Bus Test' } })).status, 200);
      const a1 = await scrape(A);
      assert.equal(delta(a0, a1, 'tiercache_cache_invalidations_total', { reason: 'tag' }), 1);
      assert.equal(delta(a0, a1, 'tiercache_cache_invalidations_total', { namespace: 'user', reason: 'tag' }), 1);
      const got = await until(async () => delta(b1, await scrape(B), 'tiercache_bus_messages_total') === 1, 5000);
      assert.ok(got, 'B received the invalidation on the bus');
      const again = await call(B, 'user.me', { token: demo.token });
      assert.equal(again.body.result.data.name, 'Bus Test');
      const b2 = await scrape(B);
      assert.equal(delta(b1, b2, 'tiercache_cache_misses_total', { namespace: 'user' }), 1, 'B reloaded once');
      assert.equal(delta(b1, b2, 'tiercache_bus_messages_total'), 1, 'exactly one message');
      // the bus delivery lag: B timed the one invalidation it applied, A its own none
      assert.equal(delta(b0, b2, 'tiercache_bus_lag_seconds_count'), 1, 'one lag on B');
      assert.equal(delta(a0, await scrape(A), 'tiercache_bus_lag_seconds_count'), 0, 'none on A');
      const lagTotal = async () => (await (await fetch(`${B.base}/admin/cache.json`)).json()).summary.bus_lag.total;
      assert.ok(await until(async () => await lagTotal() === 1, 5000), 'the feed shows it (sampled once a second)');
    } finally {
      assert.equal(await B.stop(), 0);
    }
  });

  it('logout: one key invalidation, in the session namespace', async () => {
    const s = await login(A);
    const m0 = await scrape(A);
    assert.equal((await call(A, 'auth.logout', { token: s.token })).status, 200);
    const m1 = await scrape(A);
    assert.equal(delta(m0, m1, 'tiercache_cache_invalidations_total', { namespace: 'session', reason: 'key' }), 1);
    assert.equal(delta(m0, m1, 'tiercache_cache_invalidations_total', { reason: 'key' }), 1);
    assert.equal(delta(m0, m1, 'tiercache_cache_invalidations_total', { reason: 'tag' }), 0);
  });

  it('unknown procedures count as "unknown", unknown paths as "other": the label set stays bounded', async () => {
    const m0 = await scrape(A);
    for (let i = 0; i < 25; i++) {
      const r = await fetch(`${A.base}/trpc/nope${i}x.proc${i}`);
      assert.equal(r.status, 404);
      await r.text();
      await (await fetch(`${A.base}/zz-random-${i}/${i}`)).text();
    }
    const batch = encodeURIComponent(JSON.stringify({ 0: { limit: 1 }, 1: { limit: 2 } }));
    const b = await fetch(`${A.base}/trpc/blog.list,blog.list?batch=1&input=${batch}`);
    assert.equal(b.status, 200);
    await b.text(); // a request is counted once its response has gone out whole
    const m1 = await scrape(A);
    assert.equal(delta(m0, m1, 'tiercache_http_requests_total', { route: 'unknown', code: '404' }), 25);
    assert.equal(delta(m0, m1, 'tiercache_http_requests_total', { route: 'other', code: '404' }), 25);
    assert.equal(delta(m0, m1, 'tiercache_http_requests_total', { route: 'batch' }), 1);
    const routes = new Set(m1.samples.filter((s) => s.labels.route).map((s) => s.labels.route));
    for (const r of routes) assert.doesNotMatch(r, /nope|zz-random/, `route label ${r} leaked from a request`);
    assert.ok(routes.size < 25, `${routes.size} routes`);
  });

  it('hit ratio by route and by tag family: the counters move as the requests say', async () => {
    const u = await login(A, 'user3@example.com');
    const slug = (await call(A, 'blog.list', { input: { limit: 5 } })).body.result.data.items[4].slug;
    // both invalidate: what they read next is loaded once, then hit
    assert.equal((await call(A, 'user.update', { token: u.token, input: { bio: 'ratios' } })).status, 200);
    assert.equal((await call(A, 'blog.update', { token: admin.token, input: { slug, title: `Ratios ${Date.now()}` } })).status, 200);
    const m0 = await scrape(A);
    for (let i = 0; i < 5; i++) assert.equal((await call(A, 'user.me', { token: u.token })).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await call(A, 'dashboard.summary', { token: u.token })).status, 200);
    assert.equal((await fetch(`${A.base}/blog/${slug}`)).status, 200); // the page loads the post
    assert.equal((await call(A, 'blog.bySlug', { input: { slug } })).status, 200); // the API hits it
    assert.equal((await fetch(`${A.base}/blog/${slug}`)).status, 200); // and so does the page
    // no Cache-Status, so no outcome: a write, a static file, an error
    await call(A, 'activity.track', { token: u.token, input: { kind: 'ratio' } });
    await fetch(`${A.base}/healthz`);
    await call(A, 'user.me');
    const m1 = await scrape(A);
    const route = (r, cache) => delta(m0, m1, 'tiercache_route_cache_total', { route: r, cache });
    const fam = (f, cache) => delta(m0, m1, 'tiercache_tag_family_lookups_total', { family: f, cache });
    assert.deepEqual([route('user.me', 'hit'), route('user.me', 'stale'), route('user.me', 'miss')], [4, 0, 1]);
    assert.deepEqual([route('dashboard.summary', 'hit'), route('dashboard.summary', 'miss')], [2, 1]);
    assert.deepEqual([route('/blog/:slug', 'hit'), route('/blog/:slug', 'miss')], [1, 1]);
    assert.deepEqual([route('blog.bySlug', 'hit'), route('blog.bySlug', 'miss')], [1, 0]);
    for (const r of ['activity.track', '/healthz']) assert.equal(route(r, 'hit') + route(r, 'miss') + route(r, 'stale'), 0, r);
    assert.equal(delta(m0, m1, 'tiercache_route_cache_total'), 4 + 1 + 2 + 1 + 1 + 1 + 1, 'nothing else counted');
    // user.me carries user:{id}; dashboard.summary user:, sub: and dash:; a post blog and
    // blog:<slug>, one family: counted once per answer
    assert.deepEqual([fam('user', 'hit'), fam('user', 'miss')], [4 + 2, 1 + 1]);
    assert.deepEqual([fam('sub', 'hit'), fam('sub', 'miss'), fam('dash', 'hit'), fam('dash', 'miss')], [2, 1, 2, 1]);
    assert.deepEqual([fam('blog', 'hit'), fam('blog', 'miss')], [2, 1]);
    assert.equal(delta(m0, m1, 'tiercache_tag_family_lookups_total'), 6 + 2 + 3 + 3 + 3, 'nothing else counted');
    validate(m1.text);
  });

  it('hit ratio labels stay bounded: many users and posts are a few families, never one series each', async () => {
    const users = [];
    for (let i = 6; i <= 25; i++) users.push(await login(A, `user${i}@example.com`));
    for (const u of users) {
      await call(A, 'user.me', { token: u.token });
      await call(A, 'dashboard.summary', { token: u.token });
    }
    for (const p of (await call(A, 'blog.list', { input: { limit: 30 } })).body.result.data.items) {
      await call(A, 'blog.bySlug', { input: { slug: p.slug } });
      await fetch(`${A.base}/blog/${p.slug}`);
    }
    const m = await scrape(A);
    const labels = (name, key) => [...new Set(m.samples.filter((x) => x.name === name).map((x) => x.labels[key]))].sort();
    assert.deepEqual(labels('tiercache_tag_family_lookups_total', 'family'), ['blog', 'blog-list', 'dash', 'sub', 'user'],
      '20 users and 30 posts: the families of the procedure table\'s tags, nothing per user or per post');
    for (const r of labels('tiercache_route_cache_total', 'route')) {
      assert.match(r, /^([a-z]+\.[a-zA-Z]+|batch|\/|\/login|\/dashboard|\/blog\/:slug)$/, `route label ${r}`);
    }
    assert.ok(m.samples.filter((x) => x.name === 'tiercache_tag_family_lookups_total').length <= 5 * 3);
  });

  it('/metrics: loopback peers may read it, a proxied request may not', async () => {
    assert.equal((await scrape(A)).status, 200);
    for (const h of [{ 'x-forwarded-for': '203.0.113.9' }, { forwarded: 'for=203.0.113.9' }, { via: '1.1 proxy' }]) {
      const r = await scrape(A, h);
      assert.equal(r.status, 403, JSON.stringify(h));
      assert.equal(r.headers.get('cache-control'), 'no-store');
    }
    assert.equal((await fetch(`${A.base}/metrics`, { method: 'POST' })).status, 405);
  });

  it('the feed: the last minute, series aligned on t, loopback without a token', async () => {
    await sleep(1200); // at least two samples
    const r = await fetch(`${A.base}/admin/cache.json`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    const f = await r.json();
    const n = f.series.t.length;
    assert.ok(n >= 1);
    for (const k of ['rps', 'hit_ratio', 'l1_bytes', 'stale_ps', 'refresh_ps', 'redis_errors_ps']) assert.equal(f.series[k].length, n, k);
    for (const [ns, arr] of Object.entries(f.series.ns_hit_ratio)) assert.equal(arr.length, n, ns);
    for (const p of ['p50', 'p95', 'p99']) assert.equal(f.series.cached_ms[p].length, n);
    const user = f.summary.namespaces.find((x) => x.name === 'user');
    assert.ok(user && user.totals.l1_hits >= 7, JSON.stringify(user));
    assert.ok(f.summary.redis.configured && f.summary.redis.bus_connected && !f.summary.redis.breaker_open);
    assert.ok(f.summary.l1.bytes > 0 && f.summary.l1.max_bytes === 64 * 1024 * 1024);
    // and the access log is on by default, on stderr
    assert.match(A.log(), /method=GET path=\/trpc\/user.me status=200 duration_ms=[\d.]+ cache=hit cache_detail=l1 bytes=\d+ route=user.me/);
  });

  it('hot keys: the key read most is on the feed, on /metrics (the top 10 only) and in tiercache stats', async () => {
    const me = await call(A, 'user.me', { token: demo.token });
    const key = `user:${me.body.result.data.id}`;
    const countOf = (f) => (f.summary.hot.keys.find((k) => k.name === key) || { count: 0 }).count;
    const feed = async () => (await fetch(`${A.base}/admin/cache.json`)).json();
    const before = countOf(await feed());
    for (let i = 0; i < 300; i++) await call(A, 'user.me', { token: demo.token }); // L1 hits
    const f = await feed();
    assert.ok(countOf(f) - before >= 300, `${key}: ${before} -> ${countOf(f)}`);
    const top = f.summary.hot.keys;
    assert.ok(top.length >= 2 && top.length <= 16);
    // the user and the session it is read with are the two most read keys now
    assert.deepEqual(top.slice(0, 2).map((k) => k.name.split(':')[0]).sort(), ['session', 'user']);
    assert.ok(top[0].share > 0 && top[0].share <= 1);
    assert.ok(f.summary.hot.key_reads >= top[0].count);
    const m = await scrape(A);
    const hot = m.samples.filter((x) => x.name === 'tiercache_cache_hot_key_reads');
    assert.ok(hot.length >= 2 && hot.length <= 10, `${hot.length} series`);
    assert.ok(hot.find((x) => x.labels.key === key).value >= 300);
    assert.ok(m.type.has('tiercache_cache_hot_tag_invalidations'));
    assert.ok(m.type.has('tiercache_cache_hot_skipped_total'));
    const out = await run(BIN, ['stats', '--url', A.base], { timeout: 20000 });
    assert.match(out.stdout, /hot keys\s+(session|user):\S+ \(\d+\.\d %\)/);
  });

  it('tiercache stats: the same numbers in a terminal, once, as JSON, and --watch', async () => {
    const once = await run(BIN, ['stats', '--url', A.base], { timeout: 20000 });
    assert.match(once.stdout, /hit ratio\s+\d+\.\d %/);
    assert.match(once.stdout, /latency\s+cached\s+p50 [\d.]+ ms/);
    assert.match(once.stdout, /\n\s+user\s+\d+\.\d %\s+\d+/);
    assert.match(once.stdout, /redis\s+ok: breaker closed, bus connected/);
    // the hit ratios: the busiest routes and tag families (sampled once a second: wait for one)
    await call(A, 'user.me', { token: demo.token });
    await until(async () => {
      const f = JSON.parse((await run(BIN, ['stats', '--url', A.base, '--json'], { timeout: 20000 })).stdout);
      return (f.summary.routes ?? []).some((r) => r.route === 'user.me' && r.hits > 0);
    }, 5000);
    const ratios = await run(BIN, ['stats', '--url', A.base], { timeout: 20000 });
    assert.match(ratios.stdout, /\n\s+route\s+hit %\s+hits\s+stale\s+misses\n/);
    assert.match(ratios.stdout, /\n\s+user\.me\s+\d+\.\d %\s+\d+\s+\d+\s+\d+\n/);
    assert.match(ratios.stdout, /\n\s+tag family\s+hit %\s+hits\s+stale\s+misses\s+inval\n/);
    assert.match(ratios.stdout, /\n\s+user\s+\d+\.\d %\s+\d+\s+\d+\s+\d+\s+\d+\n/);
    const js = await run(BIN, ['stats', '--url', A.base, '--json'], { timeout: 20000 });
    const sum = JSON.parse(js.stdout).summary;
    assert.ok(sum.namespaces.length > 0);
    for (const [t, key] of [[sum.routes, 'route'], [sum.tag_families, 'family']]) {
      assert.ok(t.length > 0, key);
      for (const r of t) {
        const n = r.hits + r.stale + r.misses;
        assert.ok(r.hit_ratio === null ? n === 0 : Math.abs(r.hit_ratio - (r.hits + r.stale) / n) < 1e-6, `${r[key]}: hit_ratio`);
        assert.ok(r.totals.hits >= r.hits && r.totals.misses >= r.misses, `${r[key]}: totals`);
      }
      for (let i = 1; i < t.length; i++) {
        const w = (r) => r.hits + r.stale + r.misses;
        assert.ok(w(t[i - 1]) >= w(t[i]), `${key}s busiest first`);
      }
    }
    const w = await run(BIN, ['stats', '--url', A.base, '--watch', '--interval', '0.2', '--count', '2'], { timeout: 20000 });
    assert.equal(w.stdout.match(/^tiercache /gm).length, 2, 'two frames');
    await assert.rejects(run(BIN, ['stats', '--url', 'http://127.0.0.1:1'], { timeout: 20000 }), /cannot connect/);
  });
});

describe('monitoring: access rules with a metrics token, the access log, PostgreSQL', () => {
  let D, demo, admin, dir, file;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tc-access-'));
    file = join(dir, 'access.log');
    D = await startServer({ db: 'pg', extra: ['--metrics-token', METRICS_TOKEN, '--access-log', file] });
    demo = await login(D);
    admin = await login(D, 'admin@example.com');
  });
  after(async () => {
    assert.equal(await D.stop(), 0);
    rmSync(dir, { recursive: true, force: true });
  });

  it('/metrics needs the bearer token when one is configured, loopback or not', async () => {
    const none = await scrape(D);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate'), /^Bearer/);
    assert.equal((await scrape(D, { authorization: 'Bearer wrong-token-0123456789' })).status, 401);
    const ok = await scrape(D, { authorization: `Bearer ${METRICS_TOKEN}` });
    assert.equal(ok.status, 200);
    validate(ok.text);
    assert.ok(value(ok.samples, 'tiercache_db_query_duration_seconds_count', { dialect: 'postgresql', operation: 'query' }) > 0,
      'PostgreSQL queries are timed under their dialect');
    assert.equal(value(ok.samples, 'tiercache_db_query_duration_seconds_count', { dialect: 'sqlite' }), 0);
  });

  it('the feed: admin session or the metrics token; 401 anonymous, 403 other users', async () => {
    const feed = (headers) => fetch(`${D.base}/admin/cache.json`, { headers });
    const anon = await feed({});
    assert.equal(anon.status, 401);
    assert.equal(anon.headers.get('cache-control'), 'no-store');
    assert.equal((await feed({ cookie: `session=${demo.token}` })).status, 403);
    assert.equal((await feed({ authorization: `Bearer ${demo.token}` })).status, 403);
    const adm = await feed({ cookie: `session=${admin.token}` });
    assert.equal(adm.status, 200);
    assert.equal(adm.headers.get('cache-control'), 'no-store');
    assert.equal(adm.headers.get('content-type'), 'application/json');
    assert.equal((await adm.json()).version, 1);
    assert.equal((await feed({ authorization: `Bearer ${METRICS_TOKEN}` })).status, 200);
    // the CLI: refused without a token, fine with either kind
    await assert.rejects(run(BIN, ['stats', '--url', D.base], { timeout: 20000 }), /401.*--token/s);
    for (const t of [METRICS_TOKEN, admin.token]) {
      const out = await run(BIN, ['stats', '--url', D.base, '--token', t], { timeout: 20000 });
      assert.match(out.stdout, /database\s+postgresql/);
    }
  });

  it('the page: anonymous to /login, other users 403, admins the page with a strict CSP', async () => {
    const page = (headers) => fetch(`${D.base}/admin/cache`, { headers, redirect: 'manual' });
    const anon = await page({});
    assert.equal(anon.status, 302);
    assert.equal(anon.headers.get('location'), '/login?next=/admin/cache');
    assert.equal((await page({ cookie: `session=${demo.token}` })).status, 403);
    const ok = await page({ cookie: `session=${admin.token}` });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(ok.headers.get('cache-control'), 'no-store');
    assert.match(ok.headers.get('content-security-policy'), /script-src 'self'/);
    assert.doesNotMatch(ok.headers.get('content-security-policy'), /unsafe/);
    const html = await ok.text();
    assert.match(html, /<script src="\/admin\/cache.js" defer><\/script>/);
    assert.doesNotMatch(html, /\son[a-z]+=/i, 'no inline event handlers');
    const js = await fetch(`${D.base}/admin/cache.js`);
    assert.equal(js.status, 200);
    const etag = js.headers.get('etag');
    assert.match(etag, /^"[0-9a-f]{16}"$/);
    assert.doesNotMatch(await js.text(), /innerHTML|insertAdjacentHTML|document\.write/, 'text only, never HTML');
    const again = await fetch(`${D.base}/admin/cache.js`, { headers: { 'if-none-match': `W/${etag}` } });
    assert.equal(again.status, 304);
  });

  it('access log: one logfmt line per request, path without its query, cache status, bytes', async () => {
    const secret = 'secret-input-value';
    const blogLines = () => (existsSync(file) ? readFileSync(file, 'utf8') : '')
      .split('\n').filter((x) => x.includes('path=/trpc/blog.'));
    // A line is written when its response has gone out, so the client can be quicker than
    // the log: wait for each request's line before sending the next, to know their order.
    const requests = [
      () => call(D, 'blog.bySlug', { input: { slug: `${secret}-nope` } }), // 404, input in the query
      () => call(D, 'blog.list', { input: { limit: 2 } }),
      () => call(D, 'blog.list', { input: { limit: 2 } }),
    ];
    for (const [i, send] of requests.entries()) {
      await send();
      assert.ok(await until(() => blogLines().length >= i + 1, 5000), `line ${i + 1} reached the file within 5 s`);
    }
    const lines = blogLines();
    const why = `the access log:\n${readFileSync(file, 'utf8')}`;
    assert.equal(lines.length, 3, `one line per request; ${why}`);
    const all = readFileSync(file, 'utf8');
    assert.ok(!all.includes(secret), 'query strings are never logged');
    assert.ok(!all.includes(METRICS_TOKEN) && !all.includes(admin.token), 'no credentials');
    const [nf, miss, hit] = lines.map(logfmt);
    assert.deepEqual([nf.method, nf.path, nf.status, nf.route], ['GET', '/trpc/blog.bySlug', '404', 'blog.bySlug'], why);
    assert.deepEqual([miss.path, miss.status, miss.cache, hit.cache, hit.cache_detail], ['/trpc/blog.list', '200', 'miss', 'hit', 'l1'], why);
    assert.ok(Number(hit.bytes) > 100 && hit.bytes === miss.bytes);
    assert.match(hit.duration_ms, /^\d+\.\d{3}$/);
    assert.match(hit.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(hit.client, '127.0.0.1');
    for (const l of [nf, miss, hit]) assert.match(l.request_id, /^[0-9a-f]{16}$/, why);
    assert.equal(new Set([nf, miss, hit].map((l) => l.request_id)).size, 3, 'an id per request');
    const m = await scrape(D, { authorization: `Bearer ${METRICS_TOKEN}` });
    assert.equal(value(m.samples, 'tiercache_access_log_dropped_total'), 0);
    assert.ok(value(m.samples, 'tiercache_access_log_lines_total') >= 3);
  });

  it('log rotation: after a rename and SIGHUP, lines go to a new file; none is lost', async () => {
    const rotated = `${file}.1`;
    const slugLines = (f, tag) => (existsSync(f) ? readFileSync(f, 'utf8') : '')
      .split('\n').filter((x) => x.includes(`path=/blog/${tag}`));
    await (await fetch(`${D.base}/blog/rotate-before`)).text();
    assert.ok(await until(() => slugLines(file, 'rotate-before').length === 1, 5000));
    renameSync(file, rotated);
    await (await fetch(`${D.base}/blog/rotate-between`)).text(); // still into the renamed file
    D.child.kill('SIGHUP');
    assert.ok(await until(() => existsSync(file), 5000), 'a new file at the configured path');
    await (await fetch(`${D.base}/blog/rotate-after`)).text();
    assert.ok(await until(() => slugLines(file, 'rotate-after').length === 1, 5000), 'the next line is in the new file');
    assert.equal(slugLines(rotated, 'rotate-between').length + slugLines(file, 'rotate-between').length, 1,
      'the line sent around the rotation is in exactly one of them');
    assert.equal(slugLines(rotated, 'rotate-after').length, 0);
    assert.equal(D.child.exitCode, null, 'SIGHUP does not stop the server');
  });
});

describe('monitoring: a stampede on an invalidated key', () => {
  // Every database use waits 300 ms (--test-db-delay-ms), so 40 reads sent at once all
  // arrive while the first one's load is running. What this proves is request parking
  // (tc_await_flight + tc_http_park): it fails without it, and passes with the engine's
  // single-flight disabled; the session stampede below is the one that needs single-flight.
  let S, demo;
  before(async () => {
    S = await startServer({ db: 'sqlite', extra: ['--test-db-delay-ms', '300'] });
    demo = await login(S);
    assert.equal((await call(S, 'user.me', { token: demo.token })).status, 200);
  });
  after(async () => { assert.equal(await S.stop(), 0); });

  it('40 concurrent reads of it run the loader once; the others wait for it without a worker, then hit', async () => {
    assert.equal((await call(S, 'user.update', { token: demo.token, input: { bio: 'stampede' } })).status, 200);
    const m0 = await scrape(S);
    const all = await Promise.all(Array.from({ length: 40 }, () => call(S, 'user.me', { token: demo.token })));
    const m1 = await scrape(S);
    assert.deepEqual([...new Set(all.map((r) => r.status))], [200]);
    assert.deepEqual([...new Set(all.map((r) => r.body.result.data.bio))], ['stampede']);
    assert.equal(new Set(all.map((r) => r.headers.get('etag'))).size, 1);
    assert.equal(delta(m0, m1, 'tiercache_cache_misses_total', { namespace: 'user' }), 1, 'one load');
    const others = delta(m0, m1, 'tiercache_cache_coalesced_total', { namespace: 'user' }) +
      delta(m0, m1, 'tiercache_cache_hits_total', { namespace: 'user', layer: 'l1' }) +
      delta(m0, m1, 'tiercache_cache_hits_total', { namespace: 'user', layer: 'l2' });
    assert.equal(others, 39, 'the other 39 waited for it or read what it stored');
    // those that reached a worker while it ran gave the worker back (parked) and read
    // what it stored afterwards, instead of holding a worker each to wait for it (only
    // those that raced the leader to the cache wait in it: coalesced)
    assert.ok(delta(m0, m1, 'tiercache_http_parked_total') >= 1, 'some arrived while it ran');
  });
});

describe("monitoring: a stampede on a session nobody has looked up yet: the engine's single-flight", () => {
  // Unlike a query's key, a session lookup does not park (docs/architecture.md): a worker that
  // needs a session another worker is loading waits for it in tc_get_or_load's flight. On
  // PostgreSQL, so that the sessions table can be held locked: the first lookup then stays in
  // the database, for as long as the test says, while every request that needs the same
  // session is on a worker. Only the engine's single-flight keeps those from querying too.
  // N = WORKERS - 1 requests: /metrics is formatted on a worker, and one stays free for it.
  const WORKERS = 5, N = WORKERS - 1;
  let S, token;
  before(async () => {
    S = await startServer({ db: 'pg', extra: ['--workers', String(WORKERS)] });
    token = (await login(S, 'user3@example.com')).token; // the session is in the database, not cached
  });
  after(async () => { assert.equal(await S.stop(), 0); });

  const psql = (sql) => execFileSync('psql', ['-X', '-qAt', '-d', S.db.url, '-c', sql]).toString().trim();
  // backends of this database waiting for a lock in a statement that reads the sessions table
  const waiting = () => Number(psql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() " +
    "AND wait_event_type = 'Lock' AND query LIKE '%FROM sessions %'"));

  it(`${N} concurrent requests with one new session: one session query, the other workers wait in its flight`, async () => {
    const holder = spawn('psql', ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', S.db.url], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    holder.stdout.on('data', (d) => { out += d; });
    holder.stderr.on('data', (d) => { out += d; });
    const exited = new Promise((r) => holder.once('exit', r));
    let all, m0;
    try {
      holder.stdin.write("BEGIN;\nLOCK TABLE sessions IN ACCESS EXCLUSIVE MODE;\nSELECT 'locked';\n");
      assert.ok(await until(() => out.includes('locked'), 10000), `psql did not lock the sessions table: ${out}`);
      m0 = await scrape(S);
      all = Promise.all(Array.from({ length: N }, () => call(S, 'user.me', { token })));
      // Every request is on a worker (in flight besides the scrape itself, none queued: none can
      // be answered without the session) and the first lookup is in the database. Bounded: the
      // server gives up on both after 5 s (statement_timeout, wait_timeout_ms).
      const onWorkers = async () => {
        const sm = (await scrape(S)).samples;
        return value(sm, 'tiercache_http_in_flight_requests') === N + 1 && value(sm, 'tiercache_http_queued_requests') === 0;
      };
      assert.ok(await until(async () => (await onWorkers()) && waiting() >= 1, 4000),
        'every request reached a worker while the first session lookup was in the database');
      assert.equal(waiting(), 1, 'one session query reached the database while every request needed the session');
    } finally {
      holder.stdin.end('COMMIT;\n');
      await exited;
    }
    const rs = await all;
    const m1 = await scrape(S);
    assert.deepEqual([...new Set(rs.map((r) => r.status))], [200]);
    assert.deepEqual([...new Set(rs.map((r) => r.body.result.data.email))], ['user3@example.com']);
    assert.equal(delta(m0, m1, 'tiercache_cache_misses_total', { namespace: 'session' }), 1, 'one session load');
    assert.ok(delta(m0, m1, 'tiercache_cache_coalesced_total', { namespace: 'session' }) >= 1, 'the others waited in its flight');
  });
});

describe('monitoring: a stale read, the access log switched off', () => {
  let C, demo;
  before(async () => {
    C = await startServer({ db: 'sqlite', extra: ['--test-fresh-ms', '1000', '--access-log', 'off'] });
    demo = await login(C);
  });
  after(async () => { assert.equal(await C.stop(), 0); });

  it('past its fresh time: served stale at once, exactly one background refresh', async () => {
    const m0 = await scrape(C);
    const first = await call(C, 'dashboard.summary', { token: demo.token });
    assert.equal(first.status, 200);
    assert.match(first.headers.get('cache-status'), /fwd=miss/);
    await sleep(1300);
    const m1 = await scrape(C);
    const stale = await call(C, 'dashboard.summary', { token: demo.token });
    assert.equal(stale.status, 200);
    assert.match(stale.headers.get('cache-status'), /hit.*(ttl=-|stale)/);
    const refreshed = await until(async () => {
      const m = await scrape(C);
      return delta(m1, m, 'tiercache_cache_refreshes_total', { namespace: 'dash' }) >= 1 ? m : null;
    }, 10000);
    assert.ok(refreshed, 'a background refresh ran');
    await sleep(300);
    const m2 = await scrape(C);
    assert.equal(delta(m0, m2, 'tiercache_cache_misses_total', { namespace: 'dash' }), 1);
    assert.equal(delta(m1, m2, 'tiercache_cache_stale_served_total', { namespace: 'dash' }), 1);
    assert.equal(delta(m1, m2, 'tiercache_cache_hits_total', { namespace: 'dash', layer: 'l1' }), 1);
    assert.equal(delta(m1, m2, 'tiercache_cache_refreshes_total', { namespace: 'dash' }), 1, 'exactly one refresh');
    assert.equal(delta(m1, m2, 'tiercache_cache_misses_total', { namespace: 'dash' }), 0);
    assert.equal(delta(m1, m2, 'tiercache_http_request_duration_by_cache_seconds_count', { cache: 'stale' }), 1);
    const fresh = await call(C, 'dashboard.summary', { token: demo.token });
    assert.match(fresh.headers.get('cache-status'), /hit; ttl=\d/, 'the refreshed value is fresh');
  });

  it('--access-log off: no request lines on stderr; the default server logs them', async () => {
    await call(C, 'blog.list', { input: { limit: 1 } });
    await sleep(300);
    assert.doesNotMatch(C.log(), /method=GET path=/);
    const m = await scrape(C);
    assert.equal(value(m.samples, 'tiercache_access_log_lines_total'), 0);
  });
});

// Hostile clients against a shared Redis (issue 10): what anonymous input can make the
// server store. A Redis that also holds a job queue runs with `noeviction`, so anything
// an anonymous client can make it store must be bounded by the server itself.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startServer, call, login, redis, postBilling, subState } from './lib.mjs';
import { scrape, value } from './prom.mjs';

const keysUnder = (prefix, pattern = '*') =>
  redis('--scan', '--pattern', `${prefix}${pattern}`).split('\n').filter(Boolean);

describe('hostile clients: made-up session tokens', () => {
  let S;
  before(async () => { S = await startServer({ db: 'sqlite' }); });
  after(async () => { assert.equal(await S.stop(), 0); });

  it('cost Redis nothing, and the database one lookup a minute per token', async () => {
    const demo = (await login(S)).token;
    assert.equal((await call(S, 'user.me', { token: demo })).status, 200); // a real session is cached
    const sessionKeys = () => keysUnder(S.prefix, 'session:*').length;
    const before = sessionKeys();
    assert.equal(before, 1);
    const misses = async () =>
      value((await scrape(S)).samples, 'tiercache_cache_misses_total', { namespace: 'session' }) ?? 0;
    const m0 = await misses();
    const tokens = Array.from({ length: 20 }, () => randomBytes(32).toString('base64url'));
    for (const t of tokens) {
      const r = await call(S, 'user.me', { token: t });
      assert.equal(r.status, 401, 'a token that matches nothing is anonymous');
    }
    assert.equal(await misses() - m0, 20, 'each made-up token looked up once');
    for (const t of tokens) {
      assert.equal((await call(S, 'user.me', { token: t })).status, 401);
      assert.equal((await call(S, 'user.me', { headers: { cookie: `session=${t}` } })).status, 401);
    }
    assert.equal(await misses() - m0, 20, 'and not again within a minute');
    assert.equal(sessionKeys(), before, 'no Redis key for any of them');
    assert.equal((await call(S, 'user.me', { token: demo })).status, 200);
  });
});

describe('hostile clients: blog.list cursors', () => {
  let S;
  before(async () => { S = await startServer({ db: 'sqlite' }); });
  after(async () => { assert.equal(await S.stop(), 0); });
  const list = (input) => call(S, 'blog.list', { input });

  it('accepts exactly [0-9]{1,19}.[0-9]{1,19} within range, no leading zero; anything else is 400', async () => {
    for (const cursor of [' 1.2', '1.2 ', '1.2\n', '\r\n1.2', '+1.2', '1.+2', '-1.2', '1.-2', '1..2',
      '1.2.3', '1', '.2', '1.', '', '0x1.2', '1.2x', '１.2', '9223372036854775808.1',
      '1.9223372036854775808', '12345678901234567890.1', '1e3.2', '01.2', '1.02']) {
      const r = await list({ cursor });
      assert.equal(r.status, 400, JSON.stringify(cursor));
      assert.match(r.body.error.message, /cursor/, JSON.stringify(cursor));
    }
  });

  it('a cursor must name a published post: made-up ones are 400 and store nothing', async () => {
    const first = await list({ limit: 3 });
    assert.equal(first.status, 200);
    const real = first.body.result.data.nextCursor;
    assert.match(real, /^\d+\.\d+$/);
    const pages = () => keysUnder(S.prefix, 'blog:list:*').length;
    const before = pages();
    const [pub, id] = real.split('.').map(Number);
    for (let i = 1; i <= 40; i++) {
      const r = await list({ cursor: `${pub + i}.${id}`, limit: 3 });
      assert.equal(r.status, 400, `made-up cursor ${pub + i}.${id}`);
    }
    for (const other of [`0${real}`, `${pub}.0${id}`, `000${pub}.00${id}`]) { // fuzz/cursor.c
      const r = await list({ cursor: other, limit: 3 });
      assert.equal(r.status, 400, `another spelling of a real cursor: ${other}`);
    }
    const madeUp = await list({ cursor: '9223372036854775807.9223372036854775807' });
    assert.equal(madeUp.status, 400);
    assert.equal(pages(), before, 'no page stored for a made-up cursor');
    const next = await list({ cursor: real, limit: 3 });
    assert.equal(next.status, 200, 'the cursor blog.list returned still works');
    assert.equal(pages(), before + 1);
  });
});

describe('hostile billing events: "created" is bounded by the signature\'s time', () => {
  // Events of a subscription are ordered by "created" (an older one never overwrites a
  // newer state). One signed with a "created" far in the future would freeze that
  // subscription against every real event to come, so billing.c refuses it.
  let S;
  before(async () => { S = await startServer({ db: 'sqlite' }); });
  after(async () => { assert.equal(await S.stop(), 0); });

  it('refuses a "created" later than the signature allows or more than a week old, and applies nothing', async () => {
    const who = await login(S, 'user3@example.com');
    const uid = who.user.id;
    const sub = async () => subState((await call(S, 'subscription.get', { token: who.token })).body.result.data);
    const was = await sub();
    const end = Date.now() + 30 * 86400000;
    const ev = (id, created) => ({ id, type: 'subscription.updated', created,
      data: { userId: uid, planId: was.plan === 'team' ? 'pro' : 'team', status: 'active', currentPeriodEnd: end, seats: 3 } });
    const now = Math.floor(Date.now() / 1000);
    for (const [created, why] of [[4102444800, /later than the signature/], // 2100-01-01
      [Number.MAX_SAFE_INTEGER, /created|later/], [now + 3600, /later than the signature/],
      [now - 8 * 86400, /more than a week/]]) {
      const r = await postBilling(S, ev(`evt_bounds_${created}`, created));
      assert.equal(r.status, 400, `created ${created}`);
      assert.match((await r.json()).error, why, `created ${created}`);
    }
    const big = '{"id":"evt_bounds_max","type":"subscription.updated","created":9223372036854775807,' +
      `"data":{"userId":${uid},"planId":"pro","status":"active","currentPeriodEnd":${end}}}`;
    assert.equal((await postBilling(S, big)).status, 400, 'INT64_MAX seconds');
    assert.deepEqual(await sub(), was, 'nothing refused was applied');
    const ok = await postBilling(S, ev('evt_bounds_yesterday', now - 86400));
    assert.equal(ok.status, 200, 'a day-old event (a provider\'s retry) is applied');
    assert.notDeepEqual(await sub(), was);
  });
});

// Hostile clients against a shared Redis (issue 10): what anonymous input can make the
// server store. A Redis that also holds a job queue runs with `noeviction`, so anything
// an anonymous client can make it store must be bounded by the server itself.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startServer, call, login, redis } from './lib.mjs';
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

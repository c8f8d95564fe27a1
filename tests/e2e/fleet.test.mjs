// A fleet stays correct (DESIGN.md guarantees 3, 6, 12): three instances on one PostgreSQL
// and one Redis, the read-your-writes checker of fleet.mjs, with no fault and with each
// fault a deployment meets. Zero stale reads in every case; errors counted.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRedis, startFleet, checkReadYourWrites, stopAll } from './fleet.mjs';

after(stopAll);

function report(name, s) {
  console.log(`${name}: ${s.reads} reads (${s.blogReads} anonymous), ${s.stale} stale ` +
    `(max ${s.maxBehind} behind), ${s.readErrors} read errors, ${s.writes} writes, ` +
    `${s.writeErrors} write errors`);
  for (const x of s.samples) console.log(`  stale: ${x}`);
  for (const x of s.errorSamples) console.log(`  error: ${x}`);
}

async function scenario(name, fault, opts = {}) {
  const redis = await startRedis();
  const fleet = await startFleet({ redis: `127.0.0.1:${redis.port}` });
  try {
    const s = await checkReadYourWrites(fleet, { fault: fault && (() => fault(redis)), ...opts });
    report(name, s);
    assert.ok(s.reads > 200, `too few reads to tell: ${s.reads}`);
    assert.ok(s.writes > 20, `too few writes to tell: ${s.writes}`);
    return s;
  } finally {
    await fleet.stop();
    await redis.stop();
  }
}

test('no fault: zero stale reads across three instances', async () => {
  const s = await scenario('no fault', null);
  assert.equal(s.stale, 0);
  assert.equal(s.readErrors + s.writeErrors, 0);
});

test('Redis stalled for 2 s: zero stale reads, zero errors', async () => {
  const s = await scenario('stall', async (r) => {
    r.pause();
    await new Promise((res) => setTimeout(res, 2000));
    r.resume();
  }, { durationMs: 5000 });
  assert.equal(s.stale, 0);
});

test('Redis killed and restarted empty: zero stale reads', async () => {
  const s = await scenario('kill', async (r) => {
    await r.kill();
    await new Promise((res) => setTimeout(res, 1000));
    await r.start();
  }, { durationMs: 5000 });
  assert.equal(s.stale, 0);
});

test('Redis restored from an older snapshot: zero stale reads', async () => {
  const s = await scenario('snapshot', async (r) => {
    r.snapshot();
    await new Promise((res) => setTimeout(res, 1000));
    await r.restoreSnapshot();
  }, { durationMs: 5000, faultAtMs: 1000 });
  assert.equal(s.stale, 0);
});

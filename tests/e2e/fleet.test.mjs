// A fleet stays correct (DESIGN.md guarantees 3, 6, 12): three instances on one PostgreSQL
// and one Redis, the read-your-writes checker of fleet.mjs, with no fault and with each
// fault a deployment meets. Zero stale reads in every case; errors counted.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRedis, startSentinels, sentinelsReady, sentinelMaster, startFleet, checkReadYourWrites,
  stopAll } from './fleet.mjs';
import { sleep } from './lib.mjs';

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

// The hard failover: the replica promoted has missed the last writes (it was frozen while
// they were made, then the master died), so it holds older records with the older tag
// counters that make them look valid.
test('Sentinel failover to a replica that missed the last writes, under load: zero stale reads; writes succeed again soon after the promotion', async () => {
  const master = await startRedis();
  const replica = await startRedis({ replicaof: master.port });
  const sentinels = await startSentinels(master.port);
  let fleet;
  try {
    await replica.synced();
    await sentinelsReady(sentinels);
    fleet = await startFleet({
      redis: `sentinel://${sentinels.map((x) => `127.0.0.1:${x.port}`).join(',')}/tcmaster`,
    });
    const s = await checkReadYourWrites(fleet, {
      durationMs: 9000,
      faultAtMs: 1500,
      fault: async () => {
        replica.pause(); // what the master takes from now on never reaches it
        await sleep(600); // under the sentinels' down-after (1 s): still a replica to promote
        const killedAt = Date.now();
        await master.kill();
        replica.resume();
        // the promotion: the sentinels name the replica
        while (sentinelMaster(sentinels[0]) !== `127.0.0.1:${replica.port}` && Date.now() - killedAt < 20000) {
          await sleep(20);
        }
        return { promotedAfterMs: Date.now() - killedAt };
      },
    });
    report('sentinel failover', s);
    const promoted = s.faultAt + s.faultInfo.promotedAfterMs;
    const after = s.writeLog.filter((w) => w.at > promoted);
    const firstOk = after.find((w) => w.ok);
    const slowest = Math.max(...s.writeLog.map((w) => w.ms));
    console.log(`  master killed at ${s.faultAt} ms, promoted ${s.faultInfo.promotedAfterMs} ms later; ` +
      `first write answered 200 after the promotion: +${firstOk ? firstOk.at - promoted : 'none'} ms; ` +
      `slowest write ${slowest} ms`);
    assert.equal(s.stale, 0);
    assert.equal(s.readErrors, 0, 'reads are answered throughout (L1, the database)');
    assert.ok(firstOk, 'writes succeed again after the promotion');
    assert.ok(s.reads > 200 && s.writes > 20);
  } finally {
    if (fleet) await fleet.stop();
    for (const x of sentinels) await x.stop();
    await replica.stop();
    await master.stop();
  }
});

// A fleet stays correct (DESIGN.md guarantees 3, 6, 12): three instances on one PostgreSQL
// and one Redis, the read-your-writes checker of fleet.mjs, with no fault and with each
// fault a deployment meets. Zero stale reads in every case; errors counted.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRedis, startSentinels, sentinelsReady, sentinelMaster, startFleet, checkReadYourWrites,
  stopAll, session } from './fleet.mjs';
import { sleep } from './lib.mjs';
import { spawn, execFileSync } from 'node:child_process';

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
        return { killedAt, promotedAt: Date.now() };
      },
    });
    report('sentinel failover', s);
    const promoted = s.faultInfo.promotedAt - s.t0; // as writeLog counts: ms since the start
    const after = s.writeLog.filter((w) => w.at > promoted);
    const firstOk = after.find((w) => w.ok);
    const slowest = Math.max(...s.writeLog.map((w) => w.ms));
    console.log(`  master killed at ${s.faultInfo.killedAt - s.t0} ms, promoted ` +
      `${s.faultInfo.promotedAt - s.faultInfo.killedAt} ms later; ` +
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

// Writes and a Redis that cannot take their invalidations (the server's side of the
// guarantee): refused before they are made when Redis is unreachable; not answered as done
// when Redis fails after the database took them.
test('a write while Redis is down is refused before it is made: 503, Retry-After, nothing changed', async () => {
  const redis = await startRedis();
  const fleet = await startFleet({ n: 1, redis: `127.0.0.1:${redis.port}`, extra: ['--invalidate-wait-ms', '300'] });
  try {
    const [A] = fleet.instances;
    const u = await session(A, 'user1@example.com');
    const update = (bio) => fetch(`${A.base}/trpc/user.update`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` },
      body: JSON.stringify({ bio }) });
    assert.equal((await update('before')).status, 200);
    await redis.kill();
    const r = await update('during');
    const body = await r.json();
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '1');
    assert.match(body.error.message, /nothing was changed/);
    await redis.start();
    const me = await fetch(`${A.base}/trpc/user.me`, { headers: { authorization: `Bearer ${u.token}` } });
    assert.equal((await me.json()).result.data.bio, 'before');
  } finally {
    await fleet.stop();
    await redis.stop();
  }
});

test('a write whose invalidation Redis does not take is answered 503, not done; it is visible everywhere once Redis answers', async () => {
  const redis = await startRedis();
  const fleet = await startFleet({ n: 2, redis: `127.0.0.1:${redis.port}`, extra: ['--invalidate-wait-ms', '300'] });
  const holder = spawn('psql', ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', fleet.db.url], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  holder.stdout.on('data', (d) => { out += d; });
  holder.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((res) => holder.once('exit', res));
  try {
    const [A, B] = fleet.instances;
    const u = await session(A, 'user1@example.com');
    const auth = { authorization: `Bearer ${u.token}` };
    const bio = async (srv) => (await (await fetch(`${srv.base}/trpc/user.me`, { headers: auth })).json()).result.data.bio;
    const before = await bio(B); // B holds it in L1
    assert.equal(await bio(B), before);
    // The database holds the write back (a table lock) until Redis has stopped answering.
    holder.stdin.write("BEGIN;\nLOCK TABLE users IN ACCESS EXCLUSIVE MODE;\nSELECT 'locked';\n");
    for (let i = 0; i < 200 && !out.includes('locked'); i++) await sleep(50);
    assert.ok(out.includes('locked'), `psql did not lock users: ${out}`);
    const write = fetch(`${A.base}/trpc/user.update`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ bio: 'unconfirmed' }) });
    const waiting = () => execFileSync('psql', ['-X', '-qAt', '-d', fleet.db.url, '-c',
      "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE users%'"])
      .toString().trim();
    for (let i = 0; i < 200 && waiting() !== '1'; i++) await sleep(50); // tc_ready passed: it is in the database
    assert.equal(waiting(), '1');
    redis.pause();
    holder.stdin.end('COMMIT;\n');
    await exited;
    const r = await write;
    const body = await r.json();
    assert.equal(r.status, 503);
    assert.match(body.error.message, /saved, but/);
    redis.resume();
    // Once Redis answers, the invalidation is replayed: B serves the new value, never again the old.
    let seen = await bio(B);
    for (let i = 0; i < 200 && seen !== 'unconfirmed'; i++) { await sleep(25); seen = await bio(B); }
    assert.equal(seen, 'unconfirmed');
  } finally {
    if (holder.exitCode === null) { holder.stdin.end('ROLLBACK;\n'); await exited; }
    redis.resume();
    await fleet.stop();
    await redis.stop();
  }
});

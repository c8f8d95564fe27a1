// The server on a Redis Cluster (--redis cluster://HOST:PORT,... and TIERCACHE_REDIS), on the
// private cluster scripts/test.sh starts (TC_CLUSTER_NODES: 3 masters, 3 replicas).
// Proves: two instances on one database and the cluster share the L2 (what one loaded, the
// other is served from L2) and a write on one is read at once on the other (its L1 entry
// dropped over the sharded bus), and /metrics counts the cluster's work; the environment
// variable works as the flag does; a malformed cluster address, or a database other than 0,
// stops the server at start with a message that says why. And e2e/fleet's read-your-writes
// checker (fleet.mjs) over three instances on the cluster, with no fault: zero stale reads,
// zero errors.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { BIN, startServer, login, call } from './lib.mjs';
import { startFleet, checkReadYourWrites, stopAll } from './fleet.mjs';

const NODES = process.env.TC_CLUSTER_NODES;

describe('the server on a Redis Cluster', { skip: NODES ? false : 'TC_CLUSTER_NODES is not set (run through scripts/test.sh)' }, () => {
  let a, b;
  before(async () => {
    a = await startServer({ redis: `cluster://${NODES}` });
    // the same database and prefix; the cluster from the environment, a node of it is enough
    b = await startServer({ dbHandle: a.db, prefix: a.prefix, redis: `cluster://${NODES.split(',')[1]}` });
  });
  after(async () => {
    assert.equal(await b?.stop(), 0);
    assert.equal(await a?.stop(), 0); // and drops the database
  });

  it('shares the L2 between instances, and a write on one is read at once on the other', async () => {
    const u = await login(a, 'demo@example.com');
    const first = await call(a, 'user.me', { token: u.token });
    assert.equal(first.status, 200);
    assert.match(first.headers.get('cache-status'), /fwd=miss/);
    const other = await call(b, 'user.me', { token: u.token });
    assert.equal(other.status, 200);
    assert.match(other.headers.get('cache-status'), /hit.*detail=l2/, 'B is served what A loaded, from the cluster');
    assert.match((await call(b, 'user.me', { token: u.token })).headers.get('cache-status'), /hit.*detail=l1/);
    for (let i = 0; i < 5; i++) {
      const name = `Cluster ${i}`;
      assert.equal((await call(a, 'user.update', { token: u.token, input: { name } })).status, 200);
      const r = await call(b, 'user.me', { token: u.token });
      assert.equal(r.status, 200);
      assert.equal(r.body.result.data.name, name, 'B reads the write A returned from');
      assert.match(r.headers.get('cache-status'), /fwd=miss/);
    }
    // /metrics counts the cluster's work: slot maps read, no slot without a master
    const text = await (await fetch(`${b.base}/metrics`)).text();
    const value = (name) => Number((text.match(new RegExp(`^${name} (\\d+)$`, 'm')) ?? [])[1]);
    assert.ok(value('tiercache_redis_cluster_slot_map_reads_total') >= 1, 'a slot map was read');
    assert.equal(value('tiercache_redis_cluster_down_total'), 0);
  });

  it('refuses a malformed cluster address, or another database, at start', () => {
    const node = NODES.split(',')[0];
    const cases = [
      [['--redis', 'cluster://'], /expected HOST:PORT.*cluster:\/\/HOST:PORT/],
      [['--redis', `cluster://${node},`], /a cluster node.*expected HOST:PORT/],
      [['--redis', `cluster://${node}/x`], /expected HOST:PORT.*cluster:\/\//],
      [['--redis', 'cluster://127.0.0.1:0'], /a cluster node's port cannot be 0/],
      [['--redis', `cluster://${node}`, '--redis-db', '3'], /Redis Cluster has no database 3/],
      [[], /a cluster node.*expected HOST:PORT/, { TIERCACHE_REDIS: 'cluster://nohost' }],
    ];
    for (const [args, want, env] of cases) {
      const r = spawnSync(BIN, ['serve', '--listen', '127.0.0.1:0', '--db', 'sqlite::memory:', ...args],
        { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 10000 });
      assert.notEqual(r.status, 0, `${args.join(' ')} ${JSON.stringify(env ?? {})}: refused`);
      assert.match(r.stderr, want, `${args.join(' ')}: ${r.stderr}`);
    }
  });
});

describe('a fleet on a Redis Cluster', { skip: NODES ? false : 'TC_CLUSTER_NODES is not set (run through scripts/test.sh)' }, () => {
  after(stopAll);
  it('no fault: zero stale reads across three instances', async () => {
    const fleet = await startFleet({ redis: `cluster://${NODES}` });
    try {
      const s = await checkReadYourWrites(fleet);
      console.log(`no fault, cluster: ${s.reads} reads (${s.blogReads} anonymous), ${s.stale} stale, ` +
        `${s.readErrors} read errors, ${s.writes} writes, ${s.writeErrors} write errors`);
      for (const x of [...s.samples, ...s.errorSamples]) console.log(`  ${x}`);
      assert.ok(s.reads > 200, `too few reads to tell: ${s.reads}`);
      assert.ok(s.writes > 20, `too few writes to tell: ${s.writes}`);
      assert.equal(s.stale, 0);
      assert.equal(s.readErrors + s.writeErrors, 0);
    } finally {
      await fleet.stop();
    }
  });
});

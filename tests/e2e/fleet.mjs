// Fleet harness for the end-to-end tests: private Redis servers (a master, replicas,
// sentinels) that a test may pause, kill, restart or restore from an older snapshot, several
// tiercache instances on one PostgreSQL database and one Redis, and a read-your-writes
// checker that spreads reads over every instance while writers change what they read.
//
// Every process is started under `setpriv --pdeathsig KILL` (it dies with this test process
// even if the test is killed) and registered, so `stopAll()` stops every one of them, also
// when a test fails. Nothing here talks to anything but loopback.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, copyFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startServer, freshDb, call, DEMO_PASSWORD, sleep } from './lib.mjs';

const children = new Set();
const running = (c) => c && c.exitCode === null && c.signalCode === null;

function pdeath(cmd, args) {
  return spawn('setpriv', ['--pdeathsig', 'KILL', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

export function redisCli(port, ...args) {
  return execFileSync('redis-cli', ['-p', String(port), '--raw', ...args], { timeout: 10000 })
    .toString().trim();
}

async function waitFor(what, fn, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (e.fatal) throw e; /* else: not yet */
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// A private redis-server. opts: { port, replicaof: port, persist: true (RDB file in dir) }.
export async function startRedis(opts = {}) {
  // A port free a moment ago may be taken before Redis binds it: then another is tried.
  for (let attempt = 1; ; attempt++) {
    try {
      return await redisOn(opts, opts.port ?? await freePort());
    } catch (e) {
      if (opts.port || attempt === 5 || !/exited/.test(e.message)) throw e;
    }
  }
}

async function redisOn(opts, port) {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'tc-fleet-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--dbfilename', 'dump.rdb', '--appendonly', 'no', '--daemonize', 'no',
    '--save', '', '--logfile', join(dir, 'redis.log')];
  if (opts.replicaof) args.push('--replicaof', '127.0.0.1', String(opts.replicaof));
  const r = {
    port, dir, child: null,
    cli: (...a) => redisCli(port, ...a),
    async start() {
      const child = pdeath('redis-server', args);
      r.child = child;
      children.add(child);
      await waitFor(`redis on ${port}`, () => {
        if (!running(child)) {
          children.delete(child);
          if (!opts.dir) rmSync(dir, { recursive: true, force: true });
          throw Object.assign(new Error(`redis on ${port} exited`), { fatal: true });
        }
        return redisCli(port, 'info', 'server').includes(`process_id:${child.pid}`);
      });
      return r;
    },
    // SIGKILL: no goodbye to clients, nothing saved.
    async kill() {
      if (!running(r.child)) return;
      const exited = new Promise((res) => r.child.once('exit', res));
      r.child.kill('SIGKILL');
      await exited;
      children.delete(r.child);
    },
    pause() { r.child.kill('SIGSTOP'); },
    resume() { r.child.kill('SIGCONT'); },
    // A synchronous SAVE now, kept aside as the snapshot restoreSnapshot() brings back.
    snapshot() {
      r.cli('SAVE');
      copyFileSync(join(dir, 'dump.rdb'), join(dir, 'snapshot.rdb'));
    },
    // Killed, then started again from the snapshot: the older values and counters return.
    async restoreSnapshot() {
      await r.kill();
      if (!existsSync(join(dir, 'snapshot.rdb'))) throw new Error('no snapshot taken');
      copyFileSync(join(dir, 'snapshot.rdb'), join(dir, 'dump.rdb'));
      return r.start();
    },
    // master_link_status:up on a replica: it holds the master's data
    async synced() {
      await waitFor(`replica ${port} in sync`, () => /master_link_status:up/.test(r.cli('info', 'replication')));
    },
    async stop() {
      if (running(r.child)) {
        try { r.child.kill('SIGCONT'); } catch { /* gone */ }
        await r.kill();
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return r.start();
}

// n sentinels watching masterPort as `name`; quorum 2; a master is down after 1 s.
export async function startSentinels(masterPort, { n = 3, name = 'tcmaster', downMs = 1000 } = {}) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const dir = mkdtempSync(join(tmpdir(), 'tc-fleet-sentinel-'));
    const port = await freePort();
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(conf, [
      `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `logfile ${join(dir, 'sentinel.log')}`,
      `sentinel monitor ${name} 127.0.0.1 ${masterPort} 2`,
      `sentinel down-after-milliseconds ${name} ${downMs}`,
      `sentinel failover-timeout ${name} 10000`,
      `sentinel parallel-syncs ${name} 1`, ''].join('\n'));
    const child = pdeath('redis-server', [conf, '--sentinel']);
    children.add(child);
    await waitFor(`sentinel on ${port}`, () => redisCli(port, 'ping') === 'PONG');
    out.push({
      port, dir, child,
      cli: (...a) => redisCli(port, ...a),
      async stop() {
        if (running(child)) {
          const exited = new Promise((res) => child.once('exit', res));
          child.kill('SIGKILL');
          await exited;
        }
        children.delete(child);
        rmSync(dir, { recursive: true, force: true });
      },
    });
  }
  return out;
}

// Waits until every sentinel knows the master's replicas (n of them) and the other sentinels:
// before that a failover cannot happen.
export async function sentinelsReady(sentinels, { name = 'tcmaster', replicas = 1 } = {}) {
  for (const s of sentinels) {
    await waitFor(`sentinel ${s.port} ready`, () => {
      const info = s.cli('sentinel', 'master', name).split('\n');
      const field = (k) => Number(info[info.indexOf(k) + 1]);
      return field('num-slaves') >= replicas && field('num-other-sentinels') >= sentinels.length - 1;
    }, 30000);
  }
}

// The master's address the sentinels give now, "host:port".
export function sentinelMaster(sentinel, name = 'tcmaster') {
  return sentinel.cli('sentinel', 'get-master-addr-by-name', name).split('\n').join(':');
}

// n tiercache instances on one PostgreSQL database and one Redis (opts.redis: what --redis
// gets), sharing a prefix, as a load balancer would see them.
export async function startFleet({ n = 3, redis, users = 20, extra = [] } = {}) {
  const db = freshDb('pg');
  execFileSync(process.env.TIERCACHE_BIN, ['seed', '--db', db.url, '--seed-users', String(users),
    '--seed-activity', '5', '--fast-password-hash'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = `fleet${process.pid}x${Date.now() % 100000}:`;
  const instances = [];
  try {
    for (let i = 0; i < n; i++) {
      instances.push(await startServer({ dbHandle: db, redis, prefix, extra, leaseMs: 250 }));
    }
  } catch (e) {
    for (const s of instances) await s.stop({ keepDb: true });
    db.drop();
    throw e;
  }
  return {
    instances, db, prefix,
    async stop() {
      for (const s of instances) await s.stop({ keepDb: true });
      db.drop();
    },
  };
}

export async function stopAll() {
  for (const c of children) {
    if (running(c)) {
      try { c.kill('SIGCONT'); } catch { /* gone */ }
      c.kill('SIGKILL');
    }
  }
  children.clear();
}
process.on('exit', () => { for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ } });

// Signs in on instance 0: { token, cookie } of the session.
export async function session(srv, email, password = DEMO_PASSWORD) {
  const r = await fetch(`${srv.base}/trpc/auth.login`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  const body = await r.json();
  if (r.status !== 200) throw new Error(`login ${email}: ${r.status} ${JSON.stringify(body)}`);
  const cookie = (r.headers.get('set-cookie') ?? '').split(';')[0];
  return { token: body.result.data.token, cookie };
}

const pick = (a) => a[Math.floor(Math.random() * a.length)];

// The read-your-writes checker. One writer per user changes the user's bio to "v<n>" with
// user.update (n counts up), each call on an instance picked at random; once a call has
// returned 200, n is that user's floor. Readers read user.me on instances picked at random,
// half with the Bearer token and half with the cookie, and one more writer edits a blog post
// that anonymous readers read with blog.bySlug. A read is stale when the version it returns
// is below the floor taken when it was sent. fault(ctx) runs once, faultAtMs after the start.
// Returns counts and the first stale samples; every loop stops by itself at durationMs.
export async function checkReadYourWrites(fleet, opts = {}) {
  // minReads/minWrites: on a slow run (sanitizers, a busy machine) the traffic goes on past
  // durationMs until there is enough of it to tell, up to 4 x durationMs.
  const { users = 3, readers = 12, durationMs = 4000, faultAtMs = 1000, fault = null,
    requestTimeoutMs = 8000, minReads = 300, minWrites = 30 } = opts;
  const srvs = fleet.instances;
  const who = [];
  for (let i = 1; i <= users; i++) who.push({ ...(await session(srvs[0], `user${i}@example.com`)), floor: 0, n: 0 });
  const admin = await session(srvs[0], 'admin@example.com');
  const slug = await firstSlug(srvs[0]);
  const blog = { floor: 0, n: 0 };
  const stats = { reads: 0, stale: 0, readErrors: 0, writes: 0, writeErrors: 0, maxBehind: 0,
    samples: [], errorSamples: [], blogReads: 0, writeLog: [] };
  const t0 = Date.now();
  stats.t0 = t0;
  // every write's end (ms since the start), whether it was answered 200, and how long it took
  const logWrite = (started, ok) => stats.writeLog.push({ at: Date.now() - t0, ok, ms: Date.now() - started });
  const end = Date.now() + durationMs, last = Date.now() + 4 * durationMs;
  const going = () => Date.now() < end ||
    (Date.now() < last && (stats.reads < minReads || stats.writes < minWrites));
  const timed = (url, init) => fetch(url, { ...init, signal: AbortSignal.timeout(requestTimeoutMs) });
  const note = (kind, s) => { if (stats[kind].length < 5) stats[kind].push(s); };

  async function writer(u) {
    while (going()) {
      const n = ++u.n;
      const srv = pick(srvs);
      const started = Date.now();
      try {
        const r = await timed(`${srv.base}/trpc/user.update`, {
          method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` },
          body: JSON.stringify({ bio: `v${n}` }),
        });
        const text = await r.text();
        logWrite(started, r.status === 200);
        if (r.status === 200) { u.floor = Math.max(u.floor, n); stats.writes++; } else {
          stats.writeErrors++;
          note('errorSamples', `write ${r.status} on ${srv.port}: ${text.slice(0, 160)}`);
          continue;
        }
      } catch (e) {
        logWrite(started, false);
        stats.writeErrors++;
        note('errorSamples', `write ${e.message}`);
        continue;
      }
      // The sharpest probe: the same client at once on another instance, whose L1 holds
      // the old value unless the invalidation has reached it.
      await readOnce(u, srvs.filter((s) => s !== srv).at(n % (srvs.length - 1)), n % 2, false);
    }
  }
  async function blogWriter() {
    while (going()) {
      const n = ++blog.n;
      const srv = pick(srvs);
      try {
        const r = await timed(`${srv.base}/trpc/blog.update`, {
          method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${admin.token}` },
          body: JSON.stringify({ slug, title: `t${n}` }),
        });
        await r.text();
        if (r.status === 200) { blog.floor = Math.max(blog.floor, n); stats.writes++; } else {
          stats.writeErrors++;
          note('errorSamples', `blog write ${r.status} on ${srv.port}`);
          continue;
        }
      } catch (e) { stats.writeErrors++; note('errorSamples', `blog write ${e.message}`); continue; }
      await readOnce(blog, srvs.filter((s) => s !== srv).at(n % (srvs.length - 1)), false, true);
    }
  }
  // One read of u's value (blog: anonymous) on srv, checked against u's floor as it was
  // when the read was sent.
  async function readOnce(u, srv, bearer, anon) {
    const floor = u.floor;
    const url = anon
      ? `${srv.base}/trpc/blog.bySlug?input=${encodeURIComponent(JSON.stringify({ slug }))}`
      : `${srv.base}/trpc/user.me`;
    const headers = anon ? {} : bearer ? { authorization: `Bearer ${u.token}` } : { cookie: u.cookie };
    let r, body;
    try {
      r = await timed(url, { headers });
      body = await r.text();
    } catch (e) { stats.readErrors++; note('errorSamples', `read ${e.message}`); return; }
    if (r.status !== 200) {
      stats.readErrors++;
      note('errorSamples', `read ${r.status} on ${srv.port}: ${body.slice(0, 120)}`);
      return;
    }
    stats.reads++;
    if (anon) stats.blogReads++;
    const d = JSON.parse(body).result.data;
    const text = anon ? d.title : d.bio;
    const v = /^[vt](\d+)$/.exec(text ?? '') ? Number(text.slice(1)) : 0;
    if (v < floor) {
      stats.stale++;
      stats.maxBehind = Math.max(stats.maxBehind, floor - v);
      note('samples', `${anon ? 'blog' : 'user.me'} on :${srv.port} gave ${v}, floor ${floor} ` +
        `(${r.headers.get('cache-status')})`);
    }
  }
  async function reader(k) {
    while (going()) {
      const anon = k % 4 === 3;
      await readOnce(anon ? blog : pick(who), pick(srvs), k % 2, anon);
    }
  }
  const faultDone = (async () => {
    if (!fault) return;
    await sleep(faultAtMs);
    stats.faultAt = Date.now() - t0;
    stats.faultInfo = await fault();
  })();
  await Promise.all([...who.map(writer), blogWriter(),
    ...Array.from({ length: readers }, (_, k) => reader(k)), faultDone]);
  return stats;
}

async function firstSlug(srv) {
  const r = await call(srv, 'blog.list', { input: { limit: 1 } });
  return r.body.result.data.items[0].slug;
}

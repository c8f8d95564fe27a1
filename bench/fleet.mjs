// bench/fleet.mjs: the Node half of bench/fleet.sh (run that; it sets up what this needs).
// Prints figures; it asserts nothing and ctest does not run it.
//
//   node bench/fleet.mjs scenarios
//       The read-your-writes checker of tests/e2e/fleet.mjs over 3 fresh instances, once per
//       fault (none, Redis stalled 2 s, killed and restarted, restored from an older snapshot,
//       Sentinel failover to a replica that missed the last writes): one row each. Needs
//       TIERCACHE_BIN, TC_REDIS_PORT and TC_PG_URL (tests/e2e/lib.mjs reads them).
//   node bench/fleet.mjs probe --token T [--trials N] [--ms MS] URL URL [URL...]
//       Client-side visibility of a write on another instance: per trial, read user.me on
//       instance B (so its L1 holds the value), write user.update on instance A, and from
//       A's response on, read B until it serves the new bio. Prints how often B's first read
//       was stale and the delay from A's response to the first read that was not.
//   node bench/fleet.mjs hist BEFORE... -- AFTER...
//       /metrics scrapes of the instances taken before and after a run (files): the
//       invalidate-duration histogram's increase, summed over the instances, as count,
//       p50/p99 (interpolated in the log2 buckets), max (the upper bound of the highest
//       bucket that grew) and mean.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Nearest-rank percentile of numbers.
function pct(xs, p) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const ms = (x) => (Number.isFinite(x) ? `${x < 10 ? x.toFixed(1) : Math.round(x)} ms` : '–');
const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);

// ---- scenarios ---------------------------------------------------------------------------

async function scenarios() {
  const F = await import('../tests/e2e/fleet.mjs');
  const { startRedis, startSentinels, sentinelsReady, sentinelMaster, startFleet,
    checkReadYourWrites, stopAll } = F;
  const rows = [];
  const notes = [];

  // Sums of a few counters over the fleet's instances, read just before it stops.
  async function counters(fleet) {
    const names = ['tiercache_cache_ack_timeouts_total', 'tiercache_cache_lease_lapses_total',
      'tiercache_redis_incarnations_total'];
    const out = Object.fromEntries(names.map((n) => [n, 0]));
    for (const s of fleet.instances) {
      try {
        const text = await (await fetch(`${s.base}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
        for (const n of names) {
          const m = new RegExp(`^${n} (\\d+)`, 'm').exec(text);
          if (m) out[n] += Number(m[1]);
        }
      } catch { /* an instance that does not answer adds nothing */ }
    }
    return out;
  }

  // A fault wrapper: records when (relative to the checker's start) the fault's end, or the
  // promotion, happened. stats.faultAt is taken just before fault() is called.
  function row(name, s, c, recoverFrom, extra = '') {
    const log = s.writeLog;
    const lat = log.map((w) => w.ms);
    let recover = NaN;
    let firstOk;
    if (recoverFrom !== null) {
      firstOk = log.filter((w) => w.at > recoverFrom && w.ok).sort((a, b) => a.at - b.at)[0];
      recover = firstOk ? firstOk.at - recoverFrom : Infinity;
    }
    rows.push({
      name, reads: s.reads, stale: s.stale, maxBehind: s.maxBehind, readErrors: s.readErrors,
      writes: s.writes + s.writeErrors, writeErrors: s.writeErrors,
      recover: recoverFrom === null ? '–' : firstOk ? ms(recover) : 'never',
      p50: pct(lat, 50), p99: pct(lat, 99), max: Math.max(...lat),
      acks: c.tiercache_cache_ack_timeouts_total, lapses: c.tiercache_cache_lease_lapses_total,
      incarn: c.tiercache_redis_incarnations_total,
    });
    if (extra) notes.push(`${name}: ${extra}`);
    for (const x of s.samples) notes.push(`${name}: stale: ${x}`);
    for (const x of s.errorSamples.slice(0, 3)) notes.push(`${name}: error: ${x}`);
  }

  async function simple(name, fault, opts = {}) {
    process.stderr.write(`bench: scenario ${name}...\n`);
    const redis = await startRedis();
    const fleet = await startFleet({ redis: `127.0.0.1:${redis.port}` });
    try {
      const s = await checkReadYourWrites(fleet, {
        ...opts,
        fault: fault && (async () => {
          const t = Date.now();
          await fault(redis);
          return { endMs: Date.now() - t };
        }),
      });
      const c = await counters(fleet);
      row(name, s, c, fault ? s.faultAt + s.faultInfo.endMs : null);
    } finally {
      await fleet.stop();
      await redis.stop();
    }
  }

  try {
    await simple('no fault', null);
    await simple('Redis stalled 2 s', async (r) => {
      r.pause();
      await sleep(2000);
      r.resume();
    }, { durationMs: 5000 });
    await simple('killed, restarted', async (r) => {
      await r.kill();
      await sleep(1000);
      await r.start();
    }, { durationMs: 5000 });
    await simple('snapshot restore', async (r) => {
      r.snapshot();
      await sleep(1000);
      await r.restoreSnapshot();
    }, { durationMs: 5000 });

    // As the e2e test: the replica is frozen while the master takes the last writes, then the
    // master is killed and the replica promoted with older records and older tag counters.
    process.stderr.write('bench: scenario Sentinel failover...\n');
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
          const t = Date.now();
          replica.pause();
          await sleep(600); // under the sentinels' down-after (1 s)
          const killed = Date.now();
          await master.kill();
          replica.resume();
          while (sentinelMaster(sentinels[0]) !== `127.0.0.1:${replica.port}` && Date.now() - killed < 20000) {
            await sleep(20);
          }
          return { killedMs: killed - t, promotedMs: Date.now() - t };
        },
      });
      const c = await counters(fleet);
      const killedAt = s.faultAt + s.faultInfo.killedMs;
      const promotedAt = s.faultAt + s.faultInfo.promotedMs;
      const during = s.writeLog.filter((w) => w.at - w.ms < promotedAt && w.at > killedAt);
      row('Sentinel failover', s, c, promotedAt,
        `replica promoted ${promotedAt - killedAt} ms after the master was killed (sentinels polled ` +
        `every 20 ms); ${during.length} writes were in flight across the promotion: ` +
        `${during.filter((w) => w.ok).length} answered 200, the slowest after ${Math.max(0, ...during.map((w) => w.ms))} ms`);
    } finally {
      if (fleet) await fleet.stop();
      for (const x of sentinels) await x.stop();
      await replica.stop();
      await master.stop();
    }
  } finally {
    await stopAll();
  }

  console.log(`${pad('scenario', 20)}${lpad('stale/reads', 14)}${lpad('non-2xx r', 10)}` +
    `${lpad('non-2xx w', 14)}${lpad('recover', 10)}${lpad('write p50', 11)}${lpad('p99', 9)}` +
    `${lpad('max', 9)}  ack-t/o lapses incarn`);
  for (const r of rows) {
    console.log(`${pad(r.name, 20)}${lpad(`${r.stale}/${r.reads}`, 14)}${lpad(r.readErrors, 10)}` +
      `${lpad(`${r.writeErrors}/${r.writes}`, 14)}${lpad(r.recover, 10)}${lpad(ms(r.p50), 11)}` +
      `${lpad(ms(r.p99), 9)}${lpad(ms(r.max), 9)}  ${lpad(r.acks, 7)} ${lpad(r.lapses, 6)} ${lpad(r.incarn, 6)}`);
  }
  for (const n of notes) console.log(`  ${n}`);
}

// ---- probe -------------------------------------------------------------------------------

async function probe(args) {
  let token = '', trials = 200, limitMs = 10000;
  const urls = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--token') token = args[++i];
    else if (args[i] === '--trials') trials = Number(args[++i]);
    else if (args[i] === '--ms') limitMs = Number(args[++i]);
    else urls.push(args[i]);
  }
  if (!token || urls.length < 2) throw new Error('probe: --token T and at least two instance URLs');
  const auth = { authorization: `Bearer ${token}` };
  const t = (init) => ({ ...init, signal: AbortSignal.timeout(5000) });
  const bio = async (base) => {
    const r = await fetch(`${base}/trpc/user.me`, t({ headers: auth }));
    const body = await r.text();
    if (r.status !== 200) throw new Error(`user.me ${r.status}`);
    return JSON.parse(body).result.data.bio;
  };
  const tag = `p${process.pid}x`;
  const delays = [];
  let firstStale = 0, failed = 0, never = 0, done = 0, maxBehindReads = 0;
  const end = Date.now() + limitMs;
  for (let k = 0; k < trials && Date.now() < end; k++) {
    const A = urls[k % urls.length];
    const B = urls[(k + 1) % urls.length];
    try {
      await bio(B); // B's L1 now holds the current value
      const want = `${tag}${k}`;
      const w = await fetch(`${A}/trpc/user.update`, t({
        method: 'POST', headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ bio: want }),
      }));
      await w.text();
      const answered = performance.now();
      if (w.status !== 200) { failed++; continue; }
      done++;
      let reads = 0;
      for (;;) {
        const sent = performance.now();
        const v = await bio(B);
        reads++;
        if (v === want) { delays.push(sent - answered); break; }
        if (sent - answered > 2000) { never++; break; }
      }
      if (reads > 1) firstStale++;
      maxBehindReads = Math.max(maxBehindReads, reads - 1);
    } catch { failed++; }
  }
  const f = (x) => (Number.isFinite(x) ? `${x.toFixed(2)} ms` : '–');
  console.log(`${done} trials (write on one instance, then read on the next): first read stale in ` +
    `${firstStale}${never ? `, new value not seen within 2 s in ${never}` : ''}${failed ? `, ${failed} failed` : ''}; ` +
    `response -> new value served elsewhere: p50 ${f(pct(delays, 50))}, p99 ${f(pct(delays, 99))}, ` +
    `max ${f(delays.length ? Math.max(...delays) : NaN)}${maxBehindReads ? ` (up to ${maxBehindReads} stale reads in a row)` : ''}`);
}

// ---- hist --------------------------------------------------------------------------------

const HIST = 'tiercache_cache_invalidate_duration_seconds';

function parseHist(file) {
  const text = readFileSync(file, 'utf8');
  const buckets = new Map();
  let sum = 0, count = 0, found = false;
  for (const line of text.split('\n')) {
    let m = new RegExp(`^${HIST}_bucket\\{le="([^"]+)"\\} (\\d+)`).exec(line);
    if (m) { buckets.set(m[1], Number(m[2])); found = true; continue; }
    m = new RegExp(`^${HIST}_sum ([0-9.]+)`).exec(line);
    if (m) sum = Number(m[1]);
    m = new RegExp(`^${HIST}_count (\\d+)`).exec(line);
    if (m) count = Number(m[1]);
  }
  return found ? { buckets, sum, count } : null;
}

function hist(args) {
  const sep = args.indexOf('--');
  const before = args.slice(0, sep).map(parseHist);
  const after = args.slice(sep + 1).map(parseHist);
  if (after.some((h) => h === null)) {
    console.log(`n/a (no ${HIST} in this binary's /metrics)`);
    return;
  }
  // cumulative counts per bound, increase over the run, summed over the instances
  const les = [...after[0].buckets.keys()];
  const cum = les.map((le) => after.reduce((a, h, i) =>
    a + h.buckets.get(le) - (before[i]?.buckets.get(le) ?? 0), 0));
  const n = cum[cum.length - 1];
  const sum = after.reduce((a, h, i) => a + h.sum - (before[i]?.sum ?? 0), 0);
  if (n === 0) { console.log('no invalidations recorded'); return; }
  const bound = (i) => (les[i] === '+Inf' ? Infinity : Number(les[i]) * 1e3); // ms
  const q = (p) => {
    const target = p * n;
    for (let i = 0; i < cum.length; i++) {
      if (cum[i] >= target) {
        const lo = i === 0 ? 0 : bound(i - 1), hi = bound(i);
        if (hi === Infinity) return `> ${lo} ms`;
        const prev = i === 0 ? 0 : cum[i - 1];
        return `${(lo + ((hi - lo) * (target - prev)) / (cum[i] - prev)).toFixed(3)} ms`;
      }
    }
    return '?';
  };
  let top = 0;
  for (let i = 0; i < cum.length; i++) if (cum[i] > (i === 0 ? 0 : cum[i - 1])) top = i;
  const max = bound(top) === Infinity ? `> ${bound(top - 1)} ms` : `<= ${bound(top)} ms`;
  console.log(`${n} invalidations: p50 ${q(0.5)}, p99 ${q(0.99)}, max ${max}, mean ${(sum / n * 1e3).toFixed(3)} ms`);
}

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === 'scenarios') await scenarios();
else if (cmd === 'probe') await probe(rest);
else if (cmd === 'hist') hist(rest);
else {
  console.error('usage: node bench/fleet.mjs scenarios | probe --token T URL URL... | hist BEFORE... -- AFTER...');
  process.exit(2);
}

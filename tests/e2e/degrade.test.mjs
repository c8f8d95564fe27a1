// Degradation (issue 10): what users and an operator see when the database goes away and
// comes back, under load. PostgreSQL refuses this test's database for 10 s (ALTER DATABASE
// ... ALLOW_CONNECTIONS false, and its sessions terminated): to the server, the database
// is unreachable, every pooled connection gone.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, call, login, sleep, PG_URL } from './lib.mjs';

const OUTAGE_MS = 10000;

function psqlAdmin(sql) {
  const u = new URL(PG_URL);
  return execFileSync('psql', ['-X', '-qAt', '-h', u.hostname, '-p', u.port, '-U', u.username,
    '-d', u.pathname.slice(1), '-c', sql]).toString().trim();
}

function dbName(srv) {
  return new URL(srv.db.url).pathname.slice(1);
}

function outage(srv, on) {
  const name = dbName(srv);
  psqlAdmin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS ${on ? 'false' : 'true'}`);
  if (on) psqlAdmin(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '${name}'`);
}

// The operator's log lines (not the access log: it is off) after the index-th character.
const lines = (srv, from = 0) => srv.log().slice(from).split('\n').filter((l) => l.trim() !== '');
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO |WARN |ERROR) [a-z]+: /;

describe('a database outage of 10 s under load', () => {
  let S, users;
  before(async () => {
    S = await startServer({ db: 'pg', extra: ['--test-fresh-ms', '300', '--access-log', 'off'] });
    users = [await login(S), await login(S, 'user1@example.com'), await login(S, 'user2@example.com')];
  });
  after(async () => {
    try { outage(S, false); } catch { /* already back */ }
    assert.equal(await S.stop(), 0);
  });

  it('cached reads keep answering, writes get 503 + Retry-After, a handful of log lines, no error after', async () => {
    const reads = ['user.me', 'subscription.get', 'dashboard.summary'];
    for (const u of users) for (const p of reads) assert.equal((await call(S, p, { token: u.token })).status, 200);
    assert.equal((await call(S, 'blog.list', { input: { limit: 5 } })).status, 200);
    await sleep(400); // everything past its fresh time (--test-fresh-ms 300)

    const logFrom = S.log().length;
    const seen = { reads: 0, readErrors: [], writes: 0, write503: 0, writeOther: [], noRetryAfter: 0 };
    let stop = false;
    const readLoop = async (u) => {
      while (!stop) {
        for (const p of reads) {
          const r = await call(S, p, { token: u.token });
          if (r.status === 200) seen.reads++; else seen.readErrors.push(`${p} ${r.status}`);
        }
        const b = await call(S, 'blog.list', { input: { limit: 5 } });
        if (b.status === 200) seen.reads++; else seen.readErrors.push(`blog.list ${b.status}`);
        await sleep(20);
      }
    };
    const writeLoop = async (u, i) => {
      let n = 0;
      while (!stop) {
        const r = await call(S, 'user.update', { token: u.token, input: { bio: `outage ${i}.${n++}` } });
        seen.writes++;
        if (r.status === 503) {
          seen.write503++;
          if (r.headers.get('retry-after') === null) seen.noRetryAfter++;
        } else if (r.status !== 200) {
          seen.writeOther.push(r.status);
        }
        await sleep(100);
      }
    };
    outage(S, true);
    const loops = [...users.map(readLoop), ...users.map(writeLoop)];
    await sleep(OUTAGE_MS);
    outage(S, false);
    await sleep(1500); // the first calls after it reconnect
    stop = true;
    await Promise.all(loops);

    assert.deepEqual(seen.readErrors, [], 'every cached read was answered through the outage');
    assert.ok(seen.reads > 100, `reads: ${seen.reads}`);
    assert.ok(seen.write503 > 10, `writes refused: ${seen.write503} of ${seen.writes}`);
    assert.deepEqual(seen.writeOther, [], 'writes: 503 (or 200 once it is back), nothing else');
    assert.equal(seen.noRetryAfter, 0, 'every 503 says Retry-After');

    const during = lines(S, logFrom);
    console.log(`the log during and after the outage:\n${during.join('\n')}`);
    for (const l of during) assert.match(l, RFC3339, `a line without time, level and component: ${l}`);
    assert.ok(during.length <= 8, `a handful of lines for the outage, not one per request:\n${during.join('\n')}`);
    assert.ok(during.some((l) => /ERROR db: the database is unavailable \(database connection failed: .+\), seen by /.test(l)),
      `the outage is said once, with its cause:\n${during.join('\n')}`);
    assert.ok(during.some((l) => /INFO  db: the database answers again after [\d.]+ s \(\d+ calls failed meanwhile\)/.test(l)),
      `and its end:\n${during.join('\n')}`);

    // After it: no error surfaces, reads and writes as usual.
    for (const u of users) {
      for (const p of reads) assert.equal((await call(S, p, { token: u.token })).status, 200, p);
      const w = await call(S, 'user.update', { token: u.token, input: { bio: 'after' } });
      assert.equal(w.status, 200, JSON.stringify(w.body));
      assert.equal((await call(S, 'user.me', { token: u.token })).body.result.data.bio, 'after');
    }
  });

  it('/readyz says the database is unavailable (503), /healthz stays 200; both back after', async () => {
    const ready0 = await fetch(`${S.base}/readyz`);
    assert.equal(ready0.status, 200);
    assert.match(await ready0.text(), /database: ok\nredis: ok/);
    outage(S, true);
    try {
      const r = await fetch(`${S.base}/readyz`);
      assert.equal(r.status, 503);
      assert.match(await r.text(), /database: unavailable/);
      assert.equal((await fetch(`${S.base}/healthz`)).status, 200);
    } finally {
      outage(S, false);
    }
    const back = await fetch(`${S.base}/readyz`);
    assert.equal(back.status, 200);
  });
});

// Its own server, with the default fresh times: the session stays fresh, so the first call to
// meet the outage is the write itself, not a background refresh of a session gone stale (with
// --test-fresh-ms 300 a slow run, ASan's, let a refresh see it first: that line names no request).
describe('the log line of a failing request', () => {
  let S, users;
  before(async () => {
    S = await startServer({ db: 'pg', extra: ['--access-log', 'off'] });
    users = [await login(S)];
  });
  after(async () => {
    try { outage(S, false); } catch { /* already back */ }
    assert.equal(await S.stop(), 0);
  });

  it('the log line a failing request causes names it: "(request <id>)", the id its 503 carries', async () => {
    const u = users[0];
    assert.equal((await call(S, 'user.update', { token: u.token, input: { bio: 'before' } })).status, 200,
      'the database answers (its state is "up" before the outage)');
    const from = S.log().length;
    outage(S, true);
    let r;
    try {
      r = await call(S, 'user.update', { token: u.token, input: { bio: 'refused' } });
    } finally {
      outage(S, false);
    }
    assert.equal(r.status, 503);
    const id = r.headers.get('x-request-id');
    assert.match(id ?? '', /^[0-9a-f]{16}$/, 'a 5xx carries X-Request-Id');
    const said = lines(S, from).filter((l) => /ERROR db: the database is unavailable/.test(l));
    assert.equal(said.length, 1, lines(S, from).join('\n'));
    assert.ok(said[0].endsWith(` (request ${id})`), `the line names the request ${id}: ${said[0]}`);
    const ok = await call(S, 'user.update', { token: u.token, input: { bio: 'after' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('x-request-id'), null, 'only a 5xx carries it');
  });
});

describe('a Redis outage of 5 s under load', () => {
  let R, S, users;
  before(async () => {
    const { startRedis } = await import('./fleet.mjs');
    R = await startRedis();
    S = await startServer({ db: 'sqlite', redis: `127.0.0.1:${R.port}`,
      extra: ['--access-log', 'off', '--invalidate-wait-ms', '300'] });
    users = [await login(S), await login(S, 'user1@example.com')];
  });
  after(async () => {
    assert.equal(await S.stop(), 0);
    await R.stop();
    const { stopAll } = await import('./fleet.mjs');
    await stopAll();
  });

  it('reads answer, writes get 503 while it is down; the log says lost and back, a handful of lines', async () => {
    for (const u of users) assert.equal((await call(S, 'user.me', { token: u.token })).status, 200);
    const logFrom = S.log().length;
    const seen = { reads: 0, readErrors: [], write503: 0, writeOther: [] };
    let stop = false;
    const loop = async (u, i) => {
      let n = 0;
      while (!stop) {
        const r = await call(S, 'user.me', { token: u.token });
        if (r.status === 200) seen.reads++; else seen.readErrors.push(r.status);
        const w = await call(S, 'user.update', { token: u.token, input: { bio: `r ${i}.${n++}` } });
        if (w.status === 503) seen.write503++; else if (w.status !== 200) seen.writeOther.push(w.status);
        await sleep(10);
      }
    };
    const loops = users.map(loop);
    await sleep(500);
    await R.kill();
    await sleep(5000);
    await R.start();
    await sleep(2500);
    stop = true;
    await Promise.all(loops);

    assert.deepEqual(seen.readErrors, [], 'reads are answered (L1 and the database)');
    assert.ok(seen.write503 > 5, `writes refused while Redis was down: ${seen.write503}`);
    assert.deepEqual(seen.writeOther, []);
    const during = lines(S, logFrom);
    console.log(`the log during and after the outage:\n${during.join('\n')}`);
    for (const l of during) assert.match(l, RFC3339, `a line without time, level and component: ${l}`);
    assert.ok(during.length <= 8, `a handful of lines, not one per write:\n${during.join('\n')}`);
    assert.ok(during.some((l) => /WARN  redis: unreachable \(.+\), \d+ failures in a row: the breaker is open/.test(l)),
      `Redis lost, with the cause:\n${during.join('\n')}`);
    assert.ok(during.some((l) => /WARN  bus: invalidation bus lost \(.+\)/.test(l)), `the bus lost:\n${during.join('\n')}`);
    assert.ok(during.some((l) => /INFO  redis: answering again after [\d.]+ s: the breaker is closed/.test(l)),
      `Redis back:\n${during.join('\n')}`);
    assert.ok(during.some((l) => /INFO  bus: subscribed again after [\d.]+ s/.test(l)), `the bus back:\n${during.join('\n')}`);
    assert.ok(during.some((l) => /WARN  redis: a different Redis process answers/.test(l)),
      `the new incarnation (restarted empty):\n${during.join('\n')}`);
  });
});

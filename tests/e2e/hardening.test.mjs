// The HTTP layer against hostile or unlucky clients, through the real binary and its flags:
// a NUL inside the Authorization header is one 400 and a close (it authenticated before), one
// client address cannot hold more than --max-connections-per-addr while another address is
// served, and SIGTERM with a request stuck in the database past --stop-timeout-ms answers it
// 503 (or closes it) and exits at the deadline, not when the database returns.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, login, sleep } from './lib.mjs';
import { parse, value } from './prom.mjs';

// Sends bytes on a new connection (from localAddress, if given) and collects everything until
// the server closes it or ms pass: { data (string), closed }.
function exchange(port, bytes, { localAddress, ms = 5000 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    let data = '';
    const done = (closed) => { clearTimeout(t); s.destroy(); resolve({ data, closed }); };
    const t = setTimeout(() => done(false), ms);
    s.on('data', (d) => { data += d.toString('latin1'); });
    s.on('end', () => done(true));
    s.on('error', () => done(true));
    s.on('connect', () => { if (bytes) s.write(bytes); });
  });
}

const statusLines = (data) => (data.match(/(^|\n)HTTP\/1\.\d \d{3}/g) ?? []).length;

describe('hostile clients', () => {
  let srv, demo;
  before(async () => {
    srv = await startServer({ extra: ['--max-connections-per-addr', '3'] });
    demo = await login(srv);
  });
  after(async () => { assert.equal(await srv.stop(), 0); });

  it('Authorization: Bearer <token>\\0junk is one 400 and a close, not the user', async () => {
    const head = (auth) => Buffer.concat([
      Buffer.from(`GET /trpc/user.me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${demo.token}`),
      Buffer.from(auth, 'latin1'), Buffer.from('\r\nConnection: close\r\n\r\n')]);
    const ok = await exchange(srv.port, head(''));
    assert.match(ok.data, /^HTTP\/1\.1 200 /);
    const bad = await exchange(srv.port, head('\0junk'));
    assert.equal(statusLines(bad.data), 1, bad.data);
    assert.match(bad.data, /^HTTP\/1\.1 400 /);
    assert.ok(bad.closed);
    assert.doesNotMatch(bad.data, /demo@example\.com/);
  });

  it('Transfer-Encoding: gzip, chunked is answered 501 at once', async () => {
    const r = await exchange(srv.port, 'POST /trpc/auth.logout HTTP/1.1\r\nHost: t\r\n'
      + 'Transfer-Encoding: gzip, chunked\r\nContent-Type: application/json\r\n\r\n0\r\n\r\n');
    assert.equal(statusLines(r.data), 1, r.data);
    assert.match(r.data, /^HTTP\/1\.1 501 /);
    assert.ok(r.closed);
  });

  it('one address holds at most --max-connections-per-addr; another is served meanwhile', async () => {
    // /metrics read from 127.0.0.2: 127.0.0.1 may be at its cap (fetch keeps connections open)
    const refusedCount = async () => {
      const m = await exchange(srv.port, 'GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
        { localAddress: '127.0.0.2', ms: 3000 });
      return value(parse(m.data.slice(m.data.indexOf('\r\n\r\n') + 4)).samples,
        'tiercache_http_closed_total', { reason: 'per_address' });
    };
    const refused0 = await refusedCount();
    assert.equal(typeof refused0, 'number');
    const held = [];
    for (let i = 0; i < 3; i++) {
      const s = net.connect({ host: '127.0.0.1', port: srv.port, localAddress: '127.0.0.1' });
      await new Promise((r) => s.once('connect', r));
      held.push(s);
    }
    await sleep(100); // accepted by now
    const over = await exchange(srv.port, 'GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n',
      { localAddress: '127.0.0.1', ms: 3000 });
    assert.deepEqual(over, { data: '', closed: true }, 'the fourth from 127.0.0.1 is closed unanswered');
    const other = await exchange(srv.port, 'GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
      { localAddress: '127.0.0.2', ms: 3000 });
    assert.match(other.data, /^HTTP\/1\.1 200 /);
    for (const s of held) s.destroy();
    assert.match(srv.log(), /has 3 connections open \(the cap per address\): refusing more/);
    const closed = await refusedCount();
    assert.ok(closed >= refused0 + 1, `counted on /metrics: closed_total{reason="per_address"} ${refused0} -> ${closed}`);
  });
});

describe('the stop deadline', () => {
  it('SIGTERM: a request stuck in the database past --stop-timeout-ms is cut, the process exits', async () => {
    const srv = await startServer({ extra: ['--test-db-delay-ms', '4000', '--stop-timeout-ms', '300'] });
    // blog.list is not cached yet: its load waits 4 s for the database, on a worker
    const pending = fetch(`${srv.base}/trpc/blog.list?input=${encodeURIComponent('{"limit":2}')}`)
      .then(async (r) => ({ status: r.status, retry: r.headers.get('retry-after'), body: await r.text() }),
        (e) => ({ error: e.cause?.code ?? String(e) }));
    await sleep(300);
    const t0 = Date.now();
    const code = await srv.stop(); // SIGTERM, then the exit (and an SQLite file removed)
    const took = Date.now() - t0;
    const answer = await pending;
    assert.equal(code, 0, 'exit status 0');
    // 300 ms, the 250 ms grace for the answers, the access log's flush: well under the 4 s
    assert.ok(took < 2500, `exited ${took} ms after SIGTERM`);
    assert.ok(answer.status === 503 || answer.error !== undefined, JSON.stringify(answer));
    if (answer.status === 503) assert.equal(answer.retry, '1');
    assert.match(srv.log(), /1 request\(s\) were still running at the stop deadline \(300 ms\)/);
    assert.match(srv.log(), /exiting without waiting for 1 of them/);
  });
});

// Helpers of the HTTP-caching tests (http-cache, browser, shared-cache): raw HTTP/1.1
// requests that send exactly the path and headers given (fetch normalises paths and adds
// headers of its own), and the shared caches — nginx and Varnish — started on loopback ports
// in temporary directories as plain child processes (never as system services), stopped by
// the tests that start them.
import http from 'node:http';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, chmodSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { freePort, sleep, subState } from './lib.mjs';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

// One request, the path sent as it is. Returns { status, headers (lower-case names), body }.
export function raw(base, method, path, headers = {}, body = undefined) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const r = http.request({
      host: u.hostname, port: u.port, method, path, headers, agent: false, setHost: !('host' in headers),
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    r.on('error', reject);
    r.setTimeout(15000, () => r.destroy(new Error(`${method} ${path}: no answer in 15 s`)));
    if (body !== undefined) r.write(body);
    r.end();
  });
}

// Every tRPC batch that mixes a personal query with a public one: each private procedure
// with each public one, in both orders, and a private call between two public ones.
// [{ name, procs, path }]; slug: a published post's.
export function mixedBatches(slug) {
  const priv = ['user.me', 'subscription.get', 'dashboard.summary'].map((p) => [p]);
  const pub = [['blog.list', { limit: 2 }], ['blog.bySlug', { slug }]];
  const make = (calls) => {
    const input = {};
    calls.forEach(([, i], k) => { if (i !== undefined) input[k] = i; });
    const procs = calls.map(([p]) => p);
    return { name: procs.join(','), procs, path: `/trpc/${procs.join(',')}?batch=1&input=${encodeURIComponent(JSON.stringify(input))}` };
  };
  const out = [];
  for (const p of priv) for (const q of pub) out.push(make([p, q]), make([q, p]));
  out.push(make([pub[0], priv[0], pub[1]]));
  return out;
}

// Checks a mixed batch's answer: every call's data — the personal ones u's own (wantSub: u's
// subscription as subState() gives it, when the test made it distinct) — then Cache-Control
// private (never public or s-maxage), Vary on the credentials, and no cache tags.
export function checkMixedBatch(r, batch, u, slug, what, wantSub) {
  assert.equal(r.status, 200, `${what}: status (${r.body.toString().slice(0, 200)})`);
  const out = JSON.parse(r.body.toString());
  assert.equal(out.length, batch.procs.length, what);
  batch.procs.forEach((p, i) => {
    const d = out[i].result?.data;
    assert.ok(d, `${what}: call ${i} (${p}) failed: ${JSON.stringify(out[i]).slice(0, 200)}`);
    if (p === 'user.me') assert.equal(d.email, u.user.email, `${what}: ${p} of another user`);
    if (p === 'dashboard.summary') assert.equal(d.userId, u.user.id, `${what}: ${p} of another user`);
    if (p === 'subscription.get' && wantSub) assert.deepEqual(subState(d), wantSub, `${what}: ${p} of another user`);
    if (p === 'blog.list') assert.ok(Array.isArray(d.items) && d.items.length > 0, `${what}: ${p}`);
    if (p === 'blog.bySlug') assert.equal(d.slug, slug, `${what}: ${p}`);
  });
  const cc = r.headers['cache-control'] ?? '';
  assert.match(cc, /(^|, )private(,|$)/, `${what}: Cache-Control ${cc}`);
  assert.doesNotMatch(cc, /public|s-maxage/, `${what}: Cache-Control ${cc}`);
  assert.equal(r.headers.vary, 'Authorization, Cookie', `${what}: Vary`);
  assert.equal(r.headers.xkey, undefined, `${what}: a private answer names no cache tags`);
}

// The fingerprinted asset URLs a page references.
export function assetUrls(html) {
  return [...new Set(html.match(/\/static\/[A-Za-z0-9_-]+\.[0-9a-f]{8}\.[a-z0-9]+/g) ?? [])];
}

// Headers of a response without Date (and Cache-Status's ttl, which moves with time).
export function comparable(h) {
  const out = { ...h };
  delete out.date;
  delete out.connection;
  delete out['keep-alive'];
  if (out['cache-status']) out['cache-status'] = out['cache-status'].replace(/ttl=-?\d+/, 'ttl=N');
  return out;
}

async function waitPort(port, child, what, log) {
  const deadline = Date.now() + 20000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited ${child.exitCode}:\n${log()}`);
    const ok = await new Promise((resolve) => {
      const r = http.request({ host: '127.0.0.1', port, method: 'GET', path: '/healthz', agent: false },
        (res) => { res.resume(); res.on('end', () => resolve(true)); });
      r.on('error', () => resolve(false));
      r.setTimeout(1000, () => { r.destroy(); resolve(false); });
      r.end();
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not start in 20 s:\n${log()}`);
    await sleep(100);
  }
}

function spawnLogged(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  return { child, log: () => log };
}

async function stopChild(child, sig = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(sig);
  const t = setTimeout(() => child.kill('SIGKILL'), 10000);
  await exited;
  clearTimeout(t);
}

export const HAVE_VARNISH = existsSync('/usr/sbin/varnishd');
export const HAVE_NGINX = existsSync('/usr/sbin/nginx');

// Varnish with deploy/varnish.vcl in front of backendPort, on port (default: a free one):
// { base, port, stop() }.
// As root: -j none (no jail, so no system users or dirs are needed), the working directory
// (-n) in a temp dir, no management port, in-memory storage.
export async function startVarnish(backendPort, port = undefined) {
  const dir = mkdtempSync(join(tmpdir(), 'tc-varnish-'));
  chmodSync(dir, 0o755);
  const vcl = readFileSync(join(ROOT, 'deploy', 'varnish.vcl'), 'utf8')
    .replace(/\.port = "\d+";/, `.port = "${backendPort}";`);
  if (!vcl.includes(`.port = "${backendPort}"`)) throw new Error('deploy/varnish.vcl: no backend port to replace');
  writeFileSync(join(dir, 'default.vcl'), vcl);
  port ??= await freePort();
  const { child, log } = spawnLogged('/usr/sbin/varnishd', ['-F', '-j', 'none', '-n', join(dir, 'work'),
    '-a', `127.0.0.1:${port}`, '-T', 'none', '-f', join(dir, 'default.vcl'), '-s', 'malloc,64m',
    '-p', 'default_grace=0', '-p', 'thread_pool_min=5', '-p', 'thread_pool_max=50']);
  try {
    await waitPort(port, child, 'varnishd', log);
  } catch (e) {
    await stopChild(child, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    base: `http://127.0.0.1:${port}`, port, log,
    async stop() { await stopChild(child); rmSync(dir, { recursive: true, force: true }); },
  };
}

// nginx with deploy/nginx.conf in front of backendPort: { base, port, stop() }.
// Runs in the foreground with its prefix, cache, temp files and logs in a temp dir.
export async function startNginx(backendPort) {
  const dir = mkdtempSync(join(tmpdir(), 'tc-nginx-'));
  chmodSync(dir, 0o755); // workers run as nobody: they must reach the cache directory
  const port = await freePort();
  let conf = readFileSync(join(ROOT, 'deploy', 'nginx.conf'), 'utf8')
    .replace(/server 127\.0\.0\.1:\d+;/, `server 127.0.0.1:${backendPort};`)
    .replace(/listen 127\.0\.0\.1:\d+;/, `listen 127.0.0.1:${port};`)
    .replace(/\/var\/cache\/nginx\/tiercache/g, join(dir, 'cache'))
    .replace(/\/var\/log\/nginx\/tiercache\.access\.log/g, join(dir, 'access.log'))
    .replace(/\/var\/log\/nginx\/tiercache\.error\.log/g, join(dir, 'error.log'))
    .replace(/\/run\/nginx-tiercache\.pid/g, join(dir, 'nginx.pid'));
  if (!conf.includes(`127.0.0.1:${backendPort}`) || !conf.includes(`listen 127.0.0.1:${port}`)) {
    throw new Error('deploy/nginx.conf: the upstream or listen address was not found');
  }
  writeFileSync(join(dir, 'nginx.conf'), conf);
  execFileSync('/usr/sbin/nginx', ['-t', '-q', '-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')]);
  const { child, log } = spawnLogged('/usr/sbin/nginx', ['-p', dir, '-e', join(dir, 'error.log'),
    '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;']);
  const allLog = () => `${log()}\n${existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''}`;
  try {
    await waitPort(port, child, 'nginx', allLog);
  } catch (e) {
    await stopChild(child, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    base: `http://127.0.0.1:${port}`, port, log: allLog,
    async stop() { await stopChild(child, 'SIGQUIT'); rmSync(dir, { recursive: true, force: true }); },
  };
}

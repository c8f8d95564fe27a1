// Test harness for the end-to-end tests: starts a real tiercache server (the binary CMake
// built, TIERCACHE_BIN) on a free loopback port, against the private Redis (TC_REDIS_PORT)
// and a fresh SQLite file or PostgreSQL database (TC_PG_URL's cluster), seeded with a small
// demo set; stops it afterwards. Each server gets its own Redis key prefix, so test files
// running in parallel never see each other's keys.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

export const BIN = process.env.TIERCACHE_BIN;
export const REDIS_PORT = Number(process.env.TC_REDIS_PORT);
export const PG_URL = process.env.TC_PG_URL;
export const WEBHOOK_SECRET = 'whsec_e2e_0123456789abcdef';
export const DEMO_PASSWORD = 'demo1234';

if (!BIN || !REDIS_PORT || !PG_URL) {
  throw new Error('TIERCACHE_BIN, TC_REDIS_PORT and TC_PG_URL must be set (run through scripts/test.sh)');
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

let dbCounter = 0;
let serverCounter = 0;

// A fresh database: { url, drop() }.
export function freshDb(kind) {
  const tag = `${process.pid}_${Date.now() % 100000}_${++dbCounter}`;
  if (kind === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'tc-e2e-'));
    return { url: `sqlite:${join(dir, 'app.db')}`, drop: () => rmSync(dir, { recursive: true, force: true }) };
  }
  const u = new URL(PG_URL);
  const name = `e2e_${tag}`;
  const admin = ['-h', u.hostname, '-p', u.port, '-U', u.username];
  execFileSync('psql', [...admin, '-d', u.pathname.slice(1), '-qc', `CREATE DATABASE ${name}`]);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: () => execFileSync('psql', [...admin, '-d', PG_URL.split('/').pop(), '-qc',
      `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`]),
  };
}

function run(args, env = {}) {
  return execFileSync(BIN, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

// Starts a seeded server. opts: { db: 'sqlite'|'pg', cache: true, users: 30, extra: [] }.
export async function startServer(opts = {}) {
  const kind = opts.db ?? 'sqlite';
  const db = opts.dbHandle ?? freshDb(kind);
  if (!opts.dbHandle) {
    run(['seed', '--db', db.url, '--seed-users', String(opts.users ?? 30), '--seed-activity',
      String(opts.activity ?? 20), '--fast-password-hash']);
  }
  // One prefix per server ever started by this process: a port can come back after a
  // server stopped, and its Redis keys must not greet the next one.
  const prefix = opts.prefix ?? `e2e${process.pid}s${++serverCounter}:`;
  // A port free a moment ago may be taken before the server binds it (tests run in
  // parallel): then the server exits, and another port is tried.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await spawnServer(opts, db, port, prefix);
    } catch (e) {
      if (attempt < 5 && /cannot bind or listen/.test(e.message)) continue;
      throw e;
    }
  }
}

async function spawnServer(opts, db, port, prefix) {
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--db', db.url,
    '--redis', opts.redis ?? `127.0.0.1:${REDIS_PORT}`, '--prefix', prefix,
    '--webhook-secret', WEBHOOK_SECRET, '--fast-password-hash',
    '--login-limit', String(opts.loginLimit ?? 1000),
    // A server starved of CPU for longer than its lease (250 ms) stops answering from L1 —
    // correctly, but a test that checks Cache-Status would see it. The fleet tests run with
    // the default lease (leaseMs: 250): what they prove depends on it.
    '--lease-ms', String(opts.leaseMs ?? 2000), ...(opts.extra ?? [])];
  if (opts.cache === false) args.push('--no-cache');
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) console.error(`tiercache server died (code ${code}, signal ${signal}); its output:\n${log}`);
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20000;
  // Ours, not a stranger that holds the port: its own line says it listens there.
  const listening = `serving on ${base}/`;
  for (;;) {
    if (child.exitCode !== null) {
      stopping = true;
      throw new Error(`server exited ${child.exitCode}:\n${log}`);
    }
    if (log.includes(listening)) {
      try {
        const r = await fetch(`${base}/healthz`);
        if (r.ok) break;
      } catch { /* not up yet */ }
    }
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`server did not start:\n${log}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    base, port, prefix, db, child,
    log: () => log,
    async stop({ keepDb = false } = {}) {
      stopping = true;
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 15000);
        await exited;
        clearTimeout(t);
      }
      if (!keepDb && !opts.dbHandle) db.drop();
      return child.exitCode;
    },
  };
}

// GET a query / POST a mutation; returns { status, headers, body (parsed JSON or text) }.
export async function call(srv, path, { input, token, method, headers = {}, raw } = {}) {
  const kindGet = method ? method === 'GET' : !/\.(login|logout|update|track|publish)$/.test(path);
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  let url = `${srv.base}/trpc/${path}`;
  const init = { method: method ?? (kindGet ? 'GET' : 'POST'), headers: h };
  if (init.method === 'GET' || init.method === 'HEAD') {
    if (input !== undefined) url += `?input=${encodeURIComponent(JSON.stringify(input))}`;
  } else {
    h['content-type'] ??= 'application/json';
    init.body = raw ?? (input !== undefined ? JSON.stringify(input) : '');
  }
  const r = await fetch(url, init);
  const text = await r.text();
  let body = text;
  try { body = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, body };
}

export async function login(srv, email = 'demo@example.com', password = DEMO_PASSWORD) {
  const r = await call(srv, 'auth.login', { input: { email, password } });
  if (r.status !== 200) throw new Error(`login ${email}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.result.data;
}

// redis-cli against the test Redis.
export function redis(...args) {
  return execFileSync('redis-cli', ['-p', String(REDIS_PORT), '--raw', ...args]).toString().trim();
}

export function sign(body, secret = WEBHOOK_SECRET, t = Math.floor(Date.now() / 1000)) {
  return import('node:crypto').then(({ createHmac }) =>
    `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`);
}

// POSTs a billing event (an object, or the exact body as a string) to the webhook, signed
// with the test secret now; returns the fetch Response.
export async function postBilling(srv, ev) {
  const body = typeof ev === 'string' ? ev : JSON.stringify(ev);
  return fetch(`${srv.base}/webhooks/billing`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'billing-signature': await sign(body) }, body,
  });
}

// A billing event's "created" (unix s) no earlier than anything the seed wrote: the seed's
// subscriptions were updated before it ran, so an event created now or later is newer.
export const eventTime = () => Math.ceil(Date.now() / 1000);

// What tells two subscriptions apart in a subscription.get answer.
export const subState = (d) => ({ plan: d.plan.id, status: d.status, seats: d.seats, currentPeriodEnd: d.currentPeriodEnd });

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

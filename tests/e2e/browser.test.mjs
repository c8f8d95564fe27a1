// A real browser: Debian's Chromium, headless, driven by playwright-core, against the server
// through a small counting proxy (every request that reaches the server is recorded with its
// If-None-Match and the status it got). Proves:
//   - a second navigation loads the fingerprinted assets from the browser cache: no request
//     for them reaches the server (the proxy's count), and Chromium says they came from its
//     memory or disk cache (DevTools protocol events);
//   - a reload revalidates the page with If-None-Match and gets 304; a page that tells CDNs
//     to keep it an hour (CDN-Cache-Control) is still revalidated by the browser every time;
//   - two users signing in one after another in the same browser never see each other's
//     data: not on the server-rendered dashboard, not through the widgets' tRPC refresh
//     (the browser holds the first user's private, max-age=30 answer for the same URL; Vary
//     keeps it from the second), not after signing out;
//   - signing out clears the browser (Clear-Site-Data: "cache", "cookies"): a personal answer
//     it held (private, max-age=30) is asked of the server again, and every cookie of the
//     site is gone, the page's own included (the session cookie alone would go anyway).
// A screenshot of the second user's dashboard is saved under the build directory
// (e2e-artifacts/dashboard.png).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startServer, login, call, BIN } from './lib.mjs';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Forwards everything to the server as it is and records what reached it.
function countingProxy(targetPort) {
  const seen = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const server = http.createServer((req, res) => {
    const entry = { method: req.method, url: req.url, inm: req.headers['if-none-match'], cookie: req.headers.cookie ?? '', status: 0, headers: {} };
    seen.push(entry);
    const up = http.request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers, agent }, (ur) => {
      entry.status = ur.statusCode;
      entry.headers = ur.headers;
      res.writeHead(ur.statusCode, ur.rawHeaders);
      ur.pipe(res);
    });
    up.on('error', (e) => { entry.status = 502; res.destroy(e); });
    req.pipe(up);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    base: `http://127.0.0.1:${server.address().port}`,
    seen,
    clear() { seen.length = 0; },
    close: () => new Promise((r) => { agent.destroy(); server.closeAllConnections(); server.close(r); }),
  })));
}

describe('Chromium against the server', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (scripts/deps.sh installs it)` }, () => {
  let srv, proxy, ctx, page, cdp, userDir, chromium;
  const fromCache = new Set(); // URLs Chromium served from its own cache (DevTools events)
  const requestIds = new Map();

  before(async () => {
    ({ chromium } = await import('playwright-core'));
    srv = await startServer({ extra: ['--cdn-max-age', '3600'] }); // as if a CDN were purged
    proxy = await countingProxy(srv.port);
    userDir = mkdtempSync(join(tmpdir(), 'tc-chromium-'));
    ctx = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1200, height: 900 }, timeout: 60000,
    });
    page = ctx.pages()[0] ?? await ctx.newPage();
    page.setDefaultTimeout(20000);
    cdp = await ctx.newCDPSession(page);
    await cdp.send('Network.enable');
    cdp.on('Network.requestWillBeSent', (e) => requestIds.set(e.requestId, e.request.url));
    cdp.on('Network.requestServedFromCache', (e) => fromCache.add(new URL(requestIds.get(e.requestId) ?? 'http://x/').pathname));
    cdp.on('Network.responseReceived', (e) => {
      if (e.response.fromDiskCache || e.response.fromPrefetchCache) fromCache.add(new URL(e.response.url).pathname);
    });
  });
  after(async () => {
    await ctx?.close();
    await proxy?.close();
    if (userDir) rmSync(userDir, { recursive: true, force: true });
    if (srv) assert.equal(await srv.stop(), 0);
  });

  const reached = (pred) => proxy.seen.filter(pred);
  const statics = () => reached((s) => s.url.startsWith('/static/'));

  it('a second navigation loads fingerprinted assets from the browser cache, no request reaches the server', async () => {
    await page.goto(`${proxy.base}/`, { waitUntil: 'load' });
    const first = statics().map((s) => s.url);
    assert.ok(first.length >= 3, `the first visit fetched the assets: ${JSON.stringify(first)}`);
    for (const u of first) assert.match(u, /^\/static\/[a-z]+\.[0-9a-f]{8}\.(css|js|svg)$/);
    assert.ok(await page.evaluate(() => getComputedStyle(document.querySelector('header.top')).borderBottomStyle === 'solid'),
      'the stylesheet applied');

    proxy.clear();
    fromCache.clear();
    await page.click('ul.posts li.post a'); // navigate to a post: the same assets
    await page.waitForSelector('article.post-full');
    assert.deepEqual(statics(), [], 'no asset request reached the server');
    assert.equal(reached((s) => s.url.startsWith('/blog/')).length, 1);
    for (const u of first.filter((x) => !x.endsWith('.svg'))) assert.ok(fromCache.has(u), `${u} came from Chromium's cache (${[...fromCache]})`);

    proxy.clear();
    await page.goto(`${proxy.base}/`, { waitUntil: 'load' }); // a navigation, not a reload
    assert.deepEqual(statics(), [], 'again no asset request');
    const home = reached((s) => s.url === '/');
    assert.equal(home.length, 1);
    assert.equal(home[0].status, 304, 'the page (no-cache) was revalidated: 304');
    assert.match(home[0].headers['cdn-cache-control'] ?? '', /max-age=3600/, 'though CDNs may keep it an hour');
  });

  it('a reload revalidates the page with If-None-Match and gets 304', async () => {
    await page.goto(`${proxy.base}/login`, { waitUntil: 'load' });
    proxy.clear();
    await page.reload({ waitUntil: 'load' });
    const doc = reached((s) => s.url === '/login');
    assert.equal(doc.length, 1, JSON.stringify(proxy.seen));
    assert.match(doc[0].inm ?? '', /^"[0-9a-f]{16}"$/, 'the reload sent If-None-Match');
    assert.equal(doc[0].status, 304);
    for (const s of statics()) assert.equal(s.status, 304, `${s.url}: only revalidated, never refetched`);
    assert.ok(await page.isVisible('#login-form'), 'the page is still there, from the browser cache');
  });

  async function signIn(email) {
    await page.goto(`${proxy.base}/login`, { waitUntil: 'load' });
    await page.fill('#email', email);
    await page.fill('#password', 'demo1234');
    await Promise.all([page.waitForURL(/\/dashboard$/), page.click('#login-submit')]);
    await page.waitForSelector('#dash');
  }

  async function widgets() {
    return page.evaluate(() => ({
      uid: document.getElementById('dash').dataset.userId,
      email: document.getElementById('who-email').textContent,
      events: document.querySelector('[data-w="events30d"]').textContent,
      total7: document.querySelector('[data-w="total7"]').textContent,
      html: document.documentElement.outerHTML,
    }));
  }

  async function refreshWidgets() {
    const before = await page.evaluate(() => Number(document.getElementById('dash').dataset.refreshed || 0));
    await page.click('#refresh');
    await page.waitForFunction((n) => Number(document.getElementById('dash').dataset.refreshed || 0) > n, before);
  }

  it('two users signing in one after another never see each other\'s data', async () => {
    const [demo, user1] = [await login(srv, 'demo@example.com'), await login(srv, 'user1@example.com')];
    const truth = async (u) => (await call(srv, 'dashboard.summary', { token: u.token })).body.result.data;
    // make the two users' numbers differ, so a mix-up would show
    for (let i = 0; i < 7; i++) await call(srv, 'activity.track', { token: user1.token, input: { kind: 'browser_test' } });
    await call(srv, 'user.update', { token: user1.token, input: { name: 'Second <b>User</b> & co' } });

    const session = async () => (await ctx.cookies()).find((c) => c.name === 'session')?.value;
    await signIn('demo@example.com');
    const demoSession = await session();
    let w = await widgets();
    assert.equal(w.email, 'demo@example.com');
    assert.equal(w.uid, String(demo.user.id));
    await refreshWidgets(); // the browser now holds demo's private /trpc/dashboard.summary (max-age=30)
    w = await widgets();
    const demoTruth = await truth(demo);
    assert.equal(w.events, String(demoTruth.usage.events30d));
    assert.equal(w.uid, String(demo.user.id));

    proxy.clear();
    await Promise.all([page.waitForURL(/\/login$/), page.click('#logout')]);
    await page.goto(`${proxy.base}/dashboard`, { waitUntil: 'load' });
    assert.match(page.url(), /\/login$/, 'signed out: the dashboard is not shown from any cache');
    assert.equal(await page.$('#dash'), null, 'no dashboard on the page');
    assert.doesNotMatch(await page.content(), /data-user-id|who-email/);

    await signIn('user1@example.com');
    const user1Session = await session();
    assert.ok(demoSession && user1Session && demoSession !== user1Session);
    w = await widgets();
    assert.equal(w.email, 'user1@example.com');
    assert.equal(w.uid, String(user1.user.id));
    assert.doesNotMatch(w.html, /demo@example\.com/);
    assert.match(w.html, /Second &lt;b&gt;User&lt;\/b&gt; &amp; co/, 'the name is HTML-escaped');
    proxy.clear();
    await refreshWidgets();
    const refresh = reached((s) => s.url === '/trpc/dashboard.summary');
    assert.equal(refresh.length, 1, 'the refresh reached the server: demo\'s cached answer was not reused');
    assert.match(refresh[0].cookie, new RegExp(`session=${user1Session}`));
    assert.doesNotMatch(refresh[0].cookie, new RegExp(demoSession));
    w = await widgets();
    const u1Truth = await truth(user1);
    assert.equal(w.uid, String(user1.user.id), 'the widgets still show the second user');
    assert.equal(w.events, String(u1Truth.usage.events30d));
    assert.equal(w.total7, String(u1Truth.activity.last7d.total));
    assert.notEqual(u1Truth.usage.events30d, demoTruth.usage.events30d);
    assert.doesNotMatch(w.html, /demo@example\.com/);

    const dir = join(dirname(BIN), 'e2e-artifacts');
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: join(dir, 'dashboard.png'), fullPage: true });
    await page.goto(`${proxy.base}/`, { waitUntil: 'load' });
    await page.screenshot({ path: join(dir, 'home.png') });
  });
  it('signing out clears the browser: its cache forgets a personal answer, and every cookie of the site is gone', async () => {
    await signIn('demo@example.com');
    await page.evaluate(() => { document.cookie = 'theme=dark; path=/; max-age=86400; samesite=lax'; });
    assert.deepEqual((await ctx.cookies()).map((c) => c.name).sort(), ['session', 'theme']);
    // A second session of the same user, used by the page with a bearer token and no
    // cookies (so Vary: Cookie cannot be what keeps the cached answer from being reused).
    const { token } = await login(srv, 'demo@example.com');
    const me = () => page.evaluate(async (t) => {
      const r = await fetch('/trpc/user.me', { headers: { authorization: `Bearer ${t}` }, credentials: 'omit' });
      return { status: r.status, email: (await r.json()).result?.data?.email };
    }, token);
    proxy.clear();
    assert.deepEqual(await me(), { status: 200, email: 'demo@example.com' });
    assert.deepEqual(await me(), { status: 200, email: 'demo@example.com' });
    assert.equal(reached((s) => s.url === '/trpc/user.me').length, 1, 'the second answer came from the browser cache (private, max-age=30)');

    proxy.clear();
    await Promise.all([page.waitForURL(/\/login$/), page.click('#logout')]);
    const out = reached((s) => s.url === '/trpc/auth.logout');
    assert.equal(out.length, 1);
    assert.equal(out[0].status, 200);
    assert.equal(out[0].headers['clear-site-data'], '"cache", "cookies"');
    assert.deepEqual(await ctx.cookies(), [], 'every cookie of the site is gone, the page\'s own too');

    proxy.clear();
    assert.deepEqual(await me(), { status: 200, email: 'demo@example.com' }, 'the bearer session still works');
    assert.equal(reached((s) => s.url === '/trpc/user.me').length, 1, 'the browser cache no longer had the personal answer: the server was asked');
  });
});

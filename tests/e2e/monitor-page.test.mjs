// The monitoring page in headless Chromium (Debian's chromium, driven by playwright-core)
// while a bounded load runs on loopback: the page signs in with an admin's session cookie,
// updates every second, and every chart is drawn from non-zero data — checked in the data the
// page exposes (window.tcMonitor) and in the canvas pixels themselves; the hit ratio tables by
// route and by tag family list the load's routes and families. Screenshots (dark and
// light) are saved into the build directory: <build>/e2e-artifacts/admin-cache*.png.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, call, login, sleep, BIN } from './lib.mjs';

const OUT = join(dirname(BIN), 'e2e-artifacts');
const CHARTS = ['c-ratio', 'c-rps', 'c-lat', 'c-l1', 'c-swr'];

describe('the monitoring page under load', () => {
  let srv, admin, users, browser, udd;
  let stopLoad = false, load, loadStats = { ok: 0, bad: 0 };

  before(async () => {
    mkdirSync(OUT, { recursive: true });
    // a short fresh time so stale reads and background refreshes show up within seconds
    srv = await startServer({ users: 30, extra: ['--test-fresh-ms', '1500', '--access-log', 'off'] });
    admin = await login(srv, 'admin@example.com');
    users = [await login(srv)];
    for (let i = 1; i <= 5; i++) users.push(await login(srv, `user${i}@example.com`));
    // the load: 6 loops on loopback, queries mostly (hits), some mutations (invalidations,
    // then misses); bounded by stopLoad and by the test's own deadline
    const deadline = Date.now() + 120000;
    const loop = async (k) => {
      let i = 0;
      while (!stopLoad && Date.now() < deadline) {
        const u = users[(k + i) % users.length];
        const ops = [
          () => call(srv, 'user.me', { token: u.token }),
          () => call(srv, 'dashboard.summary', { token: u.token }),
          () => call(srv, 'subscription.get', { token: u.token }),
          () => call(srv, 'blog.list', { input: { limit: 1 + (i % 4) } }),
        ];
        // one loop edits one user now and then (an invalidation, then misses); the other
        // users' entries live out their 1.5 s and are served stale while they refresh
        const r = k === 0 && i % 200 === 199
          ? await call(srv, 'user.update', { token: users[5].token, input: { bio: `load ${i}` } })
          : await ops[i % ops.length]();
        if (r.status === 200) loadStats.ok++; else loadStats.bad++;
        i++;
        if (i % 4 === 0) await sleep(5); // a few hundred requests a second: room for the browser
      }
    };
    load = Promise.all([0, 1, 2, 3, 4, 5].map(loop));
    udd = mkdtempSync(join(tmpdir(), 'tc-chromium-'));
    browser = await chromium.launchPersistentContext(udd, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1440, height: 1000 },
      colorScheme: 'dark',
      timeout: 60000,
    });
    await browser.addCookies([{ name: 'session', value: admin.token, url: srv.base, httpOnly: true, sameSite: 'Lax' }]);
  });

  after(async () => {
    stopLoad = true;
    await load;
    if (browser) await browser.close();
    if (udd) rmSync(udd, { recursive: true, force: true });
    if (srv) assert.equal(await srv.stop(), 0);
  });

  it('draws every chart from non-zero data, updates live, and looks right (screenshots)', async () => {
    const page = await browser.newPage();
    const problems = [];
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    const resp = await page.goto(`${srv.base}/admin/cache`, { waitUntil: 'load', timeout: 30000 });
    assert.equal(resp.status(), 200);

    // every chart drawn, each with non-zero points; bounded wait
    const drawn = page.waitForFunction((ids) => {
      const m = window.tcMonitor;
      if (!m || m.updates < 4) return false;
      return ['ratio', 'rps', 'lat', 'l1', 'swr'].every((k) => m.charts[k] && m.charts[k].drawn && m.charts[k].nonzero > 0)
        && ids.every((id) => Number(document.getElementById(id).dataset.nonzero) > 0);
    }, CHARTS, { timeout: 60000, polling: 250 });
    await drawn.catch(async (e) => {
      const m = await page.evaluate(() => ({ charts: window.tcMonitor.charts, updates: window.tcMonitor.updates, s: window.tcMonitor.feed && window.tcMonitor.feed.summary }));
      throw new Error(`${e.message}: ${JSON.stringify(m)}`);
    });

    // the pixels: each canvas holds saturated (series-coloured) pixels, not only grey grid
    const colored = await page.evaluate((ids) => ids.map((id) => {
      const c = document.getElementById(id);
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) {
        const mx = Math.max(d[i], d[i + 1], d[i + 2]), mn = Math.min(d[i], d[i + 1], d[i + 2]);
        if (d[i + 3] > 0 && mx - mn > 60) n++;
      }
      return [id, n, c.width, c.height];
    }), CHARTS);
    for (const [id, n, w, h] of colored) {
      assert.ok(w > 300 && h > 100, `${id} is ${w}x${h}`);
      assert.ok(n > 150, `${id}: ${n} coloured pixels`);
    }

    // pause stops the updates; resume restarts them: the feed keeps coming, about once a second
    await page.click('#pause');
    const p0 = await page.evaluate(() => window.tcMonitor.updates);
    await sleep(1800);
    assert.ok(await page.evaluate(() => window.tcMonitor.updates) - p0 <= 1, 'paused');
    await page.click('#pause');
    const u0 = await page.evaluate(() => window.tcMonitor.updates);
    await sleep(2500);
    const u1 = await page.evaluate(() => window.tcMonitor.updates);
    assert.ok(u1 - u0 >= 2, `updates ${u0} -> ${u1}`);

    // the numbers a person reads: KPIs, the namespace table, health
    const view = await page.evaluate(() => ({
      ratio: document.querySelector('#k-ratio .v').textContent,
      rps: document.querySelector('#k-rps .v').textContent,
      cached: document.querySelector('#k-cached .v').textContent,
      uncached: document.querySelector('#k-uncached .v').textContent,
      redis: document.querySelector('#k-redis .v').textContent,
      rows: [...document.querySelectorAll('#ns tbody tr td.ns')].map((td) => td.textContent),
      live: document.getElementById('live').dataset.state,
      health: document.getElementById('health').textContent,
      routes: [...document.querySelectorAll('#routes tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent)),
      families: [...document.querySelectorAll('#families tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent)),
      feed: window.tcMonitor.feed.summary,
    }));
    assert.match(view.ratio, /^\d{1,3}\.\d$/);
    assert.ok(Number(view.rps.replace(/\u202f/g, '')) > 10, `req/s ${view.rps}`);
    const ms = /^\d[\d\u202f]*(\.\d+)?$/; // 0.213, 18.2, 123, 1 234
    assert.match(view.cached, ms);
    assert.match(view.uncached, ms);
    assert.equal(view.redis, 'OK');
    assert.equal(view.live, 'ok');
    for (const ns of ['user', 'dash', 'sub', 'session', 'blog']) assert.ok(view.rows.includes(ns), `${ns} in ${view.rows}`);
    assert.match(view.health, /closed/);
    // hit ratio by route and by tag family: the load's routes and families, a ratio each,
    // the busiest first as the feed ranks them
    const names = (rows) => rows.map((r) => r[0]);
    for (const r of ['user.me', 'dashboard.summary', 'subscription.get', 'blog.list']) {
      assert.ok(names(view.routes).includes(r), `route ${r} in ${names(view.routes)}`);
    }
    for (const f of ['user', 'sub', 'dash', 'blog', 'blog-list']) {
      assert.ok(names(view.families).includes(f), `family ${f} in ${names(view.families)}`);
    }
    for (const row of [...view.routes, ...view.families]) assert.match(row[1], /^\d{1,3}\.\d %$/, `${row[0]}: ${row[1]}`);
    const answered = (r) => r.hits + r.stale + r.misses;
    for (const t of [view.feed.routes, view.feed.tag_families]) {
      for (let i = 1; i < t.length; i++) assert.ok(answered(t[i - 1]) >= answered(t[i]), 'busiest first');
    }
    assert.ok(view.feed.stale_served > 0 && view.feed.refreshes > 0, 'stale reads and refreshes in the last minute');
    assert.ok(view.feed.hits > view.feed.misses, 'mostly hits');

    // the hot keys table: the latest feed's top list, redrawn with every poll
    const hot = () => page.evaluate(() => ({
      rows: [...document.querySelectorAll('#hot-keys tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent)),
      keys: window.tcMonitor.feed.summary.hot.keys,
      updates: window.tcMonitor.updates,
    }));
    const h0 = await hot();
    assert.ok(h0.rows.length >= 5 && h0.rows.length <= 16, `${h0.rows.length} hot key rows`);
    assert.deepEqual(h0.rows.map((r) => r[0]), h0.keys.map((k) => k.name));
    assert.deepEqual(h0.rows.map((r) => Number(r[2].replace(/\D/g, ''))), h0.keys.map((k) => k.count));
    for (const r of h0.rows) assert.match(r[1], /^\d+\.\d %$/);
    await sleep(2500);
    const h1 = await hot();
    assert.ok(h1.updates >= h0.updates + 2, 'polled again');
    assert.deepEqual(h1.rows.map((r) => Number(r[2].replace(/\D/g, ''))), h1.keys.map((k) => k.count), 'redrawn from the latest feed');
    assert.notDeepEqual(h1.keys, h0.keys, 'the counts moved under the load');

    // a hover shows the read-out
    const box = await page.locator('#c-rps').boundingBox();
    await page.mouse.move(box.x + box.width - 30, box.y + box.height / 2);
    await page.waitForSelector('.tip:not([hidden])', { timeout: 5000 });
    await page.mouse.move(0, 0);

    const dark = join(OUT, 'admin-cache.png');
    await page.screenshot({ path: dark, fullPage: true });
    await page.click('#theme');
    await sleep(1200);
    const light = join(OUT, 'admin-cache-light.png');
    await page.screenshot({ path: light, fullPage: true });
    for (const f of [dark, light]) assert.ok(statSync(f).size > 50000, `${f} written`);
    console.log(`screenshots: ${dark} ${light}; load ${loadStats.ok} ok / ${loadStats.bad} other`);

    assert.deepEqual(problems, [], 'no console errors, CSP violations or page errors');
    assert.equal(loadStats.bad, 0, 'every load request succeeded');
    await page.close();
  });
});

// Pages served from their rendered bytes (src/app/pages.c, src/app/pagecache.c), against the
// real server: a page whose values are cached is answered from the bytes stored under its
// ETag — rendered zero times, by the render counter on /metrics — byte for byte what a render
// gives; an edit, a rename and an invalidation made on another instance change the ETag, and
// the page shows the new content at once; the personal page is kept per user (one user's
// bytes never reach another, and neither evicts the other); HEAD uses the stored bytes too;
// with --page-cache-mb 0 every 200 is rendered (the counter counts); the store's gauges stay
// within its limit.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, call, login } from './lib.mjs';
import { raw } from './http-lib.mjs';
import { scrape, value } from './prom.mjs';

const renders = (m, page) => value(m.samples, 'tiercache_page_renders_total', { page });
const hits = (m) => value(m.samples, 'tiercache_page_cache_hits_total');
const misses = (m) => value(m.samples, 'tiercache_page_cache_misses_total');
const esc = (t) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

describe('pages from their rendered bytes', () => {
  let A, admin, demo, slugs;
  const get = (path, h = {}) => raw(A.base, 'GET', path, h);
  before(async () => {
    A = await startServer();
    admin = await login(A, 'admin@example.com');
    demo = await login(A, 'demo@example.com');
    slugs = (await call(A, 'blog.list', { input: { limit: 5 } })).body.result.data.items.map((p) => p.slug);
  });
  after(async () => { assert.equal(await A.stop(), 0); });

  it('a page whose values are cached is answered from its bytes: rendered zero times', async () => {
    for (const [path, page] of [[`/blog/${slugs[0]}`, 'post'], ['/', 'home'], ['/login', 'login']]) {
      const first = await get(path);
      assert.equal(first.status, 200, path);
      const m0 = await scrape(A);
      const again = [];
      for (let i = 0; i < 5; i++) again.push(await get(path));
      const head = await raw(A.base, 'HEAD', path);
      const m1 = await scrape(A);
      assert.equal(renders(m1, page) - renders(m0, page), 0, `${path}: six answers, no render`);
      assert.equal(hits(m1) - hits(m0), 6, `${path}: six page store hits`);
      assert.equal(misses(m1) - misses(m0), 0, path);
      for (const r of again) {
        assert.equal(r.status, 200);
        assert.deepEqual(r.body, first.body, `${path}: the stored bytes are the rendered ones`);
        assert.equal(r.headers.etag, first.headers.etag);
        assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
        assert.equal(r.headers['content-security-policy'], first.headers['content-security-policy']);
      }
      assert.equal(head.status, 200);
      assert.equal(Number(head.headers['content-length']), first.body.length, `${path}: HEAD`);
      if (page !== 'login') assert.match(again[4].headers['cache-status'], /^tiercache; hit; ttl=\d+; detail=l1$/, path);
    }
  });

  it('a revalidation that matches is a 304 that neither looks up nor renders the page', async () => {
    const path = `/blog/${slugs[1]}`;
    const full = await get(path);
    const m0 = await scrape(A);
    const r = await get(path, { 'if-none-match': full.headers.etag });
    const m1 = await scrape(A);
    assert.equal(r.status, 304);
    assert.equal(hits(m1) + misses(m1), hits(m0) + misses(m0), 'no lookup');
    assert.equal(renders(m1, 'post'), renders(m0, 'post'));
  });

  it('an edit changes the ETag: the post page and the home page show the new content at once, then are kept again', async () => {
    const slug = slugs[2];
    const before = { post: await get(`/blog/${slug}`), home: await get('/') };
    await get(`/blog/${slug}`);
    await get('/');
    const title = `Edited <${Date.now()}> & kept`;
    const body = `A new first paragraph ${Date.now()}.\n\nAnd a second.`;
    const ed = await call(A, 'blog.update', { token: admin.token, input: { slug, title, body } });
    assert.equal(ed.status, 200, JSON.stringify(ed.body));
    const m0 = await scrape(A);
    const post = await get(`/blog/${slug}`);
    const home = await get('/');
    const m1 = await scrape(A);
    assert.notEqual(post.headers.etag, before.post.headers.etag, 'the post page has a new ETag');
    assert.notEqual(home.headers.etag, before.home.headers.etag, 'the home page has a new ETag');
    assert.ok(post.body.toString().includes(`<h1>${esc(title)}</h1>`), 'the post page shows the new title');
    assert.ok(post.body.toString().includes(`<p>${esc(body.split('\n')[0])}</p>`), 'and the new body');
    assert.ok(home.body.toString().includes(esc(title)), 'the home page lists the new title');
    assert.equal(renders(m1, 'post') - renders(m0, 'post'), 1);
    assert.equal(renders(m1, 'home') - renders(m0, 'home'), 1);
    // the old ETag no longer validates, the new one does; the new bytes are kept
    assert.equal((await get(`/blog/${slug}`, { 'if-none-match': before.post.headers.etag })).status, 200);
    assert.equal((await get(`/blog/${slug}`, { 'if-none-match': post.headers.etag })).status, 304);
    const m2 = await scrape(A);
    const again = await get(`/blog/${slug}`);
    assert.deepEqual(again.body, post.body);
    assert.equal(renders(await scrape(A), 'post') - renders(m2, 'post'), 0, 'kept again');
  });

  it('the author\'s rename changes every post page\'s byline', async () => {
    const slug = slugs[3];
    const old = await get(`/blog/${slug}`);
    const name = `Renamed Author ${Date.now()}`;
    assert.equal((await call(A, 'user.update', { token: admin.token, input: { name } })).status, 200);
    const now = await get(`/blog/${slug}`);
    assert.notEqual(now.headers.etag, old.headers.etag);
    assert.ok(now.body.toString().includes(`by ${esc(name)} ·`), 'the page names the author as renamed');
  });

  it('an invalidation made on another instance reaches this one\'s pages (the bus)', async () => {
    const B = await startServer({ dbHandle: A.db, prefix: A.prefix });
    try {
      const slug = slugs[4];
      const onB = await raw(B.base, 'GET', `/blog/${slug}`);
      await raw(B.base, 'GET', `/blog/${slug}`); // kept on B
      const title = `Edited on A ${Date.now()}`;
      assert.equal((await call(A, 'blog.update', { token: admin.token, input: { slug, title } })).status, 200);
      // blog.update returns once every instance applied the invalidation (docs/scale-out.md)
      const r = await raw(B.base, 'GET', `/blog/${slug}`);
      assert.notEqual(r.headers.etag, onB.headers.etag);
      assert.ok(r.body.toString().includes(esc(title)), 'B shows A\'s edit');
    } finally {
      assert.equal(await B.stop(), 0);
    }
  });

  it('the personal page is kept per user: each gets their own, neither evicts the other', async () => {
    const other = await login(A, 'user2@example.com');
    const dash = (u) => get('/dashboard', { cookie: `session=${u.token}` });
    const [d1, o1] = [await dash(demo), await dash(other)];
    const m0 = await scrape(A);
    const seen = [];
    for (let i = 0; i < 3; i++) seen.push([demo, await dash(demo)], [other, await dash(other)]);
    const m1 = await scrape(A);
    for (const [u, r] of seen) {
      assert.equal(r.status, 200);
      assert.match(r.body.toString(), new RegExp(`data-user-id="${u.user.id}"`), 'their own dashboard');
      assert.ok(r.body.toString().includes(u.user.email));
      assert.deepEqual(r.body, u === demo ? d1.body : o1.body);
    }
    assert.equal(renders(m1, 'dashboard') - renders(m0, 'dashboard'), 0, 'six dashboards, no render');
    assert.equal(hits(m1) - hits(m0), 6);
    // a change to one user's data changes their page, not the other's
    const name = `Demo ${Date.now()}`;
    assert.equal((await call(A, 'user.update', { token: demo.token, input: { name } })).status, 200);
    const d2 = await dash(demo);
    assert.ok(d2.body.toString().includes(esc(name)));
    assert.notEqual(d2.headers.etag, d1.headers.etag);
    const m2 = await scrape(A);
    assert.deepEqual((await dash(other)).body, o1.body);
    assert.equal(renders(await scrape(A), 'dashboard') - renders(m2, 'dashboard'), 0);
  });

  it('the store stays within its limit, and says so', async () => {
    const m = await scrape(A);
    const bytes = value(m.samples, 'tiercache_page_cache_bytes');
    assert.ok(bytes > 0);
    assert.ok(bytes <= value(m.samples, 'tiercache_page_cache_max_bytes'));
    assert.equal(value(m.samples, 'tiercache_page_cache_max_bytes'), 16 << 20, 'the default: 16 MiB');
    assert.ok(value(m.samples, 'tiercache_page_cache_entries') >= 6);
  });

  it('without a store (--page-cache-mb 0) every answer is rendered: the counter counts', async () => {
    const N = await startServer({ extra: ['--page-cache-mb', '0'] });
    try {
      const slug = (await call(N, 'blog.list', { input: { limit: 1 } })).body.result.data.items[0].slug;
      const first = await raw(N.base, 'GET', `/blog/${slug}`);
      const m0 = await scrape(N);
      for (let i = 0; i < 4; i++) assert.deepEqual((await raw(N.base, 'GET', `/blog/${slug}`)).body, first.body);
      const m1 = await scrape(N);
      assert.equal(renders(m1, 'post') - renders(m0, 'post'), 4);
      assert.equal(value(m1.samples, 'tiercache_page_cache_max_bytes'), 0);
      assert.equal(hits(m1), 0);
    } finally {
      assert.equal(await N.stop(), 0);
    }
  });
});

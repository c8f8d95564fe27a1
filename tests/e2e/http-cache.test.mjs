// HTTP cache semantics of every route, against the real server over raw HTTP/1.1:
//   - a table of every route class with its exact Cache-Control and Vary (and no public,
//     s-maxage or must-revalidate on anything authenticated; tags only on public classes);
//   - every batch mixing a personal query with a public one, in both orders: private;
//   - the 304 matrix (strong, weak, list, `*`, If-None-Match with If-Modified-Since) on a
//     private query, a public query, a public page, a personal page and a static asset; the
//     304 repeats Cache-Control, ETag, Vary and Cache-Status and has no body;
//   - authentication before preconditions;
//   - HEAD equals GET without the body, route by route;
//   - web cache deception and poisoning probes: trailing segments, `;` parameters and
//     encoded slashes are 404 no-store, never the parent resource; X-Forwarded-Host and
//     friends are never reflected and change nothing;
//   - the tRPC fast path: a matching revalidation of a cached query is a 304 from L1;
//   - CDN-Cache-Control (RFC 9213): none without a CDN that is purged; with --cdn-max-age,
//     on public queries and public pages only (never on anything personal), repeated by 304s;
//   - Clear-Site-Data on sign-out (ended, or no session), "cache" only when the same answer
//     signs someone in; on nothing else.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { startServer, call, login, sign, DEMO_PASSWORD } from './lib.mjs';
import { raw, assetUrls, comparable, mixedBatches, checkMixedBatch } from './http-lib.mjs';

const STATIC_CC = 'public, max-age=31536000, immutable';
const PRIVATE_CC = 'private, max-age=30';
const SWR_CC = 'private, max-age=30, stale-while-revalidate=300';
const PUBLIC_CC = 'public, max-age=60, s-maxage=300, stale-while-revalidate=600';
const CRED_VARY = 'Authorization, Cookie';

describe('HTTP cache semantics', () => {
  let srv, demo, other, admin, assets, slug, cookie;
  const get = (path, headers = {}) => raw(srv.base, 'GET', path, headers);
  const q = (proc, input) => `/trpc/${proc}${input === undefined ? '' : `?input=${encodeURIComponent(JSON.stringify(input))}`}`;

  before(async () => {
    srv = await startServer();
    demo = await login(srv);
    other = await login(srv, 'user1@example.com');
    admin = await login(srv, 'admin@example.com');
    cookie = `session=${demo.token}`;
    const home = await get('/');
    assert.equal(home.status, 200);
    assets = assetUrls(home.body.toString());
    const list = JSON.parse((await get(q('blog.list', { limit: 3 }))).body).result.data;
    slug = list.items[0].slug;
  });
  after(async () => { assert.equal(await srv.stop(), 0); });

  const asset = (re) => {
    const a = assets.find((u) => re.test(u));
    assert.ok(a, `an asset matching ${re} in ${assets}`);
    return a;
  };

  it('pages reference content-hashed asset names only', () => {
    assert.ok(assets.length >= 3, `assets: ${assets}`);
    for (const a of assets) assert.match(a, /^\/static\/[a-z]+\.[0-9a-f]{8}\.(css|js|svg)$/);
  });

  it('every route class: exact Cache-Control and Vary, tags only where a shared cache may store', async () => {
    const bearer = { authorization: `Bearer ${demo.token}` };
    const json = { 'content-type': 'application/json' };
    const css = asset(/app\.[0-9a-f]{8}\.css$/), svg = asset(/favicon\./);
    const badSig = await sign('{}', 'whsec_not_the_right_secret');
    // [name, method, path, headers, body, status, Cache-Control, Vary, authenticated, tags]
    const rows = [
      ['static css, gzip', 'GET', css, { 'accept-encoding': 'gzip' }, undefined, 200, STATIC_CC, 'Accept-Encoding', false, null],
      ['static css, identity', 'GET', css, {}, undefined, 200, STATIC_CC, 'Accept-Encoding', false, null],
      ['static svg', 'GET', svg, { 'accept-encoding': 'gzip' }, undefined, 200, STATIC_CC, 'Accept-Encoding', false, null],
      ['static: unhashed name', 'GET', '/static/app.css', {}, undefined, 404, 'no-store', null, false, null],
      ['static: stale hash', 'GET', '/static/app.00000000.css', {}, undefined, 404, 'no-store', null, false, null],
      ['static: POST', 'POST', css, {}, '', 405, 'no-store', null, false, null],
      ['query: user.me', 'GET', q('user.me'), bearer, undefined, 200, PRIVATE_CC, CRED_VARY, true, null],
      ['query: user.me by cookie', 'GET', q('user.me'), { cookie }, undefined, 200, PRIVATE_CC, CRED_VARY, true, null],
      ['query: subscription.get', 'GET', q('subscription.get'), bearer, undefined, 200, PRIVATE_CC, CRED_VARY, true, null],
      ['query: dashboard.summary (SWR)', 'GET', q('dashboard.summary'), bearer, undefined, 200, SWR_CC, CRED_VARY, true, null],
      ['query: batch user.me,subscription.get', 'GET', '/trpc/user.me,subscription.get?batch=1', bearer, undefined, 200, PRIVATE_CC, CRED_VARY, true, null],
      ['query: batch public + private', 'GET', `/trpc/blog.list,user.me?batch=1&input=${encodeURIComponent('{"0":{"limit":2}}')}`, bearer, undefined, 200, PRIVATE_CC, CRED_VARY, true, null],
      ['query: blog.list', 'GET', q('blog.list', { limit: 3 }), {}, undefined, 200, PUBLIC_CC, null, false, 'blog blog-list'],
      ['query: blog.list with credentials', 'GET', q('blog.list', { limit: 3 }), { cookie }, undefined, 200, PUBLIC_CC, null, false, 'blog blog-list'],
      ['query: blog.bySlug', 'GET', q('blog.bySlug', { slug }), {}, undefined, 200, PUBLIC_CC, null, false, `blog blog:${slug}`],
      ['query: unknown post', 'GET', q('blog.bySlug', { slug: 'no-such-post' }), {}, undefined, 404, 'no-store', null, false, null],
      ['query: anonymous user.me', 'GET', q('user.me'), {}, undefined, 401, 'no-store', null, false, null],
      ['query: forged token', 'GET', q('user.me'), { authorization: `Bearer ${'A'.repeat(43)}` }, undefined, 401, 'no-store', null, false, null],
      ['query: by POST', 'POST', q('user.me'), { ...bearer, ...json }, '', 405, 'no-store', null, false, null],
      ['mutation: auth.login', 'POST', '/trpc/auth.login', json, JSON.stringify({ email: 'user2@example.com', password: DEMO_PASSWORD }), 200, 'no-store', null, false, null],
      ['mutation: user.update', 'POST', '/trpc/user.update', { ...bearer, ...json }, JSON.stringify({ bio: 'cached?' }), 200, 'no-store', null, true, null],
      ['mutation: activity.track', 'POST', '/trpc/activity.track', { ...bearer, ...json }, JSON.stringify({ kind: 'page_view' }), 200, 'no-store', null, true, null],
      ['mutation: blog.update', 'POST', '/trpc/blog.update', { authorization: `Bearer ${admin.token}`, ...json }, JSON.stringify({ slug, body: 'Edited by the header test.' }), 200, 'no-store', null, true, null],
      ['webhook: bad signature', 'POST', '/webhooks/billing', { ...json, 'billing-signature': badSig }, '{}', 401, 'no-store', null, false, null],
      ['page: /', 'GET', '/', {}, undefined, 200, 'no-cache', null, false, 'blog blog-list page'],
      ['page: /blog/<slug>', 'GET', `/blog/${slug}`, {}, undefined, 200, 'no-cache', null, false, `blog blog:${slug} page`],
      ['page: /login', 'GET', '/login', {}, undefined, 200, 'no-cache', null, false, 'page'],
      ['page: /dashboard (personal)', 'GET', '/dashboard', { cookie }, undefined, 200, 'private, no-cache', CRED_VARY, true, null],
      ['page: /dashboard signed out (redirect)', 'GET', '/dashboard', {}, undefined, 303, 'no-store', null, false, null],
      ['page: unknown post', 'GET', '/blog/no-such-post', {}, undefined, 404, 'no-store', null, false, null],
      ['page: POST', 'POST', '/', json, '{}', 405, 'no-store', null, false, null],
      ['health', 'GET', '/healthz', {}, undefined, 200, 'no-store', null, false, null],
      ['unknown path', 'GET', '/nope', {}, undefined, 404, 'no-store', null, false, null],
    ];
    for (const [name, method, path, headers, body, status, cc, vary, authed, tags] of rows) {
      const r = await raw(srv.base, method, path, headers, body);
      assert.equal(r.status, status, `${name}: status (${r.body.toString().slice(0, 200)})`);
      assert.equal(r.headers['cache-control'], cc, `${name}: Cache-Control`);
      assert.equal(r.headers.vary, vary ?? undefined, `${name}: Vary`);
      assert.equal(r.headers.xkey, tags ?? undefined, `${name}: xkey`);
      assert.equal(r.headers['cdn-cache-control'], undefined, `${name}: no CDN is purged here`);
      assert.equal(r.headers['clear-site-data'], undefined, `${name}: not a sign-out`);
      if (authed) {
        assert.doesNotMatch(cc, /public|s-maxage|must-revalidate/, `${name}: forbidden directive`);
        if (cc !== 'no-store') { // stored by a browser: it must vary on the credentials
          assert.match(r.headers.vary ?? '', /Authorization/, name);
          assert.match(r.headers.vary ?? '', /Cookie/, name);
        }
      }
      if (status === 200 && !/no-store/.test(cc)) assert.match(r.headers.etag ?? '', /^"[0-9a-f]{16}(-gz)?"$/, `${name}: ETag`);
      if (/no-store/.test(cc)) assert.equal(r.headers.etag, undefined, `${name}: no ETag on no-store`);
      if (method === 'GET' && path.startsWith('/trpc/') && status === 200) {
        assert.match(r.headers['cache-status'], /^tiercache; (hit; ttl=-?\d+; detail=l[12](-stale)?|fwd=miss; stored; ttl=\d+)$/, `${name}: Cache-Status`);
      }
    }
  });

  it('with a CDN that is purged (--cdn-max-age): CDN-Cache-Control on public queries and public pages only', async () => {
    const cdn = await startServer({ extra: ['--cdn-max-age', '7200'] });
    try {
      const g = (path, headers = {}) => raw(cdn.base, 'GET', path, headers);
      const u = await login(cdn);
      const bearer = { authorization: `Bearer ${u.token}` }, mine = { cookie: `session=${u.token}` };
      const home = await g('/');
      const css = assetUrls(home.body.toString()).find((a) => a.endsWith('.css'));
      const s = JSON.parse((await g(q('blog.list', { limit: 1 }))).body).result.data.items[0].slug;
      const CDN_CC = 'public, max-age=7200, stale-while-revalidate=600';
      // [path, headers, CDN-Cache-Control, Cache-Control (what browsers and other caches follow)]
      const rows = [
        [q('blog.list', { limit: 3 }), {}, CDN_CC, PUBLIC_CC],
        [q('blog.list', { limit: 3 }), mine, CDN_CC, PUBLIC_CC],
        [q('blog.bySlug', { slug: s }), bearer, CDN_CC, PUBLIC_CC],
        ['/', {}, CDN_CC, 'no-cache'],
        ['/', mine, CDN_CC, 'no-cache'], // the same page for a signed-in reader
        [`/blog/${s}`, {}, CDN_CC, 'no-cache'],
        ['/login', {}, CDN_CC, 'no-cache'],
        [q('user.me'), bearer, undefined, PRIVATE_CC],
        [q('user.me'), mine, undefined, PRIVATE_CC],
        [q('subscription.get'), bearer, undefined, PRIVATE_CC],
        [q('dashboard.summary'), mine, undefined, SWR_CC],
        [`/trpc/blog.list,user.me?batch=1&input=${encodeURIComponent('{"0":{"limit":2}}')}`, bearer, undefined, PRIVATE_CC],
        [`/trpc/blog.list,blog.bySlug?batch=1&input=${encodeURIComponent(JSON.stringify({ 0: { limit: 2 }, 1: { slug: s } }))}`, {}, CDN_CC, PUBLIC_CC],
        ['/dashboard', mine, undefined, 'private, no-cache'],
        ['/dashboard', {}, undefined, 'no-store'],
        [css, {}, undefined, STATIC_CC],
        ['/static/app.css', {}, undefined, 'no-store'],
        ['/blog/no-such-post', {}, undefined, 'no-store'],
        [q('blog.bySlug', { slug: 'no-such-post' }), {}, undefined, 'no-store'],
        [q('user.me'), {}, undefined, 'no-store'],
        ['/healthz', {}, undefined, 'no-store'],
      ];
      for (const [path, h, want, cc] of rows) {
        const r = await g(path, h);
        assert.equal(r.headers['cdn-cache-control'], want, `${path} ${JSON.stringify(Object.keys(h))}: CDN-Cache-Control`);
        assert.equal(r.headers['cache-control'], cc, `${path}: Cache-Control is unchanged`);
      }
      for (const path of [`/blog/${s}`, q('blog.bySlug', { slug: s })]) { // a 304 repeats it
        const full = await g(path);
        const r304 = await g(path, { 'if-none-match': full.headers.etag });
        assert.equal(r304.status, 304, path);
        assert.equal(r304.headers['cdn-cache-control'], CDN_CC, `${path}: the 304 repeats CDN-Cache-Control`);
      }
      const upd = await raw(cdn.base, 'POST', '/trpc/user.update', { ...bearer, 'content-type': 'application/json' }, '{"bio":"cdn"}');
      assert.equal(upd.status, 200);
      assert.equal(upd.headers['cdn-cache-control'], undefined, 'a mutation');
    } finally {
      assert.equal(await cdn.stop(), 0);
    }
  });

  it('sign-out answers Clear-Site-Data: "cache", "cookies" (ended, or no session); "cache" only when the answer signs someone in', async () => {
    const post = (path, h, body = '') => raw(srv.base, 'POST', path, { 'content-type': 'application/json', ...h }, body);
    const u = await login(srv, 'user4@example.com');
    const out = await post('/trpc/auth.logout', { authorization: `Bearer ${u.token}` });
    assert.equal(out.status, 200, out.body.toString());
    assert.equal(out.headers['clear-site-data'], '"cache", "cookies"');
    assert.equal(out.headers['cache-control'], 'no-store');
    assert.match(String(out.headers['set-cookie']), /^session=; .*Max-Age=0/);
    // the session has ended (or there never was one): the browser forgets all the same
    for (const h of [{ authorization: `Bearer ${u.token}` }, { cookie: `session=${u.token}` }, {}]) {
      const r = await post('/trpc/auth.logout', h);
      assert.equal(r.status, 401, JSON.stringify(h));
      assert.equal(r.headers['clear-site-data'], '"cache", "cookies"', `${JSON.stringify(h)}: 401`);
    }
    // a batch that signs one session out and another in: clearing cookies could drop the new one
    const v = await login(srv, 'user5@example.com');
    const both = await post('/trpc/auth.logout,auth.login?batch=1', { cookie: `session=${v.token}` },
      JSON.stringify({ 1: { email: 'user5@example.com', password: DEMO_PASSWORD } }));
    assert.equal(both.status, 200, both.body.toString());
    assert.equal(both.headers['clear-site-data'], '"cache"');
    const fresh = JSON.parse(both.body.toString())[1].result.data.token;
    assert.ok([].concat(both.headers['set-cookie']).some((c) => c.startsWith(`session=${fresh};`)), 'the new session cookie is set');
    assert.equal((await call(srv, 'user.me', { token: v.token })).status, 401, 'the old session ended');
    assert.equal((await call(srv, 'user.me', { token: fresh })).status, 200, 'the new one works');
    // signing in, other writes and reads never clear anything
    const w = await login(srv, 'user6@example.com');
    for (const r of [
      await post('/trpc/auth.login', {}, JSON.stringify({ email: 'user6@example.com', password: DEMO_PASSWORD })),
      await post('/trpc/user.update', { authorization: `Bearer ${w.token}` }, '{"bio":"x"}'),
      await post('/trpc/auth.login', {}, JSON.stringify({ email: 'user6@example.com', password: 'wrong-password' })),
      await get(q('user.me'), { authorization: `Bearer ${w.token}` }),
      await get('/dashboard', { cookie: `session=${w.token}` }),
    ]) assert.equal(r.headers['clear-site-data'], undefined, `${r.status} ${r.body.toString().slice(0, 80)}`);
  });

  it('a batch mixing personal and public calls is private whichever order they come in, for each user', async () => {
    // The answer is personal if any call is: a public call last must not make it public.
    for (const b of mixedBatches(slug)) {
      for (const [u, creds] of [[demo, { authorization: `Bearer ${demo.token}` }], [other, { cookie: `session=${other.token}` }]]) {
        const what = `${b.name} as ${u.user.email}`;
        const r = await get(b.path, creds);
        checkMixedBatch(r, b, u, slug, what);
        assert.equal(r.headers['cache-control'], PRIVATE_CC, `${what}: Cache-Control`);
        assert.match(r.headers.etag ?? '', /^"[0-9a-f]{16}"$/, `${what}: ETag`);
      }
    }
  });

  it('static assets: gzip variant with its own ETag, correct Content-Type, the bytes of the file', async () => {
    const css = asset(/app\.[0-9a-f]{8}\.css$/);
    const plain = await get(css, { 'accept-encoding': 'identity' });
    const gz = await get(css, { 'accept-encoding': 'br;q=1, gzip;q=0.5' });
    const none = await get(css, { 'accept-encoding': 'gzip;q=0' });
    assert.equal(plain.headers['content-type'], 'text/css; charset=utf-8');
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal(none.headers['content-encoding'], undefined);
    assert.deepEqual(gunzipSync(gz.body), plain.body);
    assert.equal(gz.headers.etag, plain.headers.etag.replace(/"$/, '-gz"'));
    assert.notEqual(gz.headers.etag, plain.headers.etag);
    assert.ok(gz.body.length < plain.body.length);
    const js = await get(asset(/app\.[0-9a-f]{8}\.js$/));
    assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');
    const svg = await get(asset(/favicon\./));
    assert.equal(svg.headers['content-type'], 'image/svg+xml');
    assert.equal(plain.headers['x-content-type-options'], 'nosniff');
    // a gzip ETag does not validate the identity representation, and the other way round
    assert.equal((await get(css, { 'if-none-match': gz.headers.etag })).status, 200);
    assert.equal((await get(css, { 'accept-encoding': 'gzip', 'if-none-match': plain.headers.etag })).status, 200);
    assert.equal((await get(css, { 'accept-encoding': 'gzip', 'if-none-match': gz.headers.etag })).status, 304);
  });

  it('static assets: no path traversal, nothing but the table', async () => {
    const css = asset(/app\.[0-9a-f]{8}\.css$/);
    const probes = ['/static/../README.md', '/static/..%2fREADME.md', '/static/%2e%2e/README.md',
      '/static/%2e%2e%2fREADME.md', '/static/../../etc/passwd', '/static//etc/passwd', '/static/.',
      '/static/', `${css}/x`, `${css};x`, `${css}%00`, `${css}.map`, css.replace('/static/', '/static/./'),
      css.toUpperCase(), '/static/app.css', '/static/templates/layout.html', '/static/../templates/layout.html'];
    for (const p of probes) {
      const r = await get(p);
      assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status}`);
      if (r.status === 404) assert.equal(r.headers['cache-control'], 'no-store', p);
      assert.doesNotMatch(r.body.toString(), /root:|\{\{|<html/, p);
    }
  });

  // The 304 matrix, on each kind of cacheable response.
  const targets = () => [
    ['private query user.me', q('user.me'), { authorization: `Bearer ${demo.token}` }],
    ['public query blog.bySlug', q('blog.bySlug', { slug }), {}],
    ['public page /blog/<slug>', `/blog/${slug}`, {}],
    ['personal page /dashboard', '/dashboard', { cookie }],
    ['public page /login', '/login', {}],
    ['static asset', asset(/app\.[0-9a-f]{8}\.js$/), { 'accept-encoding': 'gzip' }],
  ];

  it('304 matrix: strong, weak, lists, *, If-None-Match with If-Modified-Since', async () => {
    const future = new Date(Date.now() + 365 * 86400000).toUTCString();
    const past = 'Mon, 01 Jan 1990 00:00:00 GMT';
    for (const [name, path, h] of targets()) {
      const full = await get(path, h);
      assert.equal(full.status, 200, name);
      const etag = full.headers.etag;
      assert.match(etag, /^"[^"]+"$/, `${name}: a strong ETag`);
      const weak = `W/${etag}`;
      const matrix = [
        ['strong', { 'if-none-match': etag }, 304],
        ['weak', { 'if-none-match': weak }, 304],
        ['list', { 'if-none-match': `"nope", ${etag}, "other"` }, 304],
        ['list of weak tags', { 'if-none-match': `W/"nope",${weak}` }, 304],
        ['*', { 'if-none-match': '*' }, 304],
        ['no match', { 'if-none-match': '"nope"' }, 200],
        ['malformed', { 'if-none-match': etag.slice(0, -1) }, 200],
        ['INM miss + IMS in the future: IMS ignored', { 'if-none-match': '"nope"', 'if-modified-since': future }, 200],
        ['INM match + IMS in the past: IMS ignored', { 'if-none-match': etag, 'if-modified-since': past }, 304],
        ['If-Match that fails', { 'if-match': '"nope"' }, 412],
        ['If-Match that holds', { 'if-match': etag }, 200],
      ];
      for (const [what, extra, want] of matrix) {
        const r = await get(path, { ...h, ...extra });
        assert.equal(r.status, want, `${name}, ${what}`);
        if (want === 304) {
          assert.equal(r.body.length, 0, `${name}, ${what}: no body`);
          for (const k of ['cache-control', 'etag', 'vary', 'xkey']) {
            assert.equal(r.headers[k], full.headers[k], `${name}, ${what}: 304 repeats ${k}`);
          }
          // Cache-Status too (the first GET may have been the miss; a revalidation is a hit)
          assert.equal(r.headers['cache-status'] === undefined, full.headers['cache-status'] === undefined, `${name}: Cache-Status`);
          if (full.headers['cache-status']) assert.match(r.headers['cache-status'], /^tiercache; hit/, `${name}: the 304 is a cache hit`);
          assert.equal(r.headers['content-type'], undefined, `${name}: no Content-Type on a 304`);
        }
        if (want === 412) assert.equal(r.headers['cache-control'], 'no-store');
      }
    }
  });

  it('If-Modified-Since alone on a static asset (it has Last-Modified)', async () => {
    const path = asset(/app\.[0-9a-f]{8}\.css$/);
    const full = await get(path);
    const lm = full.headers['last-modified'];
    assert.match(lm, /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    assert.equal((await get(path, { 'if-modified-since': lm })).status, 304);
    assert.equal((await get(path, { 'if-modified-since': 'Mon, 01 Jan 1990 00:00:00 GMT' })).status, 200);
    assert.equal((await get(path, { 'if-modified-since': 'not a date' })).status, 200);
    assert.equal((await get(path, { 'if-modified-since': lm, 'if-none-match': '"nope"' })).status, 200);
  });

  it('authentication comes before preconditions', async () => {
    const mine = await get(q('user.me'), { authorization: `Bearer ${demo.token}` });
    const anon = await get(q('user.me'), { 'if-none-match': '*' });
    assert.equal(anon.status, 401, 'If-None-Match: * without credentials');
    assert.equal(anon.headers['cache-control'], 'no-store');
    const forged = await get(q('user.me'), { 'if-none-match': mine.headers.etag, authorization: `Bearer ${'B'.repeat(43)}` });
    assert.equal(forged.status, 401, 'someone else\'s ETag with a forged token');
    const theirs = await get(q('user.me'), { 'if-none-match': mine.headers.etag, authorization: `Bearer ${other.token}` });
    assert.equal(theirs.status, 200, 'another user revalidating my ETag gets their own data');
    assert.equal(JSON.parse(theirs.body).result.data.email, 'user1@example.com');
    const dashAnon = await get('/dashboard', { 'if-none-match': '*' });
    assert.equal(dashAnon.status, 303);
    assert.equal(dashAnon.headers.location, '/login');
    const myDash = await get('/dashboard', { cookie });
    const me = (await call(srv, 'user.me', { token: demo.token })).body.result.data;
    const esc = (t) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
    assert.ok(myDash.body.toString().includes(`<a class="account" href="/dashboard">${esc(me.name)}</a>`),
      'a personal page names its user in the header');
    assert.doesNotMatch(myDash.body.toString(), /Sign in</);
    for (const pub of ['/', '/login']) { // pages a shared cache may keep name nobody
      const page = (await get(pub)).body.toString();
      assert.match(page, /<a href="\/login">Sign in<\/a>/, pub);
      assert.doesNotMatch(page, /class="account"/, pub);
    }
    const theirDash = await get('/dashboard', { cookie: `session=${other.token}`, 'if-none-match': myDash.headers.etag });
    assert.equal(theirDash.status, 200);
    assert.match(theirDash.body.toString(), /user1@example\.com/);
    assert.doesNotMatch(theirDash.body.toString(), /demo@example\.com/);
  });

  it('HEAD equals GET without the body, route by route', async () => {
    const paths = [
      [asset(/app\.[0-9a-f]{8}\.css$/), { 'accept-encoding': 'gzip' }],
      [asset(/app\.[0-9a-f]{8}\.css$/), {}],
      ['/static/app.css', {}],
      ['/', {}], [`/blog/${slug}`, {}], ['/login', {}], ['/dashboard', { cookie }], ['/dashboard', {}],
      ['/blog/no-such-post', {}],
      [q('user.me'), { authorization: `Bearer ${demo.token}` }], [q('user.me'), {}],
      [q('blog.list', { limit: 3 }), {}], [q('dashboard.summary'), { cookie }],
      [q('user.me'), { authorization: `Bearer ${demo.token}`, 'if-none-match': '*' }],
      ['/healthz', {}], ['/nope', {}],
    ];
    for (const [path, h] of paths) {
      const g = await get(path, h); // warm: both answers then come from the same cache state
      const g2 = await get(path, h);
      const hd = await raw(srv.base, 'HEAD', path, h);
      assert.equal(hd.status, g2.status, `${path}: status`);
      assert.equal(hd.body.length, 0, `${path}: HEAD has no body`);
      assert.deepEqual(comparable(hd.headers), comparable(g2.headers), `${path}: headers`);
      if (g2.status !== 304) assert.equal(Number(hd.headers['content-length']), g2.body.length, `${path}: Content-Length`);
      assert.equal(g.status, g2.status);
    }
  });

  it('a matching revalidation of a cached query is a 304 served from L1', async () => {
    const h = { authorization: `Bearer ${demo.token}` };
    const full = await get(q('subscription.get'), h);
    await get(q('subscription.get'), h);
    const r = await get(q('subscription.get'), { ...h, 'if-none-match': full.headers.etag });
    assert.equal(r.status, 304);
    assert.match(r.headers['cache-status'], /^tiercache; hit; ttl=\d+; detail=l1$/);
    // and a batch has a validator of its own
    const b = await get('/trpc/user.me,subscription.get?batch=1', h);
    assert.match(b.headers.etag, /^"[0-9a-f]{16}"$/);
    assert.equal((await get('/trpc/user.me,subscription.get?batch=1', { ...h, 'if-none-match': b.headers.etag })).status, 304);
    assert.equal((await get('/trpc/subscription.get,user.me?batch=1', { ...h, 'if-none-match': b.headers.etag })).status, 200);
  });

  it('web cache deception: trailing segments, ; parameters and encoded slashes are 404 no-store', async () => {
    const creds = { authorization: `Bearer ${demo.token}`, cookie };
    const probes = [
      '/trpc/user.me/x.css', '/trpc/user.me;x.css', '/trpc/user.me%2fx.css', '/trpc/user.me%2Fx.css',
      '/trpc/user.me/', '/trpc/user.me/.css', '/trpc/dashboard.summary/x.js',
      '/dashboard/x.css', '/dashboard;x.css', '/dashboard%2fx.css', '/dashboard%2Fx.css', '/dashboard/',
      '/dashboard.css', '/dashboard/..%2fx.css', '//dashboard',
      `/blog/${slug}/x.css`, `/blog/${slug};x.css`, `/blog/${slug}%2fx.css`, '/blog/a/b', '/blog/', '/blog',
      '/login/x.css', '/login;x.css', '/x.css',
    ];
    for (const p of probes) {
      const r = await get(p, creds);
      assert.equal(r.status, 404, `${p}: ${r.status}`);
      assert.equal(r.headers['cache-control'], 'no-store', p);
      assert.equal(r.headers.etag, undefined, p);
      const text = r.body.toString();
      assert.doesNotMatch(text, /demo@example\.com/, `${p}: leaked the user`);
      assert.doesNotMatch(text, /"userId"|data-user-id/, `${p}: leaked the dashboard`);
    }
  });

  it('poisoning: X-Forwarded-Host and friends are never reflected and change nothing', async () => {
    const evil = { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'gopher', 'x-forwarded-prefix': '/evil',
      'x-original-url': '/dashboard', 'x-rewrite-url': '/dashboard', 'x-host': 'evil.example', forwarded: 'host=evil.example' };
    for (const path of ['/', `/blog/${slug}`, '/login', '/dashboard', q('blog.list', { limit: 3 }), q('blog.bySlug', { slug }),
      asset(/app\.[0-9a-f]{8}\.css$/), '/static/app.css', '/nope']) {
      const clean = await get(path);
      const r = await get(path, evil);
      const hostile = await get(path, { host: 'evil.example' });
      for (const x of [r, hostile]) {
        assert.equal(x.status, clean.status, path);
        assert.doesNotMatch(JSON.stringify(x.headers), /evil/, `${path}: reflected in a header`);
        assert.doesNotMatch(x.body.toString(), /evil/, `${path}: reflected in the body`);
        assert.equal(x.headers.etag, clean.headers.etag, `${path}: the response changed`);
      }
    }
  });
});

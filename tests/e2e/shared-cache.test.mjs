// Shared caches in front of the server, as deploy/ ships them: Varnish with deploy/varnish.vcl
// (xkey tag purges) and nginx with deploy/nginx.conf (proxy_cache), each started here on a
// loopback port in a temp dir (plain child processes as root, not system services).
// Proves: authenticated responses are never served to another user or to an anonymous
// request (bearer and cookie, API and pages, sequential and concurrent), each user gets their
// own subscription, and a batch mixing personal and public calls, in either order, is never
// served from the shared cache to another user; public blog responses are cached (the
// second request is a HIT); publishing or updating a post purges exactly its tags from
// Varnish through xkey, so the next request is a MISS with the new content, while other
// posts stay cached; deception paths are never stored. CDN-Cache-Control (the server sends
// it because it purges Varnish): Varnish keeps public pages too (nginx, which does not read
// it, does not), an edit purges the pages that show it, and a server that starts purges
// every page (tag `page`: a deploy changes templates and assets without an invalidation).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, login, call, freePort, sleep, redis, postBilling, eventTime, subState } from './lib.mjs';
import { raw, startVarnish, startNginx, HAVE_VARNISH, HAVE_NGINX, assetUrls, mixedBatches, checkMixedBatch } from './http-lib.mjs';

const q = (proc, input) => `/trpc/${proc}${input === undefined ? '' : `?input=${encodeURIComponent(JSON.stringify(input))}`}`;
const json = (r) => JSON.parse(r.body.toString());

// Polls fn until it returns true (3 s at most): purges are sent off the request path.
async function eventually(fn, what) {
  const deadline = Date.now() + 3000;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) assert.fail(`not within 3 s: ${what}`);
    await sleep(50);
  }
}

describe('shared caches in front of tiercache', { skip: !HAVE_VARNISH || !HAVE_NGINX ? 'varnishd or nginx is not installed (scripts/deps.sh installs them)' : false }, () => {
  let srv, varnish, nginx, a, b, slugs, vport, logFrom;
  const subs = new Map(); // user id -> the subscription (subState) a billing event gave them
  before(async () => {
    vport = await freePort();
    srv = await startServer({ extra: ['--purge-url', `http://127.0.0.1:${vport}/`] });
    varnish = await startVarnish(srv.port, vport);
    nginx = await startNginx(srv.port);
    // the server's start-up purge (tag page) went out before Varnish was there: judge the
    // purges from here on
    logFrom = srv.log().length;
    a = await login(srv, 'demo@example.com');
    b = await login(srv, 'user1@example.com');
    const list = (await call(srv, 'blog.list', { input: { limit: 5 } })).body.result.data;
    slugs = list.items.map((i) => i.slug);
    // two subscriptions nobody could take for each other's
    const t = eventTime(), end = Date.now() + 20 * 86400000;
    subs.set(a.user.id, { plan: 'pro', status: 'active', seats: 2, currentPeriodEnd: end });
    subs.set(b.user.id, { plan: 'team', status: 'past_due', seats: 5, currentPeriodEnd: end + 86400000 });
    for (const [uid, w] of subs) {
      const r = await postBilling(srv, { id: `evt_shared_${uid}`, type: 'subscription.updated', created: t,
        data: { userId: uid, planId: w.plan, status: w.status, currentPeriodEnd: w.currentPeriodEnd, seats: w.seats } });
      assert.equal(r.status, 200, await r.text());
    }
  });
  after(async () => {
    await varnish?.stop();
    await nginx?.stop();
    assert.equal(await srv.stop(), 0);
  });

  for (const which of ['varnish', 'nginx']) {
    const front = () => (which === 'varnish' ? varnish : nginx);
    const status = (r) => (which === 'varnish' ? r.headers['x-cache'] : r.headers['x-cache-status']);
    // nginx files a response in its cache just after the client has it (Varnish before it
    // delivers): give it a moment before the second request
    const settle = () => sleep(which === 'nginx' ? 200 : 0);

    it(`${which}: authenticated responses are never served to another user or to an anonymous request`, async () => {
      const base = front().base;
      const cases = [
        [q('user.me'), (d, u) => assert.equal(json(d).result.data.email, u.user.email)],
        [q('dashboard.summary'), (d, u) => assert.equal(json(d).result.data.userId, u.user.id)],
        [q('subscription.get'), (d, u) => assert.deepEqual(subState(json(d).result.data), subs.get(u.user.id),
          `subscription.get as ${u.user.email}: their own subscription`)],
        ['/trpc/user.me,subscription.get?batch=1', (d, u) => {
          assert.equal(json(d)[0].result.data.id, u.user.id);
          assert.deepEqual(subState(json(d)[1].result.data), subs.get(u.user.id), `batch subscription.get as ${u.user.email}`);
        }],
        ['/dashboard', (d, u) => {
          assert.match(d.body.toString(), new RegExp(`data-user-id="${u.user.id}"`));
          assert.match(d.body.toString(), new RegExp(u.user.email.replace('.', '\\.')));
        }],
      ];
      for (const [path, check] of cases) {
        for (let round = 0; round < 2; round++) {
          for (const u of [a, b]) {
            for (const creds of [{ authorization: `Bearer ${u.token}` }, { cookie: `theme=x; session=${u.token}` }]) {
              if (path === '/dashboard' && creds.authorization) continue; // pages are for browsers
              const r = await raw(base, 'GET', path, creds);
              assert.equal(r.status, 200, `${path} as ${u.user.email}`);
              check(r, u);
              assert.notEqual(status(r), 'HIT', `${path}: a private response came from the shared cache`);
            }
          }
          const anon = await raw(base, 'GET', path);
          assert.ok(anon.status === 401 || anon.status === 303, `${path} anonymous: ${anon.status}`);
          assert.doesNotMatch(anon.body.toString(), /@example\.com|userId|data-user-id/);
        }
      }
      // and concurrently: the cache's request coalescing must not hand one user's answer to another
      const who = [a, b, null];
      const rs = await Promise.all(Array.from({ length: 60 }, (_, i) => {
        const u = who[i % 3];
        return raw(base, 'GET', q('user.me'), u ? { cookie: `session=${u.token}` } : {}).then((r) => ({ r, u }));
      }));
      for (const { r, u } of rs) {
        if (u === null) assert.equal(r.status, 401);
        else assert.equal(json(r).result.data.email, u.user.email);
      }
      for (const u of [a, b]) {
        assert.equal(redis('EXISTS', `${srv.prefix}sub:${u.user.id}`), '1', `Redis key ${srv.prefix}sub:${u.user.id}`);
      }
    });

    it(`${which}: a batch mixing personal and public calls, in either order, is never served to another user`, async () => {
      const base = front().base;
      const slug = slugs[2];
      const batches = mixedBatches(slug);
      // A first (a shared cache that took the answer for public would store it now), then B:
      // B's data is checked before A's headers, so a leak is reported as what it is
      const mine = [];
      for (const bt of batches) mine.push(await raw(base, 'GET', bt.path, { cookie: `session=${a.token}` }));
      await settle();
      for (const bt of batches) {
        for (const creds of [{ authorization: `Bearer ${b.token}` }, { cookie: `session=${b.token}` }]) {
          const r = await raw(base, 'GET', bt.path, creds);
          checkMixedBatch(r, bt, b, slug, `${bt.name} as B after A`, subs.get(b.user.id));
          assert.notEqual(status(r), 'HIT', `${bt.name}: a personal batch came from the shared cache`);
        }
        const anon = await raw(base, 'GET', bt.path);
        assert.notEqual(status(anon), 'HIT', `${bt.name} anonymous`);
        assert.doesNotMatch(anon.body.toString(), /@example\.com|userId/, `${bt.name} anonymous`);
      }
      batches.forEach((bt, i) => checkMixedBatch(mine[i], bt, a, slug, `${bt.name} as A`, subs.get(a.user.id)));
    });

    it(`${which}: public blog responses and fingerprinted assets are cached; pages only where CDN-Cache-Control is read`, async () => {
      const base = front().base;
      const slug = slugs[4];
      for (const path of [q('blog.bySlug', { slug }), q('blog.list', { limit: 5 })]) {
        const first = await raw(base, 'GET', path);
        assert.equal(first.status, 200);
        assert.match(first.headers['cache-control'], /^public, /);
        await settle();
        const second = await raw(base, 'GET', path);
        assert.equal(status(second), 'HIT', `${path}: second request`);
        assert.deepEqual(second.body, first.body);
        assert.equal(second.headers.xkey, undefined, 'the tags are not shown to clients');
        // shared with signed-in readers too: the object is public, whoever asks
        const signedIn = await raw(base, 'GET', path, { cookie: `session=${a.token}` });
        assert.equal(status(signedIn), 'HIT');
      }
      const home = await raw(base, 'GET', '/');
      const asset = assetUrls(home.body.toString()).find((u) => u.endsWith('.css'));
      await raw(base, 'GET', asset, { 'accept-encoding': 'gzip' });
      await settle();
      const again = await raw(base, 'GET', asset, { 'accept-encoding': 'gzip' });
      assert.equal(status(again), 'HIT', 'fingerprinted asset');
      assert.equal(again.headers['content-encoding'], 'gzip');
      const plain = await raw(base, 'GET', asset);
      assert.equal(plain.headers['content-encoding'], undefined, 'Vary: Accept-Encoding keeps the variants apart');
      await raw(base, 'GET', '/');
      await settle();
      const page = await raw(base, 'GET', '/');
      assert.equal(page.headers['cache-control'], 'no-cache', 'browsers revalidate pages');
      if (which === 'varnish') { // CDN-Cache-Control: this cache is purged, so it keeps pages
        assert.equal(page.headers['cdn-cache-control'], 'public, max-age=3600, stale-while-revalidate=600');
        assert.equal(status(page), 'HIT', 'Varnish keeps a public page (CDN-Cache-Control)');
        assert.equal(status(await raw(base, 'GET', '/dashboard', { cookie: `session=${a.token}` })), 'PASS', 'never a personal one');
      } else {
        assert.notEqual(status(page), 'HIT', 'nginx does not read CDN-Cache-Control: no-cache pages are revalidated at the server');
      }
      const reval = await raw(base, 'GET', '/', { 'if-none-match': page.headers.etag });
      assert.equal(reval.status, 304, 'and the revalidation goes through');
      assert.equal(reval.body.length, 0);
      // a private query revalidates at the server too, per user
      const mine = await raw(base, 'GET', q('user.me'), { cookie: `session=${a.token}` });
      const again304 = await raw(base, 'GET', q('user.me'), { cookie: `session=${a.token}`, 'if-none-match': mine.headers.etag });
      assert.equal(again304.status, 304);
      const theirs = await raw(base, 'GET', q('user.me'), { cookie: `session=${b.token}`, 'if-none-match': mine.headers.etag });
      assert.equal(theirs.status, 200);
      assert.equal(json(theirs).result.data.email, b.user.email);
      // a stored public response answers a matching revalidation with 304, and a 304 is never
      // stored: the next plain request still gets the whole body
      const post = q('blog.bySlug', { slug });
      const full = await raw(base, 'GET', post);
      const p304 = await raw(base, 'GET', post, { 'if-none-match': full.headers.etag });
      assert.equal(p304.status, 304);
      const after304 = await raw(base, 'GET', post);
      assert.equal(after304.status, 200);
      assert.deepEqual(after304.body, full.body);
      const fresh = q('blog.bySlug', { slug: slugs[3] }); // not in the shared cache yet
      const f1 = await raw(srv.base, 'GET', fresh);
      const f304 = await raw(base, 'GET', fresh, { 'if-none-match': f1.headers.etag });
      assert.equal(f304.status, 304);
      const f2 = await raw(base, 'GET', fresh);
      assert.equal(f2.status, 200, 'the 304 was not stored');
      assert.deepEqual(f2.body, f1.body);
      const missing = await raw(base, 'GET', '/static/app.css');
      assert.equal(missing.status, 404);
      assert.notEqual(status(await raw(base, 'GET', '/static/app.css')), 'HIT', 'a 404 under /static/ is not stored');
    });

    it(`${which}: deception paths are never stored or answered with the parent resource`, async () => {
      const base = front().base;
      for (const p of ['/trpc/user.me/x.css', '/trpc/user.me;x.css', '/trpc/user.me%2fx.css', '/dashboard/x.css', '/dashboard;x.css']) {
        const mine = await raw(base, 'GET', p, { authorization: `Bearer ${a.token}`, cookie: `session=${a.token}` });
        assert.equal(mine.status, 404, p);
        const anon = await raw(base, 'GET', p);
        assert.equal(anon.status, 404, p);
        assert.notEqual(status(anon), 'HIT', p);
        assert.doesNotMatch(anon.body.toString(), /demo@example\.com/, p);
      }
    });
  }

  it('varnish: updating a post purges it through xkey; the next request is a MISS with the new content', async () => {
    const base = varnish.base;
    const [slug, otherSlug] = [slugs[0], slugs[1]];
    const post = q('blog.bySlug', { slug }), other = q('blog.bySlug', { slug: otherSlug }), list = q('blog.list', { limit: 5 });
    for (const p of [post, other, list]) {
      await raw(base, 'GET', p);
      assert.equal((await raw(base, 'GET', p)).headers['x-cache'], 'HIT', p);
    }
    const admin = await login(srv, 'admin@example.com');
    const title = `Purged ${Date.now()}`;
    const ed = await raw(base, 'POST', '/trpc/blog.update', { authorization: `Bearer ${admin.token}`, 'content-type': 'application/json' },
      JSON.stringify({ slug, title }));
    assert.equal(ed.status, 200, ed.body.toString());
    assert.equal(ed.headers['x-cache'], 'PASS', 'a mutation passes through');
    let r;
    await eventually(async () => {
      r = await raw(base, 'GET', post);
      return r.headers['x-cache'] === 'MISS';
    }, 'the updated post is a MISS');
    assert.equal(json(r).result.data.title, title);
    assert.equal((await raw(base, 'GET', post)).headers['x-cache'], 'HIT', 'and cached again');
    assert.equal((await raw(base, 'GET', other)).headers['x-cache'], 'HIT', 'another post keeps its cached copy');
    assert.equal((await raw(base, 'GET', list)).headers['x-cache'], 'MISS', 'the list (tag blog-list) was purged too');
  });

  it('varnish: publishing a post purges the list; the new post appears at once', async () => {
    const base = varnish.base;
    const list = q('blog.list', { limit: 5 });
    await raw(base, 'GET', list);
    assert.equal((await raw(base, 'GET', list)).headers['x-cache'], 'HIT');
    const admin = await login(srv, 'admin@example.com');
    const slug = `shared-cache-${Date.now()}`;
    const pub = await call(srv, 'blog.publish', { token: admin.token, input: { slug, title: 'Fresh from the oven', body: 'Purged everywhere.' } });
    assert.equal(pub.status, 200, JSON.stringify(pub.body));
    let r;
    await eventually(async () => {
      r = await raw(base, 'GET', list);
      return r.headers['x-cache'] === 'MISS';
    }, 'the list is a MISS after publishing');
    assert.equal(json(r).result.data.items[0].slug, slug);
    const page = await raw(base, 'GET', q('blog.bySlug', { slug }));
    assert.equal(page.status, 200);
    assert.equal(page.headers['x-cache'], 'MISS');
  });

  it('varnish: pages are kept and purged with their data: an edit shows on its page and the home page at once', async () => {
    const base = varnish.base;
    const slug = slugs[2];
    for (const p of [`/blog/${slug}`, '/']) {
      await raw(base, 'GET', p);
      assert.equal((await raw(base, 'GET', p)).headers['x-cache'], 'HIT', p);
    }
    const admin = await login(srv, 'admin@example.com');
    const title = `Page purged ${Date.now()}`;
    const ed = await call(srv, 'blog.update', { token: admin.token, input: { slug, title } });
    assert.equal(ed.status, 200, JSON.stringify(ed.body));
    for (const p of [`/blog/${slug}`, '/']) {
      let r;
      await eventually(async () => {
        r = await raw(base, 'GET', p);
        return r.headers['x-cache'] === 'MISS';
      }, `${p} is a MISS after the edit`);
      assert.match(r.body.toString(), new RegExp(title), `${p} shows the new title`);
      assert.equal((await raw(base, 'GET', p)).headers['x-cache'], 'HIT', `${p} is kept again`);
    }
  });

  it('varnish: a server that starts purges every page (tag page), and nothing else', async () => {
    const base = varnish.base;
    const api = q('blog.bySlug', { slug: slugs[1] });
    const pages = ['/', '/login', `/blog/${slugs[1]}`];
    for (const p of [...pages, api]) {
      await raw(base, 'GET', p);
      assert.equal((await raw(base, 'GET', p)).headers['x-cache'], 'HIT', p);
    }
    const next = await startServer({ extra: ['--purge-url', `http://127.0.0.1:${vport}/`] }); // a deploy
    try {
      for (const p of pages) {
        await eventually(async () => (await raw(base, 'GET', p)).headers['x-cache'] === 'MISS', `${p} is a MISS after a start`);
      }
      assert.equal((await raw(base, 'GET', api)).headers['x-cache'], 'HIT', 'the API response is not a page');
    } finally {
      assert.equal(await next.stop(), 0);
    }
  });

  it('the purges were sent by the server, not expiry: the server logs no purge failure', () => {
    assert.doesNotMatch(srv.log().slice(logFrom), /purge .*(no answer|refused)/);
  });
});

// The real @trpc/client (v11, unmodified) against the server: httpLink and httpBatchLink,
// queries, mutations, batching, and errors arriving as TRPCClientError with tRPC's shape.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTRPCClient, httpLink, httpBatchLink, TRPCClientError } from '@trpc/client';
import { startServer, login } from './lib.mjs';

describe('@trpc/client', () => {
  let srv, demo;
  before(async () => {
    srv = await startServer();
    demo = await login(srv);
  });
  after(async () => { await srv.stop(); });

  const client = (link, token) => createTRPCClient({
    links: [link({ url: `${srv.base}/trpc`, headers: () => (token ? { authorization: `Bearer ${token}` } : {}) })],
  });

  for (const [name, link] of [['httpLink', httpLink], ['httpBatchLink', httpBatchLink]]) {
    it(`${name}: queries and mutations`, async () => {
      const c = client(link, demo.token);
      const me = await c.user.me.query();
      assert.equal(me.email, 'demo@example.com');
      const [sub, dash, posts] = await Promise.all([
        c.subscription.get.query(), c.dashboard.summary.query(), c.blog.list.query({ limit: 3 })]);
      assert.equal(sub.plan.id, 'pro');
      assert.equal(dash.userId, me.id);
      assert.equal(posts.items.length, 3);
      const post = await c.blog.bySlug.query({ slug: posts.items[0].slug });
      assert.equal(post.slug, posts.items[0].slug);
      const upd = await c.user.update.mutate({ bio: `via ${name}` });
      assert.equal(upd.bio, `via ${name}`);
      const tracked = await c.activity.track.mutate({ kind: 'page_view', meta: { path: '/x' } });
      assert.ok(tracked.id > 0);
      const fresh = await c.user.me.query();
      assert.equal(fresh.bio, `via ${name}`);
    });

    it(`${name}: errors are TRPCClientError with code and httpStatus`, async () => {
      const anon = client(link);
      await assert.rejects(anon.user.me.query(), (e) => {
        assert.ok(e instanceof TRPCClientError);
        assert.equal(e.data.code, 'UNAUTHORIZED');
        assert.equal(e.data.httpStatus, 401);
        return true;
      });
      const c = client(link, demo.token);
      await assert.rejects(c.blog.bySlug.query({ slug: 'missing-post' }), (e) => e.data.code === 'NOT_FOUND');
      await assert.rejects(c.user.update.mutate({ nope: 1 }), (e) => e.data.code === 'BAD_REQUEST' && /unknown field/.test(e.message));
      await assert.rejects(c.no.such.query(), (e) => e.data.code === 'NOT_FOUND');
    });
  }

  it('httpBatchLink: one HTTP request carries a mixed success/error batch', async () => {
    const c = client(httpBatchLink, demo.token);
    const [ok, bad] = await Promise.allSettled([c.user.me.query(), c.blog.bySlug.query({ slug: 'missing-post' })]);
    assert.equal(ok.status, 'fulfilled');
    assert.equal(bad.status, 'rejected');
    assert.equal(bad.reason.data.code, 'NOT_FOUND');
  });

  it('login through the client returns a working token', async () => {
    const c = client(httpLink);
    const r = await c.auth.login.mutate({ email: 'user3@example.com', password: 'demo1234' });
    assert.equal(r.token.length, 43);
    const me = await client(httpLink, r.token).user.me.query();
    assert.equal(me.email, 'user3@example.com');
  });
});

// The stack tiercache replaces, reduced to what a cached, authenticated query needs — for
// bench/api.sh to measure beside tiercache in the same run, on the same core.
//
// tRPC v11 (the standalone adapter, no transformer) + ioredis, as the seed's
// cachedProcedure would have it: the bearer token's SHA-256 looks up the session in Redis,
// then `user:{id}` is read from Redis (set on a miss, with the seed's 5-minute TTL).
// There is no database: the cached path never reaches it, and a miss builds the profile in
// memory. The seed's real stack (Next.js, Prisma, a transformer) only adds to this, so
// what it serves is an upper bound for that stack.
//
//   PORT=… REDIS_PORT=… TOKEN=… node server.mjs
// TOKEN is the one session it knows (user 1). Loopback only.
import { createHash } from 'node:crypto';
import { initTRPC, TRPCError } from '@trpc/server';
import { createHTTPServer } from '@trpc/server/adapters/standalone';
import Redis from 'ioredis';

const port = Number(process.env.PORT);
const redisPort = Number(process.env.REDIS_PORT);
const token = process.env.TOKEN;
if (!port || !redisPort || !token) {
  console.error('node-ref: PORT, REDIS_PORT and TOKEN must be set');
  process.exit(2);
}
const prefix = `noderef${port}:`;
const redis = new Redis({ host: '127.0.0.1', port: redisPort, keyPrefix: prefix });
const sha256 = (s) => createHash('sha256').update(s).digest('hex');

const t = initTRPC.context().create();

const authed = t.procedure.use(async ({ ctx, next }) => {
  if (!ctx.token) throw new TRPCError({ code: 'UNAUTHORIZED' });
  const uid = await redis.get(`session:${sha256(ctx.token)}`);
  if (!uid) throw new TRPCError({ code: 'UNAUTHORIZED' });
  return next({ ctx: { userId: Number(uid) } });
});

// The seed's cachedProcedure: Redis first, then the loader, stored with a TTL.
async function cached(key, ttlSeconds, load) {
  const hit = await redis.get(key);
  if (hit !== null) return JSON.parse(hit);
  const value = await load();
  await redis.set(key, JSON.stringify(value), 'EX', ttlSeconds);
  return value;
}

const router = t.router({
  user: t.router({
    me: authed.query(({ ctx }) => cached(`user:${ctx.userId}`, 300, async () => ({
      id: ctx.userId, email: `user${ctx.userId}@example.com`, name: `User ${ctx.userId}`,
      bio: null, avatarUrl: null, role: 'user', createdAt: 1735787045678, updatedAt: 1735787045678,
    }))),
  }),
});

await redis.set(`session:${sha256(token)}`, '1', 'EX', 3600);
createHTTPServer({
  router,
  basePath: '/trpc/',
  createContext: ({ req }) => ({ token: (req.headers.authorization ?? '').replace(/^Bearer /, '') }),
}).listen(port, '127.0.0.1');
console.log(`node-ref: tRPC v11 + ioredis on http://127.0.0.1:${port}/trpc`);

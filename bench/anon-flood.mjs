// bench/anon-flood.mjs: what 100,000 distinct anonymous requests make a server store in its
// Redis. Run by bench/anon-flood.sh, which starts Redis and the server(s) and passes:
//   node bench/anon-flood.mjs <base url> <redis port> <prefix> [count]
// Every request is one an anonymous client may send, each different from the others:
// blog.list with made-up cursors (well-formed, in range), blog.bySlug with made-up slugs,
// user.me with made-up session tokens (Bearer and cookie), /blog/<made-up slug> pages, and
// batches of 64 made-up cursors. It prints the keys under the prefix and Redis's memory
// before and after, and how the server answered.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

const [base, redisPort, prefix, countArg] = process.argv.slice(2);
const total = Number(countArg ?? 100000);
const cli = (...a) => execFileSync('redis-cli', ['-p', redisPort, '--raw', ...a]).toString().trim();
const keys = () => {
  const out = execFileSync('redis-cli', ['-p', redisPort, '--scan', '--pattern', `${prefix}*`],
    { maxBuffer: 1 << 30 }).toString();
  return out.split('\n').filter(Boolean).length;
};
const used = () => Number(/used_memory:(\d+)/.exec(cli('INFO', 'memory'))[1]);

const rnd = (n) => Math.floor(Math.random() * n);
const slug = () => `no-such-post-${randomBytes(6).toString('hex')}`;
const cursor = () => `${1600000000000 + rnd(200000000000)}.${1 + rnd(1000000)}`;
const q = (input) => encodeURIComponent(JSON.stringify(input));

function request(i) {
  switch (i % 6) {
    case 0: return [`/trpc/blog.list?input=${q({ cursor: cursor(), limit: 1 + rnd(50) })}`, {}];
    case 1: return [`/trpc/blog.bySlug?input=${q({ slug: slug() })}`, {}];
    case 2: return ['/trpc/user.me', { authorization: `Bearer ${randomBytes(32).toString('base64url')}` }];
    case 3: return ['/trpc/user.me', { cookie: `session=${randomBytes(32).toString('base64url')}` }];
    case 4: return [`/blog/${slug()}`, {}];
    default: {
      const n = 64, input = {};
      for (let k = 0; k < n; k++) input[k] = { cursor: cursor(), limit: 10 };
      return [`/trpc/${Array(n).fill('blog.list').join(',')}?batch=1&input=${q(input)}`, {}];
    }
  }
}

const keys0 = keys(), mem0 = used();
const statuses = new Map();
let next = 0;
const t0 = Date.now();
async function worker() {
  while (next < total) {
    const i = next++;
    const [path, headers] = request(i);
    try {
      const r = await fetch(base + path, { headers });
      await r.arrayBuffer();
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    } catch (e) {
      statuses.set(e.cause?.code ?? 'error', (statuses.get(e.cause?.code ?? 'error') ?? 0) + 1);
    }
  }
}
await Promise.all(Array.from({ length: 32 }, worker));
const secs = (Date.now() - t0) / 1000;
const keys1 = keys(), mem1 = used();
console.log(`${total} distinct anonymous requests in ${secs.toFixed(1)} s ` +
  `(${[...statuses].map(([s, n]) => `${s}: ${n}`).join(', ')})`);
console.log(`keys under ${prefix}: ${keys0} -> ${keys1} (+${keys1 - keys0}); ` +
  `Redis used_memory: ${(mem0 / 1048576).toFixed(1)} -> ${(mem1 / 1048576).toFixed(1)} MiB ` +
  `(+${((mem1 - mem0) / 1048576).toFixed(1)} MiB)`);

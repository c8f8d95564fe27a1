#!/usr/bin/env bash
# bench/l2-compress.sh: Redis bytes and the cost of an L2 hit for the server's blog data set
# (the demo data `tiercache seed` makes: 50 posts), with values >= 1024 bytes stored
# compressed and with none, side by side in one run (bench/l2-compress.c prints them).
# It seeds a database, serves it, reads every blog.list page (10 a page, as the blog page
# asks) and every post through the API, keeps each answer's data (the bytes the server
# caches), then runs bench_l2-compress on them against a private Redis. With --callgrind,
# it then counts the instructions zstd spends decompressing each of those values on an L2
# hit (callgrind inside ZSTD_decompressDCtx: a figure a busy machine does not change).
#   bench/l2-compress.sh [--callgrind] [rounds (20)]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cg=0
[[ ${1:-} == --callgrind ]] && { cg=1; shift; }
rounds=${1:-20}
source "$root/bench/lib.sh"
bench_begin l2z bench_l2-compress
"$root/build/tiercache" seed --db "sqlite:$work/app.db" --seed-users 20 --seed-activity 5 \
    --fast-password-hash >/dev/null 2>&1
port=$((21000 + RANDOM % 9000))
"$root/build/tiercache" serve --listen "127.0.0.1:$port" --db "sqlite:$work/app.db" \
    --redis "127.0.0.1:$redis_port" --prefix "harvest:" --access-log off >"$work/server.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
mkdir "$work/values"
node -e '
  const fs = require("fs");
  const [base, dir] = [process.argv[1], process.argv[2]];
  const get = async (path, input) => {
    const r = await fetch(`${base}/trpc/${path}?input=${encodeURIComponent(JSON.stringify(input))}`);
    if (r.status !== 200) throw new Error(`${path}: ${r.status}`);
    return (await r.json()).result.data;
  };
  (async () => {
    let cursor = null, page = 0;
    const slugs = [];
    do { /* the list pages, as the cache keys them */
      const input = cursor ? { limit: 10, cursor } : { limit: 10 };
      const d = await get("blog.list", input);
      fs.writeFileSync(`${dir}/list:${page++}`, JSON.stringify(d));
      for (const p of d.items) slugs.push(p.slug);
      cursor = d.nextCursor;
    } while (cursor);
    for (const s of slugs) fs.writeFileSync(`${dir}/${s}`, JSON.stringify(await get("blog.bySlug", { slug: s })));
  })().catch((e) => { console.error(e); process.exit(1); });' "http://127.0.0.1:$port" "$work/values"
TC_REDIS_PORT=$redis_port "$root/build/bench_l2-compress" "$work/values" "$rounds"
if [[ $cg -eq 1 ]]; then
    command -v valgrind >/dev/null || { echo "l2-compress: --callgrind needs valgrind" >&2; exit 1; }
    # values stored compressed: those of 1024 bytes or more (all of them shrink by far more
    # than an eighth: the run above says how many there are)
    large=$(find "$work/values" -type f -size +1023c | wc -l)
    TC_REDIS_PORT=$redis_port valgrind --tool=callgrind --callgrind-out-file="$work/cg" \
        --collect-atstart=no --toggle-collect=ZSTD_decompressDCtx \
        "$root/build/bench_l2-compress" "$work/values" 2 >/dev/null 2>&1
    ir=$(callgrind_annotate "$work/cg" 2>/dev/null | sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
    echo "zstd decompression: $(( ir / (2 * large) )) instructions per compressed value read" \
         "(callgrind; $large values, 2 rounds)"
fi
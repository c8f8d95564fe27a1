#!/usr/bin/env bash
# bench/cpu-per-request.sh: instructions per cached, authenticated user.me, counted by
# callgrind (all threads of the server): repeatable for the same binary and inputs, however
# busy the machine is — the comparison for "no regression on the hot path" that wall-clock
# benchmarks on this noisy machine cannot give. Runs the server under callgrind twice, with
# N1 and N2 requests (sequential, one keep-alive connection), and divides the difference in
# instructions by N2 - N1, so start-up and shutdown cancel out. With --baseline REF (one or
# more), the same for a build of each REF, side by side. With --only FN, only the
# instructions inside calls of the function FN count (callgrind's --toggle-collect): e.g.
# tc_peek, the cache's part of a hit, free of the other threads' timer-driven work. With
# --pages, the same also for the public pages /blog/<slug> (the first post of blog.list) and
# /, anonymous, whose values are cached as user.me's is.
#   bench/cpu-per-request.sh [--baseline REF]... [--only FN] [--n1 N] [--n2 N] [--pages]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
n1=1000 n2=6000 baselines=() only=() whats=(user.me)
while [[ $# -gt 0 ]]; do
    case "$1" in
        --baseline) baselines+=("$2"); shift ;;
        --only) only=(--collect-atstart=no "--toggle-collect=$2"); shift ;;
        --n1) n1=$2; shift ;;
        --n2) n2=$2; shift ;;
        --pages) whats=(user.me post home) ;;
        *) echo "usage: $0 [--baseline REF]... [--only FN] [--n1 N] [--n2 N] [--pages]" >&2; exit 2 ;;
    esac
    shift
done
command -v valgrind >/dev/null || { echo "cpu-per-request: needs valgrind" >&2; exit 1; }
bash "$root/scripts/deps.sh" >/dev/null
cmake -S "$root" -B "$root/build" >/dev/null
cmake --build "$root/build" -j"$(nproc)" --target tiercache >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/tc-cpu.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for i in "${!baselines[@]}"; do
        [[ -d "$work/base-src$i" ]] && git -C "$root" worktree remove --force "$work/base-src$i" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

bins=("this build|$root/build/tiercache")
for i in "${!baselines[@]}"; do
    git -C "$root" worktree add --detach -q "$work/base-src$i" "${baselines[$i]}"
    cmake -S "$work/base-src$i" -B "$work/base-build$i" >/dev/null
    cmake --build "$work/base-build$i" -j"$(nproc)" --target tiercache >/dev/null
    bins+=("${baselines[$i]}|$work/base-build$i/tiercache")
done
source "$root/scripts/redis.sh"
start_redis "$work" || { echo "cpu-per-request: no redis" >&2; exit 1; }
pids+=("$redis_pid")
"$root/build/tiercache" seed --db "sqlite:$work/app.db" --seed-users 20 --seed-activity 5 \
    --fast-password-hash >/dev/null 2>&1

# instructions of one run with n requests of what (user.me, post or home)
run() { # bin n what -> prints Ir
    local bin=$1 n=$2 what=$3 port=$((21000 + RANDOM % 9000)) out="$work/cg.$RANDOM"
    valgrind --tool=callgrind --callgrind-out-file="$out" --trace-children=no "${only[@]}" \
        "$bin" serve --listen "127.0.0.1:$port" --db "sqlite:$work/app.db" \
        --redis "127.0.0.1:$redis_port" --prefix "cpu$port:" --access-log off \
        --fast-password-hash --workers 2 >"$work/server.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    node -e '
      const [base, n, what] = [process.argv[1], Number(process.argv[2]), process.argv[3]];
      (async () => {
        const l = await fetch(`${base}/trpc/auth.login`, { method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ email: "demo@example.com", password: "demo1234" }) });
        const token = (await l.json()).result.data.token;
        let url = `${base}/trpc/user.me`, h = { authorization: `Bearer ${token}` };
        if (what !== "user.me") {
          const list = await (await fetch(`${base}/trpc/blog.list`)).json();
          url = what === "home" ? `${base}/` : `${base}/blog/${list.result.data.items[0].slug}`;
          h = {};
        }
        await (await fetch(url, { headers: h })).text(); /* cached now */
        for (let i = 0; i < n; i++) {
          const r = await fetch(url, { headers: h });
          await r.text();
          if (r.status !== 200) throw new Error(`status ${r.status}`);
        }
      })().catch((e) => { console.error(e); process.exit(1); });' "http://127.0.0.1:$port" "$n" "$what"
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    callgrind_annotate "$out" 2>/dev/null | sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,
}

echo "instructions per request, values cached (callgrind, all threads${only:+, inside ${only[1]#--toggle-collect=}}; ($n2 - $n1) requests)"
for what in "${whats[@]}"; do
    for entry in "${bins[@]}"; do
        name=${entry%%|*} bin=${entry#*|}
        a=$(run "$bin" "$n1" "$what")
        b=$(run "$bin" "$n2" "$what")
        echo "  $what, $name: $(( (b - a) / (n2 - n1) )) instructions/request"
    done
done

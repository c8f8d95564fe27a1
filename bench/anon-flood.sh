#!/usr/bin/env bash
# bench/anon-flood.sh: what anonymous traffic can make the server store in a shared Redis.
# Sends N (100,000) distinct anonymous requests (bench/anon-flood.mjs: made-up blog cursors,
# slugs, session tokens, pages, batches of 64) to this build and, side by side, to a
# baseline built from a git ref, each on a Redis of its own, and prints the keys and bytes
# each added. Loopback only; every process it starts is stopped at the end.
#   bench/anon-flood.sh [-n N] [--baseline REF]     (default N 100000, REF: none)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
n=100000 baseline=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) n=$2; shift ;;
        --baseline) baseline=$2; shift ;;
        *) echo "usage: $0 [-n N] [--baseline REF]" >&2; exit 2 ;;
    esac
    shift
done

bash "$root/scripts/deps.sh" >/dev/null
cmake -S "$root" -B "$root/build" >/dev/null
cmake --build "$root/build" -j"$(nproc)" --target tiercache >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/tc-anon.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n "$baseline" && -d "$work/base-src" ]] && git -C "$root" worktree remove --force "$work/base-src" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

bins=("this build:$root/build/tiercache")
if [[ -n "$baseline" ]]; then
    git -C "$root" worktree add --detach -q "$work/base-src" "$baseline"
    cmake -S "$work/base-src" -B "$work/base-build" >/dev/null
    cmake --build "$work/base-build" -j"$(nproc)" --target tiercache >/dev/null
    bins+=("baseline ($baseline):$work/base-build/tiercache")
fi

source "$root/scripts/redis.sh"
"$root/build/tiercache" seed --db "sqlite:$work/app.db" --seed-users 50 --seed-activity 5 \
    --fast-password-hash >/dev/null 2>&1
for entry in "${bins[@]}"; do
    name=${entry%%:*} bin=${entry#*:}
    mkdir -p "$work/$$-${#pids[@]}"
    start_redis "$work/$$-${#pids[@]}" || { echo "anon-flood: no redis" >&2; exit 1; }
    pids+=("$redis_pid")
    port=$((21000 + RANDOM % 9000))
    cp "$work/app.db" "$work/app-$port.db"
    "$bin" serve --listen "127.0.0.1:$port" --db "sqlite:$work/app-$port.db" \
        --redis "127.0.0.1:$redis_port" --prefix "anon:" --access-log off \
        --fast-password-hash >"$work/server-$port.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
    echo "== $name"
    node "$root/bench/anon-flood.mjs" "http://127.0.0.1:$port" "$redis_port" "anon:" "$n"
done

#!/usr/bin/env bash
# bench/pages.sh: server-rendered pages against the cached, authenticated user.me, side by
# side in one run. The server is pinned to core 0, wrk to core 1 (-t1 -c64), the access log
# off for every server; Redis on core 1 (the pages' values and user.me are in L1).
#
#   bench/pages.sh [-d SECONDS] [-r ROUNDS]
#
# Two servers on one SQLite file and one Redis: "store" (the default: pages answered from
# their rendered bytes, --page-cache-mb 16) and "render" (--page-cache-mb 0: every 200 parses
# the cached JSON and renders the templates, as before the page store). Each round measures,
# one after the other: user.me (one token) on "store", /blog/<slug> and / on "store", then
# /blog/<slug> and / on "render". For each: requests a second, p50/p99, the ratio to user.me
# of the same round, and the server's CPU per request (its utime + stime over the run, from
# /proc, divided by the requests wrk counted). Loopback only; every run is bounded by -d.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dur=8 rounds=3
while getopts "d:r:" o; do
    case $o in d) dur=$OPTARG ;; r) rounds=$OPTARG ;; *) exit 2 ;; esac
done
command -v wrk >/dev/null || { echo "pages: needs wrk (scripts/deps.sh installs it)" >&2; exit 1; }

source "$root/bench/lib.sh"
bench_begin pages
taskset -pc 1 "$redis_pid" >/dev/null
"$bin" seed --db "sqlite:$work/app.db" --seed-users 200 --seed-activity 20 --fast-password-hash \
    >/dev/null 2>&1

declare -A port pid
serve() { # name [flags]
    local p=$((18000 + RANDOM % 1000))
    taskset -c 0 "$bin" serve --listen "127.0.0.1:$p" --db "sqlite:$work/app.db" \
        --redis "127.0.0.1:$redis_port" --prefix "pages$p:" --access-log off \
        --fast-password-hash "${@:2}" >"$work/server-$1.log" 2>&1 &
    pids+=($!)
    pid[$1]=$!
    port[$1]=$p
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$p/healthz" >/dev/null && return; sleep 0.05; done
    echo "pages: server $1 did not start" >&2; cat "$work/server-$1.log" >&2; exit 1
}
serve store
serve render --page-cache-mb 0

base="http://127.0.0.1:${port[store]}"
tok=$(curl -s -X POST "$base/trpc/auth.login" -H 'content-type: application/json' \
    -d '{"email":"user1@example.com","password":"demo1234"}' | grep -o '"token":"[^"]*"' | cut -d'"' -f4)
slug=$(curl -s "$base/trpc/blog.list" | grep -o '"slug":"[^"]*"' | head -1 | cut -d'"' -f4)
[[ -n $tok && -n $slug ]] || { echo "pages: no token or no post" >&2; exit 1; }
bytes=$(curl -s "$base/blog/$slug" | wc -c)
for s in store render; do # warm: every value in L1, every page in the store
    for u in "/trpc/user.me" "/blog/$slug" "/"; do
        curl -s -H "Authorization: Bearer $tok" "http://127.0.0.1:${port[$s]}$u" >/dev/null
    done
done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in ticks
# one wrk run against server $1, path $2 (more wrk flags after): prints "rps p50 p99 us_per_req"
measure() {
    local s=$1 path=$2 c0 c1 out
    c0=$(cpu "${pid[$s]}")
    out=$(taskset -c 1 wrk -t1 -c64 -d"${dur}s" --latency "${@:3}" "http://127.0.0.1:${port[$s]}$path")
    c1=$(cpu "${pid[$s]}")
    local rps n p50 p99
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    echo "$rps $p50 $p99 $(awk -v c=$((c1 - c0)) -v t="$ticks" -v n="$n" 'BEGIN {printf "%.1f", c / t * 1e6 / n}')"
}

echo "pages: /blog/$slug is $bytes bytes; ${dur}s per run, wrk -t1 -c64 on core 1, servers on core 0"
printf '\n%-6s %-34s %10s %9s %9s %8s %12s\n' round what "req/s" p50 p99 ratio "CPU/req"
for r in $(seq "$rounds"); do
    read -r me_rps me_50 me_99 me_cpu < <(measure store /trpc/user.me -H "Authorization: Bearer $tok")
    printf '%-6s %-34s %10.0f %9s %9s %8s %9s us\n' "$r" "user.me (cached, one token)" "$me_rps" \
        "$me_50" "$me_99" "1.00" "$me_cpu"
    for row in "store|/blog/$slug|/blog/<slug>, from its bytes" "store|/|/, from its bytes" \
        "render|/blog/$slug|/blog/<slug>, rendered (no store)" "render|/|/, rendered (no store)"; do
        IFS='|' read -r s path what <<<"$row"
        read -r rps p50 p99 c < <(measure "$s" "$path")
        printf '%-6s %-34s %10.0f %9s %9s %8.2f %9s us\n' "$r" "$what" "$rps" "$p50" "$p99" \
            "$(awk -v a="$rps" -v b="$me_rps" 'BEGIN {print a / b}')" "$c"
    done
done
echo
curl -s "$base/metrics" | grep -E '^tiercache_page_(renders_total|cache_(hits|misses)_total)' | paste -sd' '
echo "command: bench/pages.sh -d $dur -r $rounds  ($(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg))"

#!/usr/bin/env bash
# bench/cluster.sh: the L2 on one Redis beside the L2 on a Redis Cluster (3 masters + 3
# replicas), side by side in one run on this machine. Every Redis process is pinned to core 1,
# the engine (bench_cache) and the server to core 0, wrk to core 1 with the Redis processes.
#
#   bench/cluster.sh [-d SECONDS]
#
# Prints bench_cache -C (L2 hit, miss + load and invalidate_tag with 10 entries, 1 and 2
# threads, on one Redis then on the cluster, case by case), then the cached user.me with L1
# off (--l1-mb 0: every read from L2) on one Redis and on the cluster, alternated twice.
# Loopback only; every run is bounded by -d.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dur=5
while getopts "d:" o; do
    case $o in d) dur=$OPTARG ;; *) exit 2 ;; esac
done

bash "$root/scripts/deps.sh" >/dev/null
cmake -S "$root" -B "$root/build" >/dev/null
cmake --build "$root/build" -j"$(nproc)" --target tiercache bench_cache >/dev/null
bin=$root/build/tiercache
work=$(mktemp -d "${TMPDIR:-/tmp}/tc-bench.XXXXXX")
pids=()
cluster_pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    stop_cluster
    wait 2>/dev/null || true
    rm -rf "$work"
}
source "$root/scripts/redis.sh"
trap cleanup EXIT

start_redis "$work" || { echo "bench: could not start redis-server" >&2; exit 1; }
rport=$redis_port
pids+=("$redis_pid")
mkdir -p "$work/cluster"
start_cluster "$work/cluster" || { echo "bench: could not start a Redis Cluster" >&2; exit 1; }
for p in "$redis_pid" "${cluster_pids[@]}"; do taskset -pc 1 "$p" >/dev/null; done

echo "== the engine: bench_cache, one Redis beside a cluster of 3 masters + 3 replicas =="
TC_REDIS_PORT=$rport taskset -c 0 "$root/build/bench_cache" -d "$dur" -C "$cluster_nodes"

echo
echo "bench: seeding the demo set (1000 users)..."
"$bin" seed --db "sqlite:$work/app.db" --seed-users 1000 --seed-activity 20 \
    --fast-password-hash 2>&1 | tail -1

serve() { # name port --redis-value
    taskset -c 0 "$bin" serve --listen "127.0.0.1:$2" --db "sqlite:$work/app.db" \
        --redis "$3" --prefix "bench$2:" --login-limit 100000 --l1-mb 0 --access-log off \
        --fast-password-hash >"$work/server-$1.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$2/healthz" >/dev/null && return; sleep 0.05; done
    echo "bench: server did not start" >&2; cat "$work/server-$1.log" >&2; exit 1
}
summary() { grep -E "Requests/sec|^ +(50|90|99)%" | tr -s ' ' | paste -sd' ' | sed 's/^ //'; }

echo
echo "== the server: cached user.me, one user, L1 off (--l1-mb 0: every read from L2) =="
for round in 1 2; do
    for where in redis cluster; do
        port=$((18000 + RANDOM % 1000))
        if [[ $where == redis ]]; then serve "$where" "$port" "127.0.0.1:$rport"
        else serve "$where" "$port" "cluster://$cluster_nodes"; fi
        url="http://127.0.0.1:$port"
        tok=$(curl -s -X POST "$url/trpc/auth.login" -H 'content-type: application/json' \
            -d '{"email":"user1@example.com","password":"demo1234"}' |
            grep -o '"token":"[^"]*"' | cut -d'"' -f4)
        [[ -n $tok ]] || { echo "bench: login failed" >&2; exit 1; }
        curl -s "$url/trpc/user.me" -H "Authorization: Bearer $tok" >/dev/null # loads it
        status=$(curl -s -D - -o /dev/null "$url/trpc/user.me" -H "Authorization: Bearer $tok" |
            grep -i '^cache-status' | tr -d '\r')
        [[ $status == *detail=l2* ]] || { echo "bench: not served from L2: $status" >&2; exit 1; }
        printf '%-8s (round %d): %s\n' "$where" "$round" \
            "$(taskset -c 1 wrk -t1 -c64 -d"${dur}s" --latency -H "Authorization: Bearer $tok" \
                "$url/trpc/user.me" | summary)"
        kill -TERM "${pids[-1]}"
        wait "${pids[-1]}" 2>/dev/null || true
        unset 'pids[-1]'
    done
done
echo
echo "command: bench/cluster.sh -d $dur  ($(nproc) cores; engine and server on core 0; every" \
    "Redis process and wrk on core 1)"

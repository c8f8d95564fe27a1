#!/usr/bin/env bash
# bench/api.sh: the API under load, cached and with the cache turned off, side by side in
# one run on this machine. The server is pinned to core 0, wrk to core 1 (-t1 -c64).
#
#   bench/api.sh [-d SECONDS] [-u USERS_LOGGED_IN]
#
# Prints nginx serving a static file (the bar, measured in the same run, access log off),
# the Node stack tiercache replaces (bench/node-ref: tRPC v11 + ioredis, a cached user.me),
# the cached user.me with the access log off too, and beside writes to a database made 5 ms
# slower; then for each mode (logging every request):
# user.me with one token (the headline: an authenticated, cached
# query), the seed's acceptance mix (Zipf-skewed users, 45% user.me, 45% subscription.get,
# 6% dashboard, 4% writes) with hit rates, and user.me while 16 other connections run
# writes through the worker pool. Loopback only; every run is bounded by -d.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dur=10 users=200
while getopts "d:u:" o; do
    case $o in d) dur=$OPTARG ;; u) users=$OPTARG ;; *) exit 2 ;; esac
done

source "$root/bench/lib.sh"
bench_begin bench
rport=$redis_port
taskset -pc 1 "$redis_pid" >/dev/null

# The default demo set (10k users, ~1M activity rows): an uncached dashboard costs ms.
echo "bench: seeding the default demo set (10k users, ~1M activity rows)..."
"$bin" seed --db "sqlite:$work/app.db" --fast-password-hash 2>&1 | tail -1

serve() { # mode port [more flags]
    local extra=("${@:3}")
    [[ $1 == off ]] && extra+=(--no-cache)
    taskset -c 0 "$bin" serve --listen "127.0.0.1:$2" --db "sqlite:$work/app.db" \
        --redis "127.0.0.1:$rport" --prefix "bench$2:" --login-limit 100000 \
        --fast-password-hash "${extra[@]}" >"$work/server-$1.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$2/healthz" >/dev/null && return; sleep 0.05; done
    echo "bench: server did not start" >&2; cat "$work/server-$1.log" >&2; exit 1
}

login_all() { # port -> tokens file; writers: all but the first (the one user.me reads)
    : >"$work/tokens"
    for i in $(seq 1 "$users"); do
        curl -s -X POST "http://127.0.0.1:$1/trpc/auth.login" -H 'content-type: application/json' \
            -d "{\"email\":\"user$i@example.com\",\"password\":\"demo1234\"}" |
            grep -o '"token":"[^"]*"' | cut -d'"' -f4 >>"$work/tokens"
    done
    # Writes invalidate their user's entries: the writers leave the reader's user alone,
    # so that "user.me beside writes" measures the cached path, not re-loads.
    tail -n +2 "$work/tokens" >"$work/writers"
}

w() { taskset -c 1 wrk -t1 -c64 -d"${dur}s" --latency "$@"; }
summary() { grep -E "Requests/sec|^ +(50|90|99)%" | tr -s ' ' | paste -sd' ' | sed 's/^ //'; }

# The bar, side by side: nginx serving a small static file, pinned the same way.
if command -v nginx >/dev/null; then
    mkdir -p "$work/nginx/html"
    head -c 225 /dev/urandom | base64 -w0 >"$work/nginx/html/file.json" # 300 bytes
    cat >"$work/nginx/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$((rport + 1)); root $work/nginx/html; } }
NGX
    taskset -c 0 nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
    ngx=$!
    sleep 0.5
    echo
    echo "== the bar: nginx, a 300-byte static file =="
    echo "static file:           $(w "http://127.0.0.1:$((rport + 1))/file.json" | summary)"
    kill -TERM "$ngx"
    wait "$ngx" 2>/dev/null || true
fi

# The stack it replaces: tRPC v11 + ioredis on Node (bench/node-ref), its cached,
# authenticated user.me, pinned the same way; against the same Redis.
if command -v node >/dev/null && command -v npm >/dev/null; then
    ref="$root/bench/node-ref"
    [[ -d $ref/node_modules ]] || (cd "$ref" && npm ci --no-audit --no-fund --loglevel=error)
    nport=$((rport + 2))
    NODE_ENV=production PORT=$nport REDIS_PORT=$rport TOKEN=bench-node-ref-token \
        taskset -c 0 node "$ref/server.mjs" >"$work/node-ref.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        curl -sf -H "Authorization: Bearer bench-node-ref-token" \
            "http://127.0.0.1:$nport/trpc/user.me" >/dev/null && break
        sleep 0.1
    done
    echo
    echo "== the stack it replaces: tRPC v11 + ioredis on Node $(node --version) =="
    echo "user.me, one user:     $(w -H "Authorization: Bearer bench-node-ref-token" \
        "http://127.0.0.1:$nport/trpc/user.me" | summary)"
    kill -TERM "${pids[-1]}"
    wait "${pids[-1]}" 2>/dev/null || true
    unset 'pids[-1]'
fi

# nginx above logs nothing (access_log off); so does this one server, for the
# comparison. The runs after it log every request (to stderr, into a file), as
# the server does by default.
port=$((18000 + RANDOM % 1000))
serve nolog "$port" --access-log off
tok=$(curl -s -X POST "http://127.0.0.1:$port/trpc/auth.login" -H 'content-type: application/json' \
    -d '{"email":"user1@example.com","password":"demo1234"}' | grep -o '"token":"[^"]*"' | cut -d'"' -f4)
curl -s "http://127.0.0.1:$port/trpc/user.me" -H "Authorization: Bearer $tok" >/dev/null # warm
echo
echo "== cache on, access log off (as nginx above) =="
echo "user.me, one user:     $(w -H "Authorization: Bearer $tok" "http://127.0.0.1:$port/trpc/user.me" | summary)"
kill -TERM "${pids[-1]}"
wait "${pids[-1]}" 2>/dev/null || true
unset 'pids[-1]'

# The bar's other half: a slow database must not hold up a cached request. Every
# database use waits 5 ms (--test-db-delay-ms) while 16 connections send writes.
port=$((18000 + RANDOM % 1000))
serve slowdb "$port" --access-log off --test-db-delay-ms 5
login_all "$port"
url="http://127.0.0.1:$port"
tok=$(head -1 "$work/tokens")
curl -s "$url/trpc/user.me" -H "Authorization: Bearer $tok" >/dev/null # warm
TOKENS=$work/writers WRITE_PCT=100 taskset -c 1 wrk -t1 -c16 -d"${dur}s" \
    -s "$root/bench/api-mix.lua" "$url" >"$work/writes.out" &
wp=$!
echo
echo "== cache on, access log off, every database call 5 ms slower =="
echo "user.me beside writes: $(w -H "Authorization: Bearer $tok" "$url/trpc/user.me" | summary)"
wait "$wp"
echo "  (the 16 writing connections: $(grep Requests/sec "$work/writes.out" | tr -s ' '))"
kill -TERM "${pids[-1]}"
wait "${pids[-1]}" 2>/dev/null || true
unset 'pids[-1]'

for mode in on off; do
    port=$((18000 + RANDOM % 1000))
    serve "$mode" "$port"
    login_all "$port"
    [[ $(grep -c . "$work/tokens") -eq $users ]] || { echo "bench: logins failed" >&2; exit 1; }
    tok=$(head -1 "$work/tokens")
    url="http://127.0.0.1:$port"
    echo
    echo "== cache $mode =="
    curl -s "$url/trpc/user.me" -H "Authorization: Bearer $tok" >/dev/null # warm
    echo "user.me, one user:     $(w -H "Authorization: Bearer $tok" "$url/trpc/user.me" | summary)"
    echo "acceptance mix ($users users, Zipf):"
    TOKENS=$work/tokens w -s "$root/bench/api-mix.lua" "$url" |
        grep -E "Requests/sec|hit rate|latency p50|Non-2xx|Socket errors"
    # Writes through the worker pool on 16 connections beside the cached route.
    TOKENS=$work/writers WRITE_PCT=100 taskset -c 1 wrk -t1 -c16 -d"${dur}s" \
        -s "$root/bench/api-mix.lua" "$url" >"$work/writes.out" &
    wp=$!
    echo "user.me beside writes: $(w -H "Authorization: Bearer $tok" "$url/trpc/user.me" | summary)"
    wait "$wp"
    echo "  (the 16 writing connections: $(grep Requests/sec "$work/writes.out" | tr -s ' '))"
    kill -TERM "${pids[-1]}"
    wait "${pids[-1]}" 2>/dev/null || true
    unset 'pids[-1]'
done
echo
echo "command: bench/api.sh -d $dur -u $users  ($(nproc) cores; server on core 0, wrk on core 1)"

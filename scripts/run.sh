#!/usr/bin/env bash
# run.sh: THE main job. Installs what is missing, builds, starts a Redis of its own on a
# private loopback port (unless TIERCACHE_REDIS names one), creates and seeds the SQLite
# database if it is absent, then runs the server on 127.0.0.1:8080 in the foreground.
# Ctrl-C stops the server gracefully and the private Redis with it.
#   scripts/run.sh [tiercache serve options...]   e.g. --listen 127.0.0.1:9000
# Environment: TIERCACHE_DB (default sqlite:var/tiercache.db), TIERCACHE_REDIS, and every
# TIERCACHE_* variable of `build/tiercache --help`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bash "$root/scripts/deps.sh"
cmake -S "$root" -B "$root/build" >/dev/null
cmake --build "$root/build" -j"$(nproc)" --target tiercache
bin="$root/build/tiercache"

mkdir -p "$root/var"
export TIERCACHE_DB=${TIERCACHE_DB:-sqlite:$root/var/tiercache.db}

redis_pid=""
cleanup() {
    if [[ -n "$redis_pid" ]]; then
        kill -TERM "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

if [[ -z "${TIERCACHE_REDIS:-}" ]]; then
    source "$root/scripts/redis.sh"
    start_redis "$root/var" || { echo "run.sh: could not start redis-server" >&2; exit 1; }
    port=$redis_port
    export TIERCACHE_REDIS=127.0.0.1:$port
    echo "run.sh: private redis-server on $TIERCACHE_REDIS (log var/redis.log)"
fi

# seed refuses to seed twice, so this is cheap on every later start
"$bin" seed

cat <<EOF

  tiercache is starting on http://127.0.0.1:8080 (unless --listen says otherwise)
    curl http://127.0.0.1:8080/trpc/blog.list
    curl -X POST http://127.0.0.1:8080/trpc/auth.login -H 'content-type: application/json' \\
         -d '{"email":"demo@example.com","password":"demo1234"}'
    curl http://127.0.0.1:8080/trpc/user.me -H 'Authorization: Bearer <token>'
  demo users: demo@example.com (user) and admin@example.com (admin), password demo1234
  Ctrl-C stops it.

EOF
"$bin" serve "$@" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' INT TERM
wait "$server" || true
wait "$server" 2>/dev/null || true

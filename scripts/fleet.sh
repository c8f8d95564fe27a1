#!/usr/bin/env bash
# fleet.sh: a whole fleet on this machine, on loopback, for trying failovers by hand and for
# bench/fleet.sh: N tiercache instances behind nginx (deploy/nginx-fleet.conf), one
# PostgreSQL, and Redis made highly available — a master, a replica and three sentinels
# (the instances find the master through them), or with --cluster a Redis Cluster of 3 masters
# and 3 replicas (--redis cluster://...). Every process on a private port, all stopped by
# Ctrl-C (or when this script dies).
#   scripts/fleet.sh [-n N] [--port P] [--cluster]   N instances (3), nginx on 127.0.0.1:P (8090)
# It prints every address, and what to kill to see a failover. State lives in var/fleet/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
n=3 lb_port=8090 cluster=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) n=$2; shift ;;
        --port) lb_port=$2; shift ;;
        --cluster) cluster=1 ;;
        *) echo "usage: $0 [-n N] [--port P] [--cluster]" >&2; exit 2 ;;
    esac
    shift
done
[[ "$n" =~ ^[1-9][0-9]?$ ]] || { echo "fleet.sh: -n: 1 to 99 instances" >&2; exit 2; }

bash "$root/scripts/deps.sh"
cmake -S "$root" -B "$root/build" >/dev/null
cmake --build "$root/build" -j"$(nproc)" --target tiercache
bin="$root/build/tiercache"

dir="$root/var/fleet"
rm -rf "$dir"
mkdir -p "$dir"
pids=()    # everything, stopped on exit
watched=() # the instances and nginx: one of them exiting ends the fleet (Redis may die: that is a failover)
cleanup() {
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    [[ -n "${pg_pid:-}" ]] && stop_pg
    [[ $cluster == 1 ]] && stop_cluster
    echo "fleet.sh: stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pdeath=()
setpriv --pdeathsig KILL true 2>/dev/null && pdeath=(setpriv --pdeathsig KILL)
free_port() { # a port nobody listens on, below the kernel's ephemeral range (32768-)
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && { echo "$p"; return; }
    done
}
wait_for() { # wait_for WHAT CMD...: up to 20 s
    local what=$1; shift
    for _ in $(seq 400); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "fleet.sh: $what did not come up" >&2
    exit 1
}

# Redis: a master and a replica, RDB persistence on (a Redis shared with a job queue keeps
# its data), then three sentinels (quorum 2, a master is down after 2 s); or a cluster.
redis_start() { # redis_start NAME PORT [ARGS...]
    local name=$1 port=$2; shift 2
    mkdir -p "$dir/$name"
    "${pdeath[@]}" redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$name" \
        --logfile "$dir/$name/redis.log" --daemonize no "$@" </dev/null &
    pids+=($!)
    wait_for "$name" redis-cli -p "$port" ping
}
if [[ $cluster == 1 ]]; then # 3 masters, 3 replicas (scripts/redis.sh)
    source "$root/scripts/redis.sh"
    cluster_pids=()
    start_cluster "$dir/cluster" || { echo "fleet.sh: could not start a Redis Cluster" >&2; exit 1; }
    redis_url="cluster://$cluster_nodes"
else
    master_port=$(free_port)
    replica_port=$(free_port)
    redis_start redis-master "$master_port"
    redis_start redis-replica "$replica_port" --replicaof 127.0.0.1 "$master_port"
    sentinels=()
    for i in 1 2 3; do
        port=$(free_port)
        mkdir -p "$dir/sentinel$i"
        cat >"$dir/sentinel$i/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
dir $dir/sentinel$i
logfile $dir/sentinel$i/sentinel.log
sentinel monitor tcmaster 127.0.0.1 $master_port 2
sentinel down-after-milliseconds tcmaster 2000
sentinel failover-timeout tcmaster 10000
EOF
        "${pdeath[@]}" redis-server "$dir/sentinel$i/sentinel.conf" --sentinel </dev/null &
        pids+=($!)
        wait_for "sentinel $i" redis-cli -p "$port" ping
        sentinels+=("127.0.0.1:$port")
    done
    redis_url="sentinel://$(IFS=,; echo "${sentinels[*]}")/tcmaster"
fi

# PostgreSQL, seeded once by the first instance's `seed`.
source "$root/scripts/pg.sh"
start_pg "$dir" || { echo "fleet.sh: could not start postgres" >&2; exit 1; }
pg_bindir=${TC_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)}
"$pg_bindir/createdb" -h 127.0.0.1 -p "$pg_port" -U tiercache tiercache
export TIERCACHE_DB="postgresql://tiercache@127.0.0.1:$pg_port/tiercache"
"$bin" seed --seed-users 2000 --seed-activity 20

# The instances, then nginx in front of them.
upstream=""
for i in $(seq "$n"); do
    port=$(free_port)
    "${pdeath[@]}" "$bin" serve --listen "127.0.0.1:$port" --redis "$redis_url" \
        --access-log off --webhook-secret "fleet-local-webhook-secret" \
        >"$dir/instance$i.log" 2>&1 &
    pids+=($!)
    watched+=($!)
    wait_for "instance $i" curl -sf "http://127.0.0.1:$port/healthz"
    upstream+="        server 127.0.0.1:$port;\n"
done
sed -e "s|@LB_PORT@|$lb_port|" -e "s|@DIR@|$dir|g" -e "s|^ *# @UPSTREAM@.*$|$upstream|" \
    "$root/deploy/nginx-fleet.conf" >"$dir/nginx.conf"
"${pdeath[@]}" nginx -c "$dir/nginx.conf" -g 'daemon off;' </dev/null &
pids+=($!)
watched+=($!)
wait_for nginx curl -sf "http://127.0.0.1:$lb_port/healthz"

cat <<EOF

fleet.sh: up — http://127.0.0.1:$lb_port/ (nginx, round robin over $n instances)
  instances:  $(grep -o '127.0.0.1:[0-9]*' "$dir/nginx.conf" | grep -v ":$lb_port" | tr '\n' ' ')
  redis:      $redis_url
  postgresql: $TIERCACHE_DB
  logs:       $dir/
EOF
if [[ $cluster == 1 ]]; then
    cat <<EOF
Try a failover: kill a master (redis-cli -p PORT role; each node's files in $dir/cluster/PORT/)
  — its replica is promoted after the node timeout (5 s); the instances follow the slot map.
Ctrl-C stops everything.
EOF
else
    cat <<EOF
  sentinels:  ${sentinels[*]}  (master name tcmaster), master 127.0.0.1:$master_port
Try a failover: kill \$(redis-cli -p $master_port info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
  — the sentinels promote the replica in about 3 s; the instances follow it.
Ctrl-C stops everything.
EOF
fi
wait -n "${watched[@]}" || true
echo "fleet.sh: an instance or nginx exited; stopping the rest" >&2

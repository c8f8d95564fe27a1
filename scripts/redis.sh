# redis.sh: sourced by test.sh, run.sh and bench/api.sh. start_redis DIR starts a private
# redis-server on a free loopback port, with DIR for its files and log, and sets redis_pid
# and redis_port; it returns 1 if five random ports all failed. The server dies with the
# calling script, even if that script is SIGKILLed (pdeathsig). The caller stops it.
start_redis() {
    local dir=$1 pdeath=()
    setpriv --pdeathsig KILL true 2>/dev/null && pdeath=(setpriv --pdeathsig KILL)
    redis_pid=""
    for _ in 1 2 3 4 5; do # a random port may be taken: then redis exits and we try another
        redis_port=$((20000 + RANDOM % 40000))
        "${pdeath[@]}" "${TC_REDIS_SERVER:-redis-server}" --port "$redis_port" --bind 127.0.0.1 \
            --save "" --appendonly no --daemonize no --dir "$dir" --logfile "$dir/redis.log" \
            </dev/null &
        redis_pid=$!
        for _ in $(seq 100); do
            kill -0 "$redis_pid" 2>/dev/null || break
            # ours, not a stranger on the same port: INFO's process_id is our pid
            redis-cli -p "$redis_port" info server 2>/dev/null |
                grep -q "^process_id:$redis_pid" && return 0
            sleep 0.05
        done
        kill -KILL "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
        redis_pid=""
    done
    return 1
}

# start_cluster DIR: a Redis Cluster of 3 masters and 3 replicas (one each) on free loopback
# ports (each node's cluster bus port, +10000, free too), files and logs in DIR/<port>/, made
# with redis-cli --cluster create; waits for cluster_state:ok on every node. Sets
# cluster_pids (an array) and cluster_nodes ("127.0.0.1:p,..."); returns 1 on failure. The
# nodes die with the calling script (pdeathsig); the caller stops them (stop_cluster).
start_cluster() {
    local dir=$1 pdeath=() port addrs=() p i
    setpriv --pdeathsig KILL true 2>/dev/null && pdeath=(setpriv --pdeathsig KILL)
    cluster_pids=()
    cluster_nodes=""
    for i in 1 2 3 4 5 6; do
        for _ in $(seq 50); do
            port=$((20000 + RANDOM % 2700))
            ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
                ! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null && break
        done
        mkdir -p "$dir/$port"
        "${pdeath[@]}" "${TC_REDIS_SERVER:-redis-server}" --port "$port" --bind 127.0.0.1 \
            --save "" --appendonly no --daemonize no --dir "$dir/$port" \
            --logfile "$dir/$port/redis.log" --cluster-enabled yes \
            --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
            --repl-diskless-sync-delay 0 </dev/null &
        cluster_pids+=($!)
        for _ in $(seq 100); do
            redis-cli -p "$port" info server 2>/dev/null | grep -q "^process_id:$!" && break
            kill -0 "$!" 2>/dev/null || return 1
            sleep 0.05
        done
        addrs+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
        >"$dir/cluster-create.log" 2>&1 || return 1
    for p in "${addrs[@]}"; do
        for _ in $(seq 200); do
            redis-cli -p "${p#*:}" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && break
            sleep 0.05
        done
        redis-cli -p "${p#*:}" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
    cluster_nodes=$(IFS=,; echo "${addrs[*]}")
}

stop_cluster() {
    local p
    for p in "${cluster_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${cluster_pids[@]}"; do
        for _ in $(seq 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    cluster_pids=()
}

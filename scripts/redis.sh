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

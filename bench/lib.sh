# bench/lib.sh: what the benchmark scripts share, sourced after they set root.
#
#   bench_begin NAME [TARGET...]
#
# installs what is missing (scripts/deps.sh), builds tiercache (and TARGETs) in build/, makes
# a scratch directory, starts a private Redis on a loopback port, and stops every process in
# pids and removes the directory on exit. Sets bin, work, pids (redis_pid first), redis_pid,
# redis_port.
bench_begin() {
    local name=$1
    shift
    bash "$root/scripts/deps.sh" >/dev/null
    cmake -S "$root" -B "$root/build" >/dev/null
    cmake --build "$root/build" -j"$(nproc)" --target tiercache "$@" >/dev/null
    bin=$root/build/tiercache
    work=$(mktemp -d "${TMPDIR:-/tmp}/tc-$name.XXXXXX")
    pids=()
    trap bench_end EXIT
    source "$root/scripts/redis.sh"
    start_redis "$work" || { echo "$name: could not start redis-server" >&2; exit 1; }
    pids+=("$redis_pid")
}

bench_end() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

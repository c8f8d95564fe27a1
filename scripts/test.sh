#!/usr/bin/env bash
# test.sh: THE test command. Installs deps, builds, starts a private redis-server and a
# private PostgreSQL cluster on free loopback ports (stopped on exit, pass or fail, also on
# Ctrl-C), runs ctest with TC_REDIS_PORT and TC_PG_URL set; exits with ctest's status.
#   scripts/test.sh [--werror] [--sanitize=address,undefined|thread] [-- ctest args, e.g. -L unit]
#   scripts/test.sh --mutants [-- mutant ids]: the mutation run (scripts/mutants.sh) instead
#     of the suite, against the same private servers; it builds its own copy of the tree.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

sanitize="" werror=OFF mutants=0 ctest_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --sanitize=*) sanitize=${1#--sanitize=} ;;
        --werror) werror=ON ;;
        --mutants) mutants=1 ;;
        --) shift; ctest_args=("$@"); break ;;
        *) echo "usage: $0 [--werror] [--sanitize=address,undefined|thread] [-- ctest args]" >&2
           echo "       $0 --mutants [-- mutant ids]" >&2
           exit 2 ;;
    esac
    shift
done
case "$sanitize" in
    "") build="$root/build" ;;
    address,undefined) build="$root/build-asan" ;;
    thread) build="$root/build-tsan" ;;
    *) echo "test.sh: unknown sanitizer '$sanitize'" >&2; exit 2 ;;
esac

bash "$root/scripts/deps.sh"

if [[ $mutants -eq 0 ]]; then
    cmake -S "$root" -B "$build" -DTC_WERROR="$werror" -DTC_SANITIZE="$sanitize" >/dev/null
    cmake --build "$build" -j"$(nproc)"
fi

# Sanitizer runtimes fail on some kernels with ASLR ("unexpected memory mapping", seen with
# TSan when vm.mmap_rnd_bits is high). Probe a trivial program; if it fails, run without ASLR.
run=()
if [[ -n "$sanitize" ]]; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
    cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
    probe="$build/sanitizer-probe"
    echo 'int main(void) { return 0; }' |
        "$cc" -x c - -fsanitize="$sanitize" -o "$probe"
    probe_ok() { for _ in 1 2 3 4 5 6 7 8 9 10; do ("$@") >/dev/null 2>&1 || return 1; done; }
    if ! probe_ok "$probe"; then
        if probe_ok setarch "$(uname -m)" -R "$probe"; then
            echo "test.sh: $sanitize runtime fails with ASLR here; running tests under setarch -R"
            run=(setarch "$(uname -m)" -R)
        else
            echo "test.sh: warning: a trivial $sanitize program fails even without ASLR:" >&2
            "$probe" || true
        fi
    fi
fi

# A private redis-server for the tests (TC_REDIS_PORT) and a private Redis Cluster
# (TC_CLUSTER_NODES: the "@cluster" tests), stopped by the trap whatever happens.
export TC_REDIS_SERVER=${TC_REDIS_SERVER:-$(command -v redis-server)}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tc-test.XXXXXX")
redis_pid=""
pg_pid=""
cluster_pids=()
cleanup() {
    if [[ -n "$pg_pid" ]]; then
        stop_pg
    fi
    if declare -F stop_cluster >/dev/null; then stop_cluster; fi
    if [[ -n "$redis_pid" ]]; then
        kill -TERM "$redis_pid" 2>/dev/null || true
        for _ in $(seq 20); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

source "$root/scripts/redis.sh"
if ! start_redis "$tmp"; then
    echo "test.sh: could not start redis-server" >&2
    cat "$tmp/redis.log" >&2 || true
    exit 1
fi
port=$redis_port
export TC_REDIS_PORT=$port
export TMPDIR=$tmp   # tests' own temp dirs (tct_redis_start) go here and are removed with it
echo "test.sh: redis-server pid $redis_pid on 127.0.0.1:$port"
mkdir -p "$tmp/cluster"
if ! start_cluster "$tmp/cluster"; then
    echo "test.sh: could not start a Redis Cluster" >&2
    cat "$tmp/cluster/cluster-create.log" >&2 || true
    exit 1
fi
export TC_CLUSTER_NODES=$cluster_nodes
echo "test.sh: Redis Cluster (3 masters, 3 replicas) on $cluster_nodes (TC_CLUSTER_NODES)"

# A private PostgreSQL cluster (TC_PG_URL) in $tmp/pg, stopped by the same trap.
export TC_PG_BINDIR=${TC_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)}
source "$root/scripts/pg.sh"
if ! start_pg "$tmp"; then
    echo "test.sh: could not start postgres" >&2
    exit 1
fi
pgport=$pg_port
"$TC_PG_BINDIR/createdb" -h 127.0.0.1 -p "$pgport" -U tiercache tiercache_test
export TC_PG_URL="postgresql://tiercache@127.0.0.1:$pgport/tiercache_test"
echo "test.sh: postgres pid $pg_pid on 127.0.0.1:$pgport (TC_PG_URL)"

rc=0
if [[ $mutants -eq 1 ]]; then
    bash "$root/scripts/mutants.sh" "${ctest_args[@]}" || rc=$?
    exit "$rc"
fi
echo "test.sh: build in ${build#"$root"/}"
"${run[@]}" ctest --test-dir "$build" --output-on-failure --no-tests=error -j2 \
    "${ctest_args[@]}" || rc=$?
exit "$rc"

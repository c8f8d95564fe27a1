#!/usr/bin/env bash
# test.sh: THE test command. Installs deps, builds, starts a private redis-server on a free
# loopback port (stopped on exit, pass or fail), runs ctest; exits with ctest's status.
#   scripts/test.sh [--werror] [--sanitize=address,undefined|thread] [-- ctest args, e.g. -L unit]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

sanitize="" werror=OFF ctest_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --sanitize=*) sanitize=${1#--sanitize=} ;;
        --werror) werror=ON ;;
        --) shift; ctest_args=("$@"); break ;;
        *) echo "usage: $0 [--werror] [--sanitize=address,undefined|thread] [-- ctest args]" >&2
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

cmake -S "$root" -B "$build" -DTC_WERROR="$werror" -DTC_SANITIZE="$sanitize" >/dev/null
cmake --build "$build" -j"$(nproc)"

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

# A private redis-server for the tests (TC_REDIS_PORT), stopped by the trap whatever happens.
export TC_REDIS_SERVER=${TC_REDIS_SERVER:-$(command -v redis-server)}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tc-test.XXXXXX")
redis_pid=""
cleanup() {
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

# pdeathsig: redis dies with this script even if the script is SIGKILLed.
pdeath=()
setpriv --pdeathsig KILL true 2>/dev/null && pdeath=(setpriv --pdeathsig KILL)
for _ in 1 2 3 4 5; do   # a random port may be taken: then redis exits and we try another
    port=$((20000 + RANDOM % 40000))
    "${pdeath[@]}" "$TC_REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save "" \
        --appendonly no --daemonize no --dir "$tmp" --logfile "$tmp/redis.log" </dev/null &
    redis_pid=$!
    for _ in $(seq 100); do
        kill -0 "$redis_pid" 2>/dev/null || break
        # ours, not a stranger on the same port: INFO's process_id is our pid
        redis-cli -p "$port" info server 2>/dev/null | grep -q "^process_id:$redis_pid" && break 2
        sleep 0.05
    done
    kill -KILL "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=""
done
if [[ -z "$redis_pid" ]]; then
    echo "test.sh: could not start redis-server" >&2
    cat "$tmp/redis.log" >&2 || true
    exit 1
fi
export TC_REDIS_PORT=$port
export TMPDIR=$tmp   # tests' own temp dirs (tct_redis_start) go here and are removed with it
echo "test.sh: redis-server pid $redis_pid on 127.0.0.1:$port; build in ${build#"$root"/}"

rc=0
"${run[@]}" ctest --test-dir "$build" --output-on-failure --no-tests=error -j2 \
    "${ctest_args[@]}" || rc=$?
exit "$rc"

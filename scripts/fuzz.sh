#!/usr/bin/env bash
# fuzz.sh: the short fuzz run CI makes. Builds every libFuzzer target (fuzz/<name>.c ->
# fuzz_<name>, ASan + UBSan) with clang in build-fuzz/, then runs each for a few seconds
# from its seed corpus (fuzz/corpus/<name>/, with fuzz/<name>.dict when there is one).
# Fails on any crash, sanitizer report, leak, timeout or out-of-memory, and on a fuzz/*.c
# that the build does not make a target of. Prints executions per target.
#   scripts/fuzz.sh [--seconds N] [--jobs N] [name...]     (default: 5 s each, nproc at once)
# A longer run of one target: scripts/fuzz.sh --seconds 600 billing_event
# New inputs found go to build-fuzz/fuzz-out/<name>/ (never into the tree); a crash leaves
# its input in build-fuzz/fuzz-out/crash-<name>-*, to replay: build-fuzz/fuzz_<name> FILE
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build-fuzz"

seconds=5 jobs=$(nproc) names=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) seconds=$2; shift ;;
        --seconds=*) seconds=${1#--seconds=} ;;
        --jobs) jobs=$2; shift ;;
        --jobs=*) jobs=${1#--jobs=} ;;
        -*) echo "usage: $0 [--seconds N] [--jobs N] [name...]" >&2; exit 2 ;;
        *) names+=("$1") ;;
    esac
    shift
done
if [[ ${#names[@]} -eq 0 ]]; then
    for f in "$root"/fuzz/*.c; do names+=("$(basename "$f" .c)"); done
fi

start=$(date +%s)
bash "$root/scripts/deps.sh"
CC=clang cmake -S "$root" -B "$build" -DTC_FUZZ=ON -DTC_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz
built=$(date +%s)
for n in "${names[@]}"; do
    [[ -x "$build/fuzz_$n" ]] || { echo "fuzz.sh: fuzz/$n.c has no target fuzz_$n (CMakeLists.txt: tc_fuzz)" >&2; exit 1; }
done

# As in test.sh: where the sanitizer runtime fails with ASLR on this kernel, run without it.
run=()
if ! "$build/fuzz_${names[0]}" -runs=0 >/dev/null 2>&1 &&
    setarch "$(uname -m)" -R "$build/fuzz_${names[0]}" -runs=0 >/dev/null 2>&1; then
    echo "fuzz.sh: the sanitizer runtime fails with ASLR here; running under setarch -R"
    run=(setarch "$(uname -m)" -R)
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
out="$build/fuzz-out"
rm -rf "$out"
mkdir -p "$out"

fuzz_one() { # name: runs it, its output in $out/<name>.log
    local n=$1 seeds="$root/fuzz/corpus/$1" args=()
    mkdir -p "$out/$n"
    [[ -f "$root/fuzz/$n.dict" ]] && args+=(-dict="$root/fuzz/$n.dict")
    [[ -d "$seeds" ]] || seeds=""
    "${run[@]}" "$build/fuzz_$n" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$out/crash-$n-" "${args[@]}" \
        "$out/$n" ${seeds:+"$seeds"} >"$out/$n.log" 2>&1
}

declare -A pid_of=()
failed=()
reap() { # waits for one run to end; records a failure
    local done_pid rc=0 n
    wait -n -p done_pid || rc=$?
    for n in "${!pid_of[@]}"; do
        if [[ ${pid_of[$n]} == "$done_pid" ]]; then
            unset "pid_of[$n]"
            [[ $rc -eq 0 ]] || failed+=("$n")
        fi
    done
}
for n in "${names[@]}"; do
    while [[ ${#pid_of[@]} -ge $jobs ]]; do reap; done
    fuzz_one "$n" &
    pid_of[$n]=$!
done
while [[ ${#pid_of[@]} -gt 0 ]]; do reap; done

printf '%-16s %12s %8s %8s  %s\n' target executions exec/s new result
for n in "${names[@]}"; do
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$n.log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/$n.log" | tail -n1)
    units=$(find "$out/$n" -type f | wc -l)
    result=ok
    for f in "${failed[@]}"; do [[ $f == "$n" ]] && result=FAILED; done
    printf '%-16s %12s %8s %8s  %s\n' "$n" "${execs:--}" "${rate:--}" "$units" "$result"
done
end=$(date +%s)
echo "fuzz.sh: build $((built - start)) s, fuzzing $((end - built)) s (${seconds} s a target, $jobs at once)"
if [[ ${#failed[@]} -gt 0 ]]; then
    for n in "${failed[@]}"; do
        echo "==> fuzz_$n failed; the end of $out/$n.log:" >&2
        tail -n 60 "$out/$n.log" >&2
    done
    echo "fuzz.sh: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: ${#names[@]} targets, no failure"

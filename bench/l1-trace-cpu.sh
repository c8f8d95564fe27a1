#!/usr/bin/env bash
# bench/l1-trace-cpu.sh: the cost of a get with and without L1 admission, in instructions
# (callgrind), which a busy machine does not change: for each mode, bench_l1-trace runs
# the trace at two lengths and the hit loop at two lengths, and the differences divided
# by the gets they add give instructions per get of the trace (misses and scans included)
# and per L1 hit (the sketch's cost on the hit path). Hit ratios: bench_l1-trace itself.
#   bench/l1-trace-cpu.sh [Zipf reads, short (100000)] [long (300000)]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
n1=${1:-100000} n2=${2:-300000}
command -v valgrind >/dev/null || { echo "l1-trace-cpu: needs valgrind" >&2; exit 1; }
cmake -S "$root" -B "$root/build" >/dev/null
cmake --build "$root/build" -j"$(nproc)" --target bench_l1-trace >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/tc-l1cpu.XXXXXX")
trap 'rm -rf "$work"' EXIT
# scans of 5,000 keys every 20,000 reads: the same shape as the default trace, shorter
args=(-e 20000 -l 5000 -r 1)
ir() { # args -> instructions of the whole run
    valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$root/build/bench_l1-trace" "$@" \
        >/dev/null 2>&1
    callgrind_annotate "$work/cg" 2>/dev/null | sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,
}
reads() { # Zipf reads -> every get of the trace (the scans' too)
    echo $(( $1 + ($1 - 1) / 20000 * 5000 ))
}
echo "instructions per get (callgrind; trace of $n1 vs $n2 Zipf reads, scans of 5000 every 20000)"
for mode in on off; do
    a=$(ir "${args[@]}" -a "$mode" -n "$n1" -H 0)
    b=$(ir "${args[@]}" -a "$mode" -n "$n2" -H 0)
    c=$(ir "${args[@]}" -a "$mode" -n "$n1" -H 500000)
    printf '  admission %-3s: %6d per get of the trace, %5d per L1 hit\n' "$mode" \
        $(( (b - a) / ($(reads "$n2") - $(reads "$n1")) )) $(( (c - a) / 500000 ))
done

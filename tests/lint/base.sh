#!/usr/bin/env bash
# lint/base: what the build cannot refuse by itself (see docs/architecture.md, "Layers").
#   - An #include "../x.h" is looked up beside the including file, outside the layer's
#     view of the tree: it would slip past the include check. Include "layer/x.h".
#   - Clocks, timed waits and sleeps go through src/base (time.h, cond.h): a
#     pthread_cond_t made with pthread_cond_init(c, NULL) waits on the wall clock.
# Usage: base.sh <source root>. Exit 1 with one line per finding.
set -uo pipefail
root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$root" || exit 2
status=0
report() { # <rule> <grep output>
    [[ -z "$2" ]] && return
    printf '%s\n' "$2" | sed "s|\$|   <- $1|" >&2
    status=1
}
report 'include "layer/x.h", not a relative path (it escapes the layer view)' \
    "$(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"\.\./' src include)"
report 'use src/base: tc_mono_us/tc_wall_ms, tc_cond, tc_sleep_ms' \
    "$(grep -rnwE 'clock_gettime|pthread_cond_t|pthread_cond_init|pthread_cond_timedwait|nanosleep|usleep|gettimeofday' \
        src include --include='*.c' --include='*.h' | grep -v '^src/base/')"
exit $status

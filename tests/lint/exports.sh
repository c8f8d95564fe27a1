#!/usr/bin/env bash
# lint/exports: libtccache.a, the cache engine as a library for any C program, exports
# its public API (tc_ names, include/tiercache/cache.h) and nothing else: no tc__
# internal, no other global. See "Names" in docs/architecture.md.
# Usage: exports.sh <source root> <build dir>. Exit 1 listing what leaks.
set -uo pipefail
lib=${2:?usage: exports.sh <source root> <build dir>}/libtccache.a
[[ -f "$lib" ]] || { echo "exports.sh: $lib is not built" >&2; exit 1; }
leaks=$(nm -g --defined-only "$lib" | awk 'NF == 3 && ($3 !~ /^tc_/ || $3 ~ /^tc__/) {print $3}')
if [[ -n "$leaks" ]]; then
    printf '%s: exported, but not the public API:\n%s\n' "$lib" "$leaks" >&2
    exit 1
fi
n=$(nm -g --defined-only "$lib" | awk 'NF == 3' | wc -l)
[[ $n -gt 0 ]] || { echo "exports.sh: $lib exports nothing" >&2; exit 1; }
echo "$lib: $n symbols, all public tc_ API"

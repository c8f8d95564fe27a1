#!/usr/bin/env bash
# run.sh: placeholder for "run the server" until the server exists; for now builds and runs
# build/bench_cache if there is one. To be replaced when the web server lands.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/deps.sh"
cmake -S "$root" -B "$root/build" >/dev/null
cmake --build "$root/build" -j"$(nproc)"
if [[ -x "$root/build/bench_cache" ]]; then
    exec "$root/build/bench_cache" "$@"
fi
echo "run.sh: the server is not built yet (no build/bench_cache); nothing to run."

#!/usr/bin/env bash
# deps.sh: install the Debian 12 packages tiercache needs to build, test and run.
# Idempotent: asks dpkg which are missing and installs only those; a no-op when all present.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config gcc clang clang-format
    libclang-rt-dev llvm   # libFuzzer and clang's sanitizer runtimes; llvm-symbolizer (fuzz.sh)
    libhiredis-dev libxxhash-dev libzstd-dev redis-server
    libsqlite3-dev libpq-dev libsodium-dev libjansson-dev libmicrohttpd-dev postgresql wrk
    zlib1g-dev chromium nginx varnish varnish-modules
    prometheus
)

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
# Node.js runs the end-to-end tests; the machine image usually has it, Debian's is the fallback.
command -v node >/dev/null || missing+=(nodejs npm)

if [[ ${#missing[@]} -gt 0 ]]; then
    echo "deps.sh: installing ${missing[*]}"
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "deps.sh: not root and no sudo" >&2; exit 1; }
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    # nginx, varnish, redis, postgresql and prometheus are run by the tests and run.sh
    # themselves, on private ports: keep apt from starting them as system services.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${SUDO[@]}" chmod +x /usr/sbin/policy-rc.d
        trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The end-to-end tests' npm packages (@trpc/client), pinned by tests/e2e/package-lock.json.
e2e="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/e2e"
if [[ ! -f "$e2e/node_modules/.package-lock.json" ||
      "$e2e/package-lock.json" -nt "$e2e/node_modules/.package-lock.json" ]]; then
    echo "deps.sh: installing the e2e tests' npm packages"
    (cd "$e2e" && npm ci --no-audit --no-fund --loglevel=error)
fi

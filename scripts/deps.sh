#!/usr/bin/env bash
# deps.sh: install the Debian 12 packages tiercache needs to build, test and run.
# Idempotent: asks dpkg which are missing and installs only those; a no-op when all present.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config gcc clang clang-format
    libhiredis-dev libxxhash-dev redis-server
    libsqlite3-dev libpq-dev libsodium-dev libjansson-dev libmicrohttpd-dev postgresql wrk
)

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps.sh: installing ${missing[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "deps.sh: not root and no sudo" >&2; exit 1; }
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"

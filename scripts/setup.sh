#!/usr/bin/env bash
# Installs the Debian 12 packages the build and tests need (only the missing
# ones, quietly), then configures and builds into build/.
# Usage: scripts/setup.sh [extra cmake -D options...]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake pkg-config
  libuv1-dev libsqlite3-dev libtomlplusplus-dev libspdlog-dev libgtest-dev
  nlohmann-json3-dev node-llhttp libsystemd-dev libcurl4-openssl-dev libcli11-dev
  libpq-dev musl-tools sqlite3 curl util-linux procps
)
if [ "${ORCH_SETUP_TEST_DEPS:-0}" = 1 ]; then
  packages+=(prometheus clang libclang-rt-14-dev dpkg-dev file systemd postgresql-15 chromium)
  # The status page's browser test runs playwright-core on Node.js (>= 20;
  # Debian's own is older, so a Node.js already on the machine is kept).
  command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq >/dev/null
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# playwright-core, pinned by tests/ui/package-lock.json; it drives Debian's
# chromium and never downloads a browser of its own.
if [ "${ORCH_SETUP_TEST_DEPS:-0}" = 1 ] &&
   ! cmp -s tests/ui/package-lock.json tests/ui/node_modules/.orch-installed-lock 2>/dev/null; then
  echo "setup: installing tests/ui's node modules" >&2
  (cd tests/ui && npm ci --no-audit --no-fund --loglevel=error >/dev/null &&
    cp package-lock.json node_modules/.orch-installed-lock)
fi

build_dir=${ORCH_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${ORCH_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"

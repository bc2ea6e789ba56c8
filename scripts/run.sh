#!/usr/bin/env bash
# Sets everything up (packages, build) and runs the daemon in the foreground
# on the root orchestrator.toml: state under var/, API on 127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec build/orchestrator serve --config orchestrator.toml "$@"

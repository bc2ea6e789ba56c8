#!/usr/bin/env bash
# Sets everything up (packages, build) and runs the daemon in the foreground
# on the root orchestrator.toml: state under var/, API on 127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
# The daemon people run never carries the test kill points.
scripts/setup.sh -DORCH_TEST_HOOKS=OFF
exec build/orchestrator serve --config orchestrator.toml "$@"

#!/bin/bash
# Runs the supervisor/HTTP/load benchmarks one after another (~9 minutes),
# each under `nice -n -19` so that other work on the host disturbs them less.
# Results go to stdout; see bench/README.md for what each prints.
#   ORCH_BIN=/path/to/orchestrator bench/run_all.sh
# async_store_bench also measures a baseline binary side by side when
# ORCH_BASELINE_BIN is set (e.g. a build of d4e191f, see bench/README.md).
set -e
cd "$(dirname "$0")"
for b in spawn_bench exit_bench memory_bench http_bench load_bench async_store_bench; do
  echo "=== $b"
  timeout 600 nice -n -19 python3 "$b.py"
done

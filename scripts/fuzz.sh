#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time on a scratch copy of its
# committed seed corpus (new inputs never land in the repository).
# Usage: scripts/fuzz.sh BUILD_DIR SECONDS_PER_TARGET
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${2:-60}
for target in http config stat; do
  bin="$build/tests/fuzz/${target}_fuzz"
  scratch=$(mktemp -d)
  echo "fuzz: $target for ${seconds}s"
  "$bin" -max_total_time="$seconds" -print_final_stats=1 "$scratch" "tests/fuzz/corpus/$target" \
    2>"$scratch.log" || { tail -50 "$scratch.log"; rm -rf "$scratch" "$scratch.log"; exit 1; }
  grep -E "stat::number_of_executed_units|Done" "$scratch.log" | tail -2 || true
  rm -rf "$scratch" "$scratch.log"
done
echo "fuzz: all targets ran without a crash"

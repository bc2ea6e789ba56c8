#!/usr/bin/env bash
# Sets everything up and runs every test: the suite, the suite again under
# ASan+UBSan, and the bounded fuzz runs. Set ORCH_QUICK=1 for the plain suite only.
set -euo pipefail
cd "$(dirname "$0")/.."
export ORCH_SETUP_TEST_DEPS=1
# setup.sh installs chromium and playwright-core: the browser test must run.
export ORCH_REQUIRE_BROWSER=1
stage_start=$SECONDS
stage() {  # prints how long the previous stage took, then the next one's name
  [ -n "${stage_name:-}" ] && echo "== $stage_name took $((SECONDS - stage_start)) s"
  stage_name=$1
  stage_start=$SECONDS
  [ -n "$1" ] && echo "== $1"
  return 0
}
trap 'stage ""' EXIT

stage "build (RelWithDebInfo) and test"
# The benchmarks are built (not run) so that they keep compiling.
scripts/setup.sh -DORCH_TEST_HOOKS=ON -DORCH_BENCH=ON
(cd build && ctest --output-on-failure -j2 --timeout 300)

[ "${ORCH_QUICK:-0}" = 1 ] && exit 0

stage "build with ASan+UBSan and test"
ORCH_BUILD_DIR=build-asan ORCH_BUILD_TYPE=Debug scripts/setup.sh -DORCH_SANITIZE=ON -DORCH_TEST_HOOKS=ON
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j2 --timeout 600)

# The code with threads: the store executor (writer and reader threads), the
# WAL checkpointer, the launcher thread, and the supervisor driving them.
stage "build with TSan and test the store and the supervisor loop"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DORCH_TSAN=ON -DORCH_TEST_HOOKS=ON >/dev/null
cmake --build build-tsan -j"$(nproc)" --target store_tests supervisor_tests base_tests
TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/store_tests --gtest_brief=1
TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/base_tests --gtest_brief=1 \
  --gtest_filter='BlockingWorker*'
TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/supervisor_tests --gtest_brief=1 \
  --gtest_filter='SupervisorLoop.*'

if [ -f tests/fuzz/CMakeLists.txt ]; then
  stage "fuzz (bounded)"
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -DORCH_FUZZ=ON -DORCH_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-fuzz -j2 --target http_fuzz config_fuzz stat_fuzz
  scripts/fuzz.sh build-fuzz "${ORCH_FUZZ_SECONDS:-60}"
fi

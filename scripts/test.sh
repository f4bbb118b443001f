#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test tier with CTest
# (unit tests under glibc and under heapkeeper, integration tests on real programs). Then the
# sanitizer runs, each in its own build directory holding only what it needs, never the preload
# library (cmake/Sanitizers.cmake):
#   build-asan  ASan + UBSan: the unit tests of heapkeeper's own code, the stats tests and the
#               `heapkeeper` command, which also runs the live-stats CLI test (stats.cli) against
#               the main build's uninstrumented libheapkeeper.so;
#   build-tsan  TSan: the stats tests, the segment's seqlock with producer and reader on two threads.
# Any finding fails the run. HEAPKEEPER_SANITIZERS=0 skips the sanitizer runs (a quick local check),
# HEAPKEEPER_SANITIZERS=only runs only them (after the main build).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" -DHEAPKEEPER_BUILD_TESTS=ON
status=0
if [[ ${HEAPKEEPER_SANITIZERS:-1} != only ]]; then
  (cd "$root/build" && ctest --output-on-failure -j2 --timeout 300) || status=1
fi
[[ ${HEAPKEEPER_SANITIZERS:-1} == 0 ]] && exit $status

jobs=$(nproc)
# sanitizer_run SANITIZER DIRECTORY TEST_REGEX TARGET...: configures DIRECTORY, builds only TARGETs,
# runs the CTest tests matching TEST_REGEX there.
sanitizer_run() {
  local sanitizer=$1 dir=$root/$2 tests=$3 start=$SECONDS
  shift 3
  echo "== $sanitizer sanitizer: $* ($dir)"
  # -O1 and line tables only (-g1): what the sanitizers' reports need, and a good deal quicker to
  # build than -O2 -g, which is most of this part's time.
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHEAPKEEPER_WERROR=ON -DHEAPKEEPER_BUILD_TESTS=ON \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
    -DHEAPKEEPER_SANITIZE="$sanitizer" >/dev/null
  cmake --build "$dir" -j"$jobs" --target "$@"
  (cd "$dir" && ctest --output-on-failure -j2 --timeout 300 -R "$tests") || status=1
  echo "== $sanitizer sanitizer: $((SECONDS - start)) s"
}

unit_tests=(config_test block_map_test stack_table_test symbolizer_test segment_reader_fuzz_test view_model_test
  snapshot_seqlock_test)
sanitizer_run address build-asan '^unit\.' "${unit_tests[@]}" heapkeeper
# The sanitized `heapkeeper` command drives a real tracked program: the script finds the preload
# library next to the command, so the main build's is linked in (it is never instrumented).
mkdir -p "$root/build-asan/lib"
ln -sf "$root/build/lib/libheapkeeper.so" "$root/build-asan/lib/libheapkeeper.so"
echo "== address sanitizer: stats.cli with the sanitized heapkeeper command"
HK_LAUNCHER=$root/build-asan/bin/heapkeeper HK_TARGET=$root/build/tests/programs/hk_stats_live_target \
  HK_SCRATCH=$root/build-asan/tests/stats/scratch bash "$root/tests/stats/cli.sh" || status=1

# TSan looks for races between threads; the fuzz tests are single-threaded and twenty times slower
# under it, so they run a few iterations here (every path, not every random case: the main and ASan
# builds run them all).
HEAPKEEPER_FUZZ_ITERATIONS=15 \
  sanitizer_run thread build-tsan '^unit\.stats\.' segment_reader_fuzz_test view_model_test snapshot_seqlock_test
exit $status

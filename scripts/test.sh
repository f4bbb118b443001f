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
jobs=$(nproc)
sanitizers=${HEAPKEEPER_SANITIZERS:-1}

# configure_sanitized SANITIZER DIRECTORY: one build directory per sanitizer. -O1 and line tables
# only (-g1): what the sanitizers' reports need, and a good deal quicker to build than -O2 -g.
configure_sanitized() {
  cmake -S "$root" -B "$root/$2" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHEAPKEEPER_WERROR=ON -DHEAPKEEPER_BUILD_TESTS=ON \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
    -DHEAPKEEPER_SANITIZE="$1" >/dev/null
}
unit_tests=(config_test block_map_test stack_table_test segment_reader_fuzz_test view_model_test
  snapshot_seqlock_test)
tsan_tests=(segment_reader_fuzz_test view_model_test snapshot_seqlock_test)
build_sanitized() {
  configure_sanitized address build-asan && cmake --build "$root/build-asan" -j"$jobs" --target "${unit_tests[@]}" heapkeeper &&
    configure_sanitized thread build-tsan && cmake --build "$root/build-tsan" -j"$jobs" --target "${tsan_tests[@]}"
}

# The sanitized builds are most of this script's time after the main build. They run at the lowest
# CPU priority while the main tests run (which mostly wait on the programs they drive), so they take
# the idle cycles and the tests keep theirs; their output is printed when they are done.
sanitized_pid=
if [[ $sanitizers != 0 ]]; then
  if [[ $sanitizers == only ]]; then
    build_sanitized || status=1
  else
    echo "== sanitized builds (build-asan, build-tsan) run in the background at nice 19"
    nice -n 19 bash -c "$(declare -p root jobs unit_tests tsan_tests); $(declare -f configure_sanitized build_sanitized); build_sanitized" \
      >"$root/build/sanitized-builds.log" 2>&1 &
    sanitized_pid=$!
  fi
fi
if [[ $sanitizers != only ]]; then
  (cd "$root/build" && ctest --output-on-failure -j2 --timeout 300) || status=1
fi
[[ $sanitizers == 0 ]] && exit $status
if [[ -n $sanitized_pid ]]; then
  build_ok=0
  wait "$sanitized_pid" || build_ok=1
  grep -v "^\[ *[0-9]*%\] \(Building\|Built target\|Linking\)" "$root/build/sanitized-builds.log" || true
  if ((build_ok)); then
    echo "== the sanitized builds failed (above)"
    exit 1
  fi
fi

# sanitizer_run SANITIZER DIRECTORY TEST_REGEX: runs the CTest tests matching TEST_REGEX there.
sanitizer_run() {
  local start=$SECONDS
  echo "== $1 sanitizer: tests matching $3 ($root/$2)"
  (cd "$root/$2" && ctest --output-on-failure -j2 --timeout 300 -R "$3") || status=1
  echo "== $1 sanitizer: $((SECONDS - start)) s"
}

sanitizer_run address build-asan '^unit\.'
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
HEAPKEEPER_FUZZ_ITERATIONS=15 sanitizer_run thread build-tsan '^unit\.stats\.'
exit $status

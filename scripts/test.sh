#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test tier with CTest
# (unit tests under glibc and under heapkeeper, integration tests on real programs). Then the
# sanitizer runs, each in its own build directory holding only what it needs, never the preload
# library (cmake/Sanitizers.cmake):
#   build-asan  ASan + UBSan: the unit tests of heapkeeper's own code and the stats tests (the
#               segment reader's fuzzer, the view model, the RSS breakdown's parser);
#   build-tsan  TSan: the segment's seqlock with producer and reader on two threads.
# Any finding fails the run. HEAPKEEPER_SANITIZERS=0 skips the sanitizer runs (a quick local check),
# HEAPKEEPER_SANITIZERS=only runs only them (after the main build).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh" --build
# The tools the tests run come while the build runs (apt-get is mostly download and unpacking).
mkdir -p "$root/build"
"$root/scripts/install-deps.sh" --log "$root/build/install-tools.log" --tools >"$root/build/install-tools.out" 2>&1 &
tools_pid=$!
"$root/scripts/build.sh" -DHEAPKEEPER_BUILD_TESTS=ON
status=0
if ! wait "$tools_pid"; then
  cat "$root/build/install-tools.out"
  echo "== some test tools could not be installed (above; apt-get's output in build/install-tools.log)"
  status=1
fi
cat "$root/build/install-tools.out"
jobs=$(nproc)
sanitizers=${HEAPKEEPER_SANITIZERS:-1}

# configure_sanitized SANITIZER DIRECTORY: one build directory per sanitizer. -O0 and line tables
# only (-g1): what the sanitizers' reports need (unoptimised code hides no access from them), and
# a third less compile time than -O1 on the viewer's template-heavy files (9.6 s against 14.7 s
# for process_commands.cpp under ASan): these builds were a quarter of this script's time.
configure_sanitized() {
  cmake -S "$root" -B "$root/$2" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHEAPKEEPER_WERROR=ON -DHEAPKEEPER_BUILD_TESTS=ON \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O0 -g1 -DNDEBUG" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O0 -g1 -DNDEBUG" \
    -DHEAPKEEPER_SANITIZE="$1" >/dev/null
}
unit_tests=(config_test block_map_test stack_table_test signal_safe_pool_test segment_reader_fuzz_test view_model_test rss_breakdown_test
  raw_dump_fuzz_test raw_why_test suppressions_test python_names_test
  snapshot_seqlock_test)
tsan_tests=(snapshot_seqlock_test)

if [[ $sanitizers != only ]]; then
  (cd "$root/build" && ctest --output-on-failure -j2 --timeout 300) || status=1
fi
[[ $sanitizers == 0 ]] && exit $status
configure_sanitized address build-asan
cmake --build "$root/build-asan" -j"$jobs" --target "${unit_tests[@]}"
configure_sanitized thread build-tsan
cmake --build "$root/build-tsan" -j"$jobs" --target "${tsan_tests[@]}"

# sanitizer_run SANITIZER DIRECTORY TEST_REGEX: runs the CTest tests matching TEST_REGEX there.
sanitizer_run() {
  local start=$SECONDS
  echo "== $1 sanitizer: tests matching $3 ($root/$2)"
  (cd "$root/$2" && ctest --output-on-failure -j2 --timeout 300 -R "$3") || status=1
  echo "== $1 sanitizer: $((SECONDS - start)) s"
}

sanitizer_run address build-asan '^unit\.'
# (The sanitized `heapkeeper` command and stats.cli under it were dropped to keep the whole run
# under 15 minutes on 2 cores: the viewer code they drove is in heapkeeper_view, which the unit
# tests above link and exercise, the segment reader's parsing by a fuzzer.)

# TSan looks for races between threads: the segment's seqlock, a producer and a reader on two
# threads (the other stats tests are single-threaded; the main and ASan builds run them).
sanitizer_run thread build-tsan '^unit\.stats\.snapshot_seqlock\.'
exit $status

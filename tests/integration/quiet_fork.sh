#!/usr/bin/env bash
# Forks that leave jemalloc's fork handlers out (allocator/quiet_fork.h), with tests/programs/
# quiet_fork.c: a single-threaded program, then the same with a second thread, forks children that
# allocate, free their parent's blocks, make threads (which may reuse the stacks and TLS of
# heapkeeper's threads, left in the child), fork again and exit; and it forks inside vfork children
# (which run on the parent's thread and memory: such a fork must not be quiet, one grandchild in
# six runs inherited a jemalloc lock the parent's live-stats thread held when it was).
#
# - Same output and status as a plain run, no child hung or failed: with the defaults, and with
#   heapkeeper's threads awake often (live stats from the start, a reader watching, scans every
#   5 ms), so that forks meet them parked and awake, quiet and full.
# - With the defaults, the bare children of the single-threaded phase took fewer page faults than those of the
#   threaded phase, by at least 10 more than without heapkeeper: their forks were quiet (jemalloc
#   re-initialises its few hundred mutexes in a full fork's child, some 20 copy-on-write pages),
#   the threaded phase's full.
#
# Usage: quiet_fork.sh (environment from CMakeLists.txt, see lib.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

program=$(hk_program quiet_fork)
run_program() {
  local mode=$1
  shift
  hk_exec "$mode" "$@"
}
hk_compare quiet_fork run_program "$program" 30 "$HK_WORK/faults.defaults" -- preload

# Busy heapkeeper threads: the publisher made at once and answering a reader, the scanner every 5 ms.
busy_run() {
  local mode=$1
  shift
  if [[ $mode == plain ]]; then
    hk_exec plain "$@"
    return
  fi
  HEAPKEEPER_STATS_DELAY=0 HEAPKEEPER_SCAN_INTERVAL=5ms hk_exec "$mode" "$@" &
  local pid=$!
  # A reader watching: `stats --json` while the program runs (its answers are not the test's).
  (
    for _ in $(seq 40); do
      kill -0 "$pid" 2>/dev/null || break
      local traced
      traced=$(pgrep -o -f "^$program" || true)
      [[ -n $traced ]] && timeout 5 "$HK_LAUNCHER" stats --json "$traced" >/dev/null 2>&1 || true
      sleep 0.05
    done
  ) &
  local reader=$!
  local status=0
  wait "$pid" || status=$?
  wait "$reader" || true
  return "$status"
}
hk_compare quiet_fork_busy busy_run "$program" 30 -- preload

# median_faults FILE PHASE: the median page faults of PHASE's bare children in FILE.
median_faults() {
  awk -v phase="$2" '$1 == phase { print $2 }' "$1" | sort -n | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : -1 }'
}
# Without heapkeeper a child of the threaded phase takes some faults more (glibc's fork reclaims
# the other thread's stack in the child): heapkeeper's full forks must add at least 10 to that.
hk_exec plain "$program" 30 "$HK_WORK/faults.plain" >/dev/null 2>&1 || true
plain_alone=$(median_faults "$HK_WORK/faults.plain" alone)
plain_threaded=$(median_faults "$HK_WORK/faults.plain" threaded)
for file in faults.defaults; do
  [[ -s $HK_WORK/$file ]] || { hk_fail "$file: no faults recorded"; continue; }
  alone=$(median_faults "$HK_WORK/$file" alone)
  threaded=$(median_faults "$HK_WORK/$file" threaded)
  said="a bare child took $alone page faults alone, $threaded threaded ($plain_alone and $plain_threaded without heapkeeper)"
  if ((alone >= 0 && threaded >= 0 && plain_alone >= 0 && plain_threaded >= 0 &&
    (threaded - alone) - (plain_threaded - plain_alone) >= 10)); then
    hk_pass "$file: $said"
  else
    hk_fail "$file: $said: the single-threaded program's forks were not quiet?"
  fi
done
hk_finish

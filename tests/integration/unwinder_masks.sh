#!/usr/bin/env bash
# libunwind's signal blocks inside heapkeeper's unwinds take no system call, and change nothing a
# program sees (allocator/unwinder_masks.h).
#
# - tests/programs/unwinder_masks.c: two threads with their own masks allocate from stacks
#   libunwind looks up for the first time, reading their masks back after each allocation, with a
#   blocked signal pending and a timer's handler changing its own mask meanwhile: same output and
#   status as a plain run.
# - python3 importing a few modules (20,000 rt_sigprocmask calls traced before, none plain) makes
#   at most a few dozen more than a plain run, counted by strace; its output is the plain run's.
#
# Usage: unwinder_masks.sh (environment from CMakeLists.txt, see lib.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

run_program() {
  local mode=$1
  shift
  hk_exec "$mode" "$@"
}
hk_compare unwinder_masks run_program "$(hk_program unwinder_masks)" 20000 -- launcher preload

hk_require strace /usr/bin/python3
script='import json, decimal, email.message, argparse; print(json.dumps({"d": str(decimal.Decimal(1) / 7)}))'
# The calls of the process and its threads (heapkeeper's start-up makes a handful); strace's own
# fork and exec of the program are not counted (-e trace only counts the traced program's).
count_masks() {
  local mode=$1 output=$2
  local log=$HK_WORK/strace.$mode
  local -a environment=(env -u LD_PRELOAD)
  [[ $mode == traced ]] && environment=(env HEAPKEEPER_QUIET=1 LD_PRELOAD="$HK_PRELOAD")
  if ! timeout -k 5 "$(hk_limit)" strace -f -qq -c -e trace=rt_sigprocmask -o "$log" \
    "${environment[@]}" /usr/bin/python3 -c "$script" >"$output" 2>"$HK_WORK/python.$mode.err"; then
    hk_fail "python3 ($mode) under strace failed: $(tail -3 "$HK_WORK/python.$mode.err")"
    echo -1
    return
  fi
  # The summary's total line: "100.00 SECONDS USECS CALLS [ERRORS] total"; none when no call.
  awk '$NF == "total" { calls = $4 } END { print calls + 0 }' "$log"
}
plain=$(count_masks plain "$HK_WORK/python.plain.out")
traced=$(count_masks traced "$HK_WORK/python.traced.out")
if ((plain >= 0 && traced >= 0)); then
  if ! cmp -s "$HK_WORK/python.plain.out" "$HK_WORK/python.traced.out"; then
    hk_fail "python3: traced output differs from the plain run's: $(diff "$HK_WORK/python.plain.out" "$HK_WORK/python.traced.out" | head -5)"
  elif ((traced <= plain + 40)); then
    hk_pass "python3 importing modules: $traced rt_sigprocmask calls traced, $plain plain"
  else
    hk_fail "python3 importing modules: $traced rt_sigprocmask calls traced, $plain plain (libunwind's blocks are system calls again?)"
  fi
fi
hk_finish

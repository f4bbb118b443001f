#!/usr/bin/env bash
# libunwind's critical sections inside heapkeeper's unwinds (allocator/unwinder_masks.h): their
# signal blocks take no system call while the program does not link libunwind too, and change
# nothing a program sees; no child of a fork inherits one of those sections held.
#
# - tests/programs/unwinder_masks.c: two threads with their own masks allocate from stacks
#   libunwind looks up for the first time, reading their masks back after each allocation, with a
#   blocked signal pending and a timer's handler changing its own mask meanwhile (once with a set
#   shaped like heapkeeper's marker): same output and status as a plain run.
# - tests/programs/fork_during_unwind.c: children forked while other threads are inside those
#   sections never hang (1 in 1,000 did).
# - tests/programs/unwinding_profiler.c, linked with libunwind and unwinding in its SIGPROF
#   handler while two threads allocate from new stacks: same output and status (it hung, every
#   run, when the blocks were elided for it too).
# - gperftools' real profiler (libprofiler.so.0, linked with libunwind) sampling python3 at 5 kHz:
#   the plain run's output, a profile, no hang.
# - rt_sigprocmask system calls counted by strace: python3 importing modules makes at most 40
#   more than a plain run (8,400 more before), with the plain run's output; the profiler makes
#   thousands more (its blocks stay).
#
# Usage: unwinder_masks.sh (environment from CMakeLists.txt, see lib.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

run_program() {
  local mode=$1
  shift
  hk_exec "$mode" "$@"
}
hk_compare unwinder_masks run_program "$(hk_program unwinder_masks)" 20000 -- launcher preload
hk_compare fork_during_unwind run_program "$(hk_program fork_during_unwind)" 3000 -- preload

hk_require strace /usr/bin/python3
# count_masks NAME MODE CMD...: runs CMD plain or traced (MODE) under strace -f -c and leaves the
# number of its rt_sigprocmask system calls in $HK_WORK/NAME.MODE.count (-1 when it failed); its
# stdout in $HK_WORK/NAME.MODE.out.
count_masks() {
  local name=$1 mode=$2
  shift 2
  local base=$HK_WORK/$name.$mode
  local -a environment=(env -u LD_PRELOAD)
  [[ $mode == traced ]] && environment=(env HEAPKEEPER_QUIET=1 LD_PRELOAD="$HK_PRELOAD")
  if ! timeout -k 5 "$(hk_limit)" strace -f -qq -c -e trace=rt_sigprocmask -o "$base.strace" \
    "${environment[@]}" "$@" >"$base.out" 2>"$base.err"; then
    hk_fail "$name ($mode) under strace failed: $(tail -3 "$base.err")"
    echo -1 >"$base.count"
    return
  fi
  # The summary's total line: "100.00 SECONDS USECS CALLS [ERRORS] total"; none when no call.
  awk '$NF == "total" { calls = $4 } END { print calls + 0 }' "$base.strace" >"$base.count"
}

# python3, which links no libunwind: libunwind's blocks in heapkeeper's unwinds are no system
# calls (8,400 were; heapkeeper's start-up makes a dozen of its own).
script='import json, decimal, email.message, argparse; print(json.dumps({"d": str(decimal.Decimal(1) / 7)}))'
export PYTHONHASHSEED=0
count_masks python plain /usr/bin/python3 -c "$script"
count_masks python traced /usr/bin/python3 -c "$script"
plain=$(cat "$HK_WORK/python.plain.count") traced=$(cat "$HK_WORK/python.traced.count")
if ((plain >= 0 && traced >= 0)); then
  if ! cmp -s "$HK_WORK/python.plain.out" "$HK_WORK/python.traced.out"; then
    hk_fail "python3: traced output differs from the plain run's: $(diff "$HK_WORK/python.plain.out" "$HK_WORK/python.traced.out" | head -5)"
  elif ((traced <= plain + 40)); then
    hk_pass "python3 importing modules: $traced rt_sigprocmask calls traced, $plain plain"
  else
    hk_fail "python3 importing modules: $traced rt_sigprocmask calls traced, $plain plain (libunwind's blocks are system calls again?)"
  fi
fi

# A profiler linked with the same libunwind, unwinding in its SIGPROF handler: no deadlock, the
# plain run's output, and libunwind's blocks stay system calls (one round sampling every 100 ms
# under strace: about 2,000 calls traced, 9 plain; a dozen traced if they were elided for it).
# Sampling every 200 us: on a machine whose system calls cost over a microsecond (a paravirtualized
# guest), a 50 us CPU-time timer fires again before a traced thread's handler returns and the
# threads never progress (alarm after 20 s), with or without this test's concern.
hk_compare unwinding_profiler run_program "$(hk_program unwinding_profiler)" 10 200 -- preload
count_masks profiler plain "$(hk_program unwinding_profiler)" 1 100000
count_masks profiler traced "$(hk_program unwinding_profiler)" 1 100000
plain=$(cat "$HK_WORK/profiler.plain.count") traced=$(cat "$HK_WORK/profiler.traced.count")
if ((plain >= 0 && traced >= 0)); then
  if ((traced > plain + 200)); then
    hk_pass "profiler linked with libunwind: $traced rt_sigprocmask calls traced, $plain plain"
  else
    hk_fail "profiler linked with libunwind: $traced rt_sigprocmask calls traced, $plain plain (libunwind's blocks elided for a program that unwinds with it in a handler?)"
  fi
fi

# The real thing: gperftools' CPU profiler (Debian's libprofiler.so.0, linked with libunwind),
# preloaded after heapkeeper, sampling python3 at 5 kHz while it imports modules: the plain run's
# output (profiled too), a profile written, no hang. (The count is the profiler's own blocks and
# heapkeeper's together, too noisy to judge heapkeeper's by: unwinding_profiler's count does.)
profiler=$(find /usr/lib /lib -name 'libprofiler.so.0' -print -quit 2>/dev/null || true)
if [[ -z $profiler ]]; then
  echo "SKIP (this part): gperftools' libprofiler.so.0 is not installed"
else
  gperf_script='import json, decimal, email.message, argparse, asyncio, http.client; print(json.dumps(sorted(dir(asyncio))[:5]))'
  CPUPROFILE=$HK_WORK/plain.prof CPUPROFILE_FREQUENCY=5000 LD_PRELOAD=$profiler \
    /usr/bin/python3 -c "$gperf_script" >"$HK_WORK/gperf.plain.out" 2>/dev/null
  count_masks gperf traced env CPUPROFILE="$HK_WORK/traced.prof" CPUPROFILE_FREQUENCY=5000 \
    LD_PRELOAD="$HK_PRELOAD:$profiler" /usr/bin/python3 -c "$gperf_script"
  traced=$(cat "$HK_WORK/gperf.traced.count")
  if ((traced >= 0)); then
    if ! cmp -s "$HK_WORK/gperf.plain.out" "$HK_WORK/gperf.traced.out"; then
      hk_fail "python3 under gperftools' profiler: output differs from the plain run's: $(diff "$HK_WORK/gperf.plain.out" "$HK_WORK/gperf.traced.out" | head -5)"
    elif [[ ! -s $HK_WORK/traced.prof ]]; then
      hk_fail "python3 under gperftools' profiler and heapkeeper: no profile written"
    else
      hk_pass "python3 under gperftools' profiler at 5 kHz: plain output, a profile, $traced rt_sigprocmask calls"
    fi
  fi
fi
hk_finish

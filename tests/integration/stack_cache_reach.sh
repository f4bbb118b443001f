#!/usr/bin/env bash
# Deep stacks are served by the stack cache, with frame pointers and without.
#
# The per-thread stack cache (allocator/stack_capture.cpp) remembers for each cached stack the
# slots of its return addresses, stale copies of them and the saved frame pointers above them
# ("links"), up to a capacity of 2 * depth + 8 words. A program built with frame pointers needs a
# link per frame: a 24-frame stack takes 48 words before any stale copy. A change that cut the
# capacity to 48 (a memo in the entry's header) made such stacks uncacheable: every allocation of a
# 30-deep recursion built with frame pointers unwound again, 5 to 8 times the CPU time, while the
# same program without frame pointers was unchanged. A timing would not be a test: this counts the
# unwinds heapkeeper asks libunwind for (tests/programs/count_unwinds.c, preloaded ahead of it).
#
# Usage: stack_cache_reach.sh (environment from CMakeLists.txt, see lib.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${HK_COUNT_UNWINDS:?HK_COUNT_UNWINDS must name the count_unwinds library}"

n=6000
for variant in deep_recursion deep_recursion_nofp; do
  program=$(hk_program "$variant")
  err=$HK_WORK/$variant.err
  if ! HEAPKEEPER_QUIET=1 LD_PRELOAD="$HK_COUNT_UNWINDS:$HK_PRELOAD" timeout -k 5 "$(hk_limit)" \
    "$program" "$n" 30 >"$HK_WORK/$variant.out" 2>"$err" </dev/null; then
    hk_fail "$variant: the program failed: $(tail -3 "$err")"
    continue
  fi
  unwinds=$(sed -n 's/^unwinds: //p' "$err" | tail -1)
  setups=$(sed -n 's/^unwinder set-ups: //p' "$err" | tail -1)
  # libunwind is set up once, at the first unwind (allocator/stack_capture.h, prepare_unwinder).
  if [[ $setups != 1 ]]; then
    hk_fail "$variant: libunwind was set up ${setups:-an unknown number of} times, not once"
  fi
  # Each of the three stacks is unwound when first seen and once more to be cached; a few more
  # for the start-up's own allocations. Uncached, every allocation unwinds.
  if [[ -z $unwinds || $unwinds == 0 ]]; then
    # The first capture of each stack unwinds: none counted means the count did not reach them.
    hk_fail "$variant: the counting library saw no unwind (is it preloaded ahead of heapkeeper?): $(tail -3 "$err")"
  elif ((unwinds < n / 20)); then
    hk_pass "$variant: $n allocations 30 to 32 calls deep took $unwinds unwinds"
  else
    hk_fail "$variant: $n allocations 30 to 32 calls deep took $unwinds unwinds (the stack cache does not hold them)"
  fi
done
# A process that never captures a stack never sets libunwind up: most short processes of a build or
# a shell loop pay nothing for it (its code and the pages its initialisation clears, issue #12).
# But libunwind cannot switch its caching policy under a thread unwinding with the global one, so
# a program that may unwind with it itself has it set up before it can: one that links it, at start;
# one that looks it up with dlsym, at the lookup. Neither allocates.
user=$(hk_program unwinder_user)
for run in "/bin/true:0" "$user linked:1" "$user lookup:1"; do
  command=${run%:*} expected=${run##*:}
  err=$HK_WORK/setup.err
  # shellcheck disable=SC2086 # the command's words
  if ! HEAPKEEPER_QUIET=1 LD_PRELOAD="$HK_COUNT_UNWINDS:$HK_PRELOAD" timeout -k 5 "$(hk_limit)" $command \
    >/dev/null 2>"$err" </dev/null; then
    hk_fail "$command: the program failed: $(tail -3 "$err")"
    continue
  fi
  setups=$(sed -n 's/^unwinder set-ups: //p' "$err" | tail -1)
  if [[ $setups == "$expected" ]]; then
    hk_pass "$(basename "$command"): libunwind set up $setups time(s), as expected"
  else
    hk_fail "$(basename "$command"): libunwind set up ${setups:-?} times, expected $expected: $(tail -3 "$err")"
  fi
done
hk_finish

#!/usr/bin/env bash
# libunwind's critical sections inside heapkeeper's unwinds (allocator/unwinder_masks.h): their
# signal blocks take no system call and change nothing a program sees, but for its mutexes' where
# the program unwinds with the same libunwind; no child of a fork inherits one of them held.
#
# - tests/programs/unwinder_masks.c: two threads with their own masks allocate from stacks
#   libunwind looks up for the first time, reading their masks back after each allocation, with a
#   blocked signal pending and a timer's handler changing its own mask meanwhile: same output and
#   status as a plain run.
# - tests/programs/fork_during_unwind.c: children forked while other threads are inside those
#   sections never hang (1 in 1,000 did).
# - Under strace -k, the rt_sigprocmask calls made from heapkeeper's unwinds, by libunwind call
#   site (its look-up's: the sigprocmask call followed by its call of dl_iterate_phdr, found in its
#   code with objdump): python3 importing modules makes at most one (the first look-up, before
#   libunwind bound its dl_iterate_phdr; 8,400 before), with the plain run's output;
#   tests/programs/sigprof_unwinder.c, linked with libunwind and unwinding in its SIGPROF handler,
#   still makes its mutexes' (a handler could otherwise deadlock on one), without deadlock.
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

hk_require strace objdump /usr/bin/python3
unwinder=$(ldd "$HK_PRELOAD" | awk '$1 ~ /^libunwind\.so/ { print $3 }')
unwinder=$(readlink -f "$unwinder")
# The return addresses of libunwind's sigprocmask calls whose next call is dl_iterate_phdr.
lookup_sites=$(objdump -d --no-show-raw-insn "$unwinder" | awk '
  /^ *[0-9a-f]+:/ {
    address = $1
    sub(":", "", address)
    if (want_site) { site = "0x" address; want_site = 0 }
    if ($0 ~ /call/) {
      if (pending && $0 ~ /<dl_iterate_phdr@plt>/) print site
      pending = 0
      if ($0 ~ /<sigprocmask@plt>/) { pending = 1; want_site = 1 }
    }
  }')
if [[ -z $lookup_sites ]]; then
  hk_fail "found no look-up block in $unwinder (a sigprocmask call followed by a dl_iterate_phdr call)"
  hk_finish
fi
# capture_mask_calls NAME CMD...: runs CMD traced under strace -k and prints two counts of the
# rt_sigprocmask calls made from heapkeeper's own unwinds (unwind_program_frames on the stack):
# those from libunwind's look-up sites, and those from its other sites (its mutexes' blocks).
# CMD's stdout goes to $HK_WORK/NAME.out.
capture_mask_calls() {
  local name=$1
  shift
  local trace=$HK_WORK/$name.strace
  if ! HEAPKEEPER_QUIET=1 timeout -k 5 "$(hk_limit)" strace -f -qq -k -e trace=rt_sigprocmask -o "$trace" \
    env LD_PRELOAD="$HK_PRELOAD" "$@" >"$HK_WORK/$name.out" 2>"$HK_WORK/$name.err"; then
    hk_fail "$name under strace failed: $(tail -3 "$HK_WORK/$name.err")"
    echo "-1 -1"
    return
  fi
  awk -v lib="$(basename "$unwinder")" -v sites=" $lookup_sites " '
    function finish() {
      if (site != "" && ours) { if (index(sites, " " site " ")) lookups++; else others++ }
      site = ""; ours = 0
    }
    /rt_sigprocmask\(/ { finish(); inside = 1; next }
    inside && site == "" && index($0, lib) { if (match($0, /\[0x[0-9a-f]+\]/)) site = substr($0, RSTART + 1, RLENGTH - 2) }
    inside && /unwind_program_frames/ { ours = 1 }
    END { finish(); print lookups + 0, others + 0 }' "$trace"
}

# python3, which links no libunwind: neither kind is a system call (but the first look-up, made
# before libunwind bound its dl_iterate_phdr, and libunwind's start-up).
script='import json, decimal, email.message, argparse; print(json.dumps({"d": str(decimal.Decimal(1) / 7)}))'
PYTHONHASHSEED=0 /usr/bin/python3 -c "$script" >"$HK_WORK/python.plain.out" 2>&1
read -r lookups others < <(PYTHONHASHSEED=0 capture_mask_calls python /usr/bin/python3 -c "$script")
if ((lookups >= 0)); then
  if ! cmp -s "$HK_WORK/python.plain.out" "$HK_WORK/python.out"; then
    hk_fail "python3: traced output differs from the plain run's: $(diff "$HK_WORK/python.plain.out" "$HK_WORK/python.out" | head -5)"
  elif ((lookups <= 1 && others <= 8)); then
    hk_pass "python3 importing modules: $lookups rt_sigprocmask from libunwind's look-ups ($lookup_sites), $others from its mutexes"
  else
    hk_fail "python3 importing modules: $lookups rt_sigprocmask from libunwind's look-ups ($lookup_sites), $others from its mutexes (system calls again?)"
  fi
fi

# A program linked with the same libunwind, which unwinds in its SIGPROF handler: the mutexes'
# blocks stay system calls, the look-ups' do not; no deadlock, the plain run's output.
hk_compare sigprof_unwinder run_program "$(hk_program sigprof_unwinder)" 20000 -- preload
read -r lookups others < <(capture_mask_calls sigprof "$(hk_program sigprof_unwinder)" 300)
if ((lookups >= 0)); then
  if ((lookups <= 1 && others > 0)); then
    hk_pass "profiler linked with libunwind: $others rt_sigprocmask from libunwind's mutexes in heapkeeper's unwinds, $lookups from its look-ups"
  else
    hk_fail "profiler linked with libunwind: $others rt_sigprocmask from libunwind's mutexes in heapkeeper's unwinds (expected some: a handler could deadlock on them), $lookups from its look-ups"
  fi
fi
hk_finish

#!/usr/bin/env bash
# Every leaked block is reported under the stack it was allocated from, through frames that move.
#
# The per-thread stack cache (allocator/stack_capture.cpp) takes a stack as unchanged when the
# return addresses at remembered stack slots are unchanged. It once put about 0.5% of
# varying_frames' leak groups under another group's stack: its check summed terms that were linear
# modulo 2^64-1, so callers differing by small amounts cancelled out; a stale return address in an
# uninitialised buffer could be taken for a frame's slot; and an alloca-sized frame could move
# while the old slots, inside a new buffer, still held the old return addresses. Which blocks went
# wrong depended on the layout, so each build of the program runs under several seeds, with and
# without address-space randomisation, and every leak group's count must match, sequence by
# sequence, what the program allocated; and twice more leaving a third of its deepest calls by
# longjmp, which abandons frames the cache remembered instead of popping them. moved_frame then brings two callers to one entry frame
# through a frame that an alloca moved, with more than eight words holding return addresses
# between two real slots: no link reaches the moved frame's slot; and sampled_backtrace's
# stale in-order copy of its callers ends the checked image below every real slot (both fail as
# of 0651aa2). Both paths of each are hit often enough that the cache drops the stale copies from
# their checks (refine_cached_stack, after kRefineAfterHits hits) and checks the real slots alone.
# realigned_frame then reaches one entry frame through a frame gcc realigns through a DRAP register
# (its frame pointer sits below a copy of its return address, which must stay checked), and
# handler_frame through a signal handler's frame, which the kernel aligns (both fail as of b51598b).
#
# Usage: stack_attribution.sh (environment from CMakeLists.txt, see lib.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

setarch_works=0
if command -v setarch >/dev/null 2>&1 && setarch "$(uname -m)" -R true 2>/dev/null; then setarch_works=1; fi

# run NAME PROGRAM SEED [PREFIX...]: runs PROGRAM SEED under heapkeeper with full-depth stacks and
# compares its report's leak groups with what it says it leaked. PROGRAM_ARGS, when set, follow.
run() {
  local name=$1 program=$2 seed=$3 message
  shift 3
  local -a extra=()
  [[ -n ${PROGRAM_ARGS:-} ]] && extra=("$PROGRAM_ARGS")
  local dir=$HK_WORK/$name
  mkdir -p "$dir"
  if ! HEAPKEEPER_STACK_DEPTH=128 HEAPKEEPER_REPORT="$dir/report.json" HEAPKEEPER_QUIET=1 \
    timeout -k 5 "$(hk_limit)" "$@" "$HK_LAUNCHER" run -- "$program" "$seed" "$dir/expected" "${extra[@]}" \
    >"$dir/out" 2>"$dir/err" </dev/null; then
    hk_fail "$name: the program failed; stderr ends with:"
    tail -5 "$dir/err" >&2
    return
  fi
  if message=$("$HK_CHECK_PYTHON" - "$dir/expected" "$dir/report.json" 2>&1 <<'PY'
import collections, json, sys
expected = collections.Counter()
for line in open(sys.argv[1]):
    count, sequence = line.split()
    expected[sequence] += int(count)
report = json.load(open(sys.argv[2]))
reported = collections.Counter()
for group in report["leaks"]:
    functions = [frame.get("function") for frame in group["stack"]]
    if not functions or functions[0] != "alloc_site":
        sys.exit(f"a leak group of {group['blocks']} block(s) not allocated in alloc_site: {functions[:3]}")
    # Outermost level first, as the program writes them.
    sequence = "".join(f for f in reversed(functions) if f in ("f0", "f1", "f2")) or "-"
    reported[sequence] += group["blocks"]
wrong = sorted((s, expected[s], reported[s]) for s in set(expected) | set(reported) if expected[s] != reported[s])
if wrong:
    shown = "; ".join(f"{s}: {e} leaked, {r} reported" for s, e, r in wrong[:4])
    sys.exit(f"{len(wrong)} of {len(expected)} call sequences reported with wrong counts: {shown}")
print(f"{sum(expected.values())} leaked blocks in {len(expected)} call sequences, every count right")
PY
  ); then
    hk_pass "$name: $message"
  else
    hk_fail "$name: $message"
  fi
}

for build in varying_frames varying_frames_nofp; do
  program=$(hk_program "$build")
  for seed in 3 9 24 28 41 57; do
    run "$build.$seed" "$program" "$seed"
  done
  if ((setarch_works)); then
    for seed in 5 28; do
      run "$build.$seed.no_aslr" "$program" "$seed" setarch "$(uname -m)" -R
    done
  fi
  # Frames abandoned by longjmp rather than popped (with clang -O2 too, by hand: the same).
  for seed in 3 11; do
    PROGRAM_ARGS=longjmp run "$build.$seed.longjmp" "$program" "$seed"
  done
done
# run_two_paths NAME PROGRAM A B: a program whose two paths, through functions A (1000-byte blocks)
# and B (2000-byte blocks), reach one entry frame (tests/programs/moved_frame.c,
# sampled_backtrace.c); each leak group must hold its own path's block size.
run_two_paths() {
  local name=$1 program=$2 a=$3 b=$4 message
  local dir=$HK_WORK/$name
  mkdir -p "$dir"
  if ! HEAPKEEPER_REPORT="$dir/report.json" HEAPKEEPER_QUIET=1 timeout -k 5 "$(hk_limit)" \
    "$HK_LAUNCHER" run -- "$program" 400 >"$dir/out" 2>"$dir/err" </dev/null; then
    hk_fail "$name: the program failed; stderr ends with:"
    tail -5 "$dir/err" >&2
    return
  fi
  if message=$("$HK_CHECK_PYTHON" - "$dir/report.json" "$a" "$b" 2>&1 <<'PY'
import json, sys
sizes = {sys.argv[2]: 1000, sys.argv[3]: 2000}
blocks = {sys.argv[2]: 0, sys.argv[3]: 0}
for group in json.load(open(sys.argv[1]))["leaks"]:
    functions = [frame.get("function") for frame in group["stack"]]
    path = [f for f in functions if f in sizes]
    if not path:
        continue
    if len(path) != 1:
        sys.exit(f"a leak group of {group['blocks']} block(s) through {path}")
    if group["bytes"] != group["blocks"] * sizes[path[0]]:
        sys.exit(f"the leak group under {path[0]} holds {group['blocks']} blocks of {group['bytes']} bytes in all, "
                 f"not {sizes[path[0]]} bytes each")
    blocks[path[0]] += group["blocks"]
# 200 leaked per path; a conservative scan may still find one or two in a stale stack word.
if min(blocks.values()) < 195 or max(blocks.values()) > 200:
    sys.exit(f"leaked blocks per path: {blocks}, not 200 each")
print(f"{sum(blocks.values())} leaked blocks, each under its own path")
PY
  ); then
    hk_pass "$name: $message"
  else
    hk_fail "$name: $message"
  fi
}

for build in moved_frame moved_frame_nofp; do
  run_two_paths "$build" "$(hk_program "$build")" via_x via_y
done
run_two_paths sampled_backtrace "$(hk_program sampled_backtrace)" via_a via_b
# A frame realigned through a DRAP register: its copied return address, not its slot, moves with
# the caller (the real slots alone passed via_b's stack for via_a's once via_a's was hit 32 times).
for build in realigned_frame realigned_frame_nofp; do
  run_two_paths "$build" "$(hk_program "$build")" via_a via_b
done
# A signal handler on the thread's own stack, whose frame the kernel aligns: every block went under
# the first path's stack (such stacks are no longer cached).
run_two_paths handler_frame "$(hk_program handler_frame)" via_a via_b
hk_finish

#!/usr/bin/env bash
# The live-stats segment never costs the program what is around it (stats/publisher.cpp):
#  - replace: a program that unmaps heapkeeper's reserved range for the segment and maps its own
#    memory there keeps that memory intact when the segment is made (it was mapped over it with
#    MAP_FIXED, found by an adversarial tester);
#  - raw-clone: a child made with the raw clone system call runs no fork handler and exits; its
#    parent's segment stays, and `heapkeeper stats PID` still reads it (the child's exit handler
#    published into it and unlinked it).
source "$(dirname "$0")/lib.sh"

program=$(hk_program segment_neighbours)

hk_compare replace hk_exec "$program" replace -- preload
if [[ $(hk_status replace preload) == 0 ]]; then hk_pass "replace: the program's memory in the reserved range is intact"; fi

LD_PRELOAD=$HK_PRELOAD "$program" raw-clone "$HK_WORK/pid" >"$HK_WORK/raw-clone.out" 2>"$HK_WORK/raw-clone.err" &
job=$!
trap 'kill "$job" 2>/dev/null || true; hk_cleanup' EXIT
for ((i = 0; i < 500; ++i)); do
  [[ -s $HK_WORK/pid ]] && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.02
done
if [[ ! -s $HK_WORK/pid ]]; then
  hk_fail "raw-clone: the program did not get ready: $(cat "$HK_WORK/raw-clone.err")"
  hk_finish
fi
pid=$(cat "$HK_WORK/pid")
if ! grep -q 'child exited with 7' "$HK_WORK/raw-clone.out"; then
  hk_fail "raw-clone: the child did not run as without heapkeeper: $(cat "$HK_WORK/raw-clone.out")"
elif "$HK_LAUNCHER" stats "$pid" >"$HK_WORK/stats.out" 2>"$HK_WORK/stats.err"; then
  hk_pass "raw-clone: the parent's segment outlives its raw-cloned child"
else
  hk_fail "raw-clone: heapkeeper stats $pid after the child's exit: $(cat "$HK_WORK/stats.err")"
fi
kill -USR1 "$pid" 2>/dev/null || true
wait "$job" || hk_fail "raw-clone: exit status $?"
hk_finish

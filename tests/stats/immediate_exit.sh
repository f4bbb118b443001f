# A traced process that ends with _exit or _Exit runs no exit handler; its live-stats segment (a
# 4.3 MiB file in /dev/shm) stayed behind until a later traced process of its user found it stale.
# The exported _exit and _Exit remove it first, and only the process's own: a vfork child, which
# shares its parent's memory and publisher, leaves the parent's alone. HEAPKEEPER_STATS_DELAY=0
# makes every segment at once, so the program need not live 200 ms for there to be one.
source "$(dirname "$0")/lib.sh"
: "${HK_IMMEDIATE_EXIT:?HK_IMMEDIATE_EXIT must name the immediate_exit program}"
export HEAPKEEPER_STATS_DELAY=0

# run_mode MODE EXPECTED_STATUS: runs the program, then checks its status and that no process it
# names has a segment left.
run_mode() {
  local mode=$1 expected=$2 status=0 pid
  "$HK_LAUNCHER" run -- "$HK_IMMEDIATE_EXIT" "$mode" >"$SK_WORK/$mode.out" 2>"$SK_WORK/$mode.err" || status=$?
  if ((status != expected)); then
    sk_fail "$mode: exit status $status, expected $expected: $(cat "$SK_WORK/$mode.err")"
    return
  fi
  local pids
  pids=$(awk '$1 == "pid" {print $2}' "$SK_WORK/$mode.out")
  if [[ -z $pids ]]; then
    sk_fail "$mode: no process reported its segment: $(cat "$SK_WORK/$mode.out" "$SK_WORK/$mode.err")"
    return
  fi
  for pid in $pids; do
    SK_PLANTED_PIDS+=("$pid")
    if [[ -z $(sk_segment "$pid") ]]; then
      sk_pass "$mode: the segment of $pid is gone"
    else
      sk_fail "$mode: the segment of $pid stayed: $(sk_segment "$pid")"
    fi
  done
}

run_mode _exit 7
run_mode _Exit 7
run_mode vfork 0
run_mode fork 0
for mode in vfork fork; do
  if grep -qx "parent segment kept" "$SK_WORK/$mode.out"; then
    sk_pass "$mode: the child's _exit left the parent's segment alone"
  else
    sk_fail "$mode: the parent's segment after the child's _exit: $(cat "$SK_WORK/$mode.out")"
  fi
done

# Under a seccomp allow-list (write and the exits only) the removal's system calls would kill the
# process (SIGSYS, status 159): _exit makes none once a filter may be in force, whether the wrapped
# prctl installed it or the program's own inline assembly did after setting no_new_privs.
for mode in filter-prctl filter-asm; do
  status=0
  "$HK_LAUNCHER" run -- "$HK_IMMEDIATE_EXIT" "$mode" >"$SK_WORK/$mode.out" 2>"$SK_WORK/$mode.err" || status=$?
  kept=$(awk '$1 == "kept" {print $2}' "$SK_WORK/$mode.out")
  [[ -n $kept ]] && SK_PLANTED_PIDS+=("$kept")
  if ((status == 3)); then
    sk_pass "$mode: _exit under a seccomp allow-list keeps the program's status"
  else
    sk_fail "$mode: exit status $status, expected 3: $(cat "$SK_WORK/$mode.err")"
  fi
done

# A shell script ending in an _exit (dash runs `sh -c` so) behaves as it did: output and status.
output=$("$HK_LAUNCHER" run -- /bin/dash -c 'sleep 0.3; echo done; exit 5' 2>"$SK_WORK/dash.err") && status=0 || status=$?
if [[ $output == done && $status == 5 ]]; then
  sk_pass "dash -c: the same output and status"
else
  sk_fail "dash -c: output '$output', status $status: $(cat "$SK_WORK/dash.err")"
fi
sk_finish

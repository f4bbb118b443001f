#!/usr/bin/env bash
# heapkeeper's figures agree with what a program knows it did: stats_consistency makes exactly
# N mallocs and keeps K between two heapkeeper_heap_stats calls (looked up with dlsym) and checks
# the deltas itself; its exit report must count at least N allocations and keep
# live_blocks == allocations - frees. A plain run must see no heapkeeper (status 4).
source "$(dirname "$0")/lib.sh"

program=$(hk_program stats_consistency)
N=20000 K=1234

run_stats() {
  local mode=$1
  HEAPKEEPER_REPORT=$PWD/report.json hk_exec "$mode" "$program" "$N" "$K"
}

hk_capture stats plain run_stats
status=$(hk_status stats plain)
if [[ $status == 4 ]]; then hk_pass "plain run: heapkeeper_heap_stats is not found (status 4)"; else hk_fail "plain run: status $status, expected 4 (dlsym must not find heapkeeper_heap_stats): $(cat "$HK_WORK/stats.plain/out")"; fi

for mode in launcher preload; do
  hk_capture stats "$mode" run_stats
  status=$(hk_status stats "$mode")
  out=$HK_WORK/stats.$mode/out
  ok=1
  if [[ $status != 0 ]]; then
    hk_fail "stats ($mode): status $status, expected 0:"
    cat "$out" >&2
    ok=0
  fi
  for figure in total_allocations total_frees live_blocks live_bytes; do
    grep -q "^$figure delta: .* ok$" "$out" || { hk_fail "stats ($mode): $figure delta is wrong: $(grep "^$figure" "$out")"; ok=0; }
  done
  hk_no_diagnostics stats "$mode" || ok=0
  report=$HK_WORK/stats.$mode/run/report.json
  if [[ ! -f $report ]]; then
    hk_fail "stats ($mode): no exit report"
    ok=0
  else
    hk_json_check "$report" "r['allocations'] >= $N" "report counts at least N=$N allocations" || ok=0
    hk_json_check "$report" "r['frees'] >= $N - $K" "report counts at least N-K frees" || ok=0
    hk_json_check "$report" "r['live_blocks'] == r['allocations'] - r['frees']" "live_blocks == allocations - frees" || ok=0
    hk_json_check "$report" "r['bad_frees'] == 0" "no bad frees" || ok=0
  fi
  ((ok)) && hk_pass "stats ($mode): exact deltas for N=$N K=$K, report consistent"
done
hk_finish

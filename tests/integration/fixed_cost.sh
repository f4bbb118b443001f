#!/usr/bin/env bash
# What heapkeeper costs a process that has nothing to report (issue #12, "fixed cost"): it makes
# what a short process never needs only when it is needed.
#  - /bin/true (no allocation) and give_back tidy (its one block freed before exit): the exit
#    scan finds nothing allocated left and stops nothing ("stop_method": "none", no thread
#    stopped), where it used to stop the world and read every root of a process with no heap;
#    a leaking program's exit scan still stops it (ptrace or signals) and finds the leak.
#  - /bin/true's heap maps one tracked arena's first extent (2 MiB), not one per CPU: tracked
#    arenas are made as threads need them.
source "$(dirname "$0")/lib.sh"

program=$(hk_program give_back)

# report_of NAME CMD...: runs CMD under the preload with a JSON report; prints the report's path.
report_of() {
  local name=$1
  shift
  HEAPKEEPER_REPORT="$HK_WORK/$name.json" hk_exec preload "$@" >/dev/null 2>"$HK_WORK/$name.err" || true
  echo "$HK_WORK/$name.json"
}

# check NAME REPORT PYTHON-EXPRESSION: the expression, over the report `r`, must hold.
check() {
  local name=$1 report=$2 expression=$3 message
  if message=$("$HK_CHECK_PYTHON" -c "
import json, sys
r = json.load(open(sys.argv[1]))
if not ($expression):
    sys.exit('scan: %s, heap: %s' % ({k: r['scan'][k] for k in ('stop_method', 'threads_stopped', 'live_blocks')}, r['heap']))
" "$report" 2>&1); then
    hk_pass "$name: $expression"
  else
    hk_fail "$name: $message"
  fi
}

report=$(report_of true /bin/true)
check true "$report" "r['scan']['stop_method'] == 'none' and r['scan']['threads_stopped'] == 0"
check true_one_arena "$report" "r['heap']['mapped_bytes'] <= 2 * 1024 * 1024"
report=$(report_of freed_all "$program" tidy)
check freed_all "$report" "r['scan']['stop_method'] == 'none' and r['live_blocks'] == 0"
report=$(report_of leaker "$program" leak)
check leaker "$report" "r['scan']['stop_method'] in ('ptrace', 'signals') and r['scan']['leaked_blocks'] > 0"

hk_finish

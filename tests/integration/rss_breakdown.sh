#!/usr/bin/env bash
# The RSS breakdown of `heapkeeper stats` and `heapkeeper trim` (issue #13, "why RSS stays up";
# viewer/rss_breakdown.h, stats/memory_figures.h). tests/programs/rss_workload.c holds 100 MiB in
# written 1 MiB blocks and one 32 MiB calloc'd block it never touches; on SIGUSR1 it frees the 100
# MiB. Each mode is one CTest test:
#   trim_off  HEAPKEEPER_TRIM=off: the parts add up to RSS within 2% while the blocks are held (100
#             MiB live, the untouched 32 MiB named apart and not counted), after the free (the 100
#             MiB shown as kept by the allocator, for as long as we look) and after `heapkeeper trim`,
#             which returns at least 90 MiB and drops RSS by at least 90 MiB; text output too.
#   trimmer   the default: the trimmer returns the freed memory by itself, and the breakdown says
#             so (kept returnable pages fall under 4 MiB, parts still add up).
#   collect   collect mode: jemalloc's decay is named as the policy; parts add up after the free.
#   python3   python3 with PYTHONMALLOC=malloc holding a workload's objects: parts add up.
#   refusals  trim of a stopped process, of a process without heapkeeper or without its segment
#             (HEAPKEEPER_STATS=0), of bad pids: one line, non-zero status; a bad HEAPKEEPER_TRIM
#             value is one warning line.
# Conditions are polled with generous deadlines; no duration is asserted.
source "$(dirname "$0")/lib.sh"

MODE=${1:?usage: rss_breakdown.sh trim_off|trimmer|collect|python3|refusals}
program=$(hk_program rss_workload)
MIB=$((1024 * 1024))

# rss_field FILE EXPRESSION: evaluates EXPRESSION (Python, `r` is the "rss" object of a stats
# --json document) and prints it; "error: ..." if the document has no known breakdown.
rss_field() {
  "$HK_CHECK_PYTHON" -c '
import json, sys
r = json.load(open(sys.argv[1])).get("rss") or {}
if not r.get("known"):
    print("error:", r.get("error", "no rss object"))
else:
    print(eval(sys.argv[2]))' "$1" "$2"
}

# stats_json PID: the document in $HK_WORK/stats.json; false if the command failed.
stats_json() { "$HK_LAUNCHER" stats "$1" --json >"$HK_WORK/stats.json" 2>"$HK_WORK/stats.err"; }

# wait_breakdown PID CONDITION [SECONDS]: polls stats --json until CONDITION (Python on `r`) holds.
wait_breakdown() {
  local pid=$1 condition=$2 limit=${3:-30} start=$SECONDS
  while ((SECONDS - start < limit)); do
    if stats_json "$pid" && [[ $(rss_field "$HK_WORK/stats.json" "$condition") == True ]]; then return 0; fi
    sleep 0.5
  done
  return 1
}

ADDS_UP='abs(r["unexplained_bytes"]) <= 0.02 * r["rss_bytes"] and r["sum_bytes"] > 0'

# check_adds_up WHEN: the last stats.json's parts are within 2% of RSS.
check_adds_up() {
  local summary
  summary=$(rss_field "$HK_WORK/stats.json" \
    '"RSS %.1f MiB, parts %.1f MiB (live %.1f, slack %.1f, heapkeeper %.1f, kept %.1f, outside %.1f), unexplained %+.2f%%" % (r["rss_bytes"]/2**20, r["sum_bytes"]/2**20, r["live_bytes"]/2**20, r["slack_bytes"]/2**20, r["heapkeeper_bytes"]/2**20, r["allocator_kept_bytes"]/2**20, r["outside_heap_bytes"]/2**20, 100.0*r["unexplained_bytes"]/r["rss_bytes"])')
  if [[ $(rss_field "$HK_WORK/stats.json" "$ADDS_UP") == True ]]; then
    hk_pass "$1: the parts add up to RSS within 2%: $summary"
  else
    hk_fail "$1: the parts do not add up to RSS within 2%: $summary"
  fi
}

# start_workload NAME VAR=VALUE...: starts rss_workload 100 32 under `heapkeeper run` with the
# given environment; sets PID.
start_workload() {
  local name=$1
  shift
  # shellcheck disable=SC2163  # the arguments are NAME=VALUE assignments
  (($# > 0)) && export "$@"
  hk_start_ready "$name" "$program" 100 32 || hk_finish
  PID=$HK_READY_PID
  # "ready" can come before the publisher's first snapshot (it makes the segment a while after
  # start-up): the checks below need the segment (none comes with live stats off).
  [[ " $* " == *" HEAPKEEPER_STATS=0 "* ]] || hk_wait_for_segment "$PID" || true
  # shellcheck disable=SC2046
  (($# > 0)) && unset $(printf '%s\n' "$@" | cut -d= -f1)
  return 0
}

# free_held NAME: SIGUSR1, then waits for the program's "freed".
free_held() {
  kill -USR1 "$PID"
  for _ in $(seq 100); do
    grep -q '^freed' "$HK_WORK/$1.out" && return 0
    sleep 0.1
  done
  hk_fail "the program did not free its blocks: $(cat "$HK_WORK/$1.err")"
  return 1
}

stop_workload() {
  kill -TERM "$PID" 2>/dev/null || true
  hk_wait "$PID" || true
}

mode_trim_off() {
  start_workload held HEAPKEEPER_TRIM=off
  trap 'kill -9 "$PID" 2>/dev/null || true; hk_cleanup' EXIT
  if wait_breakdown "$PID" 'r["live_bytes"] >= 100 * 2**20'; then
    hk_pass "the 100 MiB the program wrote are live: $(rss_field "$HK_WORK/stats.json" 'r["live_bytes"]//2**20') MiB"
  else
    hk_fail "no breakdown with 100 MiB live: $(rss_field "$HK_WORK/stats.json" 'r') $(cat "$HK_WORK/stats.err")"
  fi
  check_adds_up "held"
  if [[ $(rss_field "$HK_WORK/stats.json" 'r["live_untouched_bytes"] >= 32 * 2**20 and r["live_bytes"] < 104 * 2**20') == True ]]; then
    hk_pass "the 32 MiB never touched are named apart, not counted in RSS"
  else
    hk_fail "untouched: $(rss_field "$HK_WORK/stats.json" '(r["live_bytes"], r["live_untouched_bytes"])')"
  fi
  [[ $(rss_field "$HK_WORK/stats.json" 'r["freed_memory_policy"]') == off ]] ||
    hk_fail "policy: $(rss_field "$HK_WORK/stats.json" 'r["freed_memory_policy"]')"

  free_held held || hk_finish
  if wait_breakdown "$PID" 'r["allocator_kept"]["returnable"] >= 95 * 2**20 and r["live_bytes"] < 5 * 2**20'; then
    hk_pass "after the free, the 100 MiB are kept by the allocator: $(rss_field "$HK_WORK/stats.json" 'r["allocator_kept"]')"
  else
    hk_fail "after the free: $(rss_field "$HK_WORK/stats.json" 'r')"
  fi
  check_adds_up "freed, kept"
  "$HK_LAUNCHER" stats "$PID" >"$HK_WORK/stats.txt" 2>&1 || true
  if grep -Eq "freed, kept by the allocator +(9[5-9]|1[0-9][0-9])\.[0-9] MiB" "$HK_WORK/stats.txt" &&
     grep -q "HEAPKEEPER_TRIM=off" "$HK_WORK/stats.txt"; then
    hk_pass "stats (text) shows the kept memory and the policy"
  else
    hk_fail "stats (text): $(cat "$HK_WORK/stats.txt")"
  fi
  # Still kept a while later: nothing returns it on its own (polled, not timed: the stats are
  # read five times over some seconds and must never drop).
  local kept_later=True
  for _ in 1 2 3 4 5; do
    stats_json "$PID" || true
    [[ $(rss_field "$HK_WORK/stats.json" 'r["allocator_kept"]["returnable"] >= 95 * 2**20') == True ]] || kept_later=False
    sleep 0.5
  done
  [[ $kept_later == True ]] && hk_pass "with HEAPKEEPER_TRIM=off the memory stays kept" ||
    hk_fail "with HEAPKEEPER_TRIM=off the kept memory went: $(rss_field "$HK_WORK/stats.json" 'r')"

  if "$HK_LAUNCHER" trim "$PID" --json >"$HK_WORK/trim.json" 2>"$HK_WORK/trim.err"; then
    local verdict
    verdict=$("$HK_CHECK_PYTHON" -c '
import json, sys
t = json.load(open(sys.argv[1]))
ok = t["rss_drop_bytes"] >= 90 * 2**20 and t["returned_bytes"] >= 90 * 2**20 and t["rss_before_bytes"] - t["rss_after_bytes"] == t["rss_drop_bytes"]
print(ok, "returned %.1f MiB, RSS %.1f -> %.1f MiB" % (t["returned_bytes"]/2**20, t["rss_before_bytes"]/2**20, t["rss_after_bytes"]/2**20))' "$HK_WORK/trim.json")
    [[ $verdict == True* ]] && hk_pass "trim: ${verdict#True }" || hk_fail "trim: $verdict"
  else
    hk_fail "trim failed: $(cat "$HK_WORK/trim.err")"
  fi
  if wait_breakdown "$PID" 'r["allocator_kept"]["returnable"] < 4 * 2**20' 10; then
    hk_pass "after trim nothing returnable is kept"
  else
    hk_fail "after trim: $(rss_field "$HK_WORK/stats.json" 'r["allocator_kept"]')"
  fi
  check_adds_up "trimmed"
  if "$HK_LAUNCHER" trim "$PID" >"$HK_WORK/trim.txt" 2>&1 && grep -Eq "^pid $PID: returned .* to the system" "$HK_WORK/trim.txt" &&
     grep -Eq "^  RSS [0-9.]+ [KMG]iB -> [0-9.]+ [KMG]iB" "$HK_WORK/trim.txt"; then
    hk_pass "trim (text): $(head -c 300 "$HK_WORK/trim.txt" | tr '\n' ' ')"
  else
    hk_fail "trim (text): $(cat "$HK_WORK/trim.txt")"
  fi
  stop_workload
}

mode_trimmer() {
  start_workload auto
  trap 'kill -9 "$PID" 2>/dev/null || true; hk_cleanup' EXIT
  wait_breakdown "$PID" 'r["live_bytes"] >= 100 * 2**20' || hk_fail "no breakdown: $(cat "$HK_WORK/stats.err")"
  check_adds_up "held"
  [[ $(rss_field "$HK_WORK/stats.json" 'r["freed_memory_policy"]') == trimmer ]] ||
    hk_fail "policy: $(rss_field "$HK_WORK/stats.json" 'r["freed_memory_policy"]')"
  free_held auto || hk_finish
  if wait_breakdown "$PID" 'r["allocator_kept"]["returnable"] < 4 * 2**20 and r["live_bytes"] < 5 * 2**20'; then
    hk_pass "the trimmer returned the freed memory by itself: $(rss_field "$HK_WORK/stats.json" 'r["allocator_kept"]')"
  else
    hk_fail "the trimmer kept: $(rss_field "$HK_WORK/stats.json" 'r')"
  fi
  check_adds_up "freed, trimmed"
  stop_workload
}

mode_collect() {
  start_workload collect HEAPKEEPER_MODE=collect
  trap 'kill -9 "$PID" 2>/dev/null || true; hk_cleanup' EXIT
  wait_breakdown "$PID" 'r["live_bytes"] >= 100 * 2**20' || hk_fail "no breakdown: $(cat "$HK_WORK/stats.err")"
  [[ $(rss_field "$HK_WORK/stats.json" 'r["freed_memory_policy"]') == collect_decay ]] &&
    hk_pass "collect mode names jemalloc's decay as the policy" ||
    hk_fail "policy: $(rss_field "$HK_WORK/stats.json" 'r["freed_memory_policy"]')"
  free_held collect || hk_finish
  wait_breakdown "$PID" 'r["live_bytes"] < 5 * 2**20' || hk_fail "after the free: $(rss_field "$HK_WORK/stats.json" 'r')"
  check_adds_up "collect mode, freed"
  stop_workload
}

mode_python3() {
  local python=/usr/bin/python3
  [[ -x $python ]] || { echo "skipped: no /usr/bin/python3"; exit 77; }
  cat >"$HK_WORK/hold.py" <<'PY'
import signal, sys
table = {i: ("value %d" % i) * 4 for i in range(200000)}
lists = [list(range(50)) for _ in range(20000)]
blobs = [bytes(5000) for _ in range(2000)]
print("ready", flush=True)
signal.sigwait([signal.SIGTERM])
PY
  export PYTHONMALLOC=malloc
  hk_start_ready python "$python" "$HK_WORK/hold.py" || hk_finish
  unset PYTHONMALLOC
  PID=$HK_READY_PID
  trap 'kill -9 "$PID" 2>/dev/null || true; hk_cleanup' EXIT
  if wait_breakdown "$PID" 'r["live_bytes"] >= 40 * 2**20'; then
    hk_pass "python3's objects are live: $(rss_field "$HK_WORK/stats.json" 'r["live_bytes"]//2**20') MiB"
  else
    hk_fail "python3: $(rss_field "$HK_WORK/stats.json" 'r') $(cat "$HK_WORK/stats.err")"
  fi
  check_adds_up "python3, PYTHONMALLOC=malloc"
  stop_workload
}

# refuse NAME WANT_PATTERN ARGS...: `heapkeeper ARGS` fails with one line matching WANT_PATTERN.
refuse() {
  local name=$1 want=$2 status=0
  shift 2
  "$HK_LAUNCHER" "$@" >"$HK_WORK/refuse.out" 2>"$HK_WORK/refuse.err" || status=$?
  if ((status != 0)) && [[ $(wc -l <"$HK_WORK/refuse.err") -eq 1 ]] && grep -Eq -- "$want" "$HK_WORK/refuse.err" &&
     [[ ! -s $HK_WORK/refuse.out ]]; then
    hk_pass "$name: status $status, $(cat "$HK_WORK/refuse.err")"
  else
    hk_fail "$name: status $status, stdout '$(cat "$HK_WORK/refuse.out")', stderr '$(cat "$HK_WORK/refuse.err")'"
  fi
}

mode_refusals() {
  start_workload stopped
  trap 'kill -9 "$PID" 2>/dev/null || true; hk_cleanup' EXIT
  kill -STOP "$PID"
  wait_stopped "$PID"
  refuse "trim of a stopped process" "cannot trim pid $PID: the process is stopped" trim "$PID"
  kill -CONT "$PID"
  stop_workload
  start_workload nostats HEAPKEEPER_STATS=0
  refuse "trim of a process under heapkeeper without live stats" \
    "no heapkeeper segment for pid $PID .*HEAPKEEPER_STATS=0" trim "$PID"
  stop_workload
  sleep 30 &
  local plain=$!
  refuse "trim of a process without heapkeeper" "no heapkeeper segment for pid $plain" trim "$plain"
  kill "$plain"
  refuse "trim of pid 0" "not a process id" trim 0
  refuse "trim of a negative pid" "." trim -5
  refuse "trim of a word" "pid: \"abc\" is not a process id" trim abc
  refuse "trim of a pid that does not exist" "no process with pid 2147483646" trim 2147483646
  local err
  err=$(env HEAPKEEPER_TRIM=never LD_PRELOAD="$HK_PRELOAD" /bin/true 2>&1)
  if [[ $(printf '%s\n' "$err" | grep -c .) == 1 && $err == *"invalid HEAPKEEPER_TRIM='never'"*"using the default auto"* ]]; then
    hk_pass "a bad HEAPKEEPER_TRIM is one warning line: $err"
  else
    hk_fail "bad HEAPKEEPER_TRIM: '$err'"
  fi
}

"mode_$MODE"
hk_finish

#!/usr/bin/env bash
# HEAPKEEPER_BASELINE, a CI gate for projects with leaks they already know: a JSON report of an
# earlier run whose leak sites HEAPKEEPER_EXITCODE then ignores. tests/programs/baseline_workload.c
# leaks from leak_known ('k') and leak_new ('n').
#   - the baseline run (k) writes the report that becomes the baseline;
#   - k again with the baseline: the leak is reported, marked [known], and the exit status is the
#     program's own (0), where without the baseline it is HEAPKEEPER_EXITCODE's;
#   - k and n with the baseline: status HEAPKEEPER_EXITCODE, the text marks leak_known [known] and
#     not leak_new, the JSON report says which leak is in the baseline;
#   - a baseline that is missing or not a report: one line naming it, and every leak counts.
source "$(dirname "$0")/lib.sh"

program=$(hk_program baseline_workload)
export HEAPKEEPER_EXITCODE=23

# run NAME SITES [VAR=VALUE...]: the program under `heapkeeper run`; sets $status.
run() {
  local name=$1 sites=$2
  shift 2
  status=0
  env "$@" HEAPKEEPER_REPORT="$HK_WORK/$name.json" timeout -k 5 "$(hk_limit)" "$HK_LAUNCHER" run -- "$program" "$sites" \
    >"$HK_WORK/$name.out" 2>"$HK_WORK/$name.err" || status=$?
}

run base k
if ((status == 23)) && [[ -s $HK_WORK/base.json ]]; then
  hk_pass "without a baseline, the leak fires HEAPKEEPER_EXITCODE (23)"
else
  hk_fail "baseline run: status $status, report $(ls "$HK_WORK")"
fi

run known k HEAPKEEPER_BASELINE="$HK_WORK/base.json"
if ((status == 0)) && grep -q "^\[known\] Direct leak of 100 byte(s)" "$HK_WORK/known.err" &&
   grep -q "^Baseline: 100 byte(s) in 1 object(s) leaked at sites the baseline .* lists" "$HK_WORK/known.err"; then
  hk_pass "a leak at a baseline site is reported as [known] and the status is the program's own (0)"
else
  hk_fail "known leak: status $status; $(cat "$HK_WORK/known.err")"
fi

run both kn HEAPKEEPER_BASELINE="$HK_WORK/base.json"
if ((status == 23)) && grep -q "^\[known\] Direct leak of 100 byte(s)" "$HK_WORK/both.err" &&
   grep -q "^Direct leak of 200 byte(s)" "$HK_WORK/both.err"; then
  hk_pass "a new leak beside a known one fires HEAPKEEPER_EXITCODE; only the known one is marked"
else
  hk_fail "new leak: status $status; $(cat "$HK_WORK/both.err")"
fi
if "$HK_CHECK_PYTHON" - "$HK_WORK/both.json" <<'PY'; then
import json, sys
doc = json.load(open(sys.argv[1]))
def caller(leak):
    return next((f["function"] for f in leak["stack"] if f["function"] in ("leak_known", "leak_new")), "?")
marks = sorted((caller(l), l["in_baseline"]) for l in doc["leaks"])
b = doc["baseline"]
ok = marks == [("leak_known", True), ("leak_new", False)] and b["ok"] and (b["known_bytes"], b["new_bytes"]) == (100, 200)
sys.exit(0 if ok else f"marks {marks}, baseline {b}")
PY
  hk_pass "the JSON report marks leak_known in_baseline, leak_new not, and counts 100 known and 200 new bytes"
fi

printf 'not json' >"$HK_WORK/garbage.json"
for bad in "$HK_WORK/missing.json" "$HK_WORK/garbage.json"; do
  run bad k HEAPKEEPER_BASELINE="$bad"
  if ((status == 23)) && grep -q "^Baseline: .*$(basename "$bad").*; every leak counts as new\.$" "$HK_WORK/bad.err"; then
    hk_pass "baseline $(basename "$bad"): one line naming it, and the leak counts (status 23)"
  else
    hk_fail "bad baseline $bad: status $status; $(cat "$HK_WORK/bad.err")"
  fi
done
hk_finish

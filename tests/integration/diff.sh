#!/usr/bin/env bash
# `heapkeeper diff A B`: two exit reports of tests/programs/diff_workload.c, which keeps CACHE
# 1 KiB blocks (make_cache_entry), GONE 512-byte ones (make_old_entry) and leaks LEAKS 100-byte
# blocks (leak_record). Run 1: 10 entries, no leak, 5 old; run 2: 100 entries, 3 leaks, no old
# entry. The diff must say: make_cache_entry grew by 90 KiB (10 -> 100 blocks), make_old_entry is
# gone (2.5 KiB), and one new direct leak of 300 bytes in 3 blocks at leak_record; diff of a run
# with itself: nothing changed. Then a live process against a report (pid as an argument), and the
# one-line refusals (missing file, not a report).
source "$(dirname "$0")/lib.sh"

program=$(hk_program diff_workload)
HEAPKEEPER_REPORT=$HK_WORK/before.json hk_exec launcher "$program" 10 0 5 >/dev/null 2>&1 ||
  hk_fail "run 1 failed"
HEAPKEEPER_REPORT=$HK_WORK/after.json hk_exec launcher "$program" 100 3 0 >/dev/null 2>&1 ||
  hk_fail "run 2 failed"

if "$HK_LAUNCHER" diff "$HK_WORK/before.json" "$HK_WORK/after.json" --json >"$HK_WORK/diff.json" 2>"$HK_WORK/diff.err"; then
  if problem=$("$HK_CHECK_PYTHON" - "$HK_WORK/diff.json" <<'PY' 2>&1
import json, sys
doc = json.load(open(sys.argv[1]))
def site(function):
    found = [s for s in doc["sites"] if s["site"].startswith(function + " ")]
    assert len(found) == 1, (function, [s["site"] for s in doc["sites"]])
    return found[0]
cache = site("make_cache_entry")
assert (cache["before"]["blocks"], cache["after"]["blocks"]) == (10, 100), cache
assert cache["change_bytes"] == 90 * 1024 and cache["status"] == "grew", cache
old = site("make_old_entry")
assert old["status"] == "gone" and old["change_bytes"] == -5 * 512, old
assert doc["sites"][0]["site"].startswith("make_cache_entry"), "largest change first"
new = doc["leaks"]["new"]
assert len(new) == 1 and new[0]["kind"] == "direct" and new[0]["site"].startswith("leak_record"), new
assert (new[0]["bytes"], new[0]["blocks"]) == (300, 3), new
assert doc["leaks"]["fixed"] == [] and doc["leaks"]["remaining"] == [], doc["leaks"]
assert doc["after"]["leaked_bytes"] == 300, doc["after"]
PY
); then
    hk_pass "diff --json: make_cache_entry grew 90 KiB, make_old_entry gone, one new leak at leak_record"
  else
    hk_fail "diff --json: $problem"
  fi
else
  hk_fail "diff --json failed: $(cat "$HK_WORK/diff.err")"
fi

"$HK_LAUNCHER" diff "$HK_WORK/before.json" "$HK_WORK/after.json" >"$HK_WORK/diff.txt" 2>&1 || true
if grep -Eq "\+90\.0 KiB +grew +make_cache_entry .*diff_workload.c:" "$HK_WORK/diff.txt" &&
   grep -Eq "new +direct +300 B in 3 block\(s\) +leak_record" "$HK_WORK/diff.txt"; then
  hk_pass "diff (text) shows the growth and the new leak"
else
  hk_fail "diff (text): $(cat "$HK_WORK/diff.txt")"
fi

"$HK_LAUNCHER" diff "$HK_WORK/after.json" "$HK_WORK/after.json" --json >"$HK_WORK/same.json" 2>&1 || true
if "$HK_CHECK_PYTHON" -c '
import json, sys
doc = json.load(open(sys.argv[1]))
assert all(s["status"] == "same" and s["change_bytes"] == 0 for s in doc["sites"]), doc["sites"]
assert doc["leaks"]["new"] == [] and doc["leaks"]["fixed"] == [] and len(doc["leaks"]["remaining"]) == 1
' "$HK_WORK/same.json" 2>"$HK_WORK/same.err"; then
  hk_pass "a report against itself: every site the same, the leak remaining"
else
  hk_fail "diff of a report with itself: $(cat "$HK_WORK/same.err")"
fi

# The fixed direction: after -> before.
"$HK_LAUNCHER" diff "$HK_WORK/after.json" "$HK_WORK/before.json" --json >"$HK_WORK/back.json" 2>&1 || true
if "$HK_CHECK_PYTHON" -c '
import json, sys
doc = json.load(open(sys.argv[1]))
fixed = doc["leaks"]["fixed"]
assert len(fixed) == 1 and fixed[0]["site"].startswith("leak_record") and fixed[0]["bytes"] == 300, fixed
assert any(s["site"].startswith("make_old_entry") and s["status"] == "new" for s in doc["sites"])
' "$HK_WORK/back.json" 2>"$HK_WORK/back.err"; then
  hk_pass "reversed: the leak is fixed, make_old_entry new"
else
  hk_fail "reversed diff: $(cat "$HK_WORK/back.err")"
fi

# A pid as an argument: its report is taken now (tests/programs/retainer_graph.c waits for SIGTERM).
live=$(hk_program retainer_graph)
hk_start_ready live "$live" || true
live_pid=$HK_READY_PID
"$HK_LAUNCHER" diff "$HK_WORK/before.json" "$live_pid" --json >"$HK_WORK/live.json" 2>"$HK_WORK/live.err" || true
kill -TERM "$live_pid" 2>/dev/null || true
wait "$live_pid" 2>/dev/null || true
if "$HK_CHECK_PYTHON" -c '
import json, sys
doc = json.load(open(sys.argv[1]))
assert any(s["site"].startswith("make_payload") and s["status"] == "new" for s in doc["sites"]), doc["sites"]
assert any(s["site"].startswith("make_cache_entry") and s["status"] == "gone" for s in doc["sites"])
' "$HK_WORK/live.json" 2>>"$HK_WORK/live.err"; then
  hk_pass "a report against a live pid: its sites are taken now"
else
  hk_fail "diff REPORT PID: $(cat "$HK_WORK/live.err")"
fi

# One-line refusals.
echo '{"not": "a report"}' >"$HK_WORK/foreign.json"
for bad in "$HK_WORK/missing.json" "$HK_WORK/foreign.json" "$HK_WORK"; do
  status=0
  "$HK_LAUNCHER" diff "$bad" "$HK_WORK/after.json" >"$HK_WORK/bad.out" 2>"$HK_WORK/bad.err" || status=$?
  if ((status == 1)) && [[ $(wc -l <"$HK_WORK/bad.err") == 1 && ! -s $HK_WORK/bad.out ]]; then
    hk_pass "diff $(basename "$bad"): one line, status 1: $(cat "$HK_WORK/bad.err")"
  else
    hk_fail "diff $(basename "$bad"): status $status: $(cat "$HK_WORK/bad.err" "$HK_WORK/bad.out")"
  fi
done
hk_finish

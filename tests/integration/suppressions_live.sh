#!/usr/bin/env bash
# Suppressions while the program runs: tests/programs/suppressed_live.c leaks 500 bytes from
# hidden_while_watched, which the suppressions file names, and 64 from reported_while_watched.
# The live stats' leak table (`stats --json`, the viewer's leaks tab) and the scan figures must
# leave the suppressed leak out, as the exit report does: the library asks the binary, which
# knows function names, which stacks the suppressions hide.
source "$(dirname "$0")/lib.sh"

printf 'leak:hidden_while_watched\n' >"$HK_WORK/suppressions"
export HEAPKEEPER_SUPPRESSIONS=$HK_WORK/suppressions HEAPKEEPER_SCAN_INTERVAL=200ms
hk_start_ready watched "$(hk_program suppressed_live)" || hk_finish
pid=$HK_READY_PID
trap 'kill "$pid" 2>/dev/null || true; hk_cleanup' EXIT

# verdict FILE: what the last scan and the leak table say, one line.
verdict() {
  "$HK_CHECK_PYTHON" -c '
import json, sys
doc = json.load(open(sys.argv[1]))
scans = [s for s in doc["scans"] if s["ok"]]
if not scans or not doc["leaks"]:
    print("waiting"); sys.exit()
# Each leak named by the first frame of its stack that is one of the two callers.
callers = ("hidden_while_watched", "reported_while_watched")
named = sorted(next((f["function"] for f in l["stack"] if f.get("function") in callers), "?") for l in doc["leaks"])
print(scans[-1]["leaked_blocks"], scans[-1]["leaked_bytes"], ",".join(named))' "$1"
}

seen=waiting
for _ in $(seq 60); do
  # Until the first snapshot is published, stats says so and fails: asked again.
  if ! "$HK_LAUNCHER" stats "$pid" --json >"$HK_WORK/stats.json" 2>"$HK_WORK/stats.err"; then
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
    continue
  fi
  seen=$(verdict "$HK_WORK/stats.json")
  # The first snapshot after a scan may predate the binary's answer: wait for the settled one.
  [[ $seen == "1 64 reported_while_watched" ]] && break
  sleep 0.5
done
if [[ $seen == "1 64 reported_while_watched" ]]; then
  hk_pass "stats --json: the last scan counts 1 leaked block of 64 bytes, the leak table lists reported_while_watched only"
else
  hk_fail "stats --json: expected '1 64 reported_while_watched', got '$seen' ($(cat "$HK_WORK/stats.err"))"
fi
kill -TERM "$pid"
wait "$pid" || true
# The exit report agrees: the suppressed leak is counted as suppressed, the other reported.
if grep -q "in reported_while_watched" "$HK_WORK/watched.err" && ! grep -q "in hidden_while_watched" "$HK_WORK/watched.err" &&
   grep -q "^Suppressed: 500 byte(s) in 1 object(s)" "$HK_WORK/watched.err"; then
  hk_pass "the exit report lists reported_while_watched and counts the suppressed 500 bytes"
else
  hk_fail "exit report: $(cat "$HK_WORK/watched.err")"
fi
hk_finish

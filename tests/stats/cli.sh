# The live-stats commands end to end: `heapkeeper stats | list | scan | report | export` against
# a program under `heapkeeper run` that makes exactly N allocations keeping K, and leaks 16
# blocks from leak_buffers(); then the refusals: an untracked pid, a corrupt segment, a segment
# of another version, truncated, or of another uid (read as nobody through setpriv when root).
source "$(dirname "$0")/lib.sh"

N=5000
K=300
H=$HK_LAUNCHER

sk_start_target "$N" "$K" 50 || { sk_fail "the target did not start"; sk_finish; }
PID=$SK_TARGET_PID
echo "target pid $PID"

# --- stats --json: the counters agree, the kept blocks are live, the site names our function.
"$H" stats "$PID" --json >"$SK_WORK/stats.json"
sk_check "stats --json is consistent (allocations - frees == live_blocks, sites, stacks)" \
  "$SK_PYTHON" - "$SK_WORK/stats.json" "$N" "$K" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
n, k = int(sys.argv[2]), int(sys.argv[3])
problems = []
if doc["allocations"] - doc["frees"] != doc["live_blocks"]:
    problems.append(f"allocations {doc['allocations']} - frees {doc['frees']} != live_blocks {doc['live_blocks']}")
if doc["live_blocks"] < k:
    problems.append(f"live_blocks {doc['live_blocks']} < K {k}")
if doc["allocations"] < n:
    problems.append(f"allocations {doc['allocations']} < N {n}")
if not doc["sites"]:
    problems.append("no sites")
records = [s for s in doc["sites"] if s["stack"] and s["stack"][0]["function"] == "make_record"]
if len(records) != 1:
    problems.append(f"{len(records)} sites with make_record on top: {[s['stack'][:1] for s in doc['sites']]}")
else:
    site = records[0]
    if site["live_blocks"] != k:
        problems.append(f"make_record site holds {site['live_blocks']} live blocks, expected {k}")
    if site["allocations"] != n:
        problems.append(f"make_record site made {site['allocations']} allocations, expected {n}")
    if not any(f["function"] == "allocate_records" for f in site["stack"]):
        problems.append("allocate_records is not in the make_record site's stack")
if not doc["running"] or doc["pid"] <= 0:
    problems.append(f"running {doc['running']} pid {doc['pid']}")
for p in problems:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY

if "$H" stats "$PID" >"$SK_WORK/stats.txt" && grep -q "pid $PID" "$SK_WORK/stats.txt" && grep -q make_record "$SK_WORK/stats.txt"; then
  sk_pass "stats (text) names the pid and the top site"
else
  sk_fail "stats (text): $(cat "$SK_WORK/stats.txt")"
fi

# --- list --json: running.
"$H" list --json >"$SK_WORK/list.json"
sk_check "list --json shows the pid as running" "$SK_PYTHON" -c '
import json, sys
rows = [r for r in json.load(open(sys.argv[1])) if r["pid"] == int(sys.argv[2])]
sys.exit(0 if len(rows) == 1 and rows[0]["state"] == "running" and rows[0]["live_bytes"] > 0 else 1)' "$SK_WORK/list.json" "$PID"

# --- scan: the deliberate leak is found.
if "$H" scan "$PID" >"$SK_WORK/scan.txt" 2>"$SK_WORK/scan.err"; then
  if grep -Eq "^scan #[0-9]+ of pid $PID: .* leaked in [1-9][0-9]* blocks" "$SK_WORK/scan.txt"; then
    sk_pass "scan reports leaked blocks: $(cat "$SK_WORK/scan.txt")"
  else
    sk_fail "scan output: $(cat "$SK_WORK/scan.txt")"
  fi
else
  sk_fail "scan failed: $(cat "$SK_WORK/scan.err")"
fi
"$H" scan "$PID" --json >"$SK_WORK/scan.json" || true
sk_check "scan --json reports the 16 leaked blocks" "$SK_PYTHON" -c '
import json, sys
scan = json.load(open(sys.argv[1]))
sys.exit(0 if scan["ok"] and scan["leaked_blocks"] >= 16 and scan["leaked_bytes"] >= 16 * 3000 else 1)' "$SK_WORK/scan.json"

# --- report --json: a leak whose stack names leak_buffers.
"$H" report "$PID" --json >"$SK_WORK/report.json" || true
sk_check "report --json is valid JSON with the leak_buffers leak" "$SK_PYTHON" -c '
import json, sys
doc = json.load(open(sys.argv[1]))
leaks = doc["leaks"]
named = [l for l in leaks if any(f.get("function") == "leak_buffers" for f in l["stack"])]
sys.exit(0 if leaks and named and doc["leaked_blocks"] >= 16 else 1)' "$SK_WORK/report.json"
if "$H" report "$PID" >"$SK_WORK/report.txt" 2>&1 && grep -q leak_buffers "$SK_WORK/report.txt"; then
  sk_pass "report (text) names leak_buffers"
else
  sk_fail "report (text): $(head -20 "$SK_WORK/report.txt")"
fi

# --- export: OpenMetrics text.
"$H" export "$PID" >"$SK_WORK/export.txt" || true
sk_check "export prints valid OpenMetrics ending in # EOF" "$SK_PYTHON" - "$SK_WORK/export.txt" "$PID" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
pid = sys.argv[2]
lines = text.split("\n")
problems = []
if lines[-1] != "" or lines[-2] != "# EOF":
    problems.append("does not end with '# EOF' and a newline")
name = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
sample = re.compile(rf'^({name})\{{pid="(\d+)",program="([^"\\\n]*)"\}} (-?[0-9.eE+]+|NaN|\+Inf|-Inf)$')
declared = {}
seen_pid = set()
for line in lines[:-2]:
    if m := re.match(rf"^# TYPE ({name}) (counter|gauge|histogram|summary|info|stateset|unknown)$", line):
        declared[m.group(1)] = m.group(2)
    elif re.match(rf"^# HELP ({name}) .+$", line):
        pass
    elif m := sample.match(line):
        metric = m.group(1)
        family = metric[:-6] if metric.endswith("_total") else metric
        if family not in declared:
            problems.append(f"sample before its TYPE: {line}")
        elif declared[family] == "counter" and not metric.endswith("_total"):
            problems.append(f"counter sample without _total: {line}")
        seen_pid.add((family, m.group(2)))
    else:
        problems.append(f"not an OpenMetrics line: {line!r}")
if ("heapkeeper_live_blocks", pid) not in seen_pid or ("heapkeeper_leaked_blocks", pid) not in seen_pid:
    problems.append("no live/leaked blocks sample for the pid")
for p in problems:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY

# Planted segments are named after live processes of ours (sleep decoys): every tracked process
# that starts removes the /dev/shm/heapkeeper.<pid> files of its uid whose pid is dead
# (stats/publisher.cpp), and other tests start tracked processes concurrently. 999999, the name
# the corrupt segment must have, is planted again just before each use.
decoy() {
  sleep 120 &
  SK_HELPERS+=("$!")
  DECOY=$!
}

# --- refusals: another uid. Root may read any segment whose owner matches its claim; others
# are refused with one line. The reading as nobody needs setpriv and a heapkeeper nobody can run.
if [[ $(id -u) == 0 ]]; then
  decoy
  OTHER_PID=$DECOY
  OTHER=/dev/shm/heapkeeper.$OTHER_PID
  sk_plant "$OTHER"
  cp "/dev/shm/heapkeeper.$PID" "$OTHER"
  # producer_uid sits at offset 24 of the header (magic 8, version 4, header_size 4, segment_size 8).
  "$SK_PYTHON" -c '
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(24); f.write(struct.pack("<I", 65534))' "$OTHER"
  chown 65534:65534 "$OTHER"
  chmod 0600 "$OTHER"
  sk_check "root reads a segment of uid 65534" quietly "$H" stats "$OTHER_PID" --json
  if command -v setpriv >/dev/null && setpriv --reuid=65534 --regid=65534 --clear-groups "$H" --version >/dev/null 2>&1; then
    as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
    status=0
    as_nobody "$H" stats "$PID" >"$SK_WORK/nobody.out" 2>"$SK_WORK/nobody.err" || status=$?
    if sk_one_line_error 1 "$SK_WORK/nobody.out" "$SK_WORK/nobody.err" "$status" && grep -Eq "uid|Permission denied" "$SK_WORK/nobody.err"; then
      sk_pass "nobody is refused root's segment: $(cat "$SK_WORK/nobody.err")"
    else
      sk_fail "nobody reading root's segment (status $status): $(cat "$SK_WORK/nobody.err")"
    fi
    sk_check "nobody reads its own segment" quietly as_nobody "$H" stats "$OTHER_PID"
    as_nobody "$H" list >"$SK_WORK/nobody-list.txt" 2>&1 || sk_fail "list as nobody failed"
    if grep -Eq "^ *$PID +unreadable " "$SK_WORK/nobody-list.txt"; then
      sk_pass "list as nobody marks root's segment unreadable"
    else
      sk_fail "list as nobody: $(cat "$SK_WORK/nobody-list.txt")"
    fi
  else
    echo "SKIPPED: reading as nobody (no setpriv, or nobody cannot run $H)"
  fi
else
  echo "SKIPPED: segments of another uid need root to create (running as uid $(id -u))"
fi

# --- refusals: a corrupt segment (random bytes), another layout version, a truncated copy.
CORRUPT=/dev/shm/heapkeeper.999999
sk_plant "$CORRUPT"
plant_corrupt() {
  head -c 65536 /dev/urandom >"$CORRUPT.tmp"
  chmod 0600 "$CORRUPT.tmp"
  mv -f "$CORRUPT.tmp" "$CORRUPT"
}
# on_corrupt OUT ERR CMD...: runs CMD with the corrupt segment in place (planted again and CMD
# run again, up to 5 times, if it was removed meanwhile). Returns CMD's status.
on_corrupt() {
  local out=$1 err=$2 attempt status
  shift 2
  for attempt in 1 2 3 4 5; do
    plant_corrupt
    status=0
    "$@" >"$out" 2>"$err" </dev/null || status=$?
    [[ -e $CORRUPT ]] && return "$status"
  done
  return "$status"
}
decoy
VERSION_PID=$DECOY
decoy
TRUNCATED_PID=$DECOY
VERSION=/dev/shm/heapkeeper.$VERSION_PID
TRUNCATED=/dev/shm/heapkeeper.$TRUNCATED_PID
sk_plant "$VERSION"
sk_plant "$TRUNCATED"
cp "/dev/shm/heapkeeper.$PID" "$VERSION"
"$SK_PYTHON" -c '
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(8); f.write(struct.pack("<I", 7))' "$VERSION"
head -c 100000 "/dev/shm/heapkeeper.$PID" >"$TRUNCATED"
chmod 0600 "$VERSION" "$TRUNCATED"
for case in "999999:magic" "$VERSION_PID:version 7" "$TRUNCATED_PID:truncated"; do
  pid=${case%%:*}
  reason=${case#*:}
  status=0
  on_corrupt "$SK_WORK/bad.out" "$SK_WORK/bad.err" "$H" stats "$pid" || status=$?
  if sk_one_line_error 1 "$SK_WORK/bad.out" "$SK_WORK/bad.err" "$status" && grep -q "$reason" "$SK_WORK/bad.err"; then
    sk_pass "stats $pid refused: $(cat "$SK_WORK/bad.err")"
  else
    sk_fail "stats $pid (status $status, wanted a one-line '$reason'): $(cat "$SK_WORK/bad.err")"
  fi
done
status=0
on_corrupt "$SK_WORK/list.txt" "$SK_WORK/list.err" "$H" list || status=$?
if ((status == 0)) && grep -Eq "^ *999999 +unreadable .*magic" "$SK_WORK/list.txt" &&
   grep -Eq "^ *$VERSION_PID +unreadable .*version" "$SK_WORK/list.txt" &&
   grep -Eq "^ *$TRUNCATED_PID +unreadable .*truncated" "$SK_WORK/list.txt" &&
   grep -Eq "^ *$PID +running" "$SK_WORK/list.txt"; then
  sk_pass "list marks the corrupt segments unreadable and still lists the target"
else
  sk_fail "list (status $status): $(cat "$SK_WORK/list.txt" "$SK_WORK/list.err")"
fi
status=0
on_corrupt "$SK_WORK/list.json" "$SK_WORK/list.err" "$H" list --json || status=$?
sk_check "list --json stays valid JSON beside corrupt segments" \
  "$SK_PYTHON" -c "import json, sys; json.load(open(sys.argv[1]))" "$SK_WORK/list.json"
status=0
on_corrupt /dev/null "$SK_WORK/export.err" "$H" export 999999 || status=$?
if ((status == 1)) && [[ $(wc -l <"$SK_WORK/export.err") == 1 ]] && grep -q magic "$SK_WORK/export.err"; then
  sk_pass "export of a corrupt segment: one line, status 1"
else
  sk_fail "export of a corrupt segment (status $status): $(cat "$SK_WORK/export.err")"
fi
status=0
on_corrupt "$SK_WORK/view.out" "$SK_WORK/view.err" "$H" view 999999 || status=$?
if sk_one_line_error 1 "$SK_WORK/view.out" "$SK_WORK/view.err" "$status" && grep -q magic "$SK_WORK/view.err"; then
  sk_pass "view of a corrupt segment: one line, status 1, before the terminal"
else
  sk_fail "view of a corrupt segment (status $status): $(cat "$SK_WORK/view.err")"
fi

# --- an untracked pid: our own shell.
for command in stats scan report view; do
  status=0
  "$H" "$command" $$ >"$SK_WORK/untracked.out" 2>"$SK_WORK/untracked.err" </dev/null || status=$?
  if sk_one_line_error 1 "$SK_WORK/untracked.out" "$SK_WORK/untracked.err" "$status" &&
     grep -q "no heapkeeper segment" "$SK_WORK/untracked.err"; then
    sk_pass "$command of an untracked pid: one line, status 1"
  else
    sk_fail "$command of an untracked pid (status $status): $(cat "$SK_WORK/untracked.err")"
  fi
done

# --- the program exits: its segment goes with it.
status=0
sk_stop_target || status=$?
sk_check "the target exited normally (status $status)" test "$status" = 0
sk_check "the segment is gone after exit" test ! -e "/dev/shm/heapkeeper.$PID"
"$H" list --json >"$SK_WORK/list-after.json"
sk_check "list --json no longer shows the pid" "$SK_PYTHON" -c '
import json, sys
sys.exit(1 if any(r["pid"] == int(sys.argv[2]) for r in json.load(open(sys.argv[1]))) else 0)' "$SK_WORK/list-after.json" "$PID"
status=0
"$H" stats "$PID" >"$SK_WORK/gone.out" 2>"$SK_WORK/gone.err" || status=$?
sk_check "stats of the exited pid: one line, status 1" sk_one_line_error 1 "$SK_WORK/gone.out" "$SK_WORK/gone.err" "$status"

sk_finish

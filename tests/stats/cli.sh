# The live-stats commands end to end: `heapkeeper stats | list | scan | report | export` against
# a program under `heapkeeper run` that makes exactly N allocations keeping K, and leaks 16
# blocks from leak_buffers(); a stopped process (SIGSTOP) shown as stopped; then the refusals: an
# untracked pid, a corrupt segment, a segment of another version, truncated, or of another uid
# (read as nobody through setpriv when root); segments forged or planted in advance by another
# user; and `list --clean`, which removes only the remains of dead processes of our pid namespace.
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

# --- list and stats name the process by its arguments too, as `ps` and `view` do (the executable
# alone does not tell a link's name, Debian's redis-server being redis-check-rdb, or a script).
TARGET_ARGS=$(tr '\0' ' ' </proc/"$PID"/cmdline | sed 's/ $//')
"$H" list >"$SK_WORK/list.txt" 2>&1 || true
sk_check "list shows the target's command line: $(grep -E "^ *$PID " "$SK_WORK/list.txt")" \
  grep -Fq "  [$TARGET_ARGS]" "$SK_WORK/list.txt"
sk_check "stats (text) shows the target's command line: $(head -1 "$SK_WORK/stats.txt")" \
  grep -Fq "  [$TARGET_ARGS] (" "$SK_WORK/stats.txt"

# --- list --json: running.
"$H" list --json >"$SK_WORK/list.json"
sk_check "list --json shows the pid as running" "$SK_PYTHON" -c '
import json, sys
rows = [r for r in json.load(open(sys.argv[1])) if r["pid"] == int(sys.argv[2])]
sys.exit(0 if len(rows) == 1 and rows[0]["running"] and rows[0]["state"] in ("running", "sleeping")
         and rows[0]["live_bytes"] > 0 and rows[0]["command_line"] == sys.argv[3] else 1)' \
  "$SK_WORK/list.json" "$PID" "$TARGET_ARGS"
SEGMENT=$(sk_segment "$PID")
sk_check "the segment's name has 16 random hex digits after the pid: $SEGMENT" \
  grep -Eq "^/dev/shm/heapkeeper\.$PID\.[0-9a-f]{16}$" <<<"$SEGMENT"

# --- a stopped process: its state as ps shows it, and commands that need it to run say why at once.
kill -STOP "$PID"
wait_stopped "$PID"
"$H" stats "$PID" >"$SK_WORK/stopped.txt" 2>&1 || true
sk_check "stats of a SIGSTOPped process says stopped: $(head -1 "$SK_WORK/stopped.txt")" \
  grep -Eq "^pid $PID .*\(stopped: figures from [0-9]+s ago\)" "$SK_WORK/stopped.txt"
"$H" stats "$PID" --json >"$SK_WORK/stopped.json" 2>&1 || true
sk_check "stats --json of a SIGSTOPped process: state stopped" "$SK_PYTHON" -c '
import json, sys
doc = json.load(open(sys.argv[1]))
sys.exit(0 if doc["state"] == "stopped" and doc["running"] else 1)' "$SK_WORK/stopped.json"
"$H" list >"$SK_WORK/stopped-list.txt" 2>&1 || true
sk_check "list shows the SIGSTOPped process as stopped" grep -Eq "^ *$PID +stopped " "$SK_WORK/stopped-list.txt"
status=0
timeout 10 "$H" scan "$PID" >"$SK_WORK/stopped-scan.out" 2>"$SK_WORK/stopped-scan.err" || status=$?
if sk_one_line_error 1 "$SK_WORK/stopped-scan.out" "$SK_WORK/stopped-scan.err" "$status" &&
   grep -q "kill -CONT $PID" "$SK_WORK/stopped-scan.err"; then
  sk_pass "scan of a stopped process: one line at once: $(cat "$SK_WORK/stopped-scan.err")"
else
  sk_fail "scan of a stopped process (status $status): $(cat "$SK_WORK/stopped-scan.err")"
fi
kill -CONT "$PID"

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

# --- export: Prometheus's text format (the default; promtool checks it) and OpenMetrics.
"$H" export "$PID" >"$SK_WORK/export.txt" || true
"$H" export "$PID" --format openmetrics >"$SK_WORK/export.om" || true
# check_exposition FILE PID FORMAT: every line a HELP, TYPE or sample line of FORMAT (prometheus:
# a counter's TYPE names its sample, heapkeeper_allocations_total; openmetrics: it names the
# family, and the text ends with '# EOF').
check_exposition() {
  "$SK_PYTHON" - "$@" <<'PY'
import re, sys
text, pid, form = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
lines = text.split("\n")
problems = []
if lines[-1] != "":
    problems.append("does not end with a newline")
body = lines[:-1]
if form == "openmetrics":
    if not body or body[-1] != "# EOF":
        problems.append("does not end with '# EOF'")
    body = body[:-1]
elif "# EOF" in body:
    problems.append("'# EOF' is OpenMetrics only")
name = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
sample = re.compile(rf'^({name})\{{pid="(\d+)",program="([^"\\\n]*)"\}} (-?[0-9.eE+]+|NaN|\+Inf|-Inf)$')
declared, helped, seen_pid = {}, set(), set()
for line in body:
    if m := re.match(rf"^# TYPE ({name}) (counter|gauge|histogram|summary|info|stateset|unknown)$", line):
        declared[m.group(1)] = m.group(2)
    elif m := re.match(rf"^# HELP ({name}) .+$", line):
        helped.add(m.group(1))
    elif m := sample.match(line):
        metric = m.group(1)
        family = metric[:-6] if form == "openmetrics" and metric.endswith("_total") else metric
        if family not in declared or family not in helped:
            problems.append(f"sample without its TYPE and HELP: {line}")
        elif declared[family] == "counter" and not metric.endswith("_total"):
            problems.append(f"counter sample without _total: {line}")
        seen_pid.add((family, m.group(2)))
    else:
        problems.append(f"not a {form} line: {line!r}")
if ("heapkeeper_live_blocks", pid) not in seen_pid or ("heapkeeper_leaked_blocks", pid) not in seen_pid:
    problems.append("no live/leaked blocks sample for the pid")
for p in problems:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}
sk_check "export prints Prometheus's text format, counters declared as heapkeeper_..._total" \
  check_exposition "$SK_WORK/export.txt" "$PID" prometheus
sk_check "export --format openmetrics prints OpenMetrics ending in # EOF" \
  check_exposition "$SK_WORK/export.om" "$PID" openmetrics
# promtool (Debian's prometheus package, which scripts/install-deps.sh installs) is the reference.
if command -v promtool >/dev/null; then
  if promtool check metrics <"$SK_WORK/export.txt" >"$SK_WORK/promtool.out" 2>&1; then
    sk_pass "promtool check metrics accepts export's output"
  else
    sk_fail "promtool check metrics: $(cat "$SK_WORK/promtool.out")"
  fi
else
  sk_fail "promtool is not installed (scripts/install-deps.sh installs the prometheus package)"
fi

# Planted segments are named after live processes (sleep decoys): every tracked process that
# starts removes the segment files of its uid whose producer is certainly dead
# (stats/publisher.cpp), and other tests start tracked processes concurrently.
decoy() {
  sleep 120 &
  SK_HELPERS+=("$!")
  DECOY=$!
}
# set_header_field FILE OFFSET FORMAT VALUE: overwrites a field of a segment's header in place.
# Offsets: producer_uid 24 (<I), producer_pid 28 (<i), pid namespace inode 56 (<Q), heartbeat 72 (<Q).
set_header_field() {
  "$SK_PYTHON" -c '
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); f.write(struct.pack(sys.argv[3], int(sys.argv[4])))' "$@"
}

# --- another uid. Root may read a segment that belongs to the process's owner; a segment whose
# owner is not the process's is refused, whoever reads it: anyone can create files in /dev/shm.
if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null; then
  as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
  as_daemon() { setpriv --reuid=1 --regid=1 --clear-groups "$@"; }
  # A process of nobody's, with a segment (a copy of the target's) made by nobody.
  setpriv --reuid=65534 --regid=65534 --clear-groups sleep 120 &  # not the function: $! must be sleep
  SK_HELPERS+=("$!")
  NOBODY_PID=$!
  for _ in $(seq 50); do  # until setpriv has switched to nobody
    grep -Eq "^Uid:\s+65534\s" "/proc/$NOBODY_PID/status" 2>/dev/null && break
    sleep 0.05
  done
  OTHER=$(sk_fake_segment "$NOBODY_PID")
  sk_plant "$OTHER"
  cp "$SEGMENT" "$OTHER"
  set_header_field "$OTHER" 24 "<I" 65534
  set_header_field "$OTHER" 28 "<i" "$NOBODY_PID"
  chown 65534:65534 "$OTHER"
  chmod 0600 "$OTHER"
  sk_check "root reads the segment of nobody's process, made by nobody" quietly "$H" stats "$NOBODY_PID" --json
  # The same forgery, by nobody, for a process of root's: refused, even to root.
  decoy
  FORGED=$(sk_fake_segment "$DECOY")
  sk_plant "$FORGED"
  cp "$OTHER" "$FORGED"
  set_header_field "$FORGED" 28 "<i" "$DECOY"
  chown 65534:65534 "$FORGED"
  status=0
  "$H" stats "$DECOY" >"$SK_WORK/forged.out" 2>"$SK_WORK/forged.err" || status=$?
  if sk_one_line_error 1 "$SK_WORK/forged.out" "$SK_WORK/forged.err" "$status" &&
     grep -q "belongs to uid 65534 but pid $DECOY runs as uid 0" "$SK_WORK/forged.err"; then
    sk_pass "root refuses nobody's segment forged for root's process: $(cat "$SK_WORK/forged.err")"
  else
    sk_fail "root reading a forged segment (status $status): $(cat "$SK_WORK/forged.out" "$SK_WORK/forged.err")"
  fi
  if as_nobody "$H" --version >/dev/null 2>&1 && as_daemon "$H" --version >/dev/null 2>&1; then
    status=0
    as_nobody "$H" stats "$PID" >"$SK_WORK/nobody.out" 2>"$SK_WORK/nobody.err" || status=$?
    if sk_one_line_error 1 "$SK_WORK/nobody.out" "$SK_WORK/nobody.err" "$status" && grep -Eq "uid|Permission denied" "$SK_WORK/nobody.err"; then
      sk_pass "nobody is refused root's segment: $(cat "$SK_WORK/nobody.err")"
    else
      sk_fail "nobody reading root's segment (status $status): $(cat "$SK_WORK/nobody.err")"
    fi
    sk_check "nobody reads its own segment" quietly as_nobody "$H" stats "$NOBODY_PID"
    as_nobody "$H" list >"$SK_WORK/nobody-list.txt" 2>&1 || sk_fail "list as nobody failed"
    if grep -Eq "^ *$PID +unreadable " "$SK_WORK/nobody-list.txt"; then
      sk_pass "list as nobody marks root's segment unreadable"
    else
      sk_fail "list as nobody: $(cat "$SK_WORK/nobody-list.txt")"
    fi
    # Names claimed in advance: daemon creates segment files for the pid a program of nobody's
    # will have (the shell below plants for its own pid, then execs the program), in the old
    # form and in the new one; the program still publishes its live stats.
    sh -c '
      for name in "/dev/shm/heapkeeper.$$" "/dev/shm/heapkeeper.$$.0123456789abcdef"; do
        setpriv --reuid=1 --regid=1 --clear-groups sh -c ": >\"\$1\"" sh "$name"
      done
      exec setpriv --reuid=65534 --regid=65534 --clear-groups "$0" run -- "$@"' \
      "$H" "$HK_TARGET" 100 10 30 >"$SK_WORK/claimed.out" 2>"$SK_WORK/claimed.err" &
    CLAIMED_PID=$!
    SK_HELPERS+=("$CLAIMED_PID")
    sk_plant_pid "$CLAIMED_PID"
    sk_plant "/dev/shm/heapkeeper.$CLAIMED_PID"
    for _ in $(seq 50); do
      grep -q ready "$SK_WORK/claimed.out" 2>/dev/null && as_nobody "$H" stats "$CLAIMED_PID" >/dev/null 2>&1 && break
      sleep 0.1
    done
    sk_check "the names were planted by daemon: $(ls -l /dev/shm/heapkeeper."$CLAIMED_PID" 2>&1)" \
      test "$(stat -c %u "/dev/shm/heapkeeper.$CLAIMED_PID" 2>/dev/null)" = 1
    status=0
    as_nobody "$H" stats "$CLAIMED_PID" >"$SK_WORK/claimed-stats.txt" 2>&1 || status=$?
    if ((status == 0)) && ! grep -q "live stats disabled" "$SK_WORK/claimed.err"; then
      sk_pass "names planted in advance by another user do not disable live stats (pid $CLAIMED_PID)"
    else
      sk_fail "pid $CLAIMED_PID among planted names (status $status): $(cat "$SK_WORK/claimed-stats.txt" "$SK_WORK/claimed.err")"
    fi
    kill -USR1 "$CLAIMED_PID" 2>/dev/null || true
  else
    echo "SKIPPED: reading as nobody (nobody or daemon cannot run $H)"
  fi
else
  echo "SKIPPED: segments of another uid need root and setpriv (running as uid $(id -u))"
fi

# --- list --clean removes the remains of dead processes of our pid namespace, and nothing else:
# not a segment whose producer beat in the last 10 s, not one from another pid namespace.
# A pid no process can ever have: at or above the kernel's PID_MAX_LIMIT (2^22). A pid that was
# free a moment ago is not enough: with pid_max at 32768 a busy machine reuses it within seconds,
# and a new traced process with that pid removes "its" stale segments (stats/publisher.cpp) while
# this test is still writing them.
DEAD=$((4194304 + RANDOM))
REMAINS=$(sk_fake_segment "$DEAD")
FOREIGN=$(sk_fake_segment "$DEAD")
FRESH=$(sk_fake_segment "$DEAD")
sk_plant "$REMAINS"
sk_plant "$FOREIGN"
sk_plant "$FRESH"
# Each is written under a name no producer looks at and renamed into place whole: every traced
# process that starts removes what is remains (stats/publisher.cpp), so a half-made FOREIGN (dead
# producer and old heartbeat, namespace not yet changed) could vanish under the test.
# plant_fake FILE OFFSET FORMAT VALUE...: the target's segment with those header fields changed.
plant_fake() {
  local file=$1 draft="/dev/shm/hk-cli-draft.$$"
  shift
  cp "$SEGMENT" "$draft"
  while (($# >= 3)); do
    set_header_field "$draft" "$1" "$2" "$3"
    shift 3
  done
  mv "$draft" "$file"
}
for file in "$REMAINS" "$FOREIGN" "$FRESH"; do
  heartbeat=1000000000  # long ago
  [[ $file == "$FRESH" ]] && heartbeat=$(date +%s%N)
  namespace=()
  [[ $file == "$FOREIGN" ]] && namespace=(56 "<Q" 4026531835)  # another pid namespace
  plant_fake "$file" 28 "<i" "$DEAD" 72 "<Q" "$heartbeat" "${namespace[@]}"
done
"$H" list --clean >"$SK_WORK/clean.txt" 2>&1 || sk_fail "list --clean failed: $(cat "$SK_WORK/clean.txt")"
sk_check "list --clean removes the remains of a dead process" test ! -e "$REMAINS"
sk_check "list --clean keeps a segment of another pid namespace" test -e "$FOREIGN"
sk_check "list --clean keeps a segment that beat within 10 s" test -e "$FRESH"
sk_check "list --clean keeps the running target's segment" test -e "$SEGMENT"

# --- unfinished files: the producer writes the magic number last, so a header without one is
# being written now, or was left by a process that died or exec'd while writing it. Said so by
# name; removed once nobody has written it for 10 s.
UNFINISHED_OLD=$(sk_fake_segment "$DEAD")
UNFINISHED_NEW=$(sk_fake_segment "$DEAD")
sk_plant "$UNFINISHED_OLD"
sk_plant "$UNFINISHED_NEW"
head -c "$(stat -c %s "$SEGMENT")" /dev/zero >"$UNFINISHED_OLD"
head -c "$(stat -c %s "$SEGMENT")" /dev/zero >"$UNFINISHED_NEW"
touch -d "1 minute ago" "$UNFINISHED_OLD"
"$H" list >"$SK_WORK/unfinished.txt" 2>&1 || true
UNFINISHED_LINE=$(grep -F "$UNFINISHED_NEW" "$SK_WORK/unfinished.txt" || true)
sk_check "list says an unfinished segment is unfinished: $UNFINISHED_LINE" grep -q "unfinished segment" <<<"$UNFINISHED_LINE"
"$H" list --clean >"$SK_WORK/clean-unfinished.txt" 2>&1 || true
sk_check "list --clean removes an unfinished segment nobody wrote for a minute" test ! -e "$UNFINISHED_OLD"
sk_check "list --clean keeps an unfinished segment written just now" test -e "$UNFINISHED_NEW"
rm -f "$UNFINISHED_NEW"

# --- exec: the process keeps its pid and start time, the program it was made a segment.
# The shell execs only once its segment is published (it reads a line from a FIFO the test writes
# to then): a fixed sleep before the exec raced the publisher thread's first snapshot, and lost
# whenever that thread got no CPU for 0.4 s (reproduced by starving it with SCHED_IDLE).
# exec_when_published SHELL-COMMAND: runs `sh -c 'read go; SHELL-COMMAND'` under heapkeeper in
# the background (EXEC_PID), waits until its segment answers `stats` (EXEC_SEGMENT: its file, or ""
# if it never did), then lets it go on.
exec_when_published() {
  local go=$SK_WORK/exec.go
  rm -f "$go"
  mkfifo "$go"
  exec 3<>"$go"  # held open read-write: the shell's open never blocks, nor does our write
  "$H" run -- sh -c "read go <\"\$0\"; $1" "$go" &
  EXEC_PID=$!
  sk_plant_pid "$EXEC_PID"
  local tries=0
  until "$H" stats "$EXEC_PID" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if ((tries > 300)) || ! kill -0 "$EXEC_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  EXEC_SEGMENT=$(sk_segment "$EXEC_PID")
  echo go >&3
  exec 3>&-
}
# Exec'ing a program run under heapkeeper, even one that ends before it publishes, removes it.
exec_when_published 'exec /bin/true'
sk_check "the shell made a segment before it exec'd" test -n "$EXEC_SEGMENT"
wait "$EXEC_PID" || true
sk_check "an exec'd program that ends at once leaves no segment of its pid: $(ls /dev/shm/heapkeeper."$EXEC_PID".* 2>&1)" \
  test -z "$(sk_segment "$EXEC_PID")"
# Exec'ing a program not run under heapkeeper: the old segment stops beating and is no longer
# mapped; it reads as stale (not running) though the pid runs on, and list --clean removes it.
# In a /dev/shm of its own (a mount namespace with a tmpfs there) where the system allows one: a
# segment that reads as stale is remains to every traced process that starts, and processes of
# other tests (or of a second suite on the machine) removed it between the forged heartbeat and
# `list`, which then had no line for the pid or said "no heapkeeper segment" (two stats.cli at once).
stale_after_exec() {
  exec_when_published 'exec env -u LD_PRELOAD sleep 30'
  for _ in $(seq 300); do
    [[ $(readlink "/proc/$EXEC_PID/exe" 2>/dev/null) == */sleep ]] && break
    sleep 0.1
  done
  EXEC_SEGMENT=$(sk_segment "$EXEC_PID")
  echo "$EXEC_PID $EXEC_SEGMENT" >"$SK_WORK/exec-stale.txt"
  if [[ -n $EXEC_SEGMENT ]]; then
    set_header_field "$EXEC_SEGMENT" 72 "<Q" 1000000000  # as it reads 10 s after its last beat
    "$H" list >"$SK_WORK/exec-list.txt" 2>&1 || true
    "$H" list --clean >/dev/null 2>&1 || true
    if [[ -e $EXEC_SEGMENT ]]; then echo present; else echo gone; fi >"$SK_WORK/exec-clean.txt"
  fi
  kill "$EXEC_PID" 2>/dev/null || true
}
private_shm=(unshare -m)
((EUID == 0)) || private_shm=(unshare -rm)
if "${private_shm[@]}" mount -t tmpfs tmpfs /dev/shm 2>/dev/null; then
  export -f stale_after_exec exec_when_published sk_segment sk_plant_pid set_header_field
  export H SK_WORK SK_PYTHON
  "${private_shm[@]}" bash -c 'set -euo pipefail; mount -t tmpfs -o mode=1777 tmpfs /dev/shm; stale_after_exec' ||
    sk_fail "the exec case in a /dev/shm of its own failed"
else
  echo "(the exec case runs in the shared /dev/shm: no mount namespace for a private one)"
  stale_after_exec
fi
read -r EXEC_PID EXEC_SEGMENT <"$SK_WORK/exec-stale.txt" || true
if [[ -n ${EXEC_SEGMENT:-} ]]; then
  sk_check "the segment of a program that exec'd an untracked one reads as stale: $(grep -E "^ *$EXEC_PID " "$SK_WORK/exec-list.txt")" \
    grep -Eq "^ *$EXEC_PID +stale " "$SK_WORK/exec-list.txt"
  sk_check "list --clean removes it while the pid runs on" grep -qx gone "$SK_WORK/exec-clean.txt"
else
  sk_fail "the program did not make a segment before it exec'd"
fi
if [[ $(id -u) == 0 ]] && unshare --pid --fork --mount-proc true 2>/dev/null; then
  # A live process in another pid namespace sharing /dev/shm: its pid means another process here.
  unshare --pid --fork --mount-proc "$H" run -- "$HK_TARGET" 100 10 30 >"$SK_WORK/ns.out" 2>"$SK_WORK/ns.err" &
  NS_HOLDER=$!
  SK_HELPERS+=("$NS_HOLDER")
  # The target's segment is the file it maps, once published (a heartbeat, at offset 72: the header
  # is whole). Not any file named after a small pid: a second stats.cli on the machine has a target
  # in a pid namespace too, whose segment vanished under this check when that test ended.
  NS_SEGMENT=""
  for _ in $(seq 300); do
    for child in $(pgrep -P "$NS_HOLDER" || true); do
      file=$(grep -om1 '/dev/shm/heapkeeper\.[0-9]*\.[0-9a-f]*' "/proc/$child/maps" 2>/dev/null || true)
      [[ -n $file && $(od -An -tu8 -j72 -N8 "$file" 2>/dev/null | tr -d ' ') =~ ^[1-9] ]] && NS_SEGMENT=$file
    done
    [[ -n $NS_SEGMENT ]] && break
    sleep 0.1
  done
  if [[ -n $NS_SEGMENT ]]; then
    sk_plant "$NS_SEGMENT"
    "$H" list --clean >"$SK_WORK/clean-ns.txt" 2>&1 || true
    sk_check "list --clean keeps the live segment of a process in another pid namespace" test -e "$NS_SEGMENT"
    sk_check "list says that segment is of another pid namespace" grep -q "another pid namespace" "$SK_WORK/clean-ns.txt"
  else
    sk_fail "the process in another pid namespace made no segment: $(cat "$SK_WORK/ns.err")"
  fi
else
  echo "SKIPPED: a process in another pid namespace (needs root and unshare)"
fi

# --- refusals: a corrupt segment (random bytes), another layout version, a truncated copy.
CORRUPT=/dev/shm/heapkeeper.999999.00000000deadbeef
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
VERSION=$(sk_fake_segment "$VERSION_PID")
TRUNCATED=$(sk_fake_segment "$TRUNCATED_PID")
sk_plant "$VERSION"
sk_plant "$TRUNCATED"
cp "$SEGMENT" "$VERSION"
"$SK_PYTHON" -c '
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(8); f.write(struct.pack("<I", 99))' "$VERSION"
head -c 100000 "$SEGMENT" >"$TRUNCATED"
chmod 0600 "$VERSION" "$TRUNCATED"
for case in "999999:magic" "$VERSION_PID:version 99" "$TRUNCATED_PID:truncated"; do
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
   grep -Eq "^ *$PID +(running|sleeping)" "$SK_WORK/list.txt"; then
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

# --- pids that name no process: 0 and negative numbers (process groups to kill()) are refused
# before anything is looked for; a pid no process has (above PID_MAX_LIMIT) is said to be one.
# Only decimal digits name a pid: "0x10" was taken as 16 and "" as 0 (an adversarial tester's).
# The commands taking a pid or a report (export, flamegraph, diff) refuse pid 0 in the same words:
# export 0 printed Prometheus's HELP lines for it, flamegraph and diff looked for its segment.
for args in "stats 0" "scan -5" "report -1" "why 0 main" "trim -2" "view -3" "stats 4194999" "scan 4194999" \
            "stats 0x10" "trim 0x10" "scan 1e3" "report +7" "export 0" "export $PID 00" \
            "export --format openmetrics 0" "export --format collapsed 0" \
            "export --format pprof -o $SK_WORK/zero.pb.gz 0" "flamegraph 0" "diff 0 $PID" "diff 000 000"; do
  status=0
  # shellcheck disable=SC2086  # the words of $args are the command's arguments
  "$H" $args >"$SK_WORK/nopid.out" 2>"$SK_WORK/nopid.err" </dev/null || status=$?
  if ((status != 0)) && [[ ! -s $SK_WORK/nopid.out && $(wc -l <"$SK_WORK/nopid.err") == 1 ]] &&
     grep -qE "is not a process id \(a number above 0\)|^heapkeeper: no process with pid 4194999$" "$SK_WORK/nopid.err"; then
    sk_pass "$args: one line naming the bad pid, status $status"
  else
    sk_fail "$args (status $status): $(cat "$SK_WORK/nopid.out" "$SK_WORK/nopid.err")"
  fi
done

# An empty pid is refused the same way, and leading zeros are decimal (00123 is pid 123, not 83).
status=0
"$H" stats "" >"$SK_WORK/nopid.out" 2>"$SK_WORK/nopid.err" </dev/null || status=$?
if ((status != 0)) && [[ ! -s $SK_WORK/nopid.out ]] && grep -q 'is not a process id (a number above 0)' "$SK_WORK/nopid.err"; then
  sk_pass "stats with an empty pid: refused in one line"
else
  sk_fail "stats with an empty pid (status $status): $(cat "$SK_WORK/nopid.out" "$SK_WORK/nopid.err")"
fi
status=0
"$H" stats "00$PID" >"$SK_WORK/zeros.out" 2>"$SK_WORK/zeros.err" </dev/null || status=$?
if ((status == 0)) && grep -q "^pid $PID " "$SK_WORK/zeros.out"; then
  sk_pass "stats 00PID is the process PID"
else
  sk_fail "stats 00$PID (status $status): $(head -c 300 "$SK_WORK/zeros.out" "$SK_WORK/zeros.err")"
fi

# --- the program exits: its segment goes with it.
status=0
sk_stop_target || status=$?
sk_check "the target exited normally (status $status)" test "$status" = 0
sk_check "the segment is gone after exit" test ! -e "$SEGMENT"
"$H" list --json >"$SK_WORK/list-after.json"
sk_check "list --json no longer shows the pid" "$SK_PYTHON" -c '
import json, sys
sys.exit(1 if any(r["pid"] == int(sys.argv[2]) for r in json.load(open(sys.argv[1]))) else 0)' "$SK_WORK/list-after.json" "$PID"
status=0
"$H" stats "$PID" >"$SK_WORK/gone.out" 2>"$SK_WORK/gone.err" || status=$?
sk_check "stats of the exited pid: one line, status 1" sk_one_line_error 1 "$SK_WORK/gone.out" "$SK_WORK/gone.err" "$status"

sk_finish

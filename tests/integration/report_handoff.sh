#!/usr/bin/env bash
# The report leaves the traced process: at exit the library hands a raw dump to the `heapkeeper`
# binary (the run's symbolizer service, or `heapkeeper symbolize` started with a raw clone) and
# prints its answer (report/analysis_handoff.h).
#   watching     the program cannot tell: no SIGCHLD, no child its wait() reaps, no new descriptor,
#                no libdw in its maps after heapkeeper_write_report or after `heapkeeper report
#                PID` and `heapkeeper stats PID` named its frames (reader side), its exit status and
#                HEAPKEEPER_EXITCODE as before; reports named in full by both ways; the binary
#                refuses a corrupt dump in one line; a service's answer is taken at the size it
#                announces, without waiting for the service to close the connection; a service
#                that closes the connection without an answer (dead, or refusing the dump) is
#                passed over for the binary
#   unreachable  without the binary (moved out of reach, named wrongly, failing, answering nonsense
#                or writing without end)
#                the leak report still comes, with module+offset frames and build-ids, as
#                LeakSanitizer's does without a symbolizer; the offset lies in the leaking function
#   many         200 traced processes of one `heapkeeper run` each get a JSON report naming their
#                live block's function, and the run's service reads each module file once
#                (HEAPKEEPER_SYMBOLIZER_LOG=1); the same for 50 processes started with LD_PRELOAD
#                alone (the user's service); and both with an XDG_RUNTIME_DIR too long for a
#                socket's path, the user's with one not 0700 (the services then live in /tmp)
#   closed       a program whose standard input or output is closed gets its report named all the
#                same (the binary's stdin and stdout are then the library's own descriptors 0, 1);
#                `heapkeeper run` with a standard descriptor closed still has its service, which
#                answers every process of the run (no process starts a binary of its own); the
#                user's service keeps no directory of the program's as its own
#   hostile      as root: a listener of another user (uid 65534) whose backlog is full, at the
#                run's socket path or at the user's service's path (as one planted in a
#                /tmp/heapkeeper-UID that user made first), neither holds the program at exit nor
#                sees the dump: the program starts the binary, which replaces the user's service
#   threads      as root: a run's service (uid 65532) that may make no more threads (RLIMIT_NPROC
#                set to 1 once it runs) answers every process of the run all the same, 8 at once
#   init         as root, in a new pid namespace: a traced program that is its pid 1 (a
#                container's entry point), which every orphan of the namespace comes to, has no
#                child after heapkeeper_write_report, with LD_PRELOAD or as `heapkeeper run`'s
#                program: no user's service and no run's service becomes its child (its
#                `while (wait(NULL) > 0)` would wait for the run's service, and that for its end)
#   killed       a program killed while it waits for a binary that hangs leaves nothing behind: its
#                output pipe sees its end, and the binary is gone (nobody would read its answer);
#                a claiming binary's `<service>.<pid>` socket whose pid is gone is removed by the
#                next claim, one whose pid lives is not
source "$(dirname "$0")/lib.sh"

# closing WHICH: sets `redirect` to a command prefix that runs its command with stdin, stdout,
# stderr or both of the first two closed.
closing() {
  case $1 in
    stdin) redirect=(bash -c 'exec "$@" <&-' bash) ;;
    stdout) redirect=(bash -c 'exec "$@" >&-' bash) ;;
    stderr) redirect=(bash -c 'exec "$@" 2>&-' bash) ;;
    both) redirect=(bash -c 'exec "$@" <&- >&-' bash) ;;
  esac
}

part=${1:?usage: report_handoff.sh watching|unreachable|many|closed|hostile|threads|init|killed}
program=$(hk_program report_handoff)
W=$HK_WORK
named="#0 0x[0-9a-f]+ in leak_for_handoff $program\+0x[0-9a-f]+ .*report_handoff\.c:[0-9]+"
summary='Direct leak of 4321 byte(s) in 1 object(s) allocated from:'

# run_case NAME MODE ARGS...: runs the program (stdout, stderr, status into $W/NAME.*).
run_case() {
  local name=$1 mode=$2 status=0
  shift 2
  hk_exec "$mode" "$program" "$@" >"$W/$name.out" 2>"$W/$name.err" || status=$?
  echo "$status" >"$W/$name.status"
}

# quiet_program NAME: nothing on stdout tells of a SIGCHLD or a reaped stranger.
quiet_program() {
  if grep -qE 'SIGCHLD|stranger' "$W/$1.out"; then
    hk_fail "$1: the program saw the hand-off: $(tr '\n' ' ' <"$W/$1.out")"
    return 1
  fi
}

case $part in
  watching)
    for mode in preload launcher; do
      HEAPKEEPER_REPORT="$W/$mode.json" run_case "wait.$mode" "$mode" wait
      ok=1
      quiet_program "wait.$mode" || ok=0
      [[ $(cat "$W/wait.$mode.status") == 0 ]] || { hk_fail "wait.$mode: status $(cat "$W/wait.$mode.status")"; ok=0; }
      if ! grep -qF "$summary" "$W/wait.$mode.err" || ! grep -qE "$named" "$W/wait.$mode.err"; then
        hk_fail "wait.$mode: no named leak report on stderr:"
        head -20 "$W/wait.$mode.err" >&2
        ok=0
      fi
      if grep -q 'heapkeeper\[' "$W/wait.$mode.err"; then
        hk_fail "wait.$mode: diagnostics: $(grep 'heapkeeper\[' "$W/wait.$mode.err")"
        ok=0
      fi
      hk_json_check "$W/$mode.json" \
        'any(f["function"] == "leak_for_handoff" and f.get("line", 0) > 0 for l in r["leaks"] for f in l["stack"]) and r["leaked_bytes"] == 4321' \
        "$mode: the JSON report names the leak's function and line" || ok=0
      ((ok)) && hk_pass "$mode: named reports, no SIGCHLD, no child visible to wait(), status 0"
    done

    run_case api preload api "$W/api.json"
    expected=$'write_report: 0\nfds: same\nlibdw: not mapped\nchildren: none'
    if [[ $(cat "$W/api.out") == "$expected" ]] && quiet_program api; then
      hk_pass "heapkeeper_write_report: same descriptors, no libdw mapped, no child, no SIGCHLD"
    else
      hk_fail "heapkeeper_write_report: the program saw: $(cat "$W/api.out")"
    fi
    hk_json_check "$W/api.json" 'any(f["function"] == "leak_for_handoff" for l in r["live_sites"] for f in l["stack"])' \
      "the mid-run report names the live block's function" || true

    # Live: the report and the snapshot's frames are named on the reader's side.
    "$HK_LAUNCHER" run -- "$program" hold "$W/hold.pid" >"$W/hold.out" 2>"$W/hold.err" &
    job=$!
    for ((i = 0; i < 300; ++i)); do [[ -s $W/hold.pid ]] && break; sleep 0.02; done
    pid=$(cat "$W/hold.pid" 2>/dev/null || echo 0)
    for ((i = 0; i < 50; ++i)); do
      "$HK_LAUNCHER" report "$pid" --json >"$W/live.json" 2>"$W/live.err" && break
      sleep 0.1
    done
    for ((i = 0; i < 50; ++i)); do
      "$HK_LAUNCHER" stats "$pid" --json >"$W/stats.json" 2>"$W/stats.err" || true
      grep -q leak_for_handoff "$W/stats.json" && break
      sleep 0.1
    done
    touch "$W/hold.pid.done"
    hk_wait "$job" || true
    ok=1
    hk_json_check "$W/live.json" 'any(f["function"] == "leak_for_handoff" for s in r["live_sites"] for f in s["stack"])' \
      "heapkeeper report PID names the live block's function" || ok=0
    grep -q '"leak_for_handoff"' "$W/stats.json" || { hk_fail "heapkeeper stats PID: frames not named"; ok=0; }
    [[ $(cat "$W/hold.out") == "libdw: not mapped" ]] || { hk_fail "live: the program says $(cat "$W/hold.out")"; ok=0; }
    ((ok)) && hk_pass "live report and stats named by the reader; no libdw in the traced process"

    HEAPKEEPER_EXITCODE=23 run_case exitcode preload wait
    printf 'leak:leak_for_handoff\n' >"$W/leak.supp"
    HEAPKEEPER_EXITCODE=23 HEAPKEEPER_SUPPRESSIONS="$W/leak.supp" run_case suppressed preload wait
    if [[ $(cat "$W/exitcode.status") == 23 && $(cat "$W/suppressed.status") == 0 ]] &&
      ! grep -q 'Direct leak' "$W/suppressed.err"; then
      hk_pass "HEAPKEEPER_EXITCODE: 23 with the leak, 0 when a suppression (matched by the binary) hides it"
    else
      hk_fail "HEAPKEEPER_EXITCODE: statuses $(cat "$W/exitcode.status") and $(cat "$W/suppressed.status") (expected 23 and 0)"
      head -12 "$W/suppressed.err" >&2
    fi

    # named_case NAME WHAT: case NAME ended with status 0, a named leak report on stderr and its
    # JSON report written; passes as WHAT.
    named_case() {
      local ok=1
      [[ $(cat "$W/$1.status") == 0 ]] || { hk_fail "$1: status $(cat "$W/$1.status")"; ok=0; }
      grep -qE "$named" "$W/$1.err" || { hk_fail "$1: no named leak report: $(head -5 "$W/$1.err")"; ok=0; }
      hk_json_check "$W/$1.json" 'r["leaked_bytes"] == 4321' "$1: the JSON report is written" || ok=0
      ((ok)) && hk_pass "$2"
    }
    # A service's answer ends where its header says: the program does not also wait for the
    # service to close the connection. This one answers (through the binary) and keeps the
    # connection open until the program has exited; with no binary to fall back on, a program that
    # waited for the close would give up at the answer's timeout and write no report.
    "$HK_CHECK_PYTHON" - "$W/held.sock" "$HK_LAUNCHER" "$W/held.exited" <<'PY' &
import os, socket, struct, subprocess, sys, time
path, binary, exited = sys.argv[1:4]
listener = socket.socket(socket.AF_UNIX)
listener.bind(path)
listener.listen(1)
client, _ = listener.accept()
data = b""
while len(data) < 8 or len(data) < 8 + struct.unpack("<Q", data[:8])[0]:
    chunk = client.recv(65536)
    if not chunk:
        break
    data += chunk
environment = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
answer = subprocess.run([binary, "symbolize", "--answer"], input=data[8:], stdout=subprocess.PIPE, env=environment).stdout
client.sendall(answer)
while not os.path.exists(exited):
    time.sleep(0.05)
client.close()
PY
    held=$!
    for ((i = 0; i < 200; ++i)); do [[ -S $W/held.sock ]] && break; sleep 0.05; done
    HEAPKEEPER_SYMBOLIZER_SOCKET=$W/held.sock HEAPKEEPER_BINARY=/nonexistent/heapkeeper \
      HEAPKEEPER_REPORT="$W/held.json" run_case held preload wait
    touch "$W/held.exited"
    hk_wait "$held" || true
    named_case held "a service that keeps its connection open after answering: named report, status 0"

    # A service that takes the dump and closes the connection without answering, as one that
    # died or refused the dump does: the binary answers instead.
    "$HK_CHECK_PYTHON" - "$W/mute.sock" <<'PY' &
import socket, sys
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(1)
listener.settimeout(60)
client, _ = listener.accept()
while client.recv(65536):
    pass
client.close()
PY
    mute=$!
    for ((i = 0; i < 200; ++i)); do [[ -S $W/mute.sock ]] && break; sleep 0.05; done
    HEAPKEEPER_SYMBOLIZER_SOCKET=$W/mute.sock HEAPKEEPER_REPORT="$W/mute.json" run_case mute preload wait
    hk_wait "$mute" || true
    named_case mute "a service that closes without answering: the binary answers instead"

    # The binary's reader: a corrupt or truncated dump is one line and status 1.
    : >"$W/empty.dump"
    head -c 300 /dev/urandom >"$W/random.dump"
    printf 'KPHWDUMP\001\000\000\000\000\000\000\000\377\377\377\377\377\377\377\377' >"$W/truncated.dump"
    for dump in empty random truncated; do
      status=0
      "$HK_LAUNCHER" symbolize "$W/$dump.dump" >"$W/$dump.sym.out" 2>"$W/$dump.sym.err" || status=$?
      if [[ $status == 1 && ! -s $W/$dump.sym.out && $(wc -l <"$W/$dump.sym.err") == 1 ]] &&
        grep -q "heapkeeper: $W/$dump.dump: .*raw dump" "$W/$dump.sym.err"; then
        hk_pass "symbolize refuses the $dump dump: $(cat "$W/$dump.sym.err")"
      else
        hk_fail "symbolize on the $dump dump: status $status, stderr: $(head -3 "$W/$dump.sym.err")"
      fi
    done
    # A real dump read from a pipe (`symbolize <(zcat dump.gz)`): its reads wait for the writer;
    # they were non-blocking, and a writer that had not written yet was "Resource temporarily
    # unavailable". A JSON report given by mistake is one line that names `heapkeeper show`.
    printf '#!/bin/sh\ncat >"%s"\nexit 3\n' "$W/captured.dump" >"$W/capture" && chmod +x "$W/capture"
    HEAPKEEPER_BINARY=$W/capture HEAPKEEPER_REPORT="$W/captured.json" run_case captured preload wait
    status=0
    "$HK_LAUNCHER" symbolize <(sleep 0.2 && cat "$W/captured.dump") >"$W/piped.out" 2>"$W/piped.err" || status=$?
    if [[ $status != 0 || -s $W/piped.err ]] || ! grep -q '"leaks"' "$W/piped.out"; then
      hk_fail "symbolize <(dump from a pipe): status $status, stderr: $(head -3 "$W/piped.err")"
    else
      hk_pass "symbolize <(dump from a pipe): the JSON report"
    fi
    "$HK_LAUNCHER" symbolize "$W/piped.out" >/dev/null 2>"$W/json.sym.err" || true
    if [[ $(wc -l <"$W/json.sym.err") != 1 ]] || ! grep -q 'heapkeeper show' "$W/json.sym.err"; then
      hk_fail "symbolize on a JSON report: $(head -3 "$W/json.sym.err")"
    else
      hk_pass "symbolize on a JSON report: $(cat "$W/json.sym.err")"
    fi
    ;;

  unreachable)
    # The offset must fall inside leak_for_handoff as the file numbers it.
    read -r start size < <(nm -S "$program" | awk '$4 == "leak_for_handoff" {print $1, $2}')
    build_id=$(readelf -n "$program" | awk '/Build ID/ {print $3}')
    check_fallback() {
      local name=$1 why=$2 ok=1 offset
      quiet_program "$name" || ok=0
      [[ $(cat "$W/$name.status") == 0 ]] || { hk_fail "$name: status $(cat "$W/$name.status")"; ok=0; }
      if ! grep -qE "heapkeeper\[[0-9]+\]: .*$why.*; frames are given as module\+offset" "$W/$name.err"; then
        hk_fail "$name: no line saying why frames are not named ('$why')"
        ok=0
      fi
      offset=$(sed -nE "s|^ +#0 0x[0-9a-f]+ in \?\? $program\+0x([0-9a-f]+) \(BuildId: $build_id\)$|\1|p" "$W/$name.err")
      if [[ -z $offset ]] || ((16#$offset <= 16#$start || 16#$offset > 16#$start + 16#$size)); then
        hk_fail "$name: frame #0 is not module+offset inside leak_for_handoff (0x$start + 0x$size) with build-id $build_id:"
        head -12 "$W/$name.err" >&2
        ok=0
      fi
      grep -qF "$summary" "$W/$name.err" || { hk_fail "$name: no leak report"; ok=0; }
      grep -q 'SUMMARY: heapkeeper: 4321 byte(s) leaked in 1 allocation(s).' "$W/$name.err" ||
        { hk_fail "$name: no summary line"; ok=0; }
      ((ok)) && hk_pass "$name: module+offset frames (0x$offset in leak_for_handoff) and the build-id"
    }
    # The library copied where no ../bin/heapkeeper is.
    mkdir -p "$W/lib"
    cp "$HK_PRELOAD" "$W/lib/libheapkeeper.so"
    HK_PRELOAD=$W/lib/libheapkeeper.so HEAPKEEPER_REPORT="$W/moved.json" run_case moved preload wait
    check_fallback moved "the heapkeeper binary is not available \\($W/lib/../bin/heapkeeper\\)"
    if grep -qF "could not write the report to $W/moved.json: the heapkeeper binary is not available" "$W/moved.err"; then
      hk_pass "moved: the JSON report's absence is explained in one line"
    else
      hk_fail "moved: no line about the JSON report: $(grep 'heapkeeper\[' "$W/moved.err")"
    fi
    HEAPKEEPER_BINARY=/nonexistent/heapkeeper run_case named preload wait
    check_fallback named "the heapkeeper binary is not available \\(/nonexistent/heapkeeper\\)"
    printf '#!/bin/sh\nexit 3\n' >"$W/failing" && chmod +x "$W/failing"
    HEAPKEEPER_BINARY=$W/failing run_case failing preload wait
    check_fallback failing "the heapkeeper binary $W/failing failed \\(status 3\\)"
    printf '#!/bin/sh\ncat >/dev/null; echo nonsense\n' >"$W/nonsense" && chmod +x "$W/nonsense"
    HEAPKEEPER_BINARY=$W/nonsense run_case nonsense preload wait
    check_fallback nonsense "answer is not one"
    # One that writes without end: the program stops reading at once (under an address-space limit
    # here, so that a program reading on fails instead of filling the machine's memory), and the
    # writer goes with the hand-off's child.
    printf '#!/bin/sh\necho $$ >"%s"\nexec cat /dev/zero\n' "$W/endless.pid" >"$W/endless" && chmod +x "$W/endless"
    (ulimit -v 4000000 && HEAPKEEPER_BINARY=$W/endless run_case endless preload wait)
    check_fallback endless "answer is not one \\([0-9]+ bytes and more\\)"
    writer=$(cat "$W/endless.pid" 2>/dev/null || echo 0)
    for ((i = 0; i < 200; ++i)); do ((writer != 0)) && kill -0 "$writer" 2>/dev/null || break; sleep 0.05; done
    if ((writer == 0)) || kill -0 "$writer" 2>/dev/null; then
      hk_fail "endless: the writer ($writer) was not started, or outlived the program"
      ((writer == 0)) || kill -KILL "$writer"
    else
      hk_pass "endless: the writer is gone with the program"
    fi
    ;;

  many)
    # HEAPKEEPER_MODE=off: no exit scan, so each process costs little but its JSON report, whose
    # live site (the block leak_for_handoff made) must be named all the same.
    many_reports() {  # NAME PROCESSES: every JSON report of the program names leak_for_handoff
      "$HK_CHECK_PYTHON" - "$W/$1" "$2" <<'PY'
import glob, json, os, sys
directory, expected = sys.argv[1], int(sys.argv[2])
named = 0
for path in glob.glob(os.path.join(directory, "r.*.json")):
    r = json.load(open(path))
    if "report_handoff" not in r["program"]:
        continue
    if any(f["function"] == "leak_for_handoff" and f.get("line", 0) > 0 for s in r["live_sites"] for f in s["stack"]):
        named += 1
if named != expected:
    sys.exit(f"{named} of the program's reports name leak_for_handoff, expected {expected}")
PY
    }
    # reads NAME: the module files the symbolizer read, and those read more than once.
    reads() { grep -c '^heapkeeper: symbolizer: reading ' "$W/$1.err" || true; }
    repeats() { grep '^heapkeeper: symbolizer: reading ' "$W/$1.err" | sort | uniq -d; }

    mkdir -p "$W/run"
    status=0
    HEAPKEEPER_MODE=off HEAPKEEPER_SYMBOLIZER_LOG=1 HEAPKEEPER_REPORT="$W/run/r.%p.json" timeout -k 5 "$(hk_limit)" \
      "$HK_LAUNCHER" run -- bash -c 'for ((i = 0; i < 200; ++i)); do "$0"; done' "$program" \
      >"$W/run.out" 2>"$W/run.err" || status=$?
    if [[ $status == 0 ]] && message=$(many_reports run 200 2>&1) && (($(reads run) > 0)) && [[ -z $(repeats run) ]]; then
      hk_pass "200 processes under one run: 200 named reports, $(reads run) module files read, each once"
    else
      hk_fail "200 processes under one run: status $status; ${message:-}; $(reads run) module reads;" \
        "read more than once: $(repeats run | tr '\n' ' ')"
      grep -v '^heapkeeper: symbolizer' "$W/run.err" | head -10 >&2
    fi

    # preload_case NAME PROCESSES WHAT SCRIPT: runs `bash -c SCRIPT PROGRAM LIBRARY` with plain
    # LD_PRELOAD in a runtime directory of its own (so no other test's service answers; short, as
    # a socket's path is at most 107 bytes) and checks every report named, each module read once.
    preload_case() {
      local name=$1 processes=$2 what=$3 script=$4 runtime
      runtime=$(mktemp -d /tmp/hk-runtime.XXXXXX)
      mkdir -p "$W/$name"
      status=0
      XDG_RUNTIME_DIR=$runtime HEAPKEEPER_MODE=off HEAPKEEPER_SYMBOLIZER_LOG=1 HEAPKEEPER_REPORT="$W/$name/r.%p.json" \
        timeout -k 5 "$(hk_limit)" bash -c "$script" "$program" "$HK_PRELOAD" >"$W/$name.out" 2>"$W/$name.err" ||
        status=$?
      rm -rf "$runtime" # the service, idle, ends by itself
      if [[ $status == 0 ]] && message=$(many_reports "$name" "$processes" 2>&1) && (($(reads "$name") > 0)) &&
        [[ -z $(repeats "$name") ]]; then
        hk_pass "$what: $processes named reports, $(reads "$name") module files read, each once"
      else
        hk_fail "$what: status $status; ${message:-}; $(reads "$name") module reads;" \
          "read more than once: $(repeats "$name" | tr '\n' ' ')"
        grep -v '^heapkeeper: symbolizer' "$W/$name.err" | head -10 >&2
      fi
    }
    # Without a run: the first process starts the binary, which stays as the user's service for the
    # others.
    preload_case user 50 "50 processes with LD_PRELOAD" 'export LD_PRELOAD=$1; for ((i = 0; i < 50; ++i)); do "$0"; done'
    # Eight at a time with no service yet (a parallel build's first jobs): each process that finds
    # none starts a binary, and the first binary's claim on the service's name makes the others pass
    # their dumps to it: the modules are read once, not once a binary.
    preload_case parallel 48 "48 processes, 8 at a time, with LD_PRELOAD" 'seq 48 | LD_PRELOAD=$1 xargs -P 8 -n 1 "$0"'

    # A runtime directory the binary will not serve in (not 0700, as another user's inherited
    # through `sudo -E` is not ours): the user's service lives in /tmp/heapkeeper-UID instead,
    # where one of this binary may already answer (another test's): no module is read twice.
    runtime=$(mktemp -d /tmp/hk-runtime.XXXXXX)
    chmod 755 "$runtime"
    mkdir -p "$W/open"
    status=0
    XDG_RUNTIME_DIR=$runtime HEAPKEEPER_MODE=off HEAPKEEPER_SYMBOLIZER_LOG=1 HEAPKEEPER_REPORT="$W/open/r.%p.json" \
      timeout -k 5 "$(hk_limit)" bash -c 'export LD_PRELOAD=$1; for ((i = 0; i < 10; ++i)); do "$0"; done' \
      "$program" "$HK_PRELOAD" >"$W/open.out" 2>"$W/open.err" || status=$?
    rm -rf "$runtime"
    if [[ $status == 0 ]] && message=$(many_reports open 10 2>&1) && [[ -z $(repeats open) ]]; then
      hk_pass "a runtime directory not 0700: the user's service answered from /tmp, no module read twice"
    else
      hk_fail "a runtime directory not 0700, LD_PRELOAD: status $status; ${message:-};" \
        "read more than once: $(repeats open | tr '\n' ' ')"
    fi

    # A runtime directory whose path leaves no room for a socket's name (107 bytes at most).
    runtime=$(mktemp -d "/tmp/hk-runtime-$(printf '%080d' 0).XXXXXX")
    mkdir -p "$W/long-run" "$W/long-user"
    status=0
    XDG_RUNTIME_DIR=$runtime HEAPKEEPER_MODE=off HEAPKEEPER_SYMBOLIZER_LOG=1 HEAPKEEPER_REPORT="$W/long-run/r.%p.json" \
      timeout -k 5 "$(hk_limit)" "$HK_LAUNCHER" run -- bash -c 'for ((i = 0; i < 10; ++i)); do "$0"; done' "$program" \
      >"$W/long-run.out" 2>"$W/long-run.err" || status=$?
    if [[ $status == 0 ]] && message=$(many_reports long-run 10 2>&1) && (($(reads long-run) > 0)) &&
      [[ -z $(repeats long-run) ]]; then
      hk_pass "a runtime directory too long for a socket: the run's service read each module once"
    else
      hk_fail "a runtime directory too long for a socket, under a run: status $status; ${message:-};" \
        "$(reads long-run) module reads; read more than once: $(repeats long-run | tr '\n' ' ')"
    fi
    # The user's service then lives in /tmp/heapkeeper-UID, where one of this binary may already
    # answer (another test's): no module is read twice, whoever reads it.
    status=0
    XDG_RUNTIME_DIR=$runtime HEAPKEEPER_MODE=off HEAPKEEPER_SYMBOLIZER_LOG=1 HEAPKEEPER_REPORT="$W/long-user/r.%p.json" \
      timeout -k 5 "$(hk_limit)" bash -c 'export LD_PRELOAD=$1; for ((i = 0; i < 10; ++i)); do "$0"; done' \
      "$program" "$HK_PRELOAD" >"$W/long-user.out" 2>"$W/long-user.err" || status=$?
    rm -rf "$runtime"
    if [[ $status == 0 ]] && message=$(many_reports long-user 10 2>&1) && [[ -z $(repeats long-user) ]]; then
      hk_pass "a runtime directory too long for a socket: the user's service answered, no module read twice"
    else
      hk_fail "a runtime directory too long for a socket, LD_PRELOAD: status $status; ${message:-};" \
        "read more than once: $(repeats long-user | tr '\n' ' ')"
    fi
    ;;
  closed)
    # One program alone, with its own runtime directory (no service to answer it): the library's
    # memfd and pipe take the closed numbers, and the binary must get them as its stdin and stdout.
    for closed in stdin stdout both; do
      closing "$closed"
      runtime=$(mktemp -d /tmp/hk-runtime.XXXXXX)
      status=0
      XDG_RUNTIME_DIR=$runtime HEAPKEEPER_REPORT="$W/closed.$closed.json" timeout -k 5 "$(hk_limit)" \
        "${redirect[@]}" env LD_PRELOAD="$HK_PRELOAD" "$program" >"$W/closed.$closed.out" 2>"$W/closed.$closed.err" ||
        status=$?
      rm -rf "$runtime"
      ok=1
      [[ $status == 0 ]] || { hk_fail "$closed closed: status $status"; ok=0; }
      if grep -q 'heapkeeper\[' "$W/closed.$closed.err"; then
        hk_fail "$closed closed: $(grep 'heapkeeper\[' "$W/closed.$closed.err" | head -2)"
        ok=0
      fi
      if [[ ! -s $W/closed.$closed.json ]]; then
        hk_fail "$closed closed: no JSON report"
        ok=0
      else
        hk_json_check "$W/closed.$closed.json" \
          'any(f["function"] == "leak_for_handoff" for s in r["live_sites"] for f in s["stack"])' \
          "$closed closed: the JSON report names the live block's function" || ok=0
      fi
      ((ok)) && hk_pass "standard $closed closed: the binary answered, the report is named"
    done

    # The user's service holds no directory of the program's: it would keep a mount busy (umount:
    # target is busy) for the seconds it stays.
    runtime=$(mktemp -d /tmp/hk-runtime.XXXXXX)
    mkdir -p "$W/cwd"
    (cd "$W/cwd" && XDG_RUNTIME_DIR=$runtime HEAPKEEPER_REPORT="$W/cwd.json" hk_exec preload "$program") >/dev/null 2>&1 ||
      true
    service=$(pgrep -f "symbolize --answer --serve $runtime/" | head -1 || true)
    for ((i = 0; i < 200; ++i)); do
      [[ -n $service && $(readlink "/proc/$service/cwd" 2>/dev/null) == "$W/cwd" ]] || break
      sleep 0.05
    done
    where=$(readlink "/proc/$service/cwd" 2>/dev/null || echo gone)
    rm -rf "$runtime"
    if [[ -z $service ]]; then
      hk_fail "no user's service found for $runtime"
    elif [[ $where != / ]]; then
      hk_fail "the user's service held the program's directory as its own (then: $where)"
    else
      hk_pass "the user's service holds no directory of the program's (its directory: /)"
    fi

    # The run's service made while a standard descriptor of the run is closed: its listener and its
    # pidfd must not take the numbers the service points at /dev/null.
    for closed in stdin stdout stderr; do
      closing "$closed"
      runtime=$(mktemp -d /tmp/hk-runtime.XXXXXX)
      mkdir -p "$W/run.$closed"
      status=0
      XDG_RUNTIME_DIR=$runtime HEAPKEEPER_MODE=off HEAPKEEPER_REPORT="$W/run.$closed/r.%p.json" \
        timeout -k 5 "$(hk_limit)" "${redirect[@]}" "$HK_LAUNCHER" run -- \
        bash -c 'for ((i = 0; i < 5; ++i)); do "$0" </dev/null >/dev/null 2>&1; done' "$program" \
        >"$W/run.$closed.out" 2>"$W/run.$closed.err" || status=$?
      # A process that found no service started the binary, which left the user's service here.
      started=$(find "$runtime" -maxdepth 1 -name 'heapkeeper-symbolizer.*' | wc -l)
      rm -rf "$runtime"
      ok=1
      [[ $status == 0 ]] || { hk_fail "run, $closed closed: status $status"; ok=0; }
      message=$("$HK_CHECK_PYTHON" - "$W/run.$closed" <<'PY' 2>&1
import glob, json, os, sys
named = 0
for path in glob.glob(os.path.join(sys.argv[1], "r.*.json")):
    r = json.load(open(path))
    if "report_handoff" in r["program"] and any(
            f["function"] == "leak_for_handoff" for s in r["live_sites"] for f in s["stack"]):
        named += 1
if named != 5:
    sys.exit(f"{named} of the program's 5 reports name leak_for_handoff")
PY
) || { hk_fail "run, $closed closed: $message"; ok=0; }
      ((started == 0)) || { hk_fail "run, $closed closed: a process found no run's service and started the binary"; ok=0; }
      ((ok)) && hk_pass "heapkeeper run with $closed closed: the run's service answered all 5 processes"
    done
    ;;
  hostile)
    if ((EUID != 0)); then
      echo "SKIP: needs root to listen as a second user"
      trap - EXIT
      rm -rf "$W"
      exit 77
    fi
    # hostile_listener PATH: a listener of uid 65534 whose backlog is full, bound in a directory of
    # that user and moved to PATH; it stops listening once $place/done exists (ended).
    hostile_listener() {
      place=$(mktemp -d /tmp/hk-hostile.XXXXXX)
      chown 65534:65534 "$place"
      "$HK_CHECK_PYTHON" - "$place" <<'PY' &
import os, socket, sys, time
place = sys.argv[1]
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
listener = socket.socket(socket.AF_UNIX)
listener.bind(os.path.join(place, "socket"))
listener.listen(0)
filler = socket.socket(socket.AF_UNIX)
filler.connect(os.path.join(place, "socket"))  # the backlog holds one connection: it is full now
open(os.path.join(place, "ready"), "w").close()
for _ in range(1200):
    if os.path.exists(os.path.join(place, "done")):
        break
    time.sleep(0.05)
PY
      hostile=$!
      for ((i = 0; i < 200; ++i)); do [[ -e $place/ready ]] && break; sleep 0.05; done
      mv "$place/socket" "$1"
    }
    ended() {
      touch "$place/done"
      hk_wait "$hostile" || true
      rm -rf "$place"
    }

    hostile_listener "$W/run.sock"
    HEAPKEEPER_SYMBOLIZER_SOCKET=$W/run.sock HEAPKEEPER_REPORT="$W/run.json" run_case run preload wait
    ended
    ok=1
    [[ $(cat "$W/run.status") == 0 ]] || { hk_fail "run's socket: status $(cat "$W/run.status")"; ok=0; }
    grep -qE "$named" "$W/run.err" || { hk_fail "run's socket: no named leak report: $(head -3 "$W/run.err")"; ok=0; }
    ((ok)) && hk_pass "another user's listener at the run's socket path: the binary answered, status 0"

    # The user's service's path: learnt from the service a first process leaves, whose socket is
    # then taken away (nameless, it idles out) and replaced by the other user's listener.
    runtime=$(mktemp -d /tmp/hk-runtime.XXXXXX)
    XDG_RUNTIME_DIR=$runtime run_case first preload
    service=$(find "$runtime" -maxdepth 1 -name 'heapkeeper-symbolizer.*' | head -1)
    if [[ -z $service ]]; then
      hk_fail "no user's service was left in $runtime"
    else
      rm -f "$service"
      hostile_listener "$service"
      XDG_RUNTIME_DIR=$runtime HEAPKEEPER_REPORT="$W/user.json" run_case user preload wait
      ended
      ok=1
      [[ $(cat "$W/user.status") == 0 ]] || { hk_fail "user's service: status $(cat "$W/user.status")"; ok=0; }
      grep -qE "$named" "$W/user.err" || { hk_fail "user's service: no named leak report: $(head -3 "$W/user.err")"; ok=0; }
      [[ -S $service && $(stat -c %u "$service") == 0 ]] ||
        { hk_fail "user's service: the other user's socket was not replaced by one of ours"; ok=0; }
      ((ok)) && hk_pass "another user's listener at the user's service's path: named report, replaced by our service"
    fi
    rm -rf "$runtime"
    ;;
  threads)
    if ((EUID != 0)); then
      echo "SKIP: needs root to run as a second user and lower its service's limits"
      trap - EXIT
      rm -rf "$W"
      exit 77
    fi
    place=$(mktemp -d /tmp/hk-threads.XXXXXX)
    mkdir "$place/runtime" "$place/reports"
    chmod 700 "$place/runtime"
    chown -R 65532:65532 "$place"
    # The program says it runs (the launcher has exec'd it, so the only process of that user still
    # running the launcher is its service), then waits for "go" on a FIFO (with bash's own read: a
    # traced `sleep` would be a client) before its 8 processes, at once. Until then the service has
    # had no client and has one worker: the first client makes it want another.
    mkfifo "$place/go"
    chown 65532:65532 "$place/go"
    setpriv --reuid=65532 --regid=65532 --clear-groups env XDG_RUNTIME_DIR="$place/runtime" HEAPKEEPER_MODE=off \
      HEAPKEEPER_REPORT="$place/reports/r.%p.json" timeout -k 5 "$(hk_limit)" "$HK_LAUNCHER" run -- bash -c \
      'exec 3<>"$1/go"; : >"$1/ready"; read -r -t 60 -u 3 _
       for ((i = 0; i < 8; ++i)); do "$0" & done; wait' "$program" "$place" >"$W/threads.out" 2>"$W/threads.err" &
    job=$!
    for ((i = 0; i < 600; ++i)); do [[ -e $place/ready ]] && break; sleep 0.05; done
    service=$(pgrep -u 65532 -f "^$HK_LAUNCHER run -- bash -c" | head -1 || true)
    # Its first worker made (the second thread), the limit is set.
    for ((i = 0; i < 600; ++i)); do
      [[ -n $service && $(find "/proc/$service/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) -lt 2 ]] || break
      sleep 0.05
    done
    ok=1
    # As that user: lowering one's own limits needs no privilege (root here may lack CAP_SYS_RESOURCE).
    if [[ -z $service ]] ||
      ! setpriv --reuid=65532 --regid=65532 --clear-groups prlimit --pid "$service" --nproc=1:1; then
      hk_fail "threads: no run's service found to limit"
      ok=0
    fi
    echo go >"$place/go"
    status=0
    hk_wait "$job" || status=$?
    [[ $status == 0 ]] || { hk_fail "threads: status $status: $(head -3 "$W/threads.err")"; ok=0; }
    named=$("$HK_CHECK_PYTHON" - "$place/reports" <<'PY'
import glob, json, os, sys
print(sum(1 for path in glob.glob(os.path.join(sys.argv[1], "r.*.json"))
          for r in [json.load(open(path))] if "report_handoff" in r["program"] and any(
              f["function"] == "leak_for_handoff" for s in r["live_sites"] for f in s["stack"])))
PY
)
    ((named == 8)) || { hk_fail "threads: $named of 8 reports name leak_for_handoff"; ok=0; }
    # A process that found no run's service started the binary, which left the user's service here.
    if [[ -n $(find "$place/runtime" -maxdepth 1 -name 'heapkeeper-symbolizer.*') ]]; then
      hk_fail "threads: a process found no run's service (it had ended?) and started the binary"
      ok=0
    fi
    rm -rf "$place"
    ((ok)) && hk_pass "a run's service that can make no thread answered all 8 processes"
    ;;
  init)
    if ((EUID != 0)) || ! unshare --pid --fork --mount-proc --kill-child true 2>/dev/null; then
      echo "SKIP: needs root and unshare to make a pid namespace"
      trap - EXIT
      rm -rf "$W"
      exit 77
    fi
    for mode in preload launcher; do
      runtime=$(mktemp -d /tmp/hk-runtime.XXXXXX)
      status=0
      case $mode in
        preload) XDG_RUNTIME_DIR=$runtime timeout -k 5 "$(hk_limit)" unshare --pid --fork --mount-proc --kill-child \
          env LD_PRELOAD="$HK_PRELOAD" "$program" api "$W/init.$mode.json" >"$W/init.$mode.out" 2>"$W/init.$mode.err" ||
          status=$? ;;
        launcher) XDG_RUNTIME_DIR=$runtime timeout -k 5 "$(hk_limit)" unshare --pid --fork --mount-proc --kill-child \
          "$HK_LAUNCHER" run -- "$program" api "$W/init.$mode.json" >"$W/init.$mode.out" 2>"$W/init.$mode.err" ||
          status=$? ;;
      esac
      rm -rf "$runtime"
      ok=1
      [[ $status == 0 ]] || { hk_fail "init, $mode: status $status"; ok=0; }
      grep -q '^write_report: 0$' "$W/init.$mode.out" || { hk_fail "init, $mode: $(head -1 "$W/init.$mode.out")"; ok=0; }
      grep -q '^children: none$' "$W/init.$mode.out" ||
        { hk_fail "init, $mode: pid 1 has a child it never made ($(grep children "$W/init.$mode.out"))"; ok=0; }
      hk_json_check "$W/init.$mode.json" \
        'any(f["function"] == "leak_for_handoff" for l in r["live_sites"] for f in l["stack"])' \
        "init, $mode: the report names the live block's function" || ok=0
      ((ok)) && hk_pass "pid 1 of a namespace, $mode: named report, no child of heapkeeper's"
    done
    ;;
  killed)
    # The "binary" says it has started (its pid: it execs sleep) and never answers.
    printf '#!/bin/sh\necho $$ >"%s"\nexec sleep 600\n' "$W/binary.pid" >"$W/hanging" && chmod +x "$W/hanging"
    mkfifo "$W/output"
    cat "$W/output" >"$W/output.copy" &
    reader=$!
    HEAPKEEPER_BINARY=$W/hanging bash -c 'export LD_PRELOAD=$0; exec "$@"' "$HK_PRELOAD" "$program" \
      >"$W/output" 2>"$W/killed.err" &
    traced=$!
    for ((i = 0; i < 600; ++i)); do [[ -s $W/binary.pid ]] && break; sleep 0.05; done
    binary=$(cat "$W/binary.pid" 2>/dev/null || echo 0)
    kill -TERM "$traced"
    hk_wait "$traced" || true
    ok=1
    ((binary != 0)) || { hk_fail "the hanging binary was never started: $(head -3 "$W/killed.err")"; ok=0; }
    status=0
    hk_wait "$reader" || status=$?
    ((status == 0)) || { hk_fail "the program's output pipe stayed open after it was killed"; ok=0; }
    for ((i = 0; i < 200; ++i)); do kill -0 "$binary" 2>/dev/null || break; sleep 0.05; done
    if ((binary != 0)) && kill -0 "$binary" 2>/dev/null; then
      hk_fail "the binary outlived the killed program: $(ps -o pid,ppid,args -p "$binary" | tail -1)"
      kill -KILL "$binary"
      ok=0
    fi
    ((ok)) && hk_pass "killed while waiting for the binary: its output ends, the binary goes with it"

    # A binary killed between binding its socket under `<service>.<pid>` and linking it to the
    # service's name leaves that file: the next binary to claim the name removes it once the pid
    # is gone, and leaves one whose process lives (a claim in progress).
    runtime=$(mktemp -d /tmp/hk-runtime.XXXXXX)
    XDG_RUNTIME_DIR=$runtime run_case claim-first preload
    service=$(find "$runtime" -maxdepth 1 -name 'heapkeeper-symbolizer.*' ! -name '*.*.*' | head -1)
    if [[ -z $service ]]; then
      hk_fail "no user's service was left in $runtime"
    else
      rm -f "$service"  # nameless, that service idles out: the next exit claims the name anew
      gone=$(sh -c 'echo $$')
      for pid in "$gone" "$$"; do
        python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$service.$pid"
      done
      XDG_RUNTIME_DIR=$runtime HEAPKEEPER_REPORT="$W/claim.json" run_case claim preload wait
      ok=1
      grep -qE "$named" "$W/claim.err" || { hk_fail "claim: no named leak report: $(head -3 "$W/claim.err")"; ok=0; }
      [[ -S $service ]] || { hk_fail "claim: no service took the name"; ok=0; }
      [[ ! -e $service.$gone ]] || { hk_fail "claim: the socket of dead pid $gone stayed"; ok=0; }
      [[ -S $service.$$ ]] || { hk_fail "claim: the socket of live pid $$ was removed"; ok=0; }
      ((ok)) && hk_pass "a killed claim's socket goes at the next claim, a live one's stays"
    fi
    rm -rf "$runtime"
    ;;
  *)
    echo "unknown part $part" >&2
    exit 2
    ;;
esac
hk_finish

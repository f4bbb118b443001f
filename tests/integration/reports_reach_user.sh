#!/usr/bin/env bash
# Reports reach the user. (1) sort and tar close stderr in their own exit handlers, before
# heapkeeper's: the leak report must still arrive on the stderr the program started with (a
# private duplicate), and HEAPKEEPER_LOG_PATH (%p = pid) sends it to a file instead; a bad
# LOG_PATH is one warning line. (2) A relative HEAPKEEPER_REPORT is resolved where the program
# started, not where it exits (git -C). (3) `heapkeeper run` says in one line why a static or
# setuid/setgid binary cannot be tracked, runs it anyway and passes its status through.
source "$(dirname "$0")/lib.sh"

hk_require sort tar
leaker=$(hk_program leak_at_start)  # a preloaded module that leaks one 4242-byte block at start
both=$HK_PRELOAD:$leaker
# (sort has a 16-byte leak of its own; the helper's block is the one every program shares)
summary='Direct leak of 4242 byte(s) in 1 object(s) allocated from:'

# --- (1) the leak report after the program closed fd 2.
printf 'pear\napple\n' >"$HK_WORK/fruit"
status=0
timeout 60 env LD_PRELOAD="$both" sort "$HK_WORK/fruit" >"$HK_WORK/sort.out" 2>"$HK_WORK/sort.err" || status=$?
if [[ $status != 0 || $(cat "$HK_WORK/sort.out") != $'apple\npear' ]]; then
  hk_fail "sort: status $status, output $(head -2 "$HK_WORK/sort.out" | tr '\n' ' ')"
elif ! grep -qF "$summary" "$HK_WORK/sort.err" || ! grep -q 'in hk_leak_at_start' "$HK_WORK/sort.err"; then
  hk_fail "sort closed stderr at exit and the leak report was lost: stderr holds $(wc -l <"$HK_WORK/sort.err") line(s)"
else
  hk_pass "sort: the leak report reached the original stderr after sort closed fd 2"
fi
status=0
(cd "$HK_WORK" && timeout 60 env LD_PRELOAD="$both" tar cf - fruit) >"$HK_WORK/tar.out" 2>"$HK_WORK/tar.err" || status=$?
if [[ $status != 0 ]] || ! tar tf "$HK_WORK/tar.out" | grep -qx fruit; then
  hk_fail "tar: status $status or a broken archive"
elif ! grep -qF "$summary" "$HK_WORK/tar.err"; then
  hk_fail "tar closed stderr at exit and the leak report was lost: stderr holds $(wc -l <"$HK_WORK/tar.err") line(s)"
else
  hk_pass "tar: the leak report reached the original stderr after tar closed fd 2"
fi
if command -v dc >/dev/null 2>&1; then
  status=0
  echo '2 3 + p' | timeout 60 env LD_PRELOAD="$both" dc >"$HK_WORK/dc.out" 2>"$HK_WORK/dc.err" || status=$?
  if [[ $status != 0 || $(cat "$HK_WORK/dc.out") != 5 ]] || ! grep -qF "$summary" "$HK_WORK/dc.err"; then
    hk_fail "dc: status $status, output $(cat "$HK_WORK/dc.out"), report on stderr: $(grep -c SUMMARY "$HK_WORK/dc.err")"
  else
    hk_pass "dc: the leak report reached the original stderr"
  fi
fi
# The duplicate is close-on-exec and out of the program's way: a child exec'd by the program sees
# only the descriptors it would see without heapkeeper.
plain_fds=$(bash -c 'ls /proc/self/fd | sort -n | tr "\n" " "' 2>/dev/null)
traced_fds=$(LD_PRELOAD=$HK_PRELOAD bash -c 'unset LD_PRELOAD; ls /proc/self/fd | sort -n | tr "\n" " "' 2>/dev/null)
if [[ $plain_fds != "$traced_fds" ]]; then
  hk_fail "a child of a traced shell sees other descriptors: '$traced_fds' instead of '$plain_fds'"
else
  hk_pass "a child of a traced shell sees the same descriptors ($plain_fds)"
fi

# A forked child (no exec) lets the duplicate go: a daemon that puts /dev/null on 0-2 must not
# keep its parent's stderr open, or `x=$(prog 2>&1)` and subprocess.run(capture_output=True) wait
# for the daemon's end (dbus-daemon --fork did, for ever). A child that keeps the start-up stderr
# still reports there; one that put a file of its own on fd 2 finds nothing of heapkeeper's in it.
if command -v python3 >/dev/null 2>&1; then
  status=0
  LD_PRELOAD=$both timeout 60 python3 -c '
import os, sys
stderr_file = os.readlink("/proc/self/fd/2")
child = os.fork()
if child == 0:
    null = os.open("/dev/null", os.O_RDWR)
    for number in (0, 1, 2):
        os.dup2(null, number)
    held = [n for n in os.listdir("/proc/self/fd") if os.path.realpath("/proc/self/fd/" + n) == stderr_file]
    with open(sys.argv[1], "w") as out:
        out.write(" ".join(held))
    os._exit(0)
os.waitpid(child, 0)
kept = os.fork()
if kept == 0:
    sys.exit(0)  # a normal exit: the exit report, on the stderr it started with
os.waitpid(kept, 0)
print(kept)
own = os.fork()
if own == 0:
    os.dup2(os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
    sys.exit(0)
os.waitpid(own, 0)
' "$HK_WORK/daemon-held" "$HK_WORK/child-own-stderr" >"$HK_WORK/daemon.out" 2>"$HK_WORK/daemon.err" || status=$?
  kept_pid=$(cat "$HK_WORK/daemon.out")
  if [[ $status != 0 || ! -e $HK_WORK/daemon-held ]]; then
    hk_fail "forked children: status $status"
  elif [[ -s $HK_WORK/daemon-held ]]; then
    hk_fail "a daemonized child still holds its parent's stderr on descriptor(s) $(cat "$HK_WORK/daemon-held")"
  elif ! grep -q "^==$kept_pid==ERROR: heapkeeper" "$HK_WORK/daemon.err"; then
    hk_fail "a forked child that kept its stderr: its report (pid $kept_pid) is not there: $(grep -c ERROR "$HK_WORK/daemon.err") report(s)"
  elif [[ -s $HK_WORK/child-own-stderr ]]; then
    hk_fail "a forked child's own file on fd 2 got heapkeeper's lines: $(head -2 "$HK_WORK/child-own-stderr")"
  else
    hk_pass "forked children: a daemon holds no copy of stderr, a child's report reaches the start-up stderr, none goes into a child's own file"
  fi
fi

# A program that closes every descriptor but 0-2 and puts a file of its own on each high number
# (where the duplicate lived) gets nothing of heapkeeper's in that file: the report goes to fd 2.
if command -v python3 >/dev/null 2>&1; then
  status=0
  LD_PRELOAD=$both timeout 60 python3 -c '
import os, sys
os.closerange(3, 4096)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for number in range(fd + 1, 1024):
    os.dup2(fd, number, inheritable=False)
' "$HK_WORK/program-file" >/dev/null 2>"$HK_WORK/closed.err" || status=$?
  if [[ $status != 0 || -s $HK_WORK/program-file ]]; then
    hk_fail "a program that reuses the high descriptors: status $status, its file holds $(wc -c <"$HK_WORK/program-file") byte(s)"
  elif ! grep -qF "$summary" "$HK_WORK/closed.err"; then
    hk_fail "a program that reuses the high descriptors: the report did not reach fd 2: $(head -3 "$HK_WORK/closed.err")"
  else
    hk_pass "a program that reuses the high descriptors: its file stays empty, the report is on fd 2"
  fi
fi

# A program that holds every descriptor its limit allows leaves the exit scan none to read the
# maps file with: one line that says so, not "is /proc mounted?" (which it said before).
# (Debian's python3 itself, not a wrapper script such as pyenv's shims, whose own processes report)
if [[ -x /usr/bin/python3 ]]; then
  status=0
  (ulimit -n 64 && LD_PRELOAD=$HK_PRELOAD timeout 60 /usr/bin/python3 -c '
import os
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    print("full")
') >"$HK_WORK/nofile.out" 2>"$HK_WORK/nofile.err" || status=$?
  if [[ $status != 0 || $(cat "$HK_WORK/nofile.out") != full ]]; then
    hk_fail "a program holding every descriptor: status $status, output $(cat "$HK_WORK/nofile.out")"
  elif [[ $(grep -c . "$HK_WORK/nofile.err") != 1 ]] ||
    ! grep -q 'leak scan at exit skipped: .*holds every descriptor its RLIMIT_NOFILE allows' "$HK_WORK/nofile.err"; then
    hk_fail "a program holding every descriptor: expected one line naming the descriptor limit, got: $(head -3 "$HK_WORK/nofile.err")"
  else
    hk_pass "a program holding every descriptor: $(cat "$HK_WORK/nofile.err")"
  fi
fi

# The same with scans every 50 ms, twice for a second with a second between: every scan then
# fails on the maps file, and each said so (40 lines). A failure is said once, and again only after
# a scan that ran (as three timed-out scans in a row are said once): one line for each second held,
# or one in all if no scan ran between them on a loaded machine.
if [[ -x /usr/bin/python3 ]]; then
  status=0
  (ulimit -n 64 && HEAPKEEPER_SCAN_INTERVAL=50ms LD_PRELOAD=$HK_PRELOAD timeout 60 /usr/bin/python3 -c '
import os, time
time.sleep(0.3)
for phase in range(2):
    held = []
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    time.sleep(1)
    for fd in held:
        os.close(fd)
    time.sleep(1)
print("done")
') >"$HK_WORK/nofile_periodic.out" 2>"$HK_WORK/nofile_periodic.err" || status=$?
  said=$(grep -c 'periodic leak scan skipped: .*holds every descriptor its RLIMIT_NOFILE allows' \
    "$HK_WORK/nofile_periodic.err" || true)
  if [[ $status != 0 || $(cat "$HK_WORK/nofile_periodic.out") != done ]]; then
    hk_fail "periodic scans while a program holds every descriptor: status $status, output $(cat "$HK_WORK/nofile_periodic.out")"
  elif ((said < 1 || said > 2)); then
    hk_fail "periodic scans while a program holds every descriptor: $said skipped-scan lines, expected 1 or 2: $(head -3 \
      "$HK_WORK/nofile_periodic.err")"
  else
    hk_pass "periodic scans while a program holds every descriptor: $said line(s) for two seconds of failing scans"
  fi
fi

# --- HEAPKEEPER_LOG_PATH with %p: the report goes to log.<pid>, nothing to stderr.
mkdir -p "$HK_WORK/logs"
status=0
HEAPKEEPER_LOG_PATH=$HK_WORK/logs/log.%p timeout 60 env LD_PRELOAD="$both" sort "$HK_WORK/fruit" \
  >/dev/null 2>"$HK_WORK/log.err" || status=$?
mapfile -t logs < <(find "$HK_WORK/logs" -name 'log.*')
if [[ $status != 0 || ${#logs[@]} != 1 ]]; then
  hk_fail "HEAPKEEPER_LOG_PATH: status $status, ${#logs[@]} log file(s): ${logs[*]}"
elif [[ -s $HK_WORK/log.err ]]; then
  hk_fail "HEAPKEEPER_LOG_PATH: stderr is not empty: $(head -3 "$HK_WORK/log.err")"
elif ! grep -qF "$summary" "${logs[0]}" || ! grep -q "^==${logs[0]##*.}==ERROR: heapkeeper" "${logs[0]}"; then
  hk_fail "HEAPKEEPER_LOG_PATH: ${logs[0]} does not hold the report of pid ${logs[0]##*.}"
else
  hk_pass "HEAPKEEPER_LOG_PATH: the report is in $(basename "${logs[0]}"), the file of its pid"
fi
# A forked child (a bash subshell, no exec) reports into a file of its own pid, not its parent's,
# even when the parent had its log open before the fork (a periodic scan's "new leaks" line).
mkdir -p "$HK_WORK/forklogs"
status=0
HEAPKEEPER_QUIET=0 HEAPKEEPER_SCAN_INTERVAL=100ms HEAPKEEPER_LOG_PATH=$HK_WORK/forklogs/log.%p LD_PRELOAD=$both \
  timeout 60 bash -c 'sleep 0.5; ( echo in-the-subshell >/dev/null; true ); echo in-the-parent >/dev/null; true' \
  >/dev/null 2>"$HK_WORK/forklog.err" || status=$?
mapfile -t logs < <(find "$HK_WORK/forklogs" -name 'log.*')
wrong=()
for log in "${logs[@]}"; do
  grep -q "^==${log##*.}==ERROR: heapkeeper" "$log" && [[ $(grep -c '==ERROR: heapkeeper' "$log") == 1 ]] || wrong+=("$log")
done
if [[ $status != 0 || ${#logs[@]} -lt 2 || ${#wrong[@]} != 0 || -s $HK_WORK/forklog.err ]]; then
  hk_fail "HEAPKEEPER_LOG_PATH across fork: status $status, ${#logs[@]} log(s), not their own pid's: ${wrong[*]:-none}"
else
  hk_pass "HEAPKEEPER_LOG_PATH across fork: ${#logs[@]} logs, each holding only its own pid's report"
fi
status=0
HEAPKEEPER_LOG_PATH=$HK_WORK/no-such-dir/log timeout 60 env LD_PRELOAD="$both" sort "$HK_WORK/fruit" \
  >/dev/null 2>"$HK_WORK/badlog.err" || status=$?
warnings=$(grep -c 'HEAPKEEPER_LOG_PATH' "$HK_WORK/badlog.err" || true)
if [[ $status != 0 || $warnings != 1 ]] || ! grep -qF "$summary" "$HK_WORK/badlog.err"; then
  hk_fail "a bad HEAPKEEPER_LOG_PATH: status $status, $warnings warning line(s), stderr: $(head -5 "$HK_WORK/badlog.err")"
else
  hk_pass "a bad HEAPKEEPER_LOG_PATH: one warning line, the report on stderr: $(grep HEAPKEEPER_LOG_PATH "$HK_WORK/badlog.err")"
fi

# A log that takes nothing (/dev/full: a full disk) lost the report without a word; now one line
# says so and the report goes to stderr.
if [[ -w /dev/full ]]; then
  status=0
  HEAPKEEPER_LOG_PATH=/dev/full timeout 60 env LD_PRELOAD="$both" sort "$HK_WORK/fruit" \
    >/dev/null 2>"$HK_WORK/fulllog.err" || status=$?
  warnings=$(grep -c "HEAPKEEPER_LOG_PATH='/dev/full' (writing to it failed" "$HK_WORK/fulllog.err" || true)
  if [[ $status != 0 || $warnings != 1 ]] || ! grep -qF "$summary" "$HK_WORK/fulllog.err"; then
    hk_fail "HEAPKEEPER_LOG_PATH=/dev/full: status $status, $warnings warning line(s), stderr: $(head -3 "$HK_WORK/fulllog.err")"
  else
    hk_pass "HEAPKEEPER_LOG_PATH=/dev/full: one warning line, the report on stderr"
  fi
fi

# --- (2) relative paths are taken from where the program started.
if command -v git >/dev/null 2>&1; then
  mkdir -p "$HK_WORK/start" "$HK_WORK/other"
  git -C "$HK_WORK/other" init -q
  status=0
  (cd "$HK_WORK/start" && HEAPKEEPER_REPORT=rel.%p.json HEAPKEEPER_LOG_PATH=rel.%p.log \
    timeout 60 env LD_PRELOAD="$both" git -C ../other status --short) >/dev/null 2>"$HK_WORK/git.err" || status=$?
  mapfile -t here < <(find "$HK_WORK/start" -name 'rel.*.json')
  mapfile -t logs_here < <(find "$HK_WORK/start" -name 'rel.*.log')
  mapfile -t there < <(find "$HK_WORK/other" -name 'rel.*')
  if [[ $status != 0 || ${#here[@]} == 0 || ${#logs_here[@]} == 0 || ${#there[@]} != 0 ]]; then
    hk_fail "git -C with relative HEAPKEEPER_REPORT/LOG_PATH: status $status; in the starting directory:" \
      "${#here[@]} report(s), ${#logs_here[@]} log(s); in git's directory: ${there[*]:-none}"
  else
    hk_pass "git -C: the relative report and log landed in the starting directory (${#here[@]} report(s))"
  fi
  rm -f "$HK_WORK"/start/rel.* "$HK_WORK"/other/rel.*
  status=0
  (cd "$HK_WORK/start" && timeout 60 "$HK_LAUNCHER" run --report rel.%p.json -- git -C ../other status --short) \
    >/dev/null 2>&1 || status=$?
  mapfile -t here < <(find "$HK_WORK/start" -name 'rel.*.json')
  mapfile -t there < <(find "$HK_WORK/other" -name 'rel.*')
  if [[ $status != 0 || ${#here[@]} == 0 || ${#there[@]} != 0 ]]; then
    hk_fail "heapkeeper run --report rel.%p.json -- git -C: status $status, ${#here[@]} here, in git's directory: ${there[*]:-none}"
  else
    hk_pass "heapkeeper run --report with a relative path, git -C: every report in the starting directory"
  fi
else
  echo "note: git is not installed; the relative-path check is skipped"
fi

# --- (3) binaries the loader will not preload into: one line, the program runs, its status.
expect_untracked() {
  local description=$1 expected_text=$2 program=$3
  local status=0
  timeout 60 "$HK_LAUNCHER" run -- "$program" 5 >"$HK_WORK/untracked.out" 2>"$HK_WORK/untracked.err" || status=$?
  local lines
  lines=$(grep -c . "$HK_WORK/untracked.err" || true)
  if [[ $status != 5 ]]; then
    hk_fail "$description: status $status, expected the program's 5"
  elif [[ $lines != 1 ]] || ! grep -q "cannot be tracked: .*$expected_text" "$HK_WORK/untracked.err"; then
    hk_fail "$description: expected one line saying why it cannot be tracked, got $lines: $(cat "$HK_WORK/untracked.err")"
  else
    hk_pass "$description: status 5 and one line: $(cat "$HK_WORK/untracked.err")"
  fi
}
printf '#include <stdlib.h>\nint main(int argc, char** argv) { return argc > 1 ? atoi(argv[1]) : 0; }\n' >"$HK_WORK/static.c"
if command -v gcc >/dev/null 2>&1 && gcc -static -o "$HK_WORK/static_exit" "$HK_WORK/static.c" 2>/dev/null; then
  expect_untracked "a statically linked program" "statically linked" "$HK_WORK/static_exit"
else
  echo "note: no static C library (libc.a) to link a static program with; the static check is skipped"
fi
exit_status=$(hk_program exit_status)
if ((EUID != 0)); then
  echo "note: not running as root, so no setuid copy owned by another user can be made; skipped"
else
  nobody_uid=$(id -u nobody 2>/dev/null || echo 65534)
  nogroup_gid=$(getent group nogroup | cut -d: -f3)
  nogroup_gid=${nogroup_gid:-65534}
  install -m 0755 "$exit_status" "$HK_WORK/setuid_exit"
  chown "$nobody_uid" "$HK_WORK/setuid_exit" && chmod 4755 "$HK_WORK/setuid_exit"
  install -m 0755 "$exit_status" "$HK_WORK/setgid_exit"
  chgrp "$nogroup_gid" "$HK_WORK/setgid_exit" && chmod 2755 "$HK_WORK/setgid_exit"
  if findmnt -no OPTIONS --target "$HK_WORK" 2>/dev/null | grep -qw nosuid; then
    echo "note: $HK_WORK is on a nosuid mount; the setuid/setgid checks are skipped"
  elif [[ ! -u $HK_WORK/setuid_exit ]]; then
    echo "note: the file system kept no setuid bit; the setuid check is skipped"
  else
    expect_untracked "a setuid program (owned by uid $nobody_uid)" "setuid" "$HK_WORK/setuid_exit"
    expect_untracked "a setgid program (group $nogroup_gid)" "setgid" "$HK_WORK/setgid_exit"
  fi
fi
# And a normal program says nothing.
status=0
timeout 60 "$HK_LAUNCHER" run -- "$exit_status" 5 >/dev/null 2>"$HK_WORK/tracked.err" || status=$?
if [[ $status != 5 || -s $HK_WORK/tracked.err ]]; then
  hk_fail "an ordinary program: status $status, stderr: $(cat "$HK_WORK/tracked.err")"
else
  hk_pass "an ordinary program: no line, status 5"
fi

hk_finish

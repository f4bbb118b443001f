#!/usr/bin/env bash
# The files heapkeeper writes inside the traced program (HEAPKEEPER_REPORT, HEAPKEEPER_LOG_PATH)
# go where the user meant, and nowhere else (report/report_file.h, allocator/output_file.h).
# The program is always tests/programs' exit_status, which must end with its own status, 7.
#
#   report_files.sh targets    the report on a character device and a link to one, through a link
#                              to /proc/self/fd/1 (a pipe: streamed; a file the program put on fd 1:
#                              refused), into a FIFO (cat and `heapkeeper show` read it whole; no
#                              reader: one line after 5 s; a reader that leaves: no SIGPIPE), over
#                              a regular file (replaced atomically, its mode kept, hard links keep
#                              the old one), through a link to a regular file (that file replaced,
#                              the link kept), onto a directory (one line), under a long path that
#                              does not exist (one line that still gives the reason)
#   report_files.sh ownership  as root, with a second user (uid 65534) and a third (65533), no
#                              account needed: the old predictable temporary name, planted as a
#                              link by the second user, is not followed; in a sticky
#                              world-writable directory a link or FIFO of another user is refused
#                              (one line), as the last component or as a directory on the way to
#                              it (report and log), a link of the directory's owner or of the writer is
#                              followed, for a program run by root and by the second user
#   report_files.sh log        HEAPKEEPER_LOG_PATH: a FIFO with no reader falls back to stderr
#                              after 5 s (it hung the program), one with a reader gets the leak
#                              report; through /proc to a regular file, and (as root) another
#                              user's link or file in a sticky directory, are refused
# Without root, `ownership` and the root-only parts of `log` print a SKIP line.
source "$(dirname "$0")/lib.sh"

part=${1:?usage: report_files.sh targets|ownership|log}
program=$(hk_program exit_status)
leaker=$(hk_program leak_at_start)  # a preloaded module that leaks one 4242-byte block at start
summary='Direct leak of 4242 byte(s) in 1 object(s) allocated from:'
W=$HK_WORK
SECOND=65534 THIRD=65533
# Others (the second user) must reach the files below; the scratch directory is 0700.
chmod 755 "$W"

# traced REPORT [VAR=VALUE...]: runs `exit_status 7` under the preload with HEAPKEEPER_REPORT=REPORT
# (and the variables given); its stdout and stderr go to $W/out and $W/err. Returns its status.
traced() {
  local report=$1
  shift
  hk_exec plain env LD_PRELOAD="$HK_PRELOAD" HEAPKEEPER_REPORT="$report" "$@" "$program" 7 >"$W/out" 2>"$W/err"
}

# as_user UID CMD...: CMD as that uid and gid, with no supplementary groups.
as_user() {
  local uid=$1
  shift
  setpriv --reuid="$uid" --regid="$uid" --clear-groups "$@"
}

# traced_as UID REPORT [VAR=VALUE...]: `traced`, as that user. The preload is set after setpriv, so
# that only the program carries it.
traced_as() {
  local uid=$1 report=$2
  shift 2
  timeout -k 5 "$(hk_limit)" setpriv --reuid="$uid" --regid="$uid" --clear-groups \
    env LD_PRELOAD="$HK_PRELOAD" HEAPKEEPER_REPORT="$report" "$@" "$program" 7 >"$W/out" 2>"$W/err"
}

# is_report FILE: FILE holds exactly one heapkeeper report, nothing else.
is_report() {
  "$HK_CHECK_PYTHON" - "$1" <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    r = json.load(f)
sys.exit(0 if r.get("tool") == "heapkeeper" and isinstance(r.get("pid"), int) else 1)
PY
}

# diagnostics: the heapkeeper lines of the last run's stderr.
diagnostics() { grep 'heapkeeper\[' "$W/err" || true; }

# expect_status NAME STATUS: the run ended with the program's own status.
expect_status() {
  if [[ $2 != 7 ]]; then
    hk_fail "$1: status $2, expected the program's 7 (124: it hung); stderr: $(head -5 "$W/err")"
    return 1
  fi
}

# expect_one_line NAME TEXT...: the last run printed exactly one heapkeeper line, holding each TEXT.
expect_one_line() {
  local name=$1 text
  shift
  local lines
  lines=$(diagnostics | wc -l)
  for text in "$@"; do
    if [[ $lines != 1 ]] || ! diagnostics | grep -qF -- "$text"; then
      hk_fail "$name: expected one heapkeeper line holding '$text'; stderr holds:"
      head -5 "$W/err" >&2
      return 1
    fi
  done
}

expect_quiet() {
  if [[ -n $(diagnostics) ]]; then
    hk_fail "$1: heapkeeper printed: $(diagnostics | head -3)"
    return 1
  fi
}

# wait_for_file PATH: waits until PATH exists (a background helper is ready), within the budget.
wait_for_file() {
  local deadline=$((SECONDS + $(hk_limit)))
  while [[ ! -e $1 ]] && ((SECONDS < deadline)); do sleep 0.05; done
  [[ -e $1 ]]
}

targets() {
  local status
  # A character device, named and through a link: written to, never replaced by a file. As root
  # the device is a private node (the old code replaced /dev/null itself); otherwise /dev/null,
  # which an ordinary user cannot replace.
  local device=/dev/null
  if ((EUID == 0)); then
    device=$W/null
    mknod "$device" c 1 3 || device=
  fi
  if [[ -z $device ]]; then
    echo "SKIP: cannot make a device node as root here (no CAP_MKNOD?)"
  else
    ln -s "$device" "$W/null-link"
    for target in "$device" "$W/null-link"; do
      status=0
      traced "$target" || status=$?
      expect_status "report to $target" "$status" || continue
      if [[ ! -c $device ]] || [[ $target != "$device" && ! -L $target ]]; then
        hk_fail "report to $target: replaced: $(ls -l "$target")"
      elif expect_quiet "report to $target"; then
        hk_pass "report to $target: written to the device, which is still one"
      fi
    done
  fi

  # A link to /proc/self/fd/1 (what /dev/stdout is) with stdout a pipe: the report goes down the pipe.
  ln -s /proc/self/fd/1 "$W/stdout-link"
  status=0
  hk_exec plain env LD_PRELOAD="$HK_PRELOAD" HEAPKEEPER_REPORT="$W/stdout-link" "$program" 7 2>"$W/err" |
    cat >"$W/piped" || status=${PIPESTATUS[0]}
  if expect_status "report to a link to /proc/self/fd/1" "$status"; then
    if [[ ! -L $W/stdout-link ]] || ! "$HK_CHECK_PYTHON" - "$W/piped" <<'PY'; then
import json, sys
text = open(sys.argv[1]).read()
report, end = json.JSONDecoder().raw_decode(text, text.index("{"))
rest = (text[:text.index("{")] + text[end:]).strip()
sys.exit(0 if report.get("tool") == "heapkeeper" and rest == "exit_status: exiting with 7" else 1)
PY
      hk_fail "report to a link to /proc/self/fd/1: the pipe got $(wc -c <"$W/piped") byte(s): $(head -c 200 "$W/piped")"
    elif expect_quiet "report to /proc/self/fd/1"; then
      hk_pass "report to a link to /proc/self/fd/1: the whole report went down stdout's pipe, with the program's line"
    fi
  fi
  # The same link when the program closed fd 1 and opened a file of its own there (heapkeeper's
  # symbolizer reuses closed descriptors too: the report once landed at the end of libc.so.6).
  if command -v "$HK_CHECK_PYTHON" >/dev/null; then
    echo precious >"$W/program-file"
    status=0
    hk_exec plain env LD_PRELOAD="$HK_PRELOAD" HEAPKEEPER_REPORT="$W/stdout-link" "$HK_CHECK_PYTHON" -c '
import os, sys
os.close(1)
assert os.open(sys.argv[1], os.O_RDONLY) == 1
sys.exit(7)' "$W/program-file" >/dev/null 2>"$W/err" || status=$?
    if expect_status "report through /proc to a regular file" "$status" &&
      expect_one_line "report through /proc to a regular file" "could not write the report to $W/stdout-link" \
        "leads through /proc to a regular file"; then
      if [[ $(cat "$W/program-file") != precious || ! -L $W/stdout-link ]]; then
        hk_fail "report through /proc to a regular file: the program's file or the link changed"
      else
        hk_pass "report through /proc to a file the program opened on fd 1: refused, in one line"
      fi
    fi
  fi

  # A FIFO: its reader gets the whole report, and the FIFO stays.
  mkfifo "$W/fifo"
  timeout -k 5 "$(hk_limit)" cat "$W/fifo" >"$W/from-fifo" &
  local reader=$!
  status=0
  traced "$W/fifo" || status=$?
  local read_status=0
  hk_wait "$reader" || read_status=$?
  if expect_status "report to a FIFO" "$status"; then
    if [[ $read_status != 0 || ! -p $W/fifo ]] || ! is_report "$W/from-fifo"; then
      hk_fail "report to a FIFO: the reader (status $read_status) got $(wc -c <"$W/from-fifo") byte(s), FIFO still there: $([[ -p $W/fifo ]] && echo yes || echo no)"
    elif expect_quiet "report to a FIFO"; then
      hk_pass "report to a FIFO: cat read the whole report ($(wc -c <"$W/from-fifo") bytes); the FIFO is still one"
    fi
  fi
  # ... and `heapkeeper show` can be that reader.
  mkfifo "$W/show-fifo"
  timeout -k 5 "$(hk_limit)" "$HK_LAUNCHER" show "$W/show-fifo" >"$W/shown" 2>&1 &
  reader=$!
  status=0
  traced "$W/show-fifo" || status=$?
  read_status=0
  hk_wait "$reader" || read_status=$?
  if expect_status "report to a FIFO read by show" "$status"; then
    # The header names the program and its arguments (the program runs as `PROGRAM 7`).
    if [[ $read_status != 0 ]] || ! grep -qE '^heapkeeper report for pid [0-9]+ \(.+\)  \[.+ 7\]$' "$W/shown"; then
      hk_fail "report to a FIFO read by heapkeeper show: status $read_status: $(head -3 "$W/shown")"
    else
      hk_pass "report to a FIFO read by heapkeeper show: $(head -1 "$W/shown")"
    fi
  fi
  # No reader: the program does not hang; one line after kFifoReaderWaitMs.
  mkfifo "$W/unread-fifo"
  status=0
  traced "$W/unread-fifo" || status=$?
  if expect_status "report to a FIFO nobody reads" "$status" &&
    expect_one_line "report to a FIFO nobody reads" "could not write the report to $W/unread-fifo" \
      "no reader opened within 5 s"; then
    [[ -p $W/unread-fifo ]] && hk_pass "report to a FIFO nobody reads: one line, the FIFO stays: $(diagnostics)"
  fi
  # A reader that takes 16 bytes and leaves: the program must not die of SIGPIPE. The reader opens
  # the FIFO read-write (so it is there before the writer) and shrinks its buffer to one page,
  # smaller than the report, before it says it is ready.
  mkfifo "$W/short-fifo"
  timeout -k 5 "$(hk_limit)" "$HK_CHECK_PYTHON" -c '
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, 1031, 4096)  # F_SETPIPE_SZ
open(sys.argv[2], "w").close()
sys.stdout.buffer.write(os.read(fd, 16))' "$W/short-fifo" "$W/ready" >"$W/first-bytes" &
  reader=$!
  status=0
  if ! wait_for_file "$W/ready"; then
    hk_fail "report to a FIFO whose reader leaves: the reader never got ready"
    status=7
  fi
  traced "$W/short-fifo" || status=$?
  hk_wait "$reader" || true
  if expect_status "report to a FIFO whose reader leaves" "$status" &&
    expect_one_line "report to a FIFO whose reader leaves" "could not write the report to $W/short-fifo" "Broken pipe"; then
    if [[ $(head -c 1 "$W/first-bytes") != "{" ]]; then
      hk_fail "report to a FIFO whose reader leaves: the reader got '$(cat "$W/first-bytes")'"
    else
      hk_pass "report to a FIFO whose reader left after 16 bytes: no SIGPIPE, status 7, one line"
    fi
  fi

  # A regular file of ours: replaced whole (a hard link keeps the old one), its mode kept.
  echo old >"$W/kept.json"
  chmod 640 "$W/kept.json"
  ln "$W/kept.json" "$W/kept-old-name.json"
  status=0
  traced "$W/kept.json" || status=$?
  if expect_status "report over a regular file" "$status" && expect_quiet "report over a regular file"; then
    local mode leftovers
    mode=$(stat -c %a "$W/kept.json")
    leftovers=$(find "$W" -name '*.tmp.*' | wc -l)
    if ! is_report "$W/kept.json" || [[ $mode != 640 || $(cat "$W/kept-old-name.json") != old || $leftovers != 0 ]]; then
      hk_fail "report over a regular file: mode $mode (expected 640), old name holds" \
        "'$(head -c 20 "$W/kept-old-name.json")', $leftovers temporary file(s) left"
    else
      hk_pass "report over a regular file: replaced whole, mode 640 kept, the hard link keeps the old file"
    fi
  fi
  # A new file: the mode the umask gives any new file.
  status=0
  (umask 027 && traced "$W/new.json") || status=$?
  if expect_status "new report" "$status" && is_report "$W/new.json" && [[ $(stat -c %a "$W/new.json") == 640 ]]; then
    hk_pass "a new report under umask 027: mode 640"
  else
    hk_fail "a new report under umask 027: mode $(stat -c %a "$W/new.json" 2>/dev/null)"
  fi

  # A link to a regular file, and a link to a file not there yet: the file is written, the link stays.
  mkdir -p "$W/data"
  echo old >"$W/data/target.json"
  ln -s data/target.json "$W/link.json"
  ln -s "$W/data/later.json" "$W/dangling.json"
  for link in link dangling; do
    local target
    target=$(readlink -f "$W/$link.json")
    status=0
    traced "$W/$link.json" || status=$?
    expect_status "report to a link ($link)" "$status" || continue
    if [[ ! -L $W/$link.json ]] || ! is_report "$target"; then
      hk_fail "report to a link ($link): the link is $(stat -c %F "$W/$link.json"), $target: $(head -c 30 "$target" 2>&1)"
    elif expect_quiet "report to a link ($link)"; then
      hk_pass "report to a link ($link): $(basename "$target") holds the report, the link stays"
    fi
  done

  # A directory: one line, the program's status.
  mkdir -p "$W/a-directory"
  status=0
  traced "$W/a-directory" || status=$?
  expect_status "report to a directory" "$status" &&
    expect_one_line "report to a directory" "could not write the report to $W/a-directory: Is a directory" &&
    hk_pass "report to a directory: $(diagnostics)"

  # A file that exists in a directory where no file can be made (/proc): the line says that the
  # replacement could not be made, not that the file does not exist.
  status=0
  traced /proc/version || status=$?
  expect_status "report over a file of /proc" "$status" &&
    expect_one_line "report over a file of /proc" "could not write the report to /proc/version: cannot create the new file beside it that replaces it: No such file or directory" &&
    hk_pass "report over a file of /proc: $(diagnostics)"

  # A long path (five 250-byte directory names, within PATH_MAX) that does not exist: the line
  # still says why. It used to be cut at 1023 bytes, in the middle of the path, reason and all.
  local long=$W
  for letter in d e f g h; do long=$long/$(printf "$letter%.0s" $(seq 250)); done
  status=0
  traced "$long/r.json" || status=$?
  expect_status "report under a long missing path" "$status" &&
    expect_one_line "report under a long missing path" "could not write the report to" \
      "r.json: No such file or directory" &&
    hk_pass "report under a long missing path: one line, with the reason"
}

ownership() {
  local status
  if ((EUID != 0)); then
    echo "SKIP: report_files.sh ownership: files of other users need root to create (running as uid $EUID)"
    return
  fi
  if ! setpriv --reuid="$SECOND" --regid="$SECOND" --clear-groups "$program" 0 >/dev/null 2>&1; then
    hk_fail "uid $SECOND cannot run $program (is the build directory readable by all?)"
    return
  fi
  echo precious >"$W/victim"
  # (1) The old temporary name, <report>.tmp.<pid>, planted by the second user as a link to a file
  # of root's, in a world-writable directory and in a sticky one (/tmp): the shell plants the link
  # for its own pid, then becomes the program.
  for mode in 777 1777; do
    local dir=$W/shared-$mode
    mkdir -m "$mode" "$dir"
    status=0
    # shellcheck disable=SC2016  # $$ and the arguments are the inner shell's
    hk_exec plain bash -c '
      setpriv --reuid="$1" --regid="$1" --clear-groups ln -s "$2" "$3.tmp.$$"
      export LD_PRELOAD=$4 HEAPKEEPER_REPORT=$3
      exec "$5" 7' _ "$SECOND" "$W/victim" "$dir/r.json" "$HK_PRELOAD" "$program" >"$W/out" 2>"$W/err" || status=$?
    expect_status "planted temporary name ($mode)" "$status" || continue
    if [[ $(cat "$W/victim") != precious ]]; then
      hk_fail "planted temporary name (directory mode $mode): root's file was overwritten through the second user's link"
    elif ! is_report "$dir/r.json"; then
      hk_fail "planted temporary name (directory mode $mode): no report: $(diagnostics)"
    elif expect_quiet "planted temporary name ($mode)"; then
      hk_pass "planted temporary name (directory mode $mode): not followed; the report is written, root's file intact"
    fi
  done

  # (2) A sticky world-writable directory of root's, like /tmp.
  local sticky=$W/sticky
  mkdir -m 1777 "$sticky"
  # The second user's link, for a program run by root: refused, in one line.
  as_user "$SECOND" ln -s "$W/victim" "$sticky/theirs.json"
  status=0
  traced "$sticky/theirs.json" || status=$?
  if expect_status "another user's link in /tmp" "$status" &&
    expect_one_line "another user's link in /tmp" "could not write the report to $sticky/theirs.json: refused" \
      "symbolic link owned by uid $SECOND" "fs.protected_symlinks"; then
    if [[ ! -L $sticky/theirs.json || $(cat "$W/victim") != precious ]]; then
      hk_fail "another user's link in /tmp: the link or root's file changed"
    else
      hk_pass "another user's link in a sticky directory: refused: $(diagnostics)"
    fi
  fi
  # The second user's link as a directory on the way (/tmp/reports -> a directory of root's, the
  # report named /tmp/reports/r.json, as a script that ran `mkdir -p /tmp/reports` would name it):
  # the kernel's rule covers every link it follows, so it is refused too, and root's file in
  # that directory is left alone (it was replaced by the report).
  mkdir -m 700 "$W/roots-dir"
  echo precious >"$W/roots-dir/r.json"
  as_user "$SECOND" ln -s "$W/roots-dir" "$sticky/reports"
  status=0
  traced "$sticky/reports/r.json" || status=$?
  if expect_status "another user's link on the way, in /tmp" "$status" &&
    expect_one_line "another user's link on the way, in /tmp" \
      "could not write the report to $sticky/reports/r.json: refused: it leads through \"reports\"" \
      "symbolic link owned by uid $SECOND" "fs.protected_symlinks"; then
    if [[ $(cat "$W/roots-dir/r.json") != precious ]] || compgen -G "$W/roots-dir/r.json.tmp.*" >/dev/null; then
      hk_fail "another user's link on the way: root's file in the directory it leads to was replaced"
    else
      hk_pass "another user's link on the way in a sticky directory: refused: $(diagnostics)"
    fi
  fi
  # The same for the log, which is appended to.
  echo precious >"$W/roots-dir/log.txt"
  status=0
  hk_exec plain env LD_PRELOAD="$HK_PRELOAD:$leaker" HEAPKEEPER_LOG_PATH="$sticky/reports/log.txt" "$program" 7 \
    >"$W/out" 2>"$W/err" || status=$?
  if [[ $(cat "$W/roots-dir/log.txt") != precious ]]; then
    hk_fail "another user's link on the way: root's log file in the directory it leads to was written"
  elif ! grep -qF "cannot write HEAPKEEPER_LOG_PATH='$sticky/reports/log.txt' (refused: it leads through \"reports\"" "$W/err"; then
    hk_fail "another user's link on the way to the log: no refusal: $(head -3 "$W/err")"
  else
    hk_pass "another user's link on the way to the log in a sticky directory: refused, stderr used"
  fi
  # The second user's FIFO, for a program run by root: refused at once, no report handed over.
  as_user "$SECOND" mkfifo "$sticky/their-fifo"
  status=0
  traced "$sticky/their-fifo" || status=$?
  if expect_status "another user's FIFO in /tmp" "$status" &&
    expect_one_line "another user's FIFO in /tmp" "refused: it is a FIFO owned by uid $SECOND"; then
    [[ -p $sticky/their-fifo ]] && hk_pass "another user's FIFO in a sticky directory: refused: $(diagnostics)"
  fi
  # Links the rule trusts, for a program run by the second user: the directory owner's (root's)
  # and the second user's own lead to the second user's files; a third user's is refused.
  local home=$W/second-user
  mkdir -m 700 "$home"
  chown "$SECOND:$SECOND" "$home"
  ln -s "$home/via-owner.json" "$sticky/owners.json"
  as_user "$SECOND" ln -s "$home/via-own.json" "$sticky/own.json"
  ln -s "$home/via-third.json" "$sticky/third.json"
  chown -h "$THIRD:$THIRD" "$sticky/third.json"
  for name in owners own; do
    status=0
    traced_as "$SECOND" "$sticky/$name.json" || status=$?
    expect_status "uid $SECOND, $name link" "$status" || continue
    if [[ ! -L $sticky/$name.json ]] || ! is_report "$(readlink "$sticky/$name.json")"; then
      hk_fail "uid $SECOND through the $name link in a sticky directory: no report at $(readlink "$sticky/$name.json"): $(diagnostics)"
    elif expect_quiet "uid $SECOND, $name link"; then
      hk_pass "uid $SECOND, the $([[ $name == own ]] && echo "writer's own" || echo "directory owner's") link in a sticky directory: followed"
    fi
  done
  status=0
  traced_as "$SECOND" "$sticky/third.json" || status=$?
  if expect_status "uid $SECOND, a third user's link" "$status" &&
    expect_one_line "uid $SECOND, a third user's link" "refused: it is a symbolic link owned by uid $THIRD"; then
    if [[ -e $home/via-third.json || ! -L $sticky/third.json ]]; then
      hk_fail "uid $SECOND, a third user's link: followed or replaced"
    else
      hk_pass "uid $SECOND, a third user's link in a sticky directory: refused: $(diagnostics)"
    fi
  fi
}

log() {
  local status
  # traced_log LOG [CMD...]: `exit_status 7` (or CMD) leaking 4242 bytes, HEAPKEEPER_LOG_PATH=LOG.
  traced_log() {
    local log=$1
    shift
    (($# > 0)) || set -- "$program" 7
    hk_exec plain env LD_PRELOAD="$HK_PRELOAD:$leaker" HEAPKEEPER_LOG_PATH="$log" "$@" >"$W/out" 2>"$W/err"
  }
  # A FIFO nobody reads: the program used to hang on its first diagnostic.
  mkfifo "$W/log-fifo"
  status=0
  traced_log "$W/log-fifo" || status=$?
  if expect_status "log to a FIFO nobody reads" "$status"; then
    if ! grep -qF "cannot write HEAPKEEPER_LOG_PATH='$W/log-fifo' (it is a FIFO that no reader opened within 5 s); using stderr" "$W/err" ||
      ! grep -qF "$summary" "$W/err"; then
      hk_fail "log to a FIFO nobody reads: stderr: $(head -5 "$W/err")"
    else
      hk_pass "log to a FIFO nobody reads: one line after 5 s, then the report on stderr"
    fi
  fi
  # A FIFO with a reader: it gets the report.
  timeout -k 5 "$(hk_limit)" cat "$W/log-fifo" >"$W/log-read" &
  local reader=$!
  status=0
  traced_log "$W/log-fifo" || status=$?
  hk_wait "$reader" || true
  if expect_status "log to a FIFO" "$status" && expect_quiet "log to a FIFO"; then
    if grep -qF "$summary" "$W/log-read"; then
      hk_pass "log to a FIFO: the reader got the leak report"
    else
      hk_fail "log to a FIFO: the reader got: $(head -3 "$W/log-read")"
    fi
  fi
  # Through /proc to a file the program put on fd 1: refused, the file untouched.
  ln -s /proc/self/fd/1 "$W/log-stdout"
  echo precious >"$W/program-file"
  status=0
  traced_log "$W/log-stdout" "$HK_CHECK_PYTHON" -c '
import os, sys
os.close(1)
assert os.open(sys.argv[1], os.O_RDONLY) == 1
sys.exit(7)' "$W/program-file" || status=$?
  if expect_status "log through /proc to a regular file" "$status"; then
    if [[ $(cat "$W/program-file") != precious ]] || ! grep -qF "leads through /proc to a regular file" "$W/err"; then
      hk_fail "log through /proc to a regular file: the file holds $(wc -l <"$W/program-file") line(s); stderr: $(head -3 "$W/err")"
    else
      hk_pass "log through /proc to a file the program opened on fd 1: refused, the report on stderr"
    fi
  fi

  if ((EUID != 0)); then
    echo "SKIP: report_files.sh log: another user's link and file in a sticky directory need root (uid $EUID)"
    return
  fi
  local sticky=$W/sticky
  mkdir -m 1777 "$sticky"
  echo precious >"$W/victim"
  as_user "$SECOND" ln -s "$W/victim" "$sticky/their-link.log"
  as_user "$SECOND" touch "$sticky/their-file.log"
  for name in their-link their-file; do
    status=0
    traced_log "$sticky/$name.log" || status=$?
    expect_status "log to $name in /tmp" "$status" || continue
    if ! grep -qF "cannot write HEAPKEEPER_LOG_PATH='$sticky/$name.log' (refused: it is a" "$W/err" ||
      ! grep -qF "$summary" "$W/err"; then
      hk_fail "log to another user's $name in a sticky directory: stderr: $(head -3 "$W/err")"
    elif [[ $(cat "$W/victim") != precious || -s $sticky/their-file.log ]]; then
      hk_fail "log to another user's $name in a sticky directory: written into"
    else
      hk_pass "log to another user's ${name#their-} in a sticky directory: refused, the report on stderr"
    fi
  done
}

case $part in
  targets) targets ;;
  ownership) ownership ;;
  log) log ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
hk_finish

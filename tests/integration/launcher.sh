#!/usr/bin/env bash
# The `heapkeeper run` launcher: exit statuses and signal deaths pass through unchanged, launch
# errors are one line with the conventional status (127 not found, 126 not executable), --help
# documents every HEAPKEEPER_* variable the library reads, invalid settings are one warning line
# and the program still runs, and --report writes a valid report for the program's own pid.
source "$(dirname "$0")/lib.sh"

: "${HK_SOURCE_DIR:?HK_SOURCE_DIR must name the source tree}"
exit_status=$(hk_program exit_status)

run_exit_status() {
  local mode=$1
  shift
  hk_exec "$mode" "$exit_status" "$@"
}

# --- exit statuses and signal deaths, compared with plain runs.
hk_compare exit0 run_exit_status 0 -- launcher preload
hk_compare exit7 run_exit_status 7 -- launcher preload
hk_compare exit255 run_exit_status 255 -- launcher
hk_compare sigterm run_exit_status --signal 15 -- launcher preload
hk_compare sigkill run_exit_status --signal 9 -- launcher
hk_compare sigabrt run_exit_status --signal 6 -- launcher
for expectation in exit7:7 exit255:255 sigterm:143 sigkill:137 sigabrt:134; do
  name=${expectation%%:*} expected=${expectation#*:}
  status=$(hk_status "$name" launcher)
  if [[ $status != "$expected" ]]; then
    hk_fail "$name: heapkeeper run gave status $status, expected $expected"
  fi
done
# Without the timeout wrapper, straight from bash.
status=0
"$HK_LAUNCHER" run -- "$exit_status" 7 >/dev/null &
hk_wait $! || status=$?
if [[ $status == 7 ]]; then hk_pass "heapkeeper run -- exit_status 7 exits 7"; else hk_fail "heapkeeper run -- exit_status 7 exited $status"; fi
# (bash's own "Terminated" notice goes to the discarded stderr of the command substitution)
status=$({ "$HK_LAUNCHER" run -- "$exit_status" --signal 15 >/dev/null; echo $?; } 2>/dev/null)
if [[ $status == 143 ]]; then hk_pass "a SIGTERM death is seen by bash as 143"; else hk_fail "SIGTERM death seen as status $status, expected 143"; fi

# --- launch errors: one line on stderr, status 127 (not found) or 126 (not executable).
expect_launch_error() {
  local description=$1 expected_status=$2 expected_text=$3
  shift 3
  local err=$HK_WORK/launch-error.err status=0
  "$HK_LAUNCHER" run -- "$@" >"$HK_WORK/launch-error.out" 2>"$err" </dev/null || status=$?
  local lines
  lines=$(wc -l <"$err")
  if [[ $status != "$expected_status" ]]; then
    hk_fail "$description: status $status, expected $expected_status"
  elif [[ $lines != 1 ]]; then
    hk_fail "$description: $lines lines on stderr, expected one:"
    cat "$err" >&2
  elif ! grep -qF -- "$expected_text" "$err"; then
    hk_fail "$description: the error does not name \"$expected_text\": $(cat "$err")"
  elif [[ -s $HK_WORK/launch-error.out ]]; then
    hk_fail "$description: something was written to stdout"
  else
    hk_pass "$description: status $status, one line: $(cat "$err")"
  fi
}
expect_launch_error "nonexistent program (path)" 127 /nonexistent/heapkeeper-no-such-program /nonexistent/heapkeeper-no-such-program
expect_launch_error "nonexistent program (PATH search)" 127 heapkeeper-no-such-program-xyz heapkeeper-no-such-program-xyz
printf '#!/bin/sh\necho never\n' >"$HK_WORK/not-executable.sh"
chmod 0644 "$HK_WORK/not-executable.sh"
if ((EUID == 0)) && [[ -x $HK_WORK/not-executable.sh ]]; then
  echo "note: skipping the not-executable case (root can execute anything here)"
else
  expect_launch_error "file without execute permission" 126 not-executable.sh "$HK_WORK/not-executable.sh"
fi
status=0
HEAPKEEPER_LIBRARY=$HK_WORK/no-such-library.so "$HK_LAUNCHER" run -- "$exit_status" 0 >/dev/null 2>"$HK_WORK/library.err" || status=$?
if [[ $status == 0 ]] || ! grep -q "no-such-library.so" "$HK_WORK/library.err"; then
  hk_fail "a missing HEAPKEEPER_LIBRARY: status $status, stderr: $(cat "$HK_WORK/library.err")"
else
  hk_pass "a missing HEAPKEEPER_LIBRARY is an error naming it (status $status)"
fi
status=0
"$HK_LAUNCHER" run >/dev/null 2>&1 </dev/null || status=$?
if ((status != 0)); then hk_pass "heapkeeper run without a program fails (status $status)"; else hk_fail "heapkeeper run without a program exited 0"; fi

# --- --help documents every HEAPKEEPER_* variable of the library's configuration.
mapfile -t variables < <(grep -ohE 'HEAPKEEPER_[A-Z_]+' "$HK_SOURCE_DIR/allocator/config.h" "$HK_SOURCE_DIR/allocator/config.cpp" | sort -u)
if ((${#variables[@]} < 5)); then
  hk_fail "found only ${#variables[@]} HEAPKEEPER_ variables in allocator/config.h; the pattern needs updating"
fi
for help in "--help" "run --help"; do
  status=0
  # shellcheck disable=SC2086  # $help is two words on purpose
  "$HK_LAUNCHER" $help >"$HK_WORK/help.out" 2>&1 || status=$?
  [[ $status == 0 ]] || hk_fail "heapkeeper $help exited $status"
  missing=()
  for variable in "${variables[@]}"; do
    grep -qw -- "$variable" "$HK_WORK/help.out" || missing+=("$variable")
  done
  if ((${#missing[@]} > 0)); then
    hk_fail "heapkeeper $help does not mention: ${missing[*]}"
  else
    hk_pass "heapkeeper $help mentions all ${#variables[@]} variables: ${variables[*]}"
  fi
done

# --- an invalid setting: one line naming it, and the program runs with the default.
check_one_warning() {
  local description=$1 name=$2 mode=$3 needle=$4 expected_status=$5
  local err=$HK_WORK/$name.$mode/err status
  status=$(hk_status "$name" "$mode")
  local lines
  lines=$(grep -c . "$err" || true)
  if [[ $status != "$expected_status" ]]; then
    hk_fail "$description: the program exited $status, expected $expected_status"
  elif ! grep -qx "exit_status: exiting with $expected_status" "$HK_WORK/$name.$mode/out"; then
    hk_fail "$description: the program's output is missing"
  elif [[ $lines != 1 ]] || ! grep -qF -- "$needle" "$err"; then
    hk_fail "$description: expected one line naming $needle, got $lines:"
    cat "$err" >&2
  else
    hk_pass "$description: one line ($(cat "$err")), program ran"
  fi
}
HEAPKEEPER_STACK_DEPTH=abc hk_capture bad-depth-env launcher run_exit_status 3
check_one_warning "HEAPKEEPER_STACK_DEPTH=abc (launcher)" bad-depth-env launcher HEAPKEEPER_STACK_DEPTH 3
HEAPKEEPER_STACK_DEPTH=abc hk_capture bad-depth-env preload run_exit_status 3
check_one_warning "HEAPKEEPER_STACK_DEPTH=abc (LD_PRELOAD)" bad-depth-env preload HEAPKEEPER_STACK_DEPTH 3
HEAPKEEPER_STACK_DEPTH=0 hk_capture zero-depth-env preload run_exit_status 4
check_one_warning "HEAPKEEPER_STACK_DEPTH=0 (LD_PRELOAD)" zero-depth-env preload HEAPKEEPER_STACK_DEPTH 4
run_bad_depth_option() { timeout -k 5 "$(hk_limit)" "$HK_LAUNCHER" run --stack-depth abc -- "$exit_status" 5; }
hk_capture bad-depth-option launcher run_bad_depth_option
check_one_warning "--stack-depth abc" bad-depth-option launcher stack-depth 5
# Checked by `heapkeeper run` itself, once, not by every process of the run under the variable's
# name (a shell and its two children warned three times).
run_bad_interval_option() {
  timeout -k 5 "$(hk_limit)" "$HK_LAUNCHER" run --scan-interval 5x -- bash -c '"$1" 0 >/dev/null; exec "$1" 6' _ "$exit_status"
}
hk_capture bad-interval-option launcher run_bad_interval_option
check_one_warning "--scan-interval 5x, three processes" bad-interval-option launcher "invalid --scan-interval '5x'" 6
run_bad_exitcode_option() {
  timeout -k 5 "$(hk_limit)" "$HK_LAUNCHER" run --exitcode 300 -- bash -c '"$1" 0 >/dev/null; exec "$1" 6' _ "$exit_status"
}
hk_capture bad-exitcode-option launcher run_bad_exitcode_option
check_one_warning "--exitcode 300, three processes" bad-exitcode-option launcher "invalid --exitcode '300'" 6

# --- --report: valid JSON for the program's own pid (the launcher execs, so $! is that pid).
report_dir=$HK_WORK/reports
mkdir -p "$report_dir"
"$HK_LAUNCHER" run --report "$report_dir/report.json" -- "$exit_status" 0 >/dev/null &
pid=$!
status=0
hk_wait "$pid" || status=$?
[[ $status == 0 ]] || hk_fail "--report run exited $status"
report=$report_dir/report.json
if [[ ! -f $report ]]; then
  hk_fail "--report $report: no file written"
else
  ok=1
  hk_json_check "$report" "r['pid'] == $pid" "pid is the program's ($pid)" || ok=0
  hk_json_check "$report" "r['live_blocks'] == r['allocations'] - r['frees']" "live_blocks == allocations - frees" || ok=0
  hk_json_check "$report" "r['allocations'] >= 1 and r['live_bytes'] >= 0" "allocations counted" || ok=0
  hk_json_check "$report" "r['program'] == '$(readlink -f "$exit_status")'" "program names the executable" || ok=0
  hk_json_check "$report" "r['command_line'] == ['$exit_status', '0']" "command_line is the program's argv" || ok=0
  ((ok)) && hk_pass "--report writes valid JSON for pid $pid with consistent figures"
fi
"$HK_LAUNCHER" run --report "$report_dir/r.%p.json" -- "$exit_status" 0 >/dev/null &
pid=$!
hk_wait "$pid" || true
if [[ -f $report_dir/r.$pid.json ]]; then
  hk_json_check "$report_dir/r.$pid.json" "r['pid'] == $pid" "%p report names its pid" && hk_pass "--report with %p writes r.$pid.json"
else
  hk_fail "--report r.%p.json: no r.$pid.json (found: $(ls "$report_dir"))"
fi

# --- without /proc (a mount namespace or chroot that lacks it): the launcher finds its library from
# the path it was run by, not /proc/self/exe (it said "cannot read the preload library
# libheapkeeper.so"), and the program runs; its exit scan says why it cannot read the roots.
if unshare -m sh -c 'umount -l /proc && ! test -e /proc/self' 2>/dev/null; then
  status=0
  output=$(unshare -m sh -c 'umount -l /proc && exec "$0" run -- /bin/echo ran without proc' "$HK_LAUNCHER" 2>&1) ||
    status=$?
  if [[ $status == 0 && $output == *"ran without proc"* && $output != *"cannot read the preload library"* ]]; then
    hk_pass "without /proc: the launcher finds its library and runs the program"
  else
    hk_fail "without /proc: status $status: $output"
  fi
else
  echo "skipped: no mount namespace without /proc can be made here"
fi
hk_finish

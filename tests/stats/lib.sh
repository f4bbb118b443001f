# Shared helpers of the live-stats tests (sourced by cli.sh and view_tmux.sh, never run directly).
#
# CMake hands the scripts their paths through the environment:
#   HK_LAUNCHER  the `heapkeeper` command      HK_TARGET  the live_target test program
#   HK_SCRATCH   where scratch directories go (kept on failure, removed on success)
# Checks are collected, not fatal, so one run shows every problem; sk_finish exits 1 if any failed.
# Everything a script starts (the target, a tmux server on a private socket, planted segment
# files) is registered here and removed by the EXIT trap, even when a check fails midway.

set -euo pipefail
ulimit -c 0

: "${HK_LAUNCHER:?HK_LAUNCHER must name the heapkeeper command}"
: "${HK_TARGET:?HK_TARGET must name the live_target program}"
SK_FAILURES=0
SK_SCRATCH=${HK_SCRATCH:-${TMPDIR:-/tmp}}
mkdir -p "$SK_SCRATCH"
SK_WORK=$(mktemp -d "$SK_SCRATCH/heapkeeper-stats.XXXXXX")
SK_TARGET_PID=""
SK_PLANTED=()
SK_PLANTED_PIDS=()  # pids whose segment files (/dev/shm/heapkeeper.PID.*) are removed at exit
SK_HELPERS=()   # pids of helper processes this script started (killed at exit)
SK_TMUX_SOCKET=""
# The checks' own Python is Debian's, never a program under test.
SK_PYTHON=/usr/bin/python3
[[ -x $SK_PYTHON ]] || SK_PYTHON=$(command -v python3)

# heapkeeper's defaults whatever the caller's environment holds, without the summary at exit.
# shellcheck disable=SC2046
unset LD_PRELOAD $(compgen -v HEAPKEEPER_ || true)
export HEAPKEEPER_QUIET=1

sk_cleanup() {
  local status=$?
  if [[ -n $SK_TARGET_PID ]] && kill -0 "$SK_TARGET_PID" 2>/dev/null; then
    kill -USR1 "$SK_TARGET_PID" 2>/dev/null || true
    sleep 0.5
    kill -KILL "$SK_TARGET_PID" 2>/dev/null || true
  fi
  local helper
  for helper in "${SK_HELPERS[@]}"; do kill "$helper" 2>/dev/null || true; done
  if [[ -n $SK_TMUX_SOCKET ]]; then tmux -S "$SK_TMUX_SOCKET" kill-server 2>/dev/null || true; fi
  local file
  for file in "${SK_PLANTED[@]}"; do rm -f "$file" "$file.tmp"; done
  for file in "${SK_PLANTED_PIDS[@]}"; do rm -f /dev/shm/heapkeeper."$file".*; done
  if ((SK_FAILURES == 0 && status == 0)) && [[ -z ${HK_KEEP_WORK:-} ]]; then
    rm -rf "$SK_WORK"
  else
    echo "scratch directory kept: $SK_WORK" >&2
  fi
}
trap sk_cleanup EXIT

sk_fail() {
  echo "FAIL: $*" >&2
  echo "FAIL: $*" >>"$SK_WORK/failures.txt"
  SK_FAILURES=$((SK_FAILURES + 1))
}

sk_pass() { echo "ok: $*"; }

# sk_check DESCRIPTION CMD...: passes when CMD succeeds.
sk_check() {
  local what=$1
  shift
  if "$@"; then sk_pass "$what"; else sk_fail "$what"; fi
}

# quietly CMD...: CMD with its stdout discarded (for sk_check, whose own message must show).
quietly() { "$@" >/dev/null; }

sk_finish() {
  if ((SK_FAILURES > 0)); then
    echo "$SK_FAILURES check(s) failed" >&2
    exit 1
  fi
  echo "all checks passed"
}

sk_skip() {
  echo "SKIPPED: $*"
  exit 77
}

# sk_uptime PID: the uptime of the latest published snapshot ("" when there is none).
sk_uptime() {
  "$HK_LAUNCHER" stats "$1" --json 2>/dev/null |
    "$SK_PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["uptime_seconds"])' 2>/dev/null || true
}

# sk_launch_target READY_CHECK N K SECONDS [churn]: starts the target under `heapkeeper run` and
# waits (15 s at most) until it has printed "ready" and the function READY_CHECK succeeds.
sk_launch_target() {
  local ready_check=$1
  shift
  "$HK_LAUNCHER" run -- "$HK_TARGET" "$@" >"$SK_WORK/target.out" 2>"$SK_WORK/target.err" &
  SK_TARGET_PID=$!
  local tries=0
  until grep -q ready "$SK_WORK/target.out" 2>/dev/null && "$ready_check"; do
    tries=$((tries + 1))
    if ((tries > 150)) || ! kill -0 "$SK_TARGET_PID" 2>/dev/null; then
      echo "the target did not start or publish (pid $SK_TARGET_PID):" >&2
      cat "$SK_WORK/target.err" >&2 || true
      return 1
    fi
    sleep 0.1
  done
}

sk_target_publishes() { "$HK_LAUNCHER" stats "$SK_TARGET_PID" >/dev/null 2>&1; }
# Listed as running, by `list` alone (which never asks for stacks).
sk_target_listed() {
  [[ -n $(sk_segment "$SK_TARGET_PID") ]] &&
    "$HK_LAUNCHER" list 2>/dev/null | grep -Eq "^ *$SK_TARGET_PID +(running|sleeping) "
}

# sk_start_target N K SECONDS [churn]: runs live_target under `heapkeeper run` (which execs it,
# so $! is the tracked pid), waits for its fixed allocations, then for a snapshot published after
# them: the first snapshot is published at start-up, before main() runs, and the next one only
# half a second later, so "ready" alone does not mean the figures show the allocations.
sk_start_target() {
  sk_launch_target sk_target_publishes "$@" || return 1
  # A snapshot whose uptime differs from the first one read after "ready" was published after it.
  local first tries=0
  first=$(sk_uptime "$SK_TARGET_PID")
  while [[ $(sk_uptime "$SK_TARGET_PID") == "$first" ]]; do
    tries=$((tries + 1))
    if ((tries > 50)); then
      echo "the target published no snapshot after its allocations (pid $SK_TARGET_PID)" >&2
      return 1
    fi
    sleep 0.1
  done
}

# sk_stop_target: a normal exit (SIGUSR1 ends the target's sleep), then reaps it.
sk_stop_target() {
  kill -USR1 "$SK_TARGET_PID" 2>/dev/null || true
  local status=0
  timeout 15 tail --pid="$SK_TARGET_PID" -f /dev/null || true
  wait "$SK_TARGET_PID" 2>/dev/null || status=$?
  SK_TARGET_PID=""
  return "$status"
}

# sk_plant PATH: registers a file this test creates under /dev/shm, removed at exit.
sk_plant() { SK_PLANTED+=("$1"); }
# sk_plant_pid PID: every segment file of PID is removed at exit (a killed process leaves its own).
sk_plant_pid() { SK_PLANTED_PIDS+=("$1"); }

# sk_segment PID: the path of PID's segment file (heapkeeper.PID.<16 random hex digits>), or "".
sk_segment() {
  local file
  for file in /dev/shm/heapkeeper."$1".????????????????; do
    [[ -e $file ]] && { echo "$file"; return; }
  done
  return 0  # none: "" (not a failure, which set -e would make fatal in `x=$(sk_segment PID)`)
}

# sk_fake_segment PID: a segment name for PID in the producer's form, with a nonce of our own.
sk_fake_segment() { printf '/dev/shm/heapkeeper.%s.%016x\n' "$1" "$((RANDOM * 65536 + RANDOM))"; }

# sk_start_target_unwatched N K SECONDS [churn]: as sk_start_target, but as a new user would
# find it: nothing has read the process's stacks yet (only `list`, which never asks for them).
sk_start_target_unwatched() {
  sk_launch_target sk_target_listed "$@" || return 1
  sleep 1  # a publication or two after its allocations, unwatched
}

# sk_one_line_error EXPECTED_STATUS STDOUT_FILE STDERR_FILE STATUS: one line on stderr, nothing
# on stdout, the expected status.
sk_one_line_error() {
  local expected=$1 out=$2 err=$3 status=$4
  if [[ $status != "$expected" ]]; then echo "status $status, expected $expected" >&2; return 1; fi
  if [[ -s $out ]]; then echo "unexpected stdout: $(head -c 300 "$out")" >&2; return 1; fi
  if [[ $(wc -l <"$err") != 1 ]]; then echo "stderr is not one line:" >&2; cat "$err" >&2; return 1; fi
  return 0
}

# wait_stopped PID (tests/process_state.sh).
source "$(dirname "${BASH_SOURCE[0]}")/../process_state.sh"

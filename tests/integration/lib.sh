# Shared helpers of the integration tests (sourced by each test script, never run directly).
#
# A test runs a workload twice or more — plainly, and under libheapkeeper.so through
# `heapkeeper run` or LD_PRELOAD — and requires identical stdout and exit status, and no
# "heapkeeper[" diagnostic on stderr of the traced run. Paths come from CMake through the
# environment (see CMakeLists.txt next to this file):
#   HK_LAUNCHER   the `heapkeeper` command          HK_PRELOAD     libheapkeeper.so
#   HK_PROG_<NAME> each tests/programs program, e.g. HK_PROG_BAD_FREE; HK_PLUGIN its plugin
#   HK_SOURCE_DIR the source tree
#   HK_TIMEOUT    seconds one run may take (default 30); runs are also cut short so that the
#                 whole script ends within HK_BUDGET seconds (default 50, under ctest's 60)
#   HK_SCRATCH    where scratch directories go (default $TMPDIR or /tmp); HK_KEEP_WORK=1 keeps them
# Failures are collected, not fatal, so one run shows every problem; hk_finish exits 1 if any.
# The scratch directory is removed on success and kept (and named) on failure.

set -euo pipefail
ulimit -c 0  # the bad-free tests abort on purpose; no core files

: "${HK_LAUNCHER:?HK_LAUNCHER must name the heapkeeper command}"
: "${HK_PRELOAD:?HK_PRELOAD must name libheapkeeper.so}"
# Limits that only catch hangs, generous enough for a machine several times overloaded (a run that
# takes 5 s alone took 50 s while three builds shared the 2 cores): a verdict must not depend on
# the load. ctest's own limit (tests/integration/CMakeLists.txt) is 10 s above the budget.
HK_TIMEOUT=${HK_TIMEOUT:-90}
HK_DEADLINE=$((SECONDS + ${HK_BUDGET:-170}))
HK_FAILURES=0
HK_REPORT_COUNT=0
HK_SCRATCH=${HK_SCRATCH:-${TMPDIR:-/tmp}}
mkdir -p "$HK_SCRATCH"
HK_WORK=$(mktemp -d "$HK_SCRATCH/heapkeeper-it.XXXXXX")
# The checks' own Python must not be the program under test: prefer Debian's.
HK_CHECK_PYTHON=/usr/bin/python3
[[ -x $HK_CHECK_PYTHON ]] || HK_CHECK_PYTHON=$(command -v python3)

# Start from heapkeeper's defaults whatever the caller's environment holds (HEAPKEEPER_LIBRARY
# included: `heapkeeper run` must find the library next to itself), but without the summary line
# at exit, so that any "heapkeeper[" line on stderr is a warning or an error.
# shellcheck disable=SC2046  # the names are single words
unset LD_PRELOAD $(compgen -v HEAPKEEPER_ || true)
export HEAPKEEPER_QUIET=1

HK_MAIN_PID=$BASHPID
hk_cleanup() {
  # Only the script itself: a background subshell killed before it execs its command may run this
  # trap too (it did: hk_wait's sleeper), and would remove the scratch directory under the script.
  [[ $BASHPID == "$HK_MAIN_PID" ]] || return 0
  if ((HK_FAILURES == 0)) && [[ -z ${HK_KEEP_WORK:-} ]]; then
    rm -rf "$HK_WORK"
  else
    echo "scratch directory kept: $HK_WORK" >&2
  fi
}
trap hk_cleanup EXIT

hk_fail() {
  echo "FAIL: $*" >&2
  HK_FAILURES=$((HK_FAILURES + 1))
}

hk_pass() { echo "ok: $*"; }

hk_finish() {
  if ((HK_FAILURES > 0)); then
    echo "$HK_FAILURES check(s) failed" >&2
    exit 1
  fi
  echo "all checks passed"
}

# hk_program NAME: the path of tests/programs' NAME (from HK_PROG_<NAME>), or a fatal error.
hk_program() {
  local variable=HK_PROG_${1^^}
  if [[ -z ${!variable:-} || ! -x ${!variable} ]]; then
    echo "$variable must name the built program $1 (is it built?)" >&2
    exit 2
  fi
  echo "${!variable}"
}

# hk_limit: the time limit for the next run: HK_TIMEOUT, or what is left of the script's budget
# (so a hang is reported by the script, with its diagnostics, before ctest kills it).
hk_limit() {
  local left=$((HK_DEADLINE - SECONDS))
  ((left > HK_TIMEOUT)) && left=$HK_TIMEOUT
  ((left < 2)) && left=2
  echo "$left"
}

# hk_wait_for_segment PID [TRIES]: waits (0.05 s a try, 200 tries by default) until `heapkeeper
# stats PID` answers: the process's live-stats segment can be read, not only its file exists (it is
# there from the moment it is created, its header still being written; a process stopped then
# left a segment refused as unfinished). Returns 1 if it never answered.
hk_wait_for_segment() {
  local pid=$1 tries=${2:-200}
  for _ in $(seq "$tries"); do
    "$HK_LAUNCHER" stats "$pid" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}

# hk_wait PID: waits for a background job started by the script, killing it when it outlives
# hk_limit; returns its status (143 or 137 if it had to be killed). It polls: `wait -n` on a job that has
# already ended (bash reaps and forgets it as soon as it ends) reports "no record" and would then
# wait for the whole limit.
hk_wait() {
  local pid=$1 status=0 deadline
  deadline=$((SECONDS + $(hk_limit)))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then
    # TERM first: a `timeout CMD` job passes it on to CMD, which KILL would leave running, holding
    # the script's output open.
    kill "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" || status=$?
  return "$status"
}

# hk_start_ready NAME CMD ARGS...: starts CMD under `heapkeeper run` in the background (stdout in
# $HK_WORK/NAME.out, stderr in NAME.err), sets HK_READY_PID, and waits up to 10 s for a line
# starting with "ready". Returns 1 (after one hk_fail naming stderr) if none came.
hk_start_ready() {
  local name=$1
  shift
  "$HK_LAUNCHER" run -- "$@" >"$HK_WORK/$name.out" 2>"$HK_WORK/$name.err" &
  HK_READY_PID=$!
  for _ in $(seq 100); do
    grep -q '^ready' "$HK_WORK/$name.out" 2>/dev/null && return 0
    kill -0 "$HK_READY_PID" 2>/dev/null || break
    sleep 0.1
  done
  hk_fail "$(basename "$1") did not start: $(cat "$HK_WORK/$name.err")"
  return 1
}

# hk_exec MODE CMD ARGS...: runs CMD plainly (MODE plain), under `heapkeeper run` (launcher) or
# with LD_PRELOAD set (preload), with a time limit. Returns CMD's status; 124 means it timed out.
# In preload mode the variable is set by a shell that then execs CMD, so that only CMD (and its
# children) load the library, not a wrapper such as env.
hk_exec() {
  local mode=$1 limit
  shift
  limit=$(hk_limit)
  # shellcheck disable=SC2016  # $0 and $@ are expanded by the inner shell
  case $mode in
    plain) timeout -k 5 "$limit" "$@" ;;
    launcher) timeout -k 5 "$limit" "$HK_LAUNCHER" run -- "$@" ;;
    preload) timeout -k 5 "$limit" bash -c 'export LD_PRELOAD=$0; exec "$@"' "$HK_PRELOAD" "$@" ;;
    *) echo "hk_exec: unknown mode $mode" >&2; return 2 ;;
  esac
}

# hk_step MODE CMD ARGS...: hk_exec for one step of a multi-command workload. A failing step is
# written to stdout as "[exit N] CMD" (so it is part of the comparison) and the workload goes on.
hk_step() {
  local mode=$1 status=0
  shift
  hk_exec "$mode" "$@" || status=$?
  if ((status != 0)); then echo "[exit $status] $*"; fi
  return 0
}

# hk_require PROGRAM...: skips the test (status 77, see SKIP_RETURN_CODE) when one is missing.
hk_require() {
  local program
  for program in "$@"; do
    if ! command -v "$program" >/dev/null 2>&1; then
      echo "SKIP: $program is not installed" >&2
      trap - EXIT
      rm -rf "$HK_WORK"
      exit 77
    fi
  done
}

# hk_capture NAME MODE FUNCTION ARGS...: runs `FUNCTION MODE ARGS...` in a fresh directory
# $HK_WORK/NAME.MODE/run (its working directory), with stdout, stderr and the status saved as out,
# err and status in $HK_WORK/NAME.MODE. FUNCTION runs its commands through `hk_exec "$mode" ...`.
# Traced runs write their exit reports to $HK_WORK/NAME.MODE/reports/r.<pid>.json.
hk_capture() {
  local name=$1 mode=$2 function=$3
  shift 3
  local dir=$HK_WORK/$name.$mode
  mkdir -p "$dir/run" "$dir/reports"
  local status=0
  (
    cd "$dir/run"
    if [[ $mode != plain ]]; then export HEAPKEEPER_REPORT=$dir/reports/r.%p.json; fi
    "$function" "$mode" "$@"
  ) >"$dir/out" 2>"$dir/err" </dev/null || status=$?
  echo "$status" >"$dir/status"
}

hk_status() { cat "$HK_WORK/$1.$2/status"; }

# hk_no_diagnostics NAME MODE: stderr of that run holds no "heapkeeper[" line, and the dynamic
# loader did not refuse the preload library (which would make the comparison vacuous).
hk_no_diagnostics() {
  local err=$HK_WORK/$1.$2/err
  if grep -q 'heapkeeper\[' "$err"; then
    hk_fail "$1 ($2): heapkeeper printed diagnostics:"
    grep 'heapkeeper\[' "$err" | head -20 >&2
    return 1
  fi
  if grep -q 'cannot be preloaded' "$err"; then
    hk_fail "$1 ($2): the preload library was not loaded: $(grep -m1 'cannot be preloaded' "$err")"
    return 1
  fi
  return 0
}

# hk_check_reports NAME MODE: every exit report of that traced run is valid JSON naming the pid of
# its file name, with live_blocks == allocations - frees; and when the run's first process ended
# normally (status below 128), there is at least one, which proves heapkeeper was really loaded.
hk_check_reports() {
  local name=$1 mode=$2 message
  local dir=$HK_WORK/$name.$mode
  if message=$("$HK_CHECK_PYTHON" - "$dir/reports" "$(hk_status "$name" "$mode")" 2>&1 <<'PY'
import glob, json, os, re, sys
directory, status = sys.argv[1], int(sys.argv[2])
paths = sorted(glob.glob(os.path.join(directory, "r.*.json")))
problems = []
if status < 128 and not paths:
    problems.append("no exit report was written: was heapkeeper loaded at all?")
for path in paths:
    pid = int(re.fullmatch(r"r\.(\d+)\.json", os.path.basename(path)).group(1))
    try:
        with open(path) as f:
            r = json.load(f)
    except ValueError as error:
        problems.append(f"{path}: not valid JSON: {error}")
        continue
    if r.get("pid") != pid:
        problems.append(f"{path}: pid {r.get('pid')}, expected {pid}")
    if r.get("live_blocks") != r.get("allocations", 0) - r.get("frees", 0):
        problems.append(f"{path} ({r.get('program')}): live_blocks {r.get('live_blocks')} != "
                        f"allocations {r.get('allocations')} - frees {r.get('frees')}")
    # A stack reads as it would without heapkeeper: none of its own frames, anywhere.
    own = [(section, [f.get("function") for f in site["stack"]]) for section in ("leaks", "live_sites")
           for site in r.get(section, []) if any("libheapkeeper" in str(f.get("module", "")) for f in site["stack"])]
    if own:
        problems.append(f"{path} ({r.get('program')}): heapkeeper's own frames in {len(own)} stack(s), e.g. {own[0]}")
leftovers = glob.glob(os.path.join(directory, "*.tmp.*"))
if leftovers:
    problems.append(f"temporary report files left behind: {leftovers}")
if problems:
    sys.exit("\n".join(problems))
print(len(paths))
PY
  ); then
    HK_REPORT_COUNT=$message
    return 0
  fi
  hk_fail "$name ($mode): exit reports: $message"
  return 1
}

# hk_compare NAME FUNCTION ARGS... [-- MODES]: runs FUNCTION plainly and in each traced mode
# (default: launcher) and checks identical stdout and status, a clean stderr and valid reports.
hk_compare() {
  local name=$1 function=$2
  shift 2
  local -a args=() modes=()
  while (($# > 0)) && [[ $1 != -- ]]; do args+=("$1"); shift; done
  if (($# > 0)); then shift; modes=("$@"); else modes=(launcher); fi

  hk_capture "$name" plain "$function" "${args[@]}"
  local plain_status
  plain_status=$(hk_status "$name" plain)
  if [[ $plain_status == 124 ]]; then
    hk_fail "$name: the plain run timed out"
    return
  fi
  local mode
  for mode in "${modes[@]}"; do
    hk_capture "$name" "$mode" "$function" "${args[@]}"
    local ok=1 status
    status=$(hk_status "$name" "$mode")
    if [[ $status == 124 ]]; then
      hk_fail "$name ($mode): timed out (hang or deadlock under heapkeeper?); its stderr ends with:"
      tail -20 "$HK_WORK/$name.$mode/err" >&2
      continue
    fi
    if [[ $status != "$plain_status" ]]; then
      hk_fail "$name ($mode): exit status $status, without heapkeeper $plain_status"
      ok=0
    fi
    if ! cmp -s "$HK_WORK/$name.plain/out" "$HK_WORK/$name.$mode/out"; then
      hk_fail "$name ($mode): stdout differs from the plain run:"
      diff "$HK_WORK/$name.plain/out" "$HK_WORK/$name.$mode/out" | head -30 >&2 || true
      ok=0
    fi
    hk_no_diagnostics "$name" "$mode" || ok=0
    hk_check_reports "$name" "$mode" || ok=0
    if ((ok == 0)); then
      echo "--- stderr of the $mode run (last lines):" >&2
      tail -20 "$HK_WORK/$name.$mode/err" >&2
    else
      hk_pass "$name ($mode): same stdout ($(wc -l <"$HK_WORK/$name.plain/out") lines) and status ($status)," \
        "$HK_REPORT_COUNT valid exit report(s)"
    fi
  done
}

# hk_single NAME MODE CMD ARGS...: one run of CMD (for tests that only make sense traced).
hk_single_function() { local mode=$1; shift; hk_exec "$mode" "$@"; }
hk_single() {
  local name=$1 mode=$2
  shift 2
  hk_capture "$name" "$mode" hk_single_function "$@"
}

# hk_json_check FILE PYTHON-EXPRESSION [DESCRIPTION]: loads FILE with json.load into `r` and
# checks that the expression is true; prints the expression's context on failure.
hk_json_check() {
  local file=$1 expression=$2 description=${3:-$2}
  local message
  if message=$("$HK_CHECK_PYTHON" - "$file" "$expression" 2>&1 <<'PY'
import json, sys
path, expression = sys.argv[1], sys.argv[2]
with open(path) as f:
    r = json.load(f)
if not eval(expression, {"r": r}):
    keys = {k: r[k] for k in ("pid", "allocations", "frees", "live_blocks", "live_bytes", "bad_frees") if k in r}
    sys.exit(f"not true: {expression}; report figures: {keys}")
PY
  ); then
    return 0
  fi
  hk_fail "$file: $description: $message"
  return 1
}

# wait_stopped PID (tests/process_state.sh).
source "$(dirname "${BASH_SOURCE[0]}")/../process_state.sh"

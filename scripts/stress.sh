#!/usr/bin/env bash
# Stress scenarios for heapkeeper (issue #5): real programs from Debian and the project's own
# stress programs (tests/stress/), each run without heapkeeper and under `heapkeeper run`, then
# compared. Every scenario checks that
#   - stdout and the exit status are the same as without heapkeeper, and nothing crashed or hung;
#   - every exit report (HEAPKEEPER_REPORT, one per process) is consistent: live_blocks equals
#     allocations - frees, peak >= live, no bad free, a successful exit scan; and agrees with the
#     program's own counts where it prints them (allocation calls, leaked blocks, pid log);
#   - `heapkeeper stats --json`, run while the scenario runs, reads every tracked process of the
#     scenario it catches alive, and its figures are sane (live <= mapped, no wrapped counter...);
#     the project's programs also stop at a "hold point" where the live stats must show exactly
#     the blocks the program holds at one call site (tests/stress/stress_common.h);
#   - no leak is reported for a leak-free program (perl, git and gcc do leak at exit: their counts
#     are only reported), and the leakers' leaks are found exactly where they are made.
# Each scenario is bounded in time (every command runs under `timeout`, and the scenario as a
# whole too). At the end a table (scenario, result, duration, peak live bytes, leaks, scans, note)
# is printed and written to BUILD/stress/results.md; each scenario's files (stdout, stderr,
# reports, stats samples) stay in BUILD/stress/logs/NAME/.
#
# Usage: scripts/stress.sh [--list] [--quick] [--lib PATH] [--build-dir DIR] [--no-install] [SCENARIO...]
set -euo pipefail

# name|what it runs (the order is the order of a full run: the project's programs first).
readonly SCENARIO_TABLE="threads|48 threads (32 with --quick) relay blocks through queues; every block freed on another thread
fork-exec|3 threads fork at once while 2 allocate; children exit, _exit, exec /bin/true or re-exec and fork again
signals|4 threads churn while SIGUSR1 and SIGALRM handlers allocate, with periodic scans (SIGPWR) on top
slow-leak|one 640-byte leak every 100 ms for 60 s (10 s with --quick), scans every second
waits|sleep, poll, select, epoll, sigtimedwait and socket timeouts in C, perl, python3 and bash under 100 ms scans
collect|HEAPKEEPER_MODE=collect on a program leaking 1 MiB every 30 ms: live memory stays bounded
python3|Debian's python3 (pymalloc) on an object-churn script
python3-malloc|the same with PYTHONMALLOC=malloc: every object through malloc/free
sqlite3|sqlite3 shell: 300,000 rows (100,000 with --quick), indexes, joins, window queries
redis|redis-server on a loopback port driven by redis-benchmark, SHUTDOWN NOSAVE
gcc|gcc compiles and links a generated C tree (gcc, cc1, as, collect2, ld all tracked)
git|git commits revisions of a generated tree: add, commit, merge, log, blame, gc, fsck, cat-file --batch
perl|perl on a hash and regex churn script
pipeline|bash -c 'seq | awk | sort | uniq -c | sort | awk' with every process tracked"

ALL_SCENARIOS=()
while IFS='|' read -r name _; do ALL_SCENARIOS+=("$name"); done <<<"$SCENARIO_TABLE"
readonly ALL_SCENARIOS

usage() {
  cat <<EOF
Usage: scripts/stress.sh [options] [SCENARIO...]

Runs the named stress scenarios (all by default) with and without heapkeeper and prints a table.

  --list            list the scenarios and exit
  --quick           shorter scenarios (the whole set in about 3 minutes on 2 cores)
  --lib PATH        libheapkeeper.so to test (default: BUILD/lib/libheapkeeper.so)
  --build-dir DIR   build tree with bin/heapkeeper and tests/stress/ (default: build)
  --no-install      never call apt-get; scenarios whose program is missing are skipped
  -h, --help        this text

Scenarios: ${ALL_SCENARIOS[*]}
Writes BUILD/stress/results.md; per-scenario logs go to BUILD/stress/logs/SCENARIO/.
EOF
}

die() { echo "stress.sh: error: $*" >&2; exit 2; }
note() { echo "stress.sh: $*" >&2; }

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STRESS_SOURCES=$ROOT_DIR/tests/stress
# The checks' Python must not be a program under test, nor a pyenv shim: Debian's.
CHECK_PYTHON=/usr/bin/python3

# ---------------------------------------------------------------- options

quick=0
allow_install=1
list_only=0
build_dir=$ROOT_DIR/build
hk_lib=""
internal_scenario=""
selected=()
while (($#)); do
  case $1 in
    --list) list_only=1; shift ;;
    --quick) quick=1; shift ;;
    --no-install) allow_install=0; shift ;;
    --lib) (($# >= 2)) || die "--lib needs a path"; hk_lib=$2; shift 2 ;;
    --lib=*) hk_lib=${1#*=}; shift ;;
    --build-dir) (($# >= 2)) || die "--build-dir needs a directory"; build_dir=$2; shift 2 ;;
    --build-dir=*) build_dir=${1#*=}; shift ;;
    # Internal: run one scenario in this process (the driver re-runs the script per scenario, so
    # that a time limit can end the whole scenario and a failing one cannot stop the others).
    --internal-run) (($# >= 2)) || die "--internal-run needs a scenario"; internal_scenario=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option '$1' (try --help)" ;;
    *) selected+=("$1"); shift ;;
  esac
done

if ((list_only)); then
  while IFS='|' read -r name what; do printf '%-15s %s\n' "$name" "$what"; done <<<"$SCENARIO_TABLE"
  exit 0
fi

for name in "${selected[@]}"; do
  [[ " ${ALL_SCENARIOS[*]} " == *" $name "* ]] || die "unknown scenario '$name' (valid: ${ALL_SCENARIOS[*]})"
done
((${#selected[@]})) || selected=("${ALL_SCENARIOS[@]}")

build_dir=$(cd "$build_dir" 2>/dev/null && pwd) || die "no build directory '$build_dir' (build first: scripts/build.sh -DHEAPKEEPER_BUILD_TESTS=ON)"
HK=$build_dir/bin/heapkeeper
STRESS_BIN=$build_dir/tests/stress
[[ -n $hk_lib ]] || hk_lib=$build_dir/lib/libheapkeeper.so
[[ -x $HK ]] || die "$HK is missing (build first: scripts/build.sh -DHEAPKEEPER_BUILD_TESTS=ON)"
[[ -r $hk_lib ]] || die "the preload library $hk_lib is missing"
hk_lib=$(cd "$(dirname "$hk_lib")" && pwd)/$(basename "$hk_lib")
OUT_DIR=$build_dir/stress
LOG_DIR=$OUT_DIR/logs

# Start from heapkeeper's defaults whatever the caller's environment holds; fixed locale and
# timezone so that sort, git and friends print the same in every run.
# shellcheck disable=SC2046  # the names are single words
unset LD_PRELOAD $(compgen -v HEAPKEEPER_ || true)
export LC_ALL=C TZ=UTC

# ---------------------------------------------------------------- sizes

# Every figure a scenario uses, full and --quick. The time limits are caps for a hang, far above
# what a scenario takes (the table shows that).
if ((quick)); then
  relay_threads=32 relay_messages=1500 relay_hops=6
  fork_per_thread=8 fork_threads=3
  signal_rounds=2000000
  leak_ticks=100
  collect_ticks=120
  python_rounds=80
  sqlite_rows=100000
  redis_requests=20000
  gcc_modules=6 gcc_functions=40
  git_modules=8 git_functions=20 git_revisions=4
  perl_rounds=6
  pipeline_lines=1000000
  scenario_limit=150
else
  relay_threads=48 relay_messages=6000 relay_hops=8
  fork_per_thread=40 fork_threads=3
  signal_rounds=10000000
  leak_ticks=600
  collect_ticks=400
  python_rounds=400
  sqlite_rows=300000
  redis_requests=100000
  gcc_modules=20 gcc_functions=60
  git_modules=30 git_functions=40 git_revisions=12
  perl_rounds=20
  pipeline_lines=2000000
  scenario_limit=420
fi
readonly leak_interval_ms=100
readonly collect_interval_ms=30 collect_chunk_kib=1024 collect_scan_interval=200ms
# The collect-mode bound: the 4 MiB working set plus what leaks during ~4 scan intervals
# (a chunk lives two scans before it is freed; the rest is slack for a loaded machine).
readonly collect_bound=$((48 * 1024 * 1024))

# ---------------------------------------------------------------- scenario helpers
# Everything below runs inside one scenario (--internal-run): SC_NAME, SC_DIR (its log
# directory, also the working directory) and SC_DEADLINE are set.

# fail MESSAGE: records a failed check (the scenario goes on, so one run shows every problem).
fail() {
  echo "FAIL: $*" >&2
  printf '%s\n' "$*" >>"$SC_DIR/failures"
}
pass() { echo "ok: $*" >&2; }
# skip REASON: the scenario cannot run here (its program cannot be had).
skip() {
  printf '%s\n' "$*" >"$SC_DIR/skipped"
  echo "SKIP: $*" >&2
  exit 0
}
# table_note TEXT: a short remark for the results table.
table_note() { printf '%s\n' "$*" >"$SC_DIR/note"; }

# limit: seconds the next command may take: what is left of the scenario's budget.
limit() {
  local left=$((SC_DEADLINE - SECONDS))
  ((left < 5)) && left=5
  echo "$left"
}

# run MODE CMD ARGS...: CMD without heapkeeper (plain) or under `heapkeeper run` (hk), with a
# time limit. Returns CMD's status (124: timed out). --foreground keeps CMD in the scenario's
# process group, which the driver kills as a whole when the scenario ends or outlives its limit.
run() {
  local mode=$1
  shift
  case $mode in
    plain) timeout --foreground -k 5 "$(limit)" "$@" ;;
    hk) timeout --foreground -k 5 "$(limit)" "$HK" run --library "$hk_lib" -- "$@" ;;
    *) echo "run: unknown mode $mode" >&2; return 2 ;;
  esac
}

# step MODE CMD ARGS...: run, for one step of a multi-command workload; a failing step is
# written to stdout as "[exit N] CMD", so it is part of the comparison, and the workload goes on.
step() {
  local mode=$1 status=0
  shift
  run "$mode" "$@" || status=$?
  if ((status != 0)); then echo "[exit $status] $*"; fi
  return 0
}

# in_run PID TOKEN ROOT: the process belongs to this scenario's traced run: its environment has
# the run's token (children inherit it; grep -z: /proc/PID/environ is NUL-separated), or it
# descends from ROOT, the run's shell (for programs that reuse their environment's memory for
# their process title, as redis-server does).
in_run() {
  local pid=$1 token=$2 root=$3 stat parent
  grep -qzx "HK_STRESS_RUN=$token" "/proc/$pid/environ" 2>/dev/null && return 0
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) } # the command name may hold spaces and parentheses
    read -r _ parent _ <<<"$stat"
    [[ $parent == "$root" ]] && return 0
    ((parent > 1)) || return 1
    pid=$parent
  done
  return 1
}

# sampler DIR TOKEN ROOT STOP: until the file STOP exists, reads `heapkeeper stats --json` of every
# tracked process of the run (a segment /dev/shm/heapkeeper.PID.NONCE) into DIR/stats.PID.N.json: at
# once when it appears, then about once a second, at most 120 times. A read that fails while the
# process and its segment are still there is retried once, then logged in DIR/errors.log.
sampler() {
  local dir=$1 token=$2 root=$3 stop=$4 segment pid n
  local -A taken=() last=() foreign=()
  mkdir -p "$dir"
  while [[ ! -e $stop ]]; do
    for segment in /dev/shm/heapkeeper.*.*; do
      pid=${segment#/dev/shm/heapkeeper.}
      pid=${pid%%.*}
      [[ $pid =~ ^[0-9]+$ && -z ${foreign[$pid]:-} ]] || continue
      n=${taken[$pid]:-0}
      ((n < 120)) || continue
      if ((n > 0 && SECONDS - ${last[$pid]:-0} < 1)); then continue; fi
      if ! in_run "$pid" "$token" "$root"; then
        [[ -d /proc/$pid ]] && foreign[$pid]=1
        continue
      fi
      local attempt
      for attempt in 1 2; do
        if "$HK" stats "$pid" --json >"$dir/sample.tmp" 2>"$dir/sample.err"; then
          mv "$dir/sample.tmp" "$dir/stats.$pid.$n.json"
          taken[$pid]=$((n + 1))
          last[$pid]=$SECONDS
          break
        fi
        # A process that exits between the listing and the read is no error.
        [[ -d /proc/$pid && -e $segment ]] || break
        if ((attempt == 2)); then
          echo "pid $pid: heapkeeper stats --json failed while the process ran: $(head -c 300 "$dir/sample.err")" >>"$dir/errors.log"
          taken[$pid]=$((n + 1))
          last[$pid]=$SECONDS
        fi
        sleep 0.05
      done
    done
    sleep 0.1
  done
  rm -f "$dir/sample.tmp" "$dir/sample.err"
}

# hold_responder HOLD_DIR STOP: waits for the program's hold point (HOLD_DIR/ready: "PID BLOCKS
# BYTES"), polls `heapkeeper stats --json PID` until the live stats show exactly those blocks at
# stress_hold_blocks (at most 15 s: sites are symbolized only once a reader is watching, at the
# next publication), writes the verdict to HOLD_DIR/result and lets the program go on.
hold_responder() {
  local hold=$1 stop=$2 pid blocks bytes verdict=""
  while [[ ! -e $hold/ready ]]; do
    [[ -e $stop ]] && return 0
    sleep 0.05
  done
  read -r pid blocks bytes <"$hold/ready"
  local deadline=$((SECONDS + 15)) status
  while :; do
    status=0
    if "$HK" stats "$pid" --json >"$hold/stats.json" 2>"$hold/stats.err"; then
      verdict=$("$CHECK_PYTHON" "$STRESS_SOURCES/check.py" hold "$hold/stats.json" "$blocks" "$bytes") || status=$?
    else
      status=1
      verdict="heapkeeper stats --json $pid failed: $(head -c 300 "$hold/stats.err")"
    fi
    if ((status == 0)); then
      echo "ok $verdict" >"$hold/result"
      break
    fi
    if ((SECONDS >= deadline)); then
      echo "FAIL $verdict" >"$hold/result"
      break
    fi
    sleep 0.2
  done
  touch "$hold/go"
}

# Per-run settings of compare (set by a scenario before calling it):
#   HK_ENV        words NAME=VALUE exported for the traced run only (HEAPKEEPER_* settings)
#   HOLD=1        the program has a hold point (tests/stress/stress_common.h)
#   PARALLEL=1    run plain and traced at the same time (for programs that mostly sleep)
#   ALLOW_SCAN_LINES=1  periodic-scan lines on stderr are expected
HK_ENV=()
HOLD=0
PARALLEL=0
ALLOW_SCAN_LINES=0

# capture MODE FUNCTION ARGS...: runs `FUNCTION MODE ARGS...` in SC_DIR/MODE/run with stdout,
# stderr, status and wall time saved in SC_DIR/MODE/{out,err,status,seconds}. Traced runs write
# their reports to SC_DIR/hk/reports/r.PID.json and are sampled (SC_DIR/hk/samples).
capture() {
  local mode=$1 function=$2
  shift 2
  local dir=$SC_DIR/$mode
  rm -rf "$dir"
  mkdir -p "$dir/run"
  local started=$EPOCHREALTIME status=0 token="$SC_NAME.$$.$RANDOM" worker sampler_pid="" responder_pid=""
  [[ $mode == plain ]] || mkdir -p "$dir/reports" "$dir/samples" "$dir/hold"
  (
    cd "$dir/run"
    if [[ $mode == hk ]]; then
      export HEAPKEEPER_REPORT=$dir/reports/r.%p.json HK_STRESS_RUN=$token
      ((HOLD)) && export HK_STRESS_HOLD=$dir/hold
      for setting in "${HK_ENV[@]}"; do export "${setting?}"; done
    fi
    "$function" "$mode" "$@"
  ) >"$dir/out" 2>"$dir/err" </dev/null &
  worker=$!
  if [[ $mode == hk ]]; then
    sampler "$dir/samples" "$token" "$worker" "$dir/stop" &
    sampler_pid=$!
    if ((HOLD)); then
      hold_responder "$dir/hold" "$dir/stop" &
      responder_pid=$!
    fi
  fi
  wait "$worker" || status=$?
  echo "$status" >"$dir/status"
  awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", b - a }' >"$dir/seconds"
  if [[ $mode == hk ]]; then
    touch "$dir/stop"
    wait "$sampler_pid" || true
    [[ -z $responder_pid ]] || wait "$responder_pid" || true
  fi
}

# describe_status N: "exit N", "killed by SIGNAME" or "timed out".
describe_status() {
  local status=$1
  if ((status == 124 || status == 137)); then echo "timed out (status $status)"
  elif ((status > 128)); then echo "killed by SIG$(kill -l $((status - 128)) 2>/dev/null || echo $((status - 128)))"
  else echo "exit $status"
  fi
}

# compare FUNCTION ARGS...: the plain and the traced run of FUNCTION, and the checks common to
# every scenario: same stdout and status, no crash or hang, no unexpected heapkeeper diagnostic,
# the hold point (HOLD=1), at least one readable mid-run stats sample, sane samples.
compare() {
  local function=$1
  shift
  if ((PARALLEL)); then
    capture plain "$function" "$@" &
    local plain_job=$!
    capture hk "$function" "$@"
    wait "$plain_job"
  else
    capture plain "$function" "$@"
    capture hk "$function" "$@"
  fi
  local plain_status hk_status
  plain_status=$(<"$SC_DIR/plain/status")
  hk_status=$(<"$SC_DIR/hk/status")
  echo "plain run: $(describe_status "$plain_status") in $(<"$SC_DIR/plain/seconds") s;" \
    "under heapkeeper: $(describe_status "$hk_status") in $(<"$SC_DIR/hk/seconds") s" >&2
  if ((hk_status == 124 || hk_status == 137 || hk_status > 128)); then
    fail "under heapkeeper: $(describe_status "$hk_status") (without: $(describe_status "$plain_status")); stderr ends: $(tail -n 3 "$SC_DIR/hk/err" | tr '\n' ' ')"
  elif [[ $hk_status != "$plain_status" ]]; then
    fail "exit status $hk_status under heapkeeper, $plain_status without"
  else
    pass "same exit status ($hk_status)"
  fi
  if ((plain_status == 124 || plain_status == 137)); then fail "the plain run timed out"; fi
  if cmp -s "$SC_DIR/plain/out" "$SC_DIR/hk/out"; then
    pass "same stdout ($(wc -l <"$SC_DIR/plain/out") lines)"
  else
    fail "stdout differs from the plain run: $(diff "$SC_DIR/plain/out" "$SC_DIR/hk/out" | grep -m 2 '^[<>]' | tr '\n' ' ')"
    diff "$SC_DIR/plain/out" "$SC_DIR/hk/out" | head -20 >&2 || true
  fi
  # heapkeeper's own diagnostics start with "heapkeeper[PID]:"; periodic scans' lines are the only
  # ones a healthy run prints (and only when a scenario turns scans on).
  local unexpected
  unexpected=$(grep -E 'heapkeeper\[[0-9]+\]|cannot be preloaded' "$SC_DIR/hk/err" |
    { if ((ALLOW_SCAN_LINES)); then grep -Ev 'heapkeeper\[[0-9]+\]: scan [0-9]+: [0-9]+ new leaked blocks'; else cat; fi } |
    head -n 3 || true)
  [[ -z $unexpected ]] || fail "heapkeeper diagnostics on stderr: $(tr '\n' ' ' <<<"$unexpected")"
  if ((HOLD)); then
    local verdict=""
    [[ -f $SC_DIR/hk/hold/result ]] && verdict=$(<"$SC_DIR/hk/hold/result")
    case $verdict in
      ok*) pass "hold point: ${verdict#ok }" ;;
      FAIL*) fail "hold point: ${verdict#FAIL }" ;;
      *) fail "the program never reached its hold point (HK_STRESS_HOLD)" ;;
    esac
  fi
  local message
  if message=$("$CHECK_PYTHON" "$STRESS_SOURCES/check.py" samples "$SC_DIR/hk/samples" ${SAMPLE_PROGRAM:+--program "$SAMPLE_PROGRAM"}); then
    pass "mid-run heapkeeper stats --json: $message"
    echo "$message" >"$SC_DIR/sampled"
  else
    fail "mid-run stats: $(head -n 3 <<<"$message" | tr '\n' ' ')"
  fi
  if [[ -s $SC_DIR/hk/samples/errors.log ]]; then
    fail "heapkeeper stats --json could not read a running process: $(head -n 2 "$SC_DIR/hk/samples/errors.log" | tr '\n' ' ')"
  fi
}

# check_reports [check.py reports OPTIONS...]: the traced run's exit reports; writes the summary
# the results table reads (SC_DIR/summary: reports peak leaked leaked_bytes scans allocations collected).
check_reports() {
  local message
  if message=$("$CHECK_PYTHON" "$STRESS_SOURCES/check.py" reports "$SC_DIR/hk/reports" --summary "$SC_DIR/summary" "$@"); then
    pass "exit reports: $(cut -d' ' -f1 "$SC_DIR/summary") valid, consistent with the program"
  else
    fail "exit reports: $(head -n 3 <<<"$message" | tr '\n' ' ')"
    [[ $(wc -l <<<"$message") -le 3 ]] || echo "$message" >&2
  fi
}

# summary_field N: field N of SC_DIR/summary (1 reports, 2 peak, 3 leaked blocks, 4 leaked bytes,
# 5 scans, 6 allocations, 7 collected blocks).
summary_field() { cut -d' ' -f"$1" "$SC_DIR/summary" 2>/dev/null || echo 0; }

# sampled_programs: which programs' live stats were read mid-run, for a table note.
sampled_programs() { sed 's/^[0-9]* samples of /stats read from /' "$SC_DIR/sampled" 2>/dev/null || echo "no stats read"; }

# stress_program NAME: sets PROGRAM to the built tests/stress program, or skips the scenario.
stress_program() {
  PROGRAM=$STRESS_BIN/hk_stress_$1
  [[ -x $PROGRAM ]] || skip "$PROGRAM is not built (configure with -DHEAPKEEPER_BUILD_TESTS=ON and build)"
}

# need COMMAND...: skip when a command is missing (the driver has tried to install it).
need() {
  local command
  for command in "$@"; do
    command -v "$command" >/dev/null 2>&1 || skip "$command is not installed"
  done
}

# ---------------------------------------------------------------- the project's stress programs

workload_program() {
  local mode=$1
  shift
  run "$mode" "$@"
}

scenario_threads() {
  stress_program thread_relay
  HOLD=1
  compare workload_program "$PROGRAM" "$relay_threads" "$relay_messages" "$relay_hops"
  local calls
  calls=$(sed -n 's/^allocation calls made by the program: //p' "$SC_DIR/plain/out")
  check_reports --no-leaks --min-allocations "${calls:-1}"
  table_note "$relay_threads threads, $((relay_threads * relay_messages)) messages x $relay_hops hops"
}

workload_fork() {
  local mode=$1 program=$2
  shift 2
  run "$mode" "$program" "$@" --pid-log "$PWD/pids"
}

scenario_fork_exec() {
  stress_program fork_storm
  HOLD=1
  compare workload_fork "$PROGRAM" "$fork_per_thread" "$fork_threads"
  # One report per process that ends through exit(), from its own pid; none from _exit(); the
  # parent leaks nothing. A child inherits the blocks the churn threads held in their locals at
  # the fork, with no thread left to free them: real leaks of the child, which heapkeeper finds
  # when nothing else is left pointing at them (e.g. glibc gave the dead thread's stack to
  # heapkeeper's new publisher thread, whose stack is no root). Nothing else may leak.
  check_reports --pid-log "$SC_DIR/hk/run/pids" --leaks-only-via churn
  table_note "$((fork_per_thread * fork_threads)) forks, $(summary_field 1) processes reported; leaks: blocks of threads absent in the child"
}

scenario_signals() {
  stress_program signal_storm
  HOLD=1
  # Periodic scans stop the world with SIGPWR while the handlers run and allocate.
  HK_ENV=(HEAPKEEPER_SCAN_INTERVAL=100ms HEAPKEEPER_QUIET=1)
  compare workload_program "$PROGRAM" "$signal_rounds" 4
  check_reports --no-leaks
  local counts
  counts=$(grep -m1 'SIGUSR1 sent' "$SC_DIR/hk/err" | sed 's/^signal_storm: //') || true
  table_note "${counts:-signal counts missing}"
}

scenario_slow_leak() {
  stress_program slow_leaker
  HOLD=1
  PARALLEL=1 # it sleeps most of the time: both runs at once halve the wait
  ALLOW_SCAN_LINES=1
  HK_ENV=(HEAPKEEPER_SCAN_INTERVAL=1s)
  compare workload_program "$PROGRAM" "$leak_ticks" "$leak_interval_ms"
  local seconds=$((leak_ticks * leak_interval_ms / 1000))
  # Every leak at leak_one_record, exactly as many as the program made, nothing else.
  check_reports --leaked-blocks "$leak_ticks" --leaks-only-in leak_one_record
  local message growth="no growth seen"
  if message=$("$CHECK_PYTHON" "$STRESS_SOURCES/check.py" scan-growth "$SC_DIR/hk/samples" "$SC_DIR/hk/err" \
    --min-scans $((seconds * 2 / 3)) --final "$leak_ticks"); then
    pass "$message"
    growth=$(sed -n 's/^periodic scans found \([0-9]* \.\. [0-9]*\) leaked blocks.*/periodic scans found \1/p' <<<"$message")
  else
    fail "periodic scans: $(head -n 3 <<<"$message" | tr '\n' ' ')"
  fi
  table_note "$leak_ticks leaked in ${seconds}s, all found at leak_one_record; $growth"
}

scenario_collect() {
  stress_program collect_leaker
  HOLD=1
  PARALLEL=1
  ALLOW_SCAN_LINES=1
  HK_ENV=(HEAPKEEPER_MODE=collect "HEAPKEEPER_SCAN_INTERVAL=$collect_scan_interval" HEAPKEEPER_QUIET=1)
  compare workload_program "$PROGRAM" "$collect_ticks" "$collect_interval_ms" "$collect_chunk_kib"
  # The lost chunks still unreclaimed at exit are reported as leaks (a few): no --no-leaks.
  check_reports --leaks-only-in lose_chunk
  local plain_rss hk_rss report message
  plain_rss=$(sed -n 's/^collect_leaker: maxrss_kib=//p' "$SC_DIR/plain/err")
  hk_rss=$(sed -n 's/^collect_leaker: maxrss_kib=//p' "$SC_DIR/hk/err")
  report=$(find "$SC_DIR/hk/reports" -name 'r.*.json' | head -n 1)
  if [[ -z $plain_rss || -z $report ]]; then
    fail "collect: the plain run's peak RSS or the exit report is missing"
  elif message=$("$CHECK_PYTHON" "$STRESS_SOURCES/check.py" collect "$report" --ticks "$collect_ticks" \
    --chunk $((collect_chunk_kib * 1024)) --bound "$collect_bound" --plain-rss-kib "$plain_rss"); then
    pass "collect: peak live $(($(summary_field 2) / 1048576)) MiB within the bound of $((collect_bound / 1048576)) MiB;" \
      "peak RSS $((plain_rss / 1024)) MiB without heapkeeper, $((${hk_rss:-0} / 1024)) MiB under it"
  else
    fail "collect: $(head -n 3 <<<"$message" | tr '\n' ' ')"
  fi
  table_note "bound $((collect_bound / 1048576)) MiB; RSS $((${plain_rss:-0} / 1024)) MiB plain, $((${hk_rss:-0} / 1024)) MiB traced; $(summary_field 7) chunks collected"
}

# Programs that wait (issue 10): under 100 ms scans no call may return early or with EINTR. Each
# program checks its own waits and prints "ok" or what went wrong; compare() checks the output.
workload_waits() {
  local mode=$1
  run "$mode" "$build_dir/tests/programs/hk_prog_blocking_calls"
  run "$mode" perl -MTime::HiRes=time -e '$t = time; $s = sleep 1; $n = select(undef, undef, undef, 0.5);
    $e = time - $t; print "perl: sleep $s, select $n, ", ($e >= 1.49 ? "ok" : "early after $e s"), "\n";'
  run "$mode" /usr/bin/python3 -c '
import select, socket, time
start = time.monotonic()
time.sleep(0.5); select.select([], [], [], 0.5)
a, b = socket.socketpair(); a.settimeout(0.5)
try:
    a.recv(1)
except TimeoutError:
    pass
elapsed = time.monotonic() - start
print("python3:", "ok" if elapsed >= 1.49 else "early after %.3f s" % elapsed)'
  run "$mode" bash -c 'start=$EPOCHREALTIME; read -t 1 line < <(sleep 1.5)
    sleep 0.5 & wait $!
    elapsed=$(( (${EPOCHREALTIME/./} - ${start/./}) / 1000 ))
    if (( elapsed >= 1495 )); then echo "bash: ok"; else echo "bash: early after $elapsed ms"; fi'
}

scenario_waits() {
  [[ -x $build_dir/tests/programs/hk_prog_blocking_calls ]] || skip "tests/programs is not built"
  need perl bash
  [[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is not installed"
  HK_ENV=(HEAPKEEPER_SCAN_INTERVAL=100ms HEAPKEEPER_QUIET=1)
  compare workload_waits
  check_reports
  local plain_seconds hk_seconds
  plain_seconds=$(<"$SC_DIR/plain/seconds")
  hk_seconds=$(<"$SC_DIR/hk/seconds")
  # Waits are never cut short (stdout says so); neither may scans stretch them much.
  if awk -v p="$plain_seconds" -v h="$hk_seconds" 'BEGIN { exit !(h <= p * 1.5 + 3) }'; then
    pass "timing: ${plain_seconds} s without heapkeeper, ${hk_seconds} s under 100 ms scans"
  else
    fail "timing: ${hk_seconds} s under 100 ms scans against ${plain_seconds} s without"
  fi
  table_note "$(summary_field 5) scans; ${plain_seconds} s plain, ${hk_seconds} s traced; no wait cut short"
}

# ---------------------------------------------------------------- real programs

workload_python() {
  local mode=$1
  run "$mode" /usr/bin/python3 "$STRESS_SOURCES/churn.py" "$python_rounds"
}

scenario_python3() {
  [[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is not installed"
  export PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
  unset PYTHONMALLOC
  compare workload_python
  check_reports --no-leaks
  table_note "$python_rounds rounds, $(summary_field 6) allocations (pymalloc arenas on malloc)"
}

scenario_python3_malloc() {
  [[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is not installed"
  export PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 PYTHONMALLOC=malloc
  compare workload_python
  check_reports --no-leaks
  table_note "$python_rounds rounds, $(summary_field 6) allocations"
}

workload_sqlite() {
  local mode=$1
  sed "s/@ROWS@/$sqlite_rows/" "$STRESS_SOURCES/sqlite.sql" >workload.sql
  step "$mode" sqlite3 -bail stress.db <workload.sql
  # A second process reads what the first wrote.
  step "$mode" sqlite3 stress.db "SELECT count(*), sum(amount_cents) FROM transfers; PRAGMA quick_check;"
}

scenario_sqlite3() {
  need sqlite3
  compare workload_sqlite
  check_reports --no-leaks
  table_note "$sqlite_rows rows, $(summary_field 6) allocations"
}

# A free TCP port on the loopback interface (the kernel picks it; released just before use).
free_port() {
  "$CHECK_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

workload_redis() {
  local mode=$1 port
  port=$(free_port)
  printf 'port %s\nbind 127.0.0.1\nsave ""\nappendonly no\ndir %s\n' "$port" "$PWD" >redis.conf
  run "$mode" redis-server redis.conf >server.log 2>&1 &
  local server=$! up=0
  for _ in $(seq 1 100); do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then up=1; break; fi
    sleep 0.1
  done
  if ((up == 0)); then
    echo "redis-server did not start"
    kill "$server" 2>/dev/null || true
    wait "$server" || true
    return 1
  fi
  # Without -r every test uses fixed keys, so the data left afterwards is deterministic.
  if ! timeout --foreground "$(limit)" redis-benchmark -p "$port" -n "$redis_requests" -c 20 -q \
    -t set,get,incr,lpush,rpush,lpop,sadd,hset,zadd,lrange_100,mset >benchmark.log 2>&1; then
    echo "redis-benchmark failed"
  fi
  redis-cli -p "$port" dbsize
  redis-cli -p "$port" get 'counter:__rand_int__'
  redis-cli -p "$port" llen mylist
  redis-cli -p "$port" scard myset
  redis-cli -p "$port" hlen myhash
  redis-cli -p "$port" zcard myzset
  redis-cli -p "$port" strlen 'key:__rand_int__'
  redis-cli -p "$port" set greeting hello >/dev/null
  redis-cli -p "$port" append greeting ", world" >/dev/null
  redis-cli -p "$port" get greeting
  # A clean shutdown, so that the exit report is written.
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  local status=0
  wait "$server" || status=$?
  echo "redis-server exit status: $status"
}

scenario_redis() {
  need redis-server redis-cli redis-benchmark
  # Debian's redis-server is a link to redis-check-rdb: reports and stats name the real file.
  local server
  server=$(basename "$(readlink -f "$(command -v redis-server)")")
  SAMPLE_PROGRAM=$server compare workload_redis
  check_reports --no-leaks --count "$server=1"
  table_note "$redis_requests requests x 11 tests, $(summary_field 6) allocations"
}

workload_gcc() {
  local mode=$1 source object
  cp -r "$SC_DIR/tree" tree
  cd tree || return 1
  mkdir -p obj
  for source in src/*.c; do
    object=obj/$(basename "$source" .c).o
    # Relative paths and no debug info: objects depend only on the source and the compiler.
    step "$mode" gcc -O2 -Wall -Iinclude -c "$source" -o "$object"
  done
  echo "objects: $(cat obj/*.o | sha256sum | cut -d' ' -f1)"
  step "$mode" gcc -O2 -o prog obj/*.o
  step "$mode" ./prog
}

scenario_gcc() {
  need gcc as ld
  "$CHECK_PYTHON" "$STRESS_SOURCES/gen_tree.py" "$SC_DIR/tree" "$gcc_modules" "$gcc_functions"
  SAMPLE_PROGRAM=cc1 compare workload_gcc
  # Each compile runs gcc, cc1 and as; all of them leak a little at exit (gcc never frees).
  check_reports --count cc1=$((gcc_modules + 1)) --count collect2=1 --count prog=1
  table_note "$((gcc_modules + 1)) files compiled, $(summary_field 1) processes reported; $(sampled_programs)"
}

workload_git() {
  local mode=$1 revision when=1700000000
  commit_at() {
    GIT_AUTHOR_DATE="@$1 +0000" GIT_COMMITTER_DATE="@$1 +0000" step "$mode" git commit -q -m "$2"
  }
  step "$mode" git init -q -b main repo
  cd repo || return 1
  step "$mode" git config gc.auto 0
  step "$mode" git config maintenance.auto false
  step "$mode" git config pack.threads 1 # several threads make the delta search nondeterministic
  "$CHECK_PYTHON" "$STRESS_SOURCES/gen_tree.py" . "$git_modules" "$git_functions" 0
  step "$mode" git add -A
  commit_at "$when" "Import the generated tree"
  for revision in $(seq 1 "$git_revisions"); do
    if ((revision == git_revisions / 2)); then
      step "$mode" git checkout -q -b feature
    fi
    "$CHECK_PYTHON" "$STRESS_SOURCES/gen_tree.py" . "$git_modules" "$git_functions" "$revision"
    printf 'revision %d\n' "$revision" >>NOTES
    step "$mode" git add -A
    commit_at $((when + revision * 3600)) "Revision $revision"
    if ((revision == git_revisions / 2 + 1)); then
      step "$mode" git checkout -q main
      printf 'main line %d\n' "$revision" >>MAIN
      step "$mode" git add MAIN
      commit_at $((when + revision * 3600 + 60)) "Main line work"
      GIT_AUTHOR_DATE="@$((when + revision * 3600 + 120)) +0000" GIT_COMMITTER_DATE="@$((when + revision * 3600 + 120)) +0000" \
        step "$mode" git merge -q --no-ff -m "Merge feature" feature
    fi
  done
  step "$mode" git log --graph --stat --format='%h %an %ad %s' --date=iso-strict
  echo "--- hashes"
  step "$mode" git log --all --format=%H
  step "$mode" git diff --stat HEAD~3 HEAD
  step "$mode" git blame -s src/module_000.c >blame.txt
  echo "blame: $(sha256sum <blame.txt | cut -d' ' -f1)"
  step "$mode" git grep -c uint64_t HEAD
  step "$mode" git gc -q --aggressive
  step "$mode" git count-objects -v
  step "$mode" git fsck --no-progress --strict
  # A long-lived git process fed slowly, as tools use `cat-file --batch`: it lives long enough
  # for the live stats to be read mid-run.
  step "$mode" git rev-list --objects --all >objects.txt
  cut -d' ' -f1 objects.txt | while read -r object; do
    echo "$object"
    sleep 0.002
  done | run "$mode" git cat-file --batch-check >batch.txt || echo "[exit $?] git cat-file --batch-check"
  echo "objects: $(wc -l <batch.txt), $(sha256sum <batch.txt | cut -d' ' -f1)"
  step "$mode" git status --porcelain
}

scenario_git() {
  need git
  # A private, fixed environment: no user or system configuration, fixed identities and dates.
  export HOME=$SC_DIR/home GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
  export GIT_AUTHOR_NAME="Ada Tester" GIT_AUTHOR_EMAIL=ada@example.org
  export GIT_COMMITTER_NAME="Bob Committer" GIT_COMMITTER_EMAIL=bob@example.org
  export GIT_PAGER=cat PAGER=cat GIT_TERMINAL_PROMPT=0
  mkdir -p "$HOME"
  SAMPLE_PROGRAM=git compare workload_git
  # git leaks a little at exit (by design: it exits without freeing): counts are reported only.
  check_reports
  table_note "$((git_revisions + 3)) commits of $git_modules files, $(summary_field 1) processes reported; $(sampled_programs)"
}

workload_perl() {
  local mode=$1
  run "$mode" perl "$STRESS_SOURCES/churn.pl" "$perl_rounds"
}

scenario_perl() {
  need perl
  export PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0
  compare workload_perl
  # perl frees little at exit (PERL_DESTRUCT_LEVEL 0): its leaks are reported, not failed.
  check_reports
  table_note "$perl_rounds rounds, $(summary_field 6) allocations; leaks are perl's (no destruction at exit)"
}

workload_pipeline() {
  local mode=$1
  # bash runs the pipeline: every process, bash included, is tracked and writes its own report.
  run "$mode" bash -c "seq 1 $pipeline_lines | awk '{ print (\$1 * 7919) % 1009, \$1 % 7 }' | sort -k1,1n -k2,2n |
    uniq -c | sort -k1,1nr -k2,2n -k3,3n | awk 'NR <= 5 { print } { lines++; total += \$1 } END { print lines, total }'"
}

scenario_pipeline() {
  need bash seq awk sort uniq
  local awk_name
  awk_name=$(basename "$(readlink -f "$(command -v awk)")")
  SAMPLE_PROGRAM="sort" compare workload_pipeline
  # GNU sort always loses 8 bytes at exit (valgrind: "definitely lost"); heapkeeper reports them
  # when no stale copy of the pointer survives. The other programs of the pipeline leak nothing.
  check_reports --programs "bash=1,seq=1,$awk_name=2,sort=2,uniq=1" --leak-free "bash,seq,$awk_name,uniq"
  table_note "7 processes, $(summary_field 1) reports; $(sampled_programs)"
}

# ---------------------------------------------------------------- one scenario (--internal-run)

if [[ -n $internal_scenario ]]; then
  SC_NAME=$internal_scenario
  SC_DIR=$LOG_DIR/$SC_NAME
  SC_DEADLINE=$((SECONDS + scenario_limit))
  cd "$SC_DIR"
  # A command that fails outside the checks is a bug in the scenario: say where.
  set -E
  trap 'echo "stress.sh: $SC_NAME: command failed at line $LINENO: $BASH_COMMAND" >&2' ERR
  "scenario_${SC_NAME//-/_}"
  exit 0
fi

# ---------------------------------------------------------------- the driver

# Debian packages each scenario needs, when its command is missing.
packages_for() {
  case $1 in
    python3 | python3-malloc) [[ -x /usr/bin/python3 ]] || echo python3 ;;
    sqlite3) command -v sqlite3 >/dev/null || echo sqlite3 ;;
    redis) command -v redis-server >/dev/null || echo redis-server
      command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null || echo redis-tools ;;
    gcc) command -v gcc >/dev/null || echo gcc
      command -v as >/dev/null || echo binutils ;;
    git) command -v git >/dev/null || echo git ;;
    perl) command -v perl >/dev/null || echo perl ;;
    pipeline) command -v awk >/dev/null || echo mawk ;;
  esac
  return 0
}

install_missing() {
  local wanted=() name package
  # The checks themselves run on Debian's python3.
  [[ -x $CHECK_PYTHON ]] || wanted+=(python3)
  for name in "${selected[@]}"; do
    for package in $(packages_for "$name"); do
      [[ " ${wanted[*]} " == *" $package "* ]] || wanted+=("$package")
    done
  done
  ((${#wanted[@]})) || return 0
  if ((!allow_install)); then note "not installing (--no-install): ${wanted[*]}"; return 0; fi
  if [[ $(id -u) -ne 0 ]]; then note "not root, cannot install: ${wanted[*]}"; return 0; fi
  command -v apt-get >/dev/null || { note "no apt-get, cannot install: ${wanted[*]}"; return 0; }
  local log=$OUT_DIR/apt.log
  note "installing missing packages: ${wanted[*]} (log: $log)"
  apt-get update >"$log" 2>&1 || note "apt-get update failed; trying the cached package lists (see $log)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${wanted[@]}" >>"$log" 2>&1; then
    # One unavailable package must not keep the others out.
    for package in "${wanted[@]}"; do
      DEBIAN_FRONTEND=noninteractive apt-get install -y "$package" >>"$log" 2>&1 || note "apt-get install $package failed (see $log)"
    done
  fi
}

mkdir -p "$OUT_DIR" "$LOG_DIR" || die "cannot create $OUT_DIR"
install_missing
[[ -x $CHECK_PYTHON ]] || die "$CHECK_PYTHON is missing and could not be installed (the checks need it)"

human_bytes() {
  awk -v b="${1:-0}" 'BEGIN {
    split("B KiB MiB GiB TiB", unit, " "); i = 1
    while (b >= 1024 && i < 5) { b /= 1024; i++ }
    if (i == 1) printf "%d B", b; else printf "%.1f %s", b, unit[i] }'
}

declare -a rows=()
failed=0
current_job=""
# Each scenario runs under `timeout` in a process group of its own (the group's id is timeout's
# pid), with every command it starts. Ctrl-C or a kill of this script ends that group too.
end_scenario_group() { [[ -z $current_job ]] || kill -KILL -- "-$current_job" 2>/dev/null || true; }
trap 'end_scenario_group; exit 130' INT TERM

mode_text=full quick_flag=()
if ((quick)); then mode_text=quick quick_flag=(--quick); fi
note "$mode_text run of ${#selected[@]} scenario(s) against $hk_lib; logs in $LOG_DIR"
index=0
for name in "${selected[@]}"; do
  index=$((index + 1))
  dir=$LOG_DIR/$name
  rm -rf "$dir"
  mkdir -p "$dir"
  printf '[%d/%d] %-15s ' "$index" "${#selected[@]}" "$name" >&2
  started=$EPOCHREALTIME
  status=0
  # The scenario's own commands are bounded by what is left of scenario_limit; this outer limit
  # only catches a scenario stuck outside them.
  timeout -k 10 $((scenario_limit + 60)) bash "${BASH_SOURCE[0]}" --internal-run "$name" \
    --build-dir "$build_dir" --lib "$hk_lib" "${quick_flag[@]}" >"$dir/log" 2>&1 &
  current_job=$!
  wait "$current_job" || status=$?
  end_scenario_group # stragglers, e.g. a server a timed-out command left behind
  current_job=""
  seconds=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  peak=- leaks=- scans=- note_text=""
  if [[ -f $dir/summary ]]; then
    read -r reports peak_bytes leaks _ scans _ _ <"$dir/summary"
    if ((reports > 0)); then peak=$(human_bytes "$peak_bytes"); else leaks=- scans=-; fi
  fi
  [[ -f $dir/note ]] && note_text=$(<"$dir/note")
  if [[ -f $dir/skipped ]]; then
    result=SKIP
    note_text=$(<"$dir/skipped")
  elif [[ -s $dir/failures ]] || ((status != 0)); then
    result=FAIL
    failed=$((failed + 1))
    if [[ -s $dir/failures ]]; then
      note_text=$(head -n 1 "$dir/failures" | cut -c1-100)
    else
      note_text="scenario script ended with $(grep -m1 'command failed at line' "$dir/log" || echo "status $status")"
    fi
  else
    result=PASS
  fi
  echo "$result (${seconds} s)" >&2
  if [[ $result == FAIL ]]; then
    echo "    log: $dir/log" >&2
    if [[ -s $dir/failures ]]; then head -n 5 "$dir/failures"; else tail -n 5 "$dir/log"; fi | sed 's/^/    /' >&2
  fi
  rows+=("| $name | $result | ${seconds} s | $peak | $leaks | $scans | ${note_text//|//} |")
done

{
  echo "| scenario | result | duration | peak live | leaks | scans | note |"
  echo "|---|---|---:|---:|---:|---:|---|"
  printf '%s\n' "${rows[@]}"
} >"$OUT_DIR/results.md"
echo
cat "$OUT_DIR/results.md"
echo
echo "($mode_text run; table in $OUT_DIR/results.md, logs in $LOG_DIR)"
if ((failed > 0)); then
  echo "$failed scenario(s) failed" >&2
  exit 1
fi

#!/usr/bin/env bash
# Benchmarks heapkeeper against plain glibc malloc, other allocators and other memory tools.
#
# Four parts (--parts), in this order:
#  table        each workload (bench/workloads/) under each configuration; repetitions go
#               round-robin over the configurations so drift on the machine (thermal, noisy
#               neighbours) is spread over all of them instead of landing on one. bench/measure.c,
#               compiled into BUILD/bench/, runs every command and reports wall time and peak RSS
#               from wait4()'s rusage. A run counts only if its stdout matches the plain-glibc run of
#               the same workload, so a fast but broken configuration shows up as FAIL, not as a
#               good number. Medians and ratios to glibc.
#  scan-overhead  heapkeeper detect with periodic scans every 10 s against the same without
#               periodic scans, alternating, on a long python3 run (PYTHONMALLOC=malloc, so every
#               object is a block the scans mark); the goal is at most 5% more wall time.
#  first-report bench/workloads/late_leak.c leaks a block one second into a fixed 20 s run;
#               bench/first_report.py times how long after the leak each tool's first report
#               naming it appears: heapkeeper's periodic scans (every 10 s, every 1 s), a scan on
#               demand (`heapkeeper report PID`) and its exit report, against LeakSanitizer,
#               valgrind, the gperftools heap checker (at exit) and heaptrack (heaptrack_print after
#               exit).
#  corpus       leak-report quality: tests/leak_corpus/run_corpus.py runs the leak corpus (exact
#               expected figures) under every leak checker and counts each tool's exact matches.
# The tables go to the terminal and to BUILD/bench/results.md.
#
# Packages the benchmark needs are installed with apt-get only when missing. Tools that are not
# available, or fail a start-up check, are skipped with a note. valgrind, the gperftools heap
# checker and LeakSanitizer with full stacks (lsan-full) are one to two orders of magnitude slower
# than the rest, so they run a small variant of each workload and are compared with plain glibc on
# that same small variant.
#
# Usage: scripts/bench.sh [--runs N] [--quick] [--only WORKLOAD[,...]] [--tools TOOL[,...]]
#                         [--parts PART[,...]] [--build DIR] [--lib PATH] [--timeout SECONDS]
#                         [--no-install]
set -euo pipefail

readonly ALL_WORKLOADS="py-malloc py-pymalloc sqlite"
readonly ALL_TOOLS="glibc jemalloc mimalloc hk-off hk-detect heaptrack lsan lsan-full gperftools valgrind"
readonly ALL_PARTS="table scan-overhead first-report corpus"

usage() {
  cat <<EOF
Usage: scripts/bench.sh [options]

  --runs N            repetitions per configuration (default 5; --quick: 2)
  --quick             2 runs and smaller workloads (CI smoke test)
  --only W[,W...]     workloads to run: ${ALL_WORKLOADS// /, }
  --tools T[,T...]    configurations to run: ${ALL_TOOLS// /, }
                      ('heapkeeper' means hk-off,hk-detect; glibc is always added as the baseline)
  --parts P[,P...]    parts to run: ${ALL_PARTS// /, } (default: all)
  --build DIR         heapkeeper's build directory (default: build): its lib/libheapkeeper.so,
                      bin/heapkeeper and tests/leak_corpus/; results go to DIR/bench/
  --lib PATH          libheapkeeper.so to test (default: DIR/lib/libheapkeeper.so, or \$HEAPKEEPER_LIB)
  --timeout S         kill a run after S seconds (default 300)
  --no-install        never call apt-get; skip what is missing
  -h, --help          this text

Writes DIR/bench/results.md; per-run logs go to DIR/bench/logs/.
EOF
}

die() { echo "bench.sh: error: $*" >&2; exit 1; }
note() { echo "bench.sh: $*" >&2; }

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$ROOT_DIR/bench"
WORKLOAD_DIR="$BENCH_DIR/workloads"

runs=""
quick=0
only="$ALL_WORKLOADS"
tools="$ALL_TOOLS"
parts="$ALL_PARTS"
build_dir="$ROOT_DIR/build"
hk_lib="${HEAPKEEPER_LIB:-}"
timeout_s=300
allow_install=1

while (($#)); do
  case "$1" in
    --runs) [[ $# -ge 2 ]] || die "--runs needs a number"; runs="$2"; shift 2 ;;
    --runs=*) runs="${1#*=}"; shift ;;
    --quick) quick=1; shift ;;
    --only) [[ $# -ge 2 ]] || die "--only needs a workload name"; only="${2//,/ }"; shift 2 ;;
    --only=*) only="${1#*=}"; only="${only//,/ }"; shift ;;
    --tools) [[ $# -ge 2 ]] || die "--tools needs a list"; tools="${2//,/ }"; shift 2 ;;
    --tools=*) tools="${1#*=}"; tools="${tools//,/ }"; shift ;;
    --parts) [[ $# -ge 2 ]] || die "--parts needs a list"; parts="${2//,/ }"; shift 2 ;;
    --parts=*) parts="${1#*=}"; parts="${parts//,/ }"; shift ;;
    --build) [[ $# -ge 2 ]] || die "--build needs a directory"; build_dir="$2"; shift 2 ;;
    --build=*) build_dir="${1#*=}"; shift ;;
    --lib) [[ $# -ge 2 ]] || die "--lib needs a path"; hk_lib="$2"; shift 2 ;;
    --lib=*) hk_lib="${1#*=}"; shift ;;
    --timeout) [[ $# -ge 2 ]] || die "--timeout needs seconds"; timeout_s="$2"; shift 2 ;;
    --timeout=*) timeout_s="${1#*=}"; shift ;;
    --no-install) allow_install=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (try --help)" ;;
  esac
done

if [[ -z "$runs" ]]; then
  if ((quick)); then runs=2; else runs=5; fi
fi
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, not '$runs'"
[[ "$timeout_s" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer, not '$timeout_s'"

contains() { [[ " $1 " == *" $2 "* ]]; }

# Without a build, only the other tools run (heapkeeper's configurations are skipped with a note).
mkdir -p "$build_dir" || die "cannot create $build_dir"
build_dir="$(cd "$build_dir" && pwd)"
OUT_DIR="$build_dir/bench"
LOG_DIR="$OUT_DIR/logs"
[[ -n "$hk_lib" ]] || hk_lib="$build_dir/lib/libheapkeeper.so"
hk_cli="$build_dir/bin/heapkeeper"
corpus_programs="$build_dir/tests/leak_corpus"
for p in $parts; do
  contains "$ALL_PARTS" "$p" || die "unknown part '$p' (known: $ALL_PARTS)"
done
[[ -n "${parts// /}" ]] || die "--parts selected nothing"
part() { contains "$parts" "$1"; }

for w in $only; do
  contains "$ALL_WORKLOADS" "$w" || die "unknown workload '$w' (known: $ALL_WORKLOADS)"
done
[[ -n "${only// /}" ]] || die "--only selected no workload"
expanded=""
for t in $tools; do
  if [[ "$t" == heapkeeper ]]; then expanded+=" hk-off hk-detect"; continue; fi
  contains "$ALL_TOOLS" "$t" || die "unknown tool '$t' (known: $ALL_TOOLS heapkeeper)"
  expanded+=" $t"
done
contains "$expanded" glibc || { note "adding glibc: it is the baseline for ratios and output checks"; expanded="glibc$expanded"; }
# Keep the canonical order whatever order the user typed.
selected=""
for t in $ALL_TOOLS; do contains "$expanded" "$t" && selected+=" $t"; done
selected="${selected# }"

# Workload sizes. "small" is the variant for valgrind and the gperftools heap checker. The
# scan-overhead part runs python_churn long enough for several periodic scans (about 45 s under
# heapkeeper on the development VM: four periodic scans every 10 s, and the exit scan); the
# first-report part runs late_leak for a fixed time.
if ((quick)); then
  py_iterations=6000; py_small_iterations=300; py_cache=3000
  sqlite_orders=20000; sqlite_small_orders=1000
  overhead_iterations=15000; overhead_interval=1s
  late_duration=6; late_interval=2s; first_report_rounds=1
else
  py_iterations=30000; py_small_iterations=1000; py_cache=8000
  sqlite_orders=80000; sqlite_small_orders=3000
  overhead_iterations=350000; overhead_interval=10s
  late_duration=20; late_interval=10s; first_report_rounds=$((runs < 3 ? runs : 3))
fi
# Half-way between two of the 1 s scans, so that configuration shows its average delay, not a lucky
# or unlucky phase; the 10 s scans see the leak at 10 s.
readonly late_leak_at=1.5

declare -a skip_notes=()
skip() { skip_notes+=("$1: skipped, $2"); note "$1: skipped, $2"; }

# ---------------------------------------------------------------- finding and installing tools

find_lib() {  # prints the path of shared library $1 (exact soname), or fails
  local path
  # awk reads all of its input (no early exit), so ldconfig never dies of SIGPIPE under pipefail.
  path="$(/sbin/ldconfig -p 2>/dev/null | awk -v n="$1" '$1 == n && /x86-64|x86_64|64bit/ && !found { print $NF; found = 1 }' || true)"
  if [[ -z "$path" ]]; then
    path="$(/sbin/ldconfig -p 2>/dev/null | awk -v n="$1" '$1 == n && !found { print $NF; found = 1 }' || true)"
  fi
  if [[ -z "$path" ]]; then
    local d
    for d in /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
      if [[ -e "$d/$1" ]]; then path="$d/$1"; break; fi
    done
  fi
  [[ -n "$path" && -e "$path" ]] || return 1
  printf '%s\n' "$path"
}

# The workloads need Debian's python3 (also to generate the SQL script) and, for the sqlite
# workload, sqlite3. Peak RSS comes from our own helper, so GNU time is not needed.
missing_packages() {
  [[ -x /usr/bin/python3 ]] || echo python3
  command -v cc >/dev/null || command -v gcc >/dev/null || echo gcc
  if part table && contains "$only" sqlite; then command -v sqlite3 >/dev/null || echo sqlite3; fi
  contains "$selected" jemalloc && { find_lib libjemalloc.so.2 >/dev/null || echo libjemalloc2; }
  contains "$selected" mimalloc && { find_lib libmimalloc.so.2 >/dev/null || echo "@mimalloc"; }
  contains "$selected" heaptrack && { command -v heaptrack >/dev/null || echo heaptrack; }
  if contains "$selected" lsan || contains "$selected" lsan-full; then find_lib liblsan.so.0 >/dev/null || echo liblsan0; fi
  if contains "$selected" gperftools; then
    find_lib libtcmalloc.so.4 >/dev/null || echo libgoogle-perftools4
    command -v google-pprof >/dev/null || command -v pprof >/dev/null || echo google-perftools
  fi
  contains "$selected" valgrind && { command -v valgrind >/dev/null || echo valgrind; }
  return 0
}

mimalloc_package() {  # Debian names the package after the ABI (libmimalloc2.0 in bookworm)
  apt-cache search --names-only '^libmimalloc[0-9.]+$' 2>/dev/null | awk '{ print $1 }' | sort -V | tail -n 1
}

install_missing() {
  local wanted
  wanted="$(missing_packages | tr '\n' ' ')"
  wanted="${wanted% }"
  [[ -n "$wanted" ]] || return 0
  if ((!allow_install)); then note "not installing (--no-install): $wanted"; return 0; fi
  if [[ $(id -u) -ne 0 ]]; then note "not root, cannot install: $wanted"; return 0; fi
  command -v apt-get >/dev/null || { note "no apt-get, cannot install: $wanted"; return 0; }
  local log="$OUT_DIR/apt.log"
  note "installing missing packages: $wanted (log: $log)"
  apt-get update >"$log" 2>&1 || note "apt-get update failed; trying the cached package lists (see $log)"
  local packages=() p
  for p in $wanted; do
    if [[ "$p" == "@mimalloc" ]]; then
      p="$(mimalloc_package)"
      [[ -n "$p" ]] || { note "apt-cache knows no libmimalloc package"; continue; }
    fi
    packages+=("$p")
  done
  ((${#packages[@]})) || return 0
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}" >>"$log" 2>&1; then
    # One unavailable package must not keep the others out.
    for p in "${packages[@]}"; do
      DEBIAN_FRONTEND=noninteractive apt-get install -y "$p" >>"$log" 2>&1 || note "apt-get install $p failed (see $log)"
    done
  fi
}

mkdir -p "$OUT_DIR" "$LOG_DIR" || die "cannot create $OUT_DIR"
install_missing

if [[ -x /usr/bin/python3 ]]; then
  python=/usr/bin/python3
elif command -v python3 >/dev/null; then
  # Resolve wrappers such as pyenv shims: the tools must see the interpreter, not a shell script.
  python="$(python3 -c 'import sys; print(sys.executable)')" || die "python3 does not run"
else
  die "python3 is missing and could not be installed"
fi
if part table && contains "$only" sqlite; then
  sqlite="$(command -v sqlite3)" || die "sqlite3 is missing and could not be installed (or drop it with --only)"
fi

rm -f "$LOG_DIR"/*.out "$LOG_DIR"/*.err
tmp_dir="$(mktemp -d /tmp/heapkeeper-bench.XXXXXX)" || die "cannot create a temporary directory"
trap 'rm -rf "$tmp_dir"' EXIT

# ---------------------------------------------------------------- helpers compiled here

cc="$(command -v cc || command -v gcc || command -v clang || true)"
[[ -n "$cc" ]] || die "no C compiler (cc, gcc or clang) for bench/measure.c"
compile() {  # $1 = output, $2 = source, rest = flags; rebuilt when the source is newer
  local output="$1" source="$2"; shift 2
  [[ -x "$output" && "$output" -nt "$source" ]] && return 0
  "$cc" -O2 -Wall -Wextra "$@" -o "$output.new" "$source" 2>"$tmp_dir/cc.log" \
    || die "compiling $source failed: $(head -n 5 "$tmp_dir/cc.log")"
  [[ ! -s "$tmp_dir/cc.log" ]] || note "warnings compiling $source: $(head -n 5 "$tmp_dir/cc.log")"
  mv "$output.new" "$output"
}
measure="$OUT_DIR/hk-measure"
compile "$measure" "$BENCH_DIR/measure.c"
rm -f "$OUT_DIR/hk-measure.c" "$OUT_DIR/hk-measure.py"  # left by older versions of this script

# ---------------------------------------------------------------- configurations

declare -A lib=()
declare -A tool_note=()
pprof=""

# A configuration is usable when its files exist and it runs /bin/true cleanly.
check_runs() {  # $1 = tool, rest = command prefix
  local tool="$1"; shift
  if ! "$measure" 60 "$tmp_dir/check.res" "$tmp_dir/check.out" "$tmp_dir/check.err" "$@" /bin/true; then
    skip "$tool" "the measuring helper failed"; return 1
  fi
  local how
  how="$(awk '{ print $3 }' "$tmp_dir/check.res")"
  if grep -q 'cannot be preloaded' "$tmp_dir/check.err"; then
    skip "$tool" "ld.so will not preload it: $(grep -m1 'cannot be preloaded' "$tmp_dir/check.err")"
    return 1
  fi
  if [[ "$how" != exit:0 ]]; then
    skip "$tool" "a start-up check (/bin/true under it) ended with $how: $(head -c 200 "$tmp_dir/check.err" | tr '\n' ' ')"
    return 1
  fi
}

# Sets `prefix` to the words placed before the workload command for configuration $1; $2 names
# the run, for files the tool writes.
prefix=()
config_prefix() {
  local tool="$1" tag="$2"
  case "$tool" in
    glibc|glibc-small) prefix=() ;;
    jemalloc|mimalloc) prefix=("LD_PRELOAD=${lib[$tool]}") ;;
    hk-off) prefix=("LD_PRELOAD=${lib[$tool]}" HEAPKEEPER_MODE=off) ;;
    hk-detect) prefix=("LD_PRELOAD=${lib[$tool]}" HEAPKEEPER_MODE=detect) ;;
    lsan) prefix=("LD_PRELOAD=${lib[$tool]}" "LSAN_OPTIONS=detect_leaks=1:exitcode=0") ;;
    # LeakSanitizer's default unwinder follows frame pointers: in a program built without them
    # (Debian's python3, sqlite3) it records two or three frames. This is LeakSanitizer with
    # stacks as deep as heapkeeper's, unwound from DWARF like heapkeeper's.
    lsan-full) prefix=("LD_PRELOAD=${lib[$tool]}"
                       "LSAN_OPTIONS=detect_leaks=1:exitcode=0:fast_unwind_on_malloc=0:malloc_context_size=24") ;;
    gperftools)
      prefix=("LD_PRELOAD=${lib[$tool]}" HEAPCHECK=normal "HEAP_CHECK_DUMP_DIRECTORY=$tmp_dir")
      [[ -z "$pprof" ]] || prefix+=("PPROF_PATH=$pprof") ;;
    heaptrack) prefix=(heaptrack -o "$tmp_dir/heaptrack.$tag") ;;
    valgrind) prefix=(valgrind --tool=memcheck --leak-check=full) ;;
    *) die "internal: no prefix for configuration '$tool'" ;;
  esac
}

active=""
for t in $selected; do
  case "$t" in
    glibc) ;;
    jemalloc)
      lib[$t]="$(find_lib libjemalloc.so.2)" || { skip "$t" "libjemalloc.so.2 not found (package libjemalloc2)"; continue; } ;;
    mimalloc)
      lib[$t]="$(find_lib libmimalloc.so.2)" || { skip "$t" "libmimalloc.so.2 not found (package libmimalloc2.0)"; continue; } ;;
    hk-off|hk-detect)
      if [[ ! -f "$hk_lib" ]]; then
        skip "$t" "$hk_lib does not exist yet (build it: cmake -S . -B $build_dir && cmake --build $build_dir -j2)"
        continue
      fi
      # Run a private copy: the build tree may be rebuilt by someone else while the benchmark runs.
      if [[ ! -f "$tmp_dir/libheapkeeper.so" ]]; then
        cp "$hk_lib" "$tmp_dir/libheapkeeper.so" || die "cannot copy $hk_lib"
        hk_source="$(cd "$(dirname "$hk_lib")" && pwd)/$(basename "$hk_lib")"
        hk_built="$(date -u -r "$hk_lib" '+%Y-%m-%d %H:%M UTC')"
      fi
      lib[$t]="$tmp_dir/libheapkeeper.so" ;;
    heaptrack)
      command -v heaptrack >/dev/null || { skip "$t" "heaptrack not installed"; continue; } ;;
    lsan|lsan-full)
      lib[$t]="$(find_lib liblsan.so.0)" || { skip "$t" "liblsan.so.0 not found (package liblsan0)"; continue; } ;;
    gperftools)
      lib[$t]="$(find_lib libtcmalloc.so.4)" || { skip "$t" "libtcmalloc.so.4 not found (package libgoogle-perftools4)"; continue; }
      pprof="$(command -v google-pprof || command -v pprof || true)"
      [[ -n "$pprof" ]] || tool_note[$t]="no pprof found, leak reports stay unsymbolized" ;;
    valgrind)
      command -v valgrind >/dev/null || { skip "$t" "valgrind not installed"; continue; } ;;
  esac
  config_prefix "$t" check
  check_runs "$t" env -u LD_PRELOAD "${prefix[@]}" || continue
  active+=" $t"
done
active="${active# }"

# The tools too slow for the full workloads; each is compared with glibc-small, the plain run of the
# small variant. The table's awk reads the same list.
readonly SMALL_TOOLS="glibc-small valgrind gperftools lsan-full"
is_small() { contains "$SMALL_TOOLS" "$1"; }
# Leak checkers may exit non-zero when they report leaks; for them only the output decides.
may_exit_nonzero() { [[ "$1" == lsan || "$1" == lsan-full || "$1" == gperftools || "$1" == valgrind || "$1" == hk-detect ]]; }

# ---------------------------------------------------------------- workloads

sqlite_script() {  # $1 = orders; prints the path of the generated SQL script
  local file="$OUT_DIR/sqlite_workload.$1.sql"
  if [[ ! -s "$file" || "$WORKLOAD_DIR/sqlite_workload.py" -nt "$file" ]]; then
    "$python" "$WORKLOAD_DIR/sqlite_workload.py" --orders "$1" >"$file.new" || die "cannot generate the sqlite workload"
    mv "$file.new" "$file"
  fi
  printf '%s\n' "$file"
}

# Sets `workload_env` (assignments for env) and `workload` (the command) of workload $1 at size
# $2 (full|small).
workload_env=()
workload=()
workload_command() {
  local name="$1" size="$2" iterations orders
  if [[ "$size" == small ]]; then iterations=$py_small_iterations; orders=$sqlite_small_orders
  else iterations=$py_iterations; orders=$sqlite_orders; fi
  case "$name" in
    py-malloc|py-pymalloc)
      # A fixed hash seed makes every run allocate the same way, not only print the same thing.
      workload_env=(PYTHONHASHSEED=0)
      [[ "$name" == py-pymalloc ]] || workload_env+=(PYTHONMALLOC=malloc)
      workload=("$python" "$WORKLOAD_DIR/python_churn.py" "$iterations" --cache-entries "$py_cache") ;;
    sqlite)
      workload_env=()
      workload=("$sqlite" :memory: ".read $(sqlite_script "$orders")") ;;
  esac
}

describe_workload() {
  case "$1" in
    py-malloc) echo "python3 churn, PYTHONMALLOC=malloc" ;;
    py-pymalloc) echo "python3 churn, default pymalloc" ;;
    sqlite) echo "sqlite3 shell, in-memory db" ;;
  esac
}

describe_tool() {
  case "$1" in
    glibc) echo "glibc" ;;
    glibc-small) echo "glibc [small]" ;;
    jemalloc) echo "jemalloc" ;;
    mimalloc) echo "mimalloc" ;;
    hk-off) echo "heapkeeper off" ;;
    hk-detect) echo "heapkeeper detect" ;;
    heaptrack) echo "heaptrack" ;;
    lsan) echo "LeakSanitizer" ;;
    lsan-full) echo "LeakSanitizer, 24-frame DWARF stacks [small]" ;;
    gperftools) echo "gperftools heapcheck [small]" ;;
    valgrind) echo "valgrind memcheck [small]" ;;
  esac
}

# heaptrack's wrapper script prints its own lines around the program's output; drop them.
program_stdout() {  # $1 = tool, $2 = stdout file
  if [[ "$1" == heaptrack ]]; then
    awk 'started { if (/^Heaptrack finished!/) exit; print; next }
         /^starting application, this might take some time/ { started = 1 }' "$2"
  else
    cat "$2"
  fi
}

# ---------------------------------------------------------------- part: table

# Nothing in the caller's environment may change how a run behaves.
clean_env=(env -u LD_PRELOAD -u PYTHONMALLOC -u HEAPKEEPER_MODE -u HEAPKEEPER_SCAN_INTERVAL -u HEAPKEEPER_REPORT
           -u HEAPKEEPER_EXITCODE -u HEAPKEEPER_QUIET -u LSAN_OPTIONS -u HEAPCHECK)

# Runs start in the temporary directory, so files a tool drops into its working directory
# (reports, profiles) do not land in the caller's tree.
cd "$tmp_dir"
bench_started=$SECONDS
declare -A part_seconds=()
declare -A given_up=()   # workload/configuration -> why later repetitions are skipped
declare -A trace_bytes=()
results="$OUT_DIR/runs.tsv"
summary="$OUT_DIR/summary.tsv"
rm -f "$results" "$summary"

if part table; then
  configs=()
  for t in $active; do
    if is_small "$t" && [[ " ${configs[*]-} " != *" glibc-small "* ]]; then configs+=(glibc-small); fi
    [[ "$t" == glibc-small ]] || configs+=("$t")
  done
  # Run the small variants last in each round, behind their own baseline.
  ordered=()
  for t in "${configs[@]}"; do is_small "$t" || ordered+=("$t"); done
  for t in "${configs[@]}"; do is_small "$t" && ordered+=("$t"); done
  configs=("${ordered[@]}")

  printf 'workload\tconfiguration\trun\twall_s\tmaxrss_kib\tstatus\tdetail\tcpu_s\n' >"$results"
  declare -A reference=()  # workload/size -> file holding glibc's stdout

  for w in $only; do  # generate the SQL scripts before the clock starts
    if [[ "$w" == sqlite ]]; then sqlite_script "$sqlite_orders" >/dev/null; sqlite_script "$sqlite_small_orders" >/dev/null; fi
  done

  # One untimed glibc run of each workload first: the interpreter, the libraries and the scripts
  # come into the page cache before the first measured run, not during it.
  for w in $only; do
    workload_command "$w" full
    "$measure" "$timeout_s" "$tmp_dir/run.res" /dev/null /dev/null "${clean_env[@]}" "${workload_env[@]}" "${workload[@]}" \
      || die "the measuring helper failed during the warm-up"
  done

  note "table: $runs round(s) of: workloads [$only] x configurations [${configs[*]}]"
  started_at=$SECONDS
  for ((rep = 1; rep <= runs; rep++)); do
    for w in $only; do
      for c in "${configs[@]}"; do
        key="$w/$c"
        if [[ -n "${given_up[$key]-}" ]]; then continue; fi
        size=full; is_small "$c" && size=small
        tag="$w.$c.$rep"
        workload_command "$w" "$size"
        config_prefix "$c" "$tag"
        out="$LOG_DIR/$tag.out" err="$LOG_DIR/$tag.err"
        # The prefix is either more assignments or a wrapper command (heaptrack, valgrind); both
        # work after the workload's assignments.
        cmd=("${clean_env[@]}" "${workload_env[@]}" "${prefix[@]}" "${workload[@]}")
        "$measure" "$timeout_s" "$tmp_dir/run.res" "$out" "$err" "${cmd[@]}" \
          || die "the measuring helper failed (or the run was interrupted) on $tag"
        read -r wall rss how cpu <"$tmp_dir/run.res"

        status=ok detail=""
        ref_key="$w/$size"
        program_stdout "$c" "$out" >"$tmp_dir/stdout"
        if [[ "$how" == timeout ]]; then
          status=FAIL detail="timeout after ${timeout_s}s"
        elif [[ "$how" == signal:* ]]; then
          status=FAIL detail="killed by signal ${how#signal:}"
        elif grep -q 'cannot be preloaded' "$err"; then
          status=FAIL detail="ld.so did not preload the library"
        elif [[ "$how" != exit:0 ]] && ! may_exit_nonzero "$c"; then
          status=FAIL detail="exit status ${how#exit:}"
        elif [[ "$c" == glibc || "$c" == glibc-small ]] && [[ -z "${reference[$ref_key]-}" ]]; then
          [[ "$how" == exit:0 ]] || die "$w under plain glibc ended with $how; see $err"
          [[ -s "$tmp_dir/stdout" ]] || die "$w under plain glibc printed nothing; see $out"
          reference[$ref_key]="$OUT_DIR/reference.$w.$size.out"
          cp "$tmp_dir/stdout" "${reference[$ref_key]}"
        elif [[ -z "${reference[$ref_key]-}" ]]; then
          status=FAIL detail="no glibc reference output"
        elif ! cmp -s "$tmp_dir/stdout" "${reference[$ref_key]}"; then
          status=FAIL detail="stdout differs from glibc"
        elif [[ "$how" != exit:0 ]]; then
          detail="exit ${how#exit:}: leaks reported"
        fi
        if [[ "$c" == heaptrack ]]; then
          for f in "$tmp_dir/heaptrack.$tag".*; do
            [[ -e "$f" ]] || continue
            trace_bytes[$w]="${trace_bytes[$w]-} $(stat -c %s "$f")"
            rm -f "$f"
          done
        fi
        rm -f "$tmp_dir"/*.heap  # gperftools' leak profiles
        if [[ "$status" == FAIL ]]; then
          given_up[$key]="$detail"
          # A glibc run is never skipped: without it there is no baseline.
          [[ "$c" == glibc* ]] && unset "given_up[$key]"
        fi
        printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n' "$w" "$c" "$rep" "$wall" "$rss" "$status" "$detail" "$cpu" >>"$results"
        printf 'bench.sh: [%d/%d] %-11s %-28s %7.2f s %8.1f MiB  %s%s\n' "$rep" "$runs" "$w" "$(describe_tool "$c")" \
          "$wall" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$status" "${detail:+ ($detail)}" >&2
      done
    done
  done
  part_seconds[table]=$((SECONDS - started_at))

  # One summary row per workload and configuration: medians, ratios to the glibc baseline of the
  # same size, successful/total runs. A ratio is the median of each round's ratio to the glibc run
  # of the same round: on a shared machine the load drifts within minutes, and runs a few seconds
  # apart see nearly the same load, so paired ratios are much steadier than a ratio of medians.
  awk -F'\t' -v small_tools=" $SMALL_TOOLS " '
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " ")
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
      if (n == 0) return ""
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    NR == 1 { next }
    {
      key = $1 SUBSEP $2
      if (!(key in total)) { order[++count] = key; wl[key] = $1; cf[key] = $2 }
      total[key]++
      if ($6 == "ok") {
        ok[key]++; walls[key] = walls[key] " " $4; rsss[key] = rsss[key] " " $5; if ($7 != "") info[key] = $7
        wall_of[key, $3] = $4; rss_of[key, $3] = $5; cpu_of[key, $3] = $8; reps[key] = reps[key] " " $3
      }
      else if (!(key in why)) why[key] = $7
    }
    END {
      for (i = 1; i <= count; i++) {
        key = order[i]
        if (ok[key] > 0) { mw[key] = median(walls[key]); mr[key] = median(rsss[key]) / 1024 }
      }
      for (i = 1; i <= count; i++) {
        key = order[i]; small = index(small_tools, " " cf[key] " ") > 0
        base = wl[key] SUBSEP (small ? "glibc-small" : "glibc")
        wall = rss = rw = rr = rc = "-"
        if (key in mw) {
          wall = sprintf("%.2f", mw[key]); rss = sprintf("%.1f", mr[key])
          wall_ratios = rss_ratios = cpu_ratios = ""
          n = split(reps[key], r, " ")
          for (j = 1; j <= n; j++) {
            if (!((base, r[j]) in wall_of) || wall_of[base, r[j]] <= 0) continue
            wall_ratios = wall_ratios " " wall_of[key, r[j]] / wall_of[base, r[j]]
            rss_ratios = rss_ratios " " rss_of[key, r[j]] / rss_of[base, r[j]]
            if (cpu_of[base, r[j]] > 0) cpu_ratios = cpu_ratios " " cpu_of[key, r[j]] / cpu_of[base, r[j]]
          }
          if (wall_ratios != "") { rw = sprintf("%.2f", median(wall_ratios)); rr = sprintf("%.2f", median(rss_ratios)) }
          if (cpu_ratios != "") rc = sprintf("%.2f", median(cpu_ratios))
        }
        st = (ok[key] == total[key]) ? "ok" : "FAIL"
        note = (st == "FAIL") ? why[key] : info[key]
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", wl[key], cf[key], wall, rw, rss, rr, ok[key], total[key], st, note, rc
      }
    }' "$results" >"$summary"
fi

# ---------------------------------------------------------------- part: scan-overhead

# heapkeeper detect with periodic scans against the same without them, alternating (which one goes
# first alternates too), on python_churn long enough for several scans. Both write the JSON report,
# which counts the scans, so the two differ only in HEAPKEEPER_SCAN_INTERVAL.
overhead_runs="$OUT_DIR/scan_overhead.tsv"
overhead_summary="$OUT_DIR/scan_overhead_summary.tsv"
overhead_verdict=""
rm -f "$overhead_runs" "$overhead_summary"
if part scan-overhead && ! contains "$active" hk-detect; then
  skip "scan-overhead" "it needs heapkeeper (hk-detect in --tools)"
elif part scan-overhead; then
  started_at=$SECONDS
  overhead_env=(PYTHONHASHSEED=0 PYTHONMALLOC=malloc)
  overhead_cmd=("$python" "$WORKLOAD_DIR/python_churn.py" "$overhead_iterations" --cache-entries "$py_cache")
  printf 'configuration\trun\twall_s\tmaxrss_kib\tstatus\tscans\tcpu_s\n' >"$overhead_runs"
  # glibc once, untimed in the comparison: the reference output, and the page cache warmed.
  "$measure" "$timeout_s" "$tmp_dir/run.res" "$OUT_DIR/reference.overhead.out" "$LOG_DIR/overhead.glibc.err" \
    "${clean_env[@]}" "${overhead_env[@]}" "${overhead_cmd[@]}" || die "the measuring helper failed on overhead.glibc"
  read -r wall rss how cpu <"$tmp_dir/run.res"
  [[ "$how" == exit:0 && -s "$OUT_DIR/reference.overhead.out" ]] || die "python_churn under glibc ended with $how"
  printf 'glibc\t1\t%s\t%s\tok\t-\t%s\n' "$wall" "$rss" "$cpu" >>"$overhead_runs"
  note "scan-overhead: $runs round(s) of heapkeeper detect with and without periodic scans every $overhead_interval (python_churn $overhead_iterations iterations, glibc: ${wall} s)"
  for ((rep = 1; rep <= runs; rep++)); do
    order=(hk-noscan hk-scan)
    ((rep % 2)) || order=(hk-scan hk-noscan)
    for c in "${order[@]}"; do
      tag="overhead.$c.$rep"
      report="$tmp_dir/$tag.json"
      hk_env=("LD_PRELOAD=${lib[hk-detect]}" HEAPKEEPER_MODE=detect "HEAPKEEPER_REPORT=$report")
      [[ "$c" == hk-noscan ]] || hk_env+=("HEAPKEEPER_SCAN_INTERVAL=$overhead_interval")
      "$measure" "$timeout_s" "$tmp_dir/run.res" "$LOG_DIR/$tag.out" "$LOG_DIR/$tag.err" \
        "${clean_env[@]}" "${overhead_env[@]}" "${hk_env[@]}" "${overhead_cmd[@]}" \
        || die "the measuring helper failed (or the run was interrupted) on $tag"
      read -r wall rss how cpu <"$tmp_dir/run.res"
      status=ok
      if [[ "$how" != exit:0 ]]; then status="FAIL: $how"
      elif ! cmp -s "$LOG_DIR/$tag.out" "$OUT_DIR/reference.overhead.out"; then status="FAIL: stdout differs from glibc"
      fi
      scans="$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["scans"])' "$report" 2>/dev/null || echo -)"
      rm -f "$report"
      printf '%s\t%d\t%s\t%s\t%s\t%s\t%s\n' "$c" "$rep" "$wall" "$rss" "$status" "$scans" "$cpu" >>"$overhead_runs"
      printf 'bench.sh: [%d/%d] scan-overhead %-10s %7.2f s %8.1f MiB  %s scans  %s\n' "$rep" "$runs" "$c" "$wall" \
        "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$scans" "$status" >&2
    done
  done
  part_seconds[scan-overhead]=$((SECONDS - started_at))

  # Medians per configuration, and the paired ratio: each round's run with scans over the run
  # without them in the same round, so drift between rounds cancels out. CPU time (the process's
  # user + system, the scanner thread's included) is reported beside wall time: on a shared
  # machine it does not count waiting for a core, so it shows the scans' cost with less noise.
  awk -F'\t' -v interval="$overhead_interval" '
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " ")
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
      if (n == 0) return ""
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    NR == 1 { next }
    {
      total[$1]++
      if ($5 != "ok") { failed[$1] = $5; next }
      ok[$1]++; walls[$1] = walls[$1] " " $3; rsss[$1] = rsss[$1] " " $4; cpus[$1] = cpus[$1] " " $7
      if ($6 != "-") scans[$1] = scans[$1] " " ($1 == "glibc" ? $6 : $6 - 1)
      wall_of[$1, $2] = $3; cpu_of[$1, $2] = $7
    }
    END {
      print "configuration\twall s\tx glibc\tCPU s\tpeak RSS MiB\tperiodic scans per run\truns ok" > summary
      split("glibc hk-noscan hk-scan", order, " ")
      name["glibc"] = "glibc (reference, one run)"; name["hk-noscan"] = "heapkeeper detect, no periodic scans"
      name["hk-scan"] = "heapkeeper detect, scans every " interval
      for (i = 1; i <= 3; i++) {
        c = order[i]
        if (!(c in total)) continue
        w = (c in ok) ? median(walls[c]) : ""
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d%s\n", name[c], w == "" ? "-" : sprintf("%.2f", w),
          (w == "" || !("glibc" in ok)) ? "-" : sprintf("%.2f", w / median(walls["glibc"])),
          (c in ok) ? sprintf("%.2f", median(cpus[c])) : "-",
          (c in ok) ? sprintf("%.1f", median(rsss[c]) / 1024) : "-", (c in scans) ? median(scans[c]) : "-",
          ok[c], total[c], (c in failed) ? " (" failed[c] ")" : "" > summary
      }
      pairs = cpu_pairs = ""
      for (key in wall_of) {
        split(key, k, SUBSEP)
        if (k[1] != "hk-scan" || !(("hk-noscan", k[2]) in wall_of)) continue
        pairs = pairs " " wall_of[key] / wall_of["hk-noscan", k[2]]
        if (cpu_of["hk-noscan", k[2]] > 0) cpu_pairs = cpu_pairs " " cpu_of[key] / cpu_of["hk-noscan", k[2]]
      }
      if (pairs == "" || !("hk-scan" in ok) || !("hk-noscan" in ok)) { print "no successful pair of runs: no verdict"; exit }
      paired = median(pairs); ratio = median(walls["hk-scan"]) / median(walls["hk-noscan"])
      printf "periodic scans every %s cost %+.1f%% wall time (median of %d paired ratios: %.3f; ratio of medians: %.3f)",
        interval, (paired - 1) * 100, split(pairs, unused, " "), paired, ratio
      if (cpu_pairs != "") printf " and %+.1f%% CPU time", (median(cpu_pairs) - 1) * 100
      printf "; goal at most +5%% wall time: %s\n", (paired <= 1.05) ? "met" : "MISSED"
    }' summary="$overhead_summary" "$overhead_runs" >"$tmp_dir/verdict"
  overhead_verdict="$(cat "$tmp_dir/verdict")"
  ((!quick)) || overhead_verdict+=" [--quick: short runs with scans every $overhead_interval; the goal is stated for 10 s scans on the full run]"
fi

# ---------------------------------------------------------------- part: first-report

# late_leak under each tool, watched by bench/first_report.py. Each configuration names the line
# that reports the leaked block (12,345 bytes from lose_early_block) in that tool's own words.
first_runs="$OUT_DIR/first_report.tsv"
first_summary="$OUT_DIR/first_report_summary.tsv"
rm -f "$first_runs" "$first_summary"
leak_line='late_leak: leaked 12345 bytes'
first_report_setup() {  # sets prefix, report (regex) and watch_args for configuration $1, run $2
  local c="$1" tag="$2" hk=("LD_PRELOAD=${lib[hk-detect]-}" HEAPKEEPER_MODE=detect)
  watch_args=()
  case "$c" in
    hk-scan) prefix=("${hk[@]}" "HEAPKEEPER_SCAN_INTERVAL=$late_interval"); report='heapkeeper\[[0-9]+\]: scan [0-9]+: 1 new leaked blocks' ;;
    hk-scan1) prefix=("${hk[@]}" HEAPKEEPER_SCAN_INTERVAL=1s); report='heapkeeper\[[0-9]+\]: scan [0-9]+: 1 new leaked blocks' ;;
    hk-report) prefix=("${hk[@]}"); report='lose_early_block'; watch_args=(--on-leak "$hk_cli report {pid}") ;;
    hk-exit) prefix=("${hk[@]}"); report='Direct leak of 12345 byte' ;;
    lsan) config_prefix lsan "$tag"; report='Direct leak of 12345 byte' ;;
    valgrind) config_prefix valgrind "$tag"; report='12,345 bytes in 1 blocks are definitely lost' ;;
    gperftools) config_prefix gperftools "$tag"; report='detected leaks of 12345 bytes' ;;
    heaptrack)
      prefix=(heaptrack -o "$tmp_dir/$tag"); report='lose_early_block'
      watch_args=(--after "heaptrack_print -f $tmp_dir/$tag.* --print-peaks 0 --print-allocators 0 --print-temporary 0 --print-leaks 1") ;;
  esac
}
describe_first_report() {
  case "$1" in
    hk-scan) echo "heapkeeper detect, periodic scans every $late_interval|scan line on stderr: 1 new leaked block and its size" ;;
    hk-scan1) echo "heapkeeper detect, periodic scans every 1s|scan line on stderr: 1 new leaked block and its size" ;;
    hk-report) echo "heapkeeper detect, \`heapkeeper report PID\` on demand|asked right after the leak: stack naming lose_early_block" ;;
    hk-exit) echo "heapkeeper detect, no periodic scans|exit report on stderr" ;;
    lsan) echo "LeakSanitizer|exit report on stderr" ;;
    valgrind) echo "valgrind memcheck|exit report on stderr" ;;
    gperftools) echo "gperftools heapcheck|exit report on stderr" ;;
    heaptrack) echo "heaptrack|heaptrack_print --print-leaks on the trace, after exit" ;;
  esac
}
if part first-report; then
  started_at=$SECONDS
  compile "$OUT_DIR/late_leak" "$WORKLOAD_DIR/late_leak.c" -g -fno-omit-frame-pointer
  first_configs=()
  if contains "$active" hk-detect; then
    first_configs+=(hk-scan hk-scan1)
    if [[ -x "$hk_cli" ]]; then first_configs+=(hk-report); else skip "heapkeeper report on demand" "$hk_cli is not built"; fi
    first_configs+=(hk-exit)
  fi
  for t in lsan valgrind gperftools heaptrack; do contains "$active" "$t" && first_configs+=("$t"); done
  printf 'configuration\trun\tafter_leak_s\tsource\texit_after_leak_s\tstatus\n' >"$first_runs"
  note "first-report: $first_report_rounds round(s) of late_leak (${late_duration} s, leak at ${late_leak_at} s) under [${first_configs[*]}]"
  for ((rep = 1; rep <= first_report_rounds; rep++)); do
    for c in "${first_configs[@]}"; do
      tag="late.$c.$rep"
      first_report_setup "$c" "$tag"
      "$python" "$BENCH_DIR/first_report.py" --leak "$leak_line" --report "$report" --timeout "$timeout_s" \
        --result "$tmp_dir/first.json" --log "$LOG_DIR/$tag.log" "${watch_args[@]}" -- \
        "${clean_env[@]}" "${prefix[@]}" "$OUT_DIR/late_leak" "$late_duration" "$late_leak_at" \
        || die "bench/first_report.py failed on $tag"
      "$python" - "$tmp_dir/first.json" "$c" "$rep" >>"$first_runs" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = r["status"] in ("exit:0", "exit:1", "exit:23") and r["report_after_leak_s"] is not None
status = "ok" if ok else "FAIL: " + (r["status"] if r["report_after_leak_s"] is not None else "no report naming the leak (" + r["status"] + ")")
exit_after = "-" if r["leak_s"] is None else "%.2f" % (r["exit_s"] - r["leak_s"])
after = "-" if r["report_after_leak_s"] is None else "%.2f" % r["report_after_leak_s"]
print("\t".join([sys.argv[2], sys.argv[3], after, r["source"] or "-", exit_after, status]))
PY
      rm -f "$tmp_dir/$tag".* "$tmp_dir"/*.heap
      tail -n 1 "$first_runs" | awk -F'\t' -v n="$first_report_rounds" '{ printf "bench.sh: [%d/%d] first-report %-10s report %s s after the leak (%s), exit %s s after it  %s\n", $2, n, $1, $3, $4, $5, $6 }' >&2
    done
  done
  part_seconds[first-report]=$((SECONDS - started_at))
  {
    printf 'tool\thow the leak is reported\tfirst leak report (s)\texit (s after the leak)\truns ok\n'
    for c in "${first_configs[@]}"; do
      IFS='|' read -r name how <<<"$(describe_first_report "$c")"
      awk -F'\t' -v c="$c" -v name="$name" -v how="$how" '
        function median(list,   n, a, i, j, t) {
          n = split(list, a, " ")
          for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
          return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        $1 == c { total++; if ($6 == "ok") { ok++; after = after " " $3; ends = ends " " $5 } else if (why == "") why = $6 }
        END {
          printf "%s\t%s\t%s\t%s\t%d/%d%s\n", name, how, ok ? sprintf("%.2f", median(after)) : "-",
            ok ? sprintf("%.2f", median(ends)) : "-", ok, total, why != "" ? " (" why ")" : ""
        }' "$first_runs"
    done
  } >"$first_summary"
fi

# ---------------------------------------------------------------- part: corpus

# Leak-report quality: the leak corpus (exact expected figures) under every leak checker in use.
# One program at a time: the corpus's timing checks (scans during a 1.2 s churn) need the CPU,
# and valgrind or heaptrack on the other core would starve them.
corpus_json="$OUT_DIR/leak_corpus.json"
corpus_summary="$OUT_DIR/leak_corpus_summary.tsv"
corpus_status=""
rm -f "$corpus_json" "$corpus_summary"
if part corpus; then
  hk_active=""
  if contains "$active" hk-detect; then hk_active="${lib[hk-detect]}"; elif contains "$active" hk-off; then hk_active="${lib[hk-off]}"; fi
  if [[ -z "$hk_active" ]]; then
    skip "corpus" "it needs heapkeeper (hk-off or hk-detect in --tools)"
  elif [[ ! -x "$corpus_programs/lost_malloc" ]]; then
    skip "corpus" "no corpus programs in $corpus_programs (configure with -DHEAPKEEPER_BUILD_TESTS=ON and build)"
  else
    started_at=$SECONDS
    corpus_tools="heapkeeper"
    for t in valgrind lsan heaptrack gperftools; do contains "$active" "$t" && corpus_tools+=",$t"; done
    corpus_args=(--preload "$hk_active" --programs "$corpus_programs" --source-dir "$ROOT_DIR/tests/leak_corpus"
                 --tools "$corpus_tools" --json "$corpus_json" --jobs 1)
    [[ ! -d "$corpus_programs/lsan" ]] || corpus_args+=(--lsan-programs "$corpus_programs/lsan")
    [[ -z "${lib[gperftools]-}" ]] || corpus_args+=(--tcmalloc "${lib[gperftools]}")
    note "corpus: tests/leak_corpus/run_corpus.py --tools $corpus_tools"
    if "${clean_env[@]}" "$python" "$ROOT_DIR/tests/leak_corpus/run_corpus.py" "${corpus_args[@]}" >"$OUT_DIR/leak_corpus.txt" 2>&1; then
      corpus_status="ok"
    else
      corpus_status="heapkeeper FAILED on the corpus (see $OUT_DIR/leak_corpus.txt)"
    fi
    part_seconds[corpus]=$((SECONDS - started_at))
    if [[ -s "$corpus_json" ]]; then
      "$python" - "$corpus_json" >"$corpus_summary" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
counts_as = {
    "heapkeeper": "unreachable at exit (conservative scan); direct/indirect",
    "valgrind": "definitely + indirectly lost; direct/indirect",
    "lsan": "direct + indirect leaks (-fsanitize=leak build)",
    "heaptrack": "every block not freed at exit, reachable ones too; unclassified",
    "gperftools": "unreachable at exit (HEAPCHECK=normal); unclassified, no suppression file",
}
print("tool\texact matches\tdirect/indirect split too\tno result\twhat counts as leaked")
for tool, c in doc["tools"].items():
    if not c["available"]:
        print(f"{tool}\t-\t-\t-\tnot available: {c.get('why_not_available', '')}")
        continue
    split = "-" if c["classified"] is None else f"{c['classified']}/{c['programs']}"
    print(f"{tool}\t{c['exact']}/{c['programs']}\t{split}\t{c['skipped'] + c['errors']}\t{counts_as[tool]}")
PY
    fi
  fi
fi

# ---------------------------------------------------------------- the report

elapsed=$((SECONDS - bench_started))
cpu_model="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
version_of() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
took=""
for p in $ALL_PARTS; do [[ -z "${part_seconds[$p]-}" ]] || took+="${took:+, }$p ${part_seconds[$p]}s"; done
commit="$(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT_DIR" status --porcelain -- allocator preload collector stats report include 2>/dev/null)" ]]; then
  commit+=" (the source tree had uncommitted changes in heapkeeper's library)"
fi
machine=(
  "machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}"
  "kernel:  $(uname -srm)"
  "date:    $(date -u '+%Y-%m-%d %H:%M UTC'); heapkeeper commit $commit"
  "runs:    $runs per configuration, round-robin; medians of successful runs; benchmark took ${elapsed}s (${took:-nothing run})"
  "sizes:   python_churn $py_iterations iterations (small: $py_small_iterations), sqlite $sqlite_orders orders = $((sqlite_orders * 3)) rows (small: $sqlite_small_orders); scan overhead: python_churn $overhead_iterations iterations; late_leak ${late_duration} s"
  "versions: $("$python" -c 'import platform; print("python " + platform.python_version())'),${sqlite:+ sqlite $("$sqlite" -version | awk '{ print $1 }'),} glibc $(version_of libc6), jemalloc $(version_of libjemalloc2), mimalloc $(version_of libmimalloc2.0), heaptrack $(version_of heaptrack), valgrind $(version_of valgrind), gperftools $(version_of libgoogle-perftools4)"
)

notes=()
if contains "$active" hk-off || contains "$active" hk-detect; then
  notes+=("heapkeeper: $hk_source (built $hk_built, copied at the start; sha256 $(sha256sum "$tmp_dir/libheapkeeper.so" | cut -c1-12)), HEAPKEEPER_STACK_DEPTH=${HEAPKEEPER_STACK_DEPTH:-default}")
fi
for t in $selected; do [[ -n "${tool_note[$t]-}" ]] && notes+=("$(describe_tool "$t"): ${tool_note[$t]}"); done
((${#skip_notes[@]})) && notes+=("${skip_notes[@]}")
for key in $(printf '%s\n' "${!given_up[@]}" | sort); do
  notes+=("$(describe_tool "${key#*/}") on $(describe_workload "${key%%/*}"): not repeated after its first failure (${given_up[$key]}); see $LOG_DIR/")
done
traces=""
for w in $only; do
  [[ -n "${trace_bytes[$w]-}" ]] || continue
  traces+="${traces:+, }$(tr ' ' '\n' <<<"${trace_bytes[$w]}" | sed '/^$/d' | sort -n | awk '{ a[NR] = $1 } END { printf "%.1f", a[int((NR + 1) / 2)] / 1048576 }') MiB for $w"
done
[[ -z "$traces" ]] || notes+=("heaptrack records to a file (-o /tmp/heapkeeper-bench.*/heaptrack.*, deleted after each run), median size: $traces; its wall time includes writing and compressing it")
if [[ "${given_up[sqlite/lsan]-}" == "killed by signal 11" ]]; then
  notes+=("LeakSanitizer on sqlite3: preloaded liblsan initialises on the first malloc, but sqlite3 calls signal() before that, through a not-yet-resolved interceptor (NULL call)")
fi
if part table; then
  contains "$active" heaptrack && notes+=("heaptrack's peak RSS is that of the largest process in its tree (the program, heaptrack_interpret or the compressor it pipes into), not their sum")
  if contains "$active" valgrind || contains "$active" gperftools; then
    notes+=("[small]: run on the small variant (python_churn $py_small_iterations iterations, sqlite $sqlite_small_orders orders); ratios are to glibc [small], where interpreter start-up weighs more")
  fi
  notes+=("a run is ok when it exits normally and its stdout equals the glibc run's; leak checkers may exit non-zero when they report leaks")
fi
if [[ -s "$first_summary" ]]; then
  notes+=("first leak report: seconds from late_leak's own line announcing the leak (${late_leak_at} s into a ${late_duration} s run) to the first line naming the leaked block, medians of $first_report_rounds run(s); exit: when late_leak and the tool's exit work ended, also counted from the leak; stamped lines: $LOG_DIR/late.*.log")
fi
[[ -z "$corpus_status" ]] || notes+=("leak corpus: $corpus_status; per-program figures: $OUT_DIR/leak_corpus.txt and leak_corpus.json; LeakSanitizer runs the corpus built with -fsanitize=leak")
notes+=("per-run stdout/stderr: $LOG_DIR/; every run: $OUT_DIR/*.tsv")

print_table() {  # $1 = text|markdown
  awk -F'\t' -v style="$1" -v wl_names="$(for w in $ALL_WORKLOADS; do printf '%s=%s;' "$w" "$(describe_workload "$w")"; done)" \
      -v cf_names="$(for c in glibc-small $ALL_TOOLS; do printf '%s=%s;' "$c" "$(describe_tool "$c")"; done)" '
    BEGIN {
      n = split(wl_names, a, ";"); for (i = 1; i <= n; i++) { j = index(a[i], "="); wname[substr(a[i], 1, j - 1)] = substr(a[i], j + 1) }
      n = split(cf_names, a, ";"); for (i = 1; i <= n; i++) { j = index(a[i], "="); cname[substr(a[i], 1, j - 1)] = substr(a[i], j + 1) }
      if (style == "markdown") {
        print "| workload | configuration | wall s | × glibc | CPU × glibc | peak RSS MiB | × glibc | runs ok | status |"
        print "|---|---|---:|---:|---:|---:|---:|---:|---|"
      } else {
        printf "%-34s %-28s %8s %8s %8s %10s %8s %8s  %s\n", "workload", "configuration", "wall s", "x glibc", "CPU x", "RSS MiB", "x glibc", "runs ok", "status"
      }
    }
    {
      status = $8; if ($9 != "") status = status " (" $9 ")"
      if (style == "markdown")
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", wname[$1], cname[$2], $3, $4, $10, $5, $6, $7, status
      else {
        if ($1 != last && NR > 1) print ""
        printf "%-34s %-28s %8s %8s %8s %10s %8s %8s  %s\n", wname[$1], cname[$2], $3, $4, $10, $5, $6, $7, status
      }
      last = $1
    }' "$summary"
}

print_tsv() {  # $1 = text|markdown, $2 = TSV with a header line; columns of numbers are right-aligned
  awk -F'\t' -v style="$1" '
    { rows = NR; for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > width[i]) width[i] = length($i) }; if (NF > cols) cols = NF }
    NR > 1 { for (i = 1; i <= NF; i++) if ($i !~ /^[-+]?[0-9.\/]+( \(.*\))?$|^-$/) text[i] = 1 }
    END {
      for (r = 1; r <= rows; r++) {
        line = ""
        for (i = 1; i <= cols; i++) {
          v = cell[r, i]
          if (style == "markdown") line = line "| " v " "
          else if (text[i] && i == cols) line = line "  " v  # no trailing blanks
          else line = line (i > 1 ? "  " : "") sprintf(text[i] ? "%-" width[i] "s" : "%" width[i] "s", v)
        }
        print (style == "markdown") ? line "|" : line
        if (r == 1 && style == "markdown") {
          line = ""
          for (i = 1; i <= cols; i++) line = line (text[i] ? "|---" : "|---:")
          print line "|"
        }
      }
    }' "$2"
}

print_report() {  # $1 = text|markdown
  local style="$1" bullet=""
  [[ "$style" == markdown ]] && bullet="- "
  echo
  printf -- "$bullet%s\n" "${machine[@]}"
  if [[ -s "$summary" ]]; then
    echo; [[ "$style" == markdown ]] && echo "## Wall time and peak RSS" && echo
    print_table "$style"
  fi
  if [[ -s "$overhead_summary" ]]; then
    echo; [[ "$style" == markdown ]] && echo "## Periodic-scan overhead" && echo
    [[ "$style" == markdown ]] || echo "periodic-scan overhead (python3 churn, PYTHONMALLOC=malloc, $overhead_iterations iterations):"
    print_tsv "$style" "$overhead_summary"
    echo; echo "$overhead_verdict"
  fi
  if [[ -s "$first_summary" ]]; then
    echo; [[ "$style" == markdown ]] && echo "## Time to first leak report" && echo
    [[ "$style" == markdown ]] || echo "time to first leak report (late_leak: 12,345 bytes lost ${late_leak_at} s into a ${late_duration} s run; seconds after the leak):"
    print_tsv "$style" "$first_summary"
  fi
  if [[ -s "$corpus_summary" ]]; then
    echo; [[ "$style" == markdown ]] && echo "## Leak-report quality (leak corpus)" && echo
    [[ "$style" == markdown ]] || echo "leak-report quality (tests/leak_corpus: exact expected leaks; a match: leaked blocks and bytes as expected):"
    print_tsv "$style" "$corpus_summary"
    echo; grep -E '^(exact|classified):' "$OUT_DIR/leak_corpus.txt" || true
  fi
  echo
  printf -- "${bullet:-note: }%s\n" "${notes[@]}"
}

print_report text
{ echo "# heapkeeper benchmark"; print_report markdown; } >"$OUT_DIR/results.md"
note "wrote $OUT_DIR/results.md"

# Non-zero when glibc or heapkeeper failed, so CI notices. Other tools failing (LeakSanitizer
# crashes some programs, for one) is their problem, reported in the tables.
failed=0
[[ ! -s "$summary" ]] || ! awk -F'\t' '$8 == "FAIL" && ($2 ~ /^glibc/ || $2 ~ /^hk-/) { found = 1 } END { exit !found }' "$summary" || failed=1
[[ ! -s "$overhead_runs" ]] || ! grep -q $'\tFAIL' "$overhead_runs" || failed=1
[[ ! -s "$first_runs" ]] || ! grep -qE $'^hk-[a-z0-9]+\t[0-9]+\t.*\tFAIL' "$first_runs" || failed=1
[[ "$corpus_status" != heapkeeper* ]] || failed=1
exit "$failed"

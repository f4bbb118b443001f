#!/usr/bin/env bash
# Benchmarks heapkeeper against plain glibc malloc, other allocators and other memory tools.
#
# Each workload (bench/workloads/) runs under each configuration; repetitions go round-robin over
# the configurations so drift on the machine (thermal, noisy neighbours) is spread over all of them
# instead of landing on one. A small C helper compiled into build/bench/ runs every command and
# reports wall time and peak RSS from wait4()'s rusage. A run counts only if its stdout matches the
# plain-glibc run of the same workload, so a fast but broken configuration shows up as FAIL, not as
# a good number. The table of medians goes to the terminal and to build/bench/results.md.
#
# Packages the benchmark needs are installed with apt-get only when missing. Tools that are not
# available, or fail a start-up check, are skipped with a note. valgrind and the gperftools heap
# checker are one to two orders of magnitude slower than the rest, so they run a small variant of
# each workload and are compared with plain glibc on that same small variant.
#
# Usage: scripts/bench.sh [--runs N] [--quick] [--only WORKLOAD[,...]] [--tools TOOL[,...]]
#                         [--lib PATH] [--timeout SECONDS] [--no-install]
set -euo pipefail

readonly ALL_WORKLOADS="py-malloc py-pymalloc sqlite"
readonly ALL_TOOLS="glibc jemalloc mimalloc hk-off hk-detect heaptrack lsan gperftools valgrind"

usage() {
  cat <<EOF
Usage: scripts/bench.sh [options]

  --runs N            repetitions per configuration (default 5; --quick: 2)
  --quick             2 runs and smaller workloads (CI smoke test)
  --only W[,W...]     workloads to run: ${ALL_WORKLOADS// /, }
  --tools T[,T...]    configurations to run: ${ALL_TOOLS// /, }
                      ('heapkeeper' means hk-off,hk-detect; glibc is always added as the baseline)
  --lib PATH          libheapkeeper.so to test (default: build/lib/libheapkeeper.so, or \$HEAPKEEPER_LIB)
  --timeout S         kill a run after S seconds (default 300)
  --no-install        never call apt-get; skip what is missing
  -h, --help          this text

Writes build/bench/results.md; per-run logs go to build/bench/logs/.
EOF
}

die() { echo "bench.sh: error: $*" >&2; exit 1; }
note() { echo "bench.sh: $*" >&2; }

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$ROOT_DIR/build/bench"
LOG_DIR="$OUT_DIR/logs"
WORKLOAD_DIR="$ROOT_DIR/bench/workloads"

runs=""
quick=0
only="$ALL_WORKLOADS"
tools="$ALL_TOOLS"
hk_lib="${HEAPKEEPER_LIB:-$ROOT_DIR/build/lib/libheapkeeper.so}"
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

# Workload sizes. "small" is the variant for valgrind and the gperftools heap checker.
if ((quick)); then
  py_iterations=6000; py_small_iterations=300; py_cache=3000
  sqlite_orders=20000; sqlite_small_orders=1000
else
  py_iterations=30000; py_small_iterations=1000; py_cache=8000
  sqlite_orders=80000; sqlite_small_orders=3000
fi

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
  if contains "$only" sqlite; then command -v sqlite3 >/dev/null || echo sqlite3; fi
  contains "$selected" jemalloc && { find_lib libjemalloc.so.2 >/dev/null || echo libjemalloc2; }
  contains "$selected" mimalloc && { find_lib libmimalloc.so.2 >/dev/null || echo "@mimalloc"; }
  contains "$selected" heaptrack && { command -v heaptrack >/dev/null || echo heaptrack; }
  contains "$selected" lsan && { find_lib liblsan.so.0 >/dev/null || echo liblsan0; }
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
if contains "$only" sqlite; then
  sqlite="$(command -v sqlite3)" || die "sqlite3 is missing and could not be installed (or drop it with --only)"
fi

rm -f "$LOG_DIR"/*.out "$LOG_DIR"/*.err
tmp_dir="$(mktemp -d /tmp/heapkeeper-bench.XXXXXX)" || die "cannot create a temporary directory"
trap 'rm -rf "$tmp_dir"' EXIT

# ---------------------------------------------------------------- the measuring helper

# wait4() reports the peak RSS of the child and of its own waited-for children (their maximum,
# not their sum), which is what we want for wrappers such as heaptrack's shell script.
measure="$OUT_DIR/hk-measure"
measure_source="$OUT_DIR/hk-measure.c"
build_measure() {
  cat >"$measure_source.new" <<'EOF'
/* hk-measure: runs one command with stdout/stderr sent to files, in its own process group, and
 * writes "WALL_SECONDS MAXRSS_KIB HOW_IT_ENDED" to a result file. Generated by scripts/bench.sh. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t child_pid, timed_out, interrupted;

static void on_alarm(int sig) {
  (void)sig;
  timed_out = 1;
  if (child_pid > 0) kill(-child_pid, SIGKILL);
}

static void on_interrupt(int sig) {
  interrupted = sig;
  if (child_pid > 0) kill(-child_pid, SIGKILL);
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s TIMEOUT_S RESULT_FILE STDOUT_FILE STDERR_FILE COMMAND [ARG]...\n", argv[0]);
    return 2;
  }
  unsigned timeout = (unsigned)strtoul(argv[1], NULL, 10);
  int out = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FILE *result = fopen(argv[2], "w");
  if (out < 0 || err < 0 || result == NULL) {
    fprintf(stderr, "hk-measure: cannot open output files: %s\n", strerror(errno));
    return 2;
  }
  struct sigaction action;
  memset(&action, 0, sizeof action); /* no SA_RESTART: wait4 must return on the alarm */
  action.sa_handler = on_alarm;
  sigaction(SIGALRM, &action, NULL);
  action.sa_handler = on_interrupt;
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGHUP, &action, NULL);

  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "hk-measure: fork: %s\n", strerror(errno));
    return 2;
  }
  if (pid == 0) {
    setpgid(0, 0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    execvp(argv[5], argv + 5);
    fprintf(stderr, "hk-measure: cannot run %s: %s\n", argv[5], strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid); /* also here, so the group exists before any kill(-pid) */
  child_pid = pid;
  alarm(timeout);
  int status = 0;
  struct rusage usage;
  memset(&usage, 0, sizeof usage);
  while (wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "hk-measure: wait4: %s\n", strerror(errno));
      return 2;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  alarm(0);
  kill(-pid, SIGKILL); /* stragglers the command left in its group */
  double wall = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
  char how[32];
  if (interrupted)
    snprintf(how, sizeof how, "interrupted");
  else if (timed_out)
    snprintf(how, sizeof how, "timeout");
  else if (WIFSIGNALED(status))
    snprintf(how, sizeof how, "signal:%d", WTERMSIG(status));
  else
    snprintf(how, sizeof how, "exit:%d", WEXITSTATUS(status));
  fprintf(result, "%.3f %ld %s\n", wall, usage.ru_maxrss, how);
  fclose(result);
  return interrupted ? 130 : 0;
}
EOF
  local cc
  cc="$(command -v cc || command -v gcc || command -v clang || true)"
  if [[ -n "$cc" ]] && "$cc" -O2 -x c -o "$measure.new" "$measure_source.new" 2>"$tmp_dir/cc.log"; then
    mv "$measure_source.new" "$measure_source"
    mv "$measure.new" "$measure"
    rm -f "$OUT_DIR/hk-measure.py"
    return 0
  fi
  [[ -z "$cc" ]] || note "compiling the measuring helper failed: $(head -n 3 "$tmp_dir/cc.log" | tr '\n' ' ')"
  rm -f "$measure_source.new" "$measure.new"
  return 1
}

write_python_measure() {  # same contract as hk-measure, for machines without a C compiler
  measure="$OUT_DIR/hk-measure.py"
  cat >"$measure" <<'EOF'
import os, signal, sys, time
timeout, result, out, err, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
start = time.monotonic()
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
    os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
state = {"timeout": False}
def expire(signum, frame):
    state["timeout"] = True
    os.killpg(pid, signal.SIGKILL)
signal.signal(signal.SIGALRM, expire)
signal.alarm(timeout)
_, status, usage = os.wait4(pid, 0)
wall = time.monotonic() - start
signal.alarm(0)
try:
    os.killpg(pid, signal.SIGKILL)
except OSError:
    pass
how = ("timeout" if state["timeout"] else "signal:%d" % os.WTERMSIG(status)
       if os.WIFSIGNALED(status) else "exit:%d" % os.WEXITSTATUS(status))
with open(result, "w") as f:
    f.write("%.3f %d %s\n" % (wall, usage.ru_maxrss, how))
EOF
}

if [[ -x "$measure" && "$measure" -nt "${BASH_SOURCE[0]}" ]]; then
  :
elif ! build_measure; then
  note "no working C compiler; measuring with python3's os.wait4 instead"
  write_python_measure
fi
measure_cmd=("$measure")
[[ "$measure" == *.py ]] && measure_cmd=("$python" "$measure")

# ---------------------------------------------------------------- configurations

declare -A lib=()
declare -A tool_note=()
pprof=""

# A configuration is usable when its files exist and it runs /bin/true cleanly.
check_runs() {  # $1 = tool, rest = command prefix
  local tool="$1"; shift
  if ! "${measure_cmd[@]}" 60 "$tmp_dir/check.res" "$tmp_dir/check.out" "$tmp_dir/check.err" "$@" /bin/true; then
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
        skip "$t" "$hk_lib does not exist yet (build it: cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j2)"
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
    lsan)
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

is_small() { [[ "$1" == glibc-small || "$1" == valgrind || "$1" == gperftools ]]; }
# Leak checkers may exit non-zero when they report leaks; for them only the output decides.
may_exit_nonzero() { [[ "$1" == lsan || "$1" == gperftools || "$1" == valgrind || "$1" == hk-detect ]]; }

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

# ---------------------------------------------------------------- the runs

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

results="$OUT_DIR/runs.tsv"
printf 'workload\tconfiguration\trun\twall_s\tmaxrss_kib\tstatus\tdetail\n' >"$results"
declare -A reference=()  # workload/size -> file holding glibc's stdout
declare -A given_up=()   # workload/configuration -> why later repetitions are skipped
declare -A trace_bytes=()

for w in $only; do  # generate the SQL scripts before the clock starts
  if [[ "$w" == sqlite ]]; then sqlite_script "$sqlite_orders" >/dev/null; sqlite_script "$sqlite_small_orders" >/dev/null; fi
done

# Runs start in the temporary directory, so files a tool drops into its working directory
# (reports, profiles) do not land in the caller's tree.
cd "$tmp_dir"

# One untimed glibc run of each workload first: the interpreter, the libraries and the scripts
# come into the page cache before the first measured run, not during it.
for w in $only; do
  workload_command "$w" full
  "${measure_cmd[@]}" "$timeout_s" "$tmp_dir/run.res" /dev/null /dev/null \
    env -u LD_PRELOAD -u PYTHONMALLOC -u HEAPKEEPER_MODE "${workload_env[@]}" "${workload[@]}" \
    || die "the measuring helper failed during the warm-up"
done

note "$runs round(s) of: workloads [$only] x configurations [${configs[*]}]"
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
      # env -u: nothing inherited from the caller's environment may leak into the run. The
      # prefix is either more assignments or a wrapper command (heaptrack, valgrind); both work
      # after the workload's assignments.
      cmd=(env -u LD_PRELOAD -u PYTHONMALLOC -u HEAPKEEPER_MODE "${workload_env[@]}" "${prefix[@]}" "${workload[@]}")
      "${measure_cmd[@]}" "$timeout_s" "$tmp_dir/run.res" "$out" "$err" "${cmd[@]}" \
        || die "the measuring helper failed (or the run was interrupted) on $tag"
      read -r wall rss how <"$tmp_dir/run.res"

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
      printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\n' "$w" "$c" "$rep" "$wall" "$rss" "$status" "$detail" >>"$results"
      printf 'bench.sh: [%d/%d] %-11s %-28s %7.2f s %8.1f MiB  %s%s\n' "$rep" "$runs" "$w" "$(describe_tool "$c")" \
        "$wall" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$status" "${detail:+ ($detail)}" >&2
    done
  done
done
elapsed=$((SECONDS - started_at))

# ---------------------------------------------------------------- the report

cpu_model="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
version_of() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
machine=(
  "machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}"
  "kernel:  $(uname -srm)"
  "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
  "runs:    $runs per configuration, round-robin; medians of successful runs; benchmark took ${elapsed}s"
  "sizes:   python_churn $py_iterations iterations (small: $py_small_iterations), sqlite $sqlite_orders orders = $((sqlite_orders * 3)) rows (small: $sqlite_small_orders)"
  "versions: $("$python" -c 'import platform; print("python " + platform.python_version())'),${sqlite:+ sqlite $("$sqlite" -version | awk '{ print $1 }'),} glibc $(version_of libc6), jemalloc $(version_of libjemalloc2), mimalloc $(version_of libmimalloc2.0), heaptrack $(version_of heaptrack), valgrind $(version_of valgrind), gperftools $(version_of libgoogle-perftools4)"
)

# One summary row per workload and configuration: medians, ratios to the glibc baseline of the
# same size, successful/total runs.
summary="$OUT_DIR/summary.tsv"
awk -F'\t' '
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
    if ($6 == "ok") { ok[key]++; walls[key] = walls[key] " " $4; rsss[key] = rsss[key] " " $5; if ($7 != "") info[key] = $7 }
    else if (!(key in why)) why[key] = $7
  }
  END {
    for (i = 1; i <= count; i++) {
      key = order[i]
      if (ok[key] > 0) { mw[key] = median(walls[key]); mr[key] = median(rsss[key]) / 1024 }
    }
    for (i = 1; i <= count; i++) {
      key = order[i]; small = (cf[key] == "glibc-small" || cf[key] == "valgrind" || cf[key] == "gperftools")
      base = wl[key] SUBSEP (small ? "glibc-small" : "glibc")
      wall = rss = rw = rr = "-"
      if (key in mw) {
        wall = sprintf("%.2f", mw[key]); rss = sprintf("%.1f", mr[key])
        if ((base in mw) && mw[base] > 0) { rw = sprintf("%.2f", mw[key] / mw[base]); rr = sprintf("%.2f", mr[key] / mr[base]) }
      }
      st = (ok[key] == total[key]) ? "ok" : "FAIL"
      note = (st == "FAIL") ? why[key] : info[key]
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", wl[key], cf[key], wall, rw, rss, rr, ok[key], total[key], st, note
    }
  }' "$results" >"$summary"

notes=()
if contains "$active" hk-off || contains "$active" hk-detect; then
  notes+=("heapkeeper: $hk_source (built $hk_built, copied at the start; sha256 $(sha256sum "$tmp_dir/libheapkeeper.so" | cut -c1-12)), HEAPKEEPER_STACK_DEPTH=${HEAPKEEPER_STACK_DEPTH:-default}")
fi
for t in $selected; do [[ -n "${tool_note[$t]-}" ]] && notes+=("$(describe_tool "$t"): ${tool_note[$t]}"); done
((${#skip_notes[@]})) && notes+=("${skip_notes[@]}")
for key in $(printf '%s\n' "${!given_up[@]}" | sort); do
  notes+=("$(describe_tool "${key#*/}") on $(describe_workload "${key%%/*}"): not repeated after its first failure (${given_up[$key]}); see build/bench/logs/")
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
contains "$active" heaptrack && notes+=("heaptrack's peak RSS is that of the largest process in its tree (the program, heaptrack_interpret or the compressor it pipes into), not their sum")
if contains "$active" valgrind || contains "$active" gperftools; then
  notes+=("[small]: run on the small variant (python_churn $py_small_iterations iterations, sqlite $sqlite_small_orders orders); ratios are to glibc [small], where interpreter start-up weighs more")
fi
notes+=("a run is ok when it exits normally and its stdout equals the glibc run's; leak checkers may exit non-zero when they report leaks")
notes+=("per-run stdout/stderr: build/bench/logs/; every run: build/bench/runs.tsv")

print_table() {  # $1 = text|markdown
  awk -F'\t' -v style="$1" -v wl_names="$(for w in $ALL_WORKLOADS; do printf '%s=%s;' "$w" "$(describe_workload "$w")"; done)" \
      -v cf_names="$(for c in glibc-small $ALL_TOOLS; do printf '%s=%s;' "$c" "$(describe_tool "$c")"; done)" '
    BEGIN {
      n = split(wl_names, a, ";"); for (i = 1; i <= n; i++) { j = index(a[i], "="); wname[substr(a[i], 1, j - 1)] = substr(a[i], j + 1) }
      n = split(cf_names, a, ";"); for (i = 1; i <= n; i++) { j = index(a[i], "="); cname[substr(a[i], 1, j - 1)] = substr(a[i], j + 1) }
      if (style == "markdown") {
        print "| workload | configuration | wall s | × glibc | peak RSS MiB | × glibc | runs ok | status |"
        print "|---|---|---:|---:|---:|---:|---:|---|"
      } else {
        printf "%-34s %-28s %8s %8s %10s %8s %8s  %s\n", "workload", "configuration", "wall s", "x glibc", "RSS MiB", "x glibc", "runs ok", "status"
      }
    }
    {
      status = $8; if ($9 != "") status = status " (" $9 ")"
      if (style == "markdown")
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", wname[$1], cname[$2], $3, $4, $5, $6, $7, status
      else {
        if ($1 != last && NR > 1) print ""
        printf "%-34s %-28s %8s %8s %10s %8s %8s  %s\n", wname[$1], cname[$2], $3, $4, $5, $6, $7, status
      }
      last = $1
    }' "$summary"
}

{
  echo
  printf '%s\n' "${machine[@]}"
  echo
  print_table text
  echo
  printf 'note: %s\n' "${notes[@]}"
}

{
  echo "# heapkeeper benchmark"
  echo
  printf -- '- %s\n' "${machine[@]}"
  echo
  print_table markdown
  echo
  printf -- '- %s\n' "${notes[@]}"
} >"$OUT_DIR/results.md"
note "wrote $OUT_DIR/results.md"

# Non-zero when glibc or heapkeeper failed, so CI notices. Other tools failing (LeakSanitizer
# crashes some programs, for one) is their problem, reported in the table.
! awk -F'\t' '$8 == "FAIL" && ($2 ~ /^glibc/ || $2 ~ /^hk-/) { found = 1 } END { exit !found }' "$summary"

#!/usr/bin/env bash
# heapkeeper's pprof profiles, read by Debian's Go pprof (`go tool pprof`, package golang-go):
# tests/programs/diff_workload.c keeps 200 1 KiB blocks from make_cache_entry (live, reachable
# from a global) and leaks 50 100-byte blocks from leak_record. The profile written at exit
# (HEAPKEEPER_PPROF) and the one exported from the exit report (export --format pprof) must both
# make `go tool pprof -top -sample_index=leaked_space` name leak_record first with 5000 bytes, and
# -sample_index=inuse_space name make_cache_entry first with 204800 bytes; leak samples carry
# leak_kind=direct. A live process (tests/programs/retainer_graph.c, which leaks 77 bytes in
# make_lost and holds a 1000-byte make_payload) exported by pid: the same, and its live samples
# carry the allocating thread (thread "holder" made make_list_node's 192 bytes). Folded stacks
# (--format collapsed) root first; export --format pprof --leaks makes leaked_space the default
# sample type. The traced process links neither zlib nor protobuf, and a bad HEAPKEEPER_PPROF is
# one line while the program runs on.
source "$(dirname "$0")/lib.sh"

if ! command -v go >/dev/null 2>&1; then
  echo "SKIP: go is not installed (scripts/install-deps.sh installs golang-go); pprof profiles not checked" >&2
  trap - EXIT
  rm -rf "$HK_WORK"
  exit 77
fi
# Go's tool writes its build cache and settings under HOME: keep them in the scratch directory.
export HOME=$HK_WORK GOCACHE=$HK_WORK/gocache GOFLAGS=-mod=mod GOTOOLCHAIN=local

program=$(hk_program diff_workload)
HEAPKEEPER_REPORT=$HK_WORK/r.json HEAPKEEPER_PPROF=$HK_WORK/exit.%p.pb.gz \
  hk_exec launcher "$program" 200 50 0 >"$HK_WORK/run.out" 2>"$HK_WORK/run.err" || true
exit_profiles=("$HK_WORK"/exit.*.pb.gz)
exit_profile=${exit_profiles[0]}
if [[ -f $exit_profile ]] && gzip -t "$exit_profile"; then
  hk_pass "HEAPKEEPER_PPROF wrote a gzipped profile at exit ($(basename "$exit_profile"), %p expanded)"
else
  hk_fail "no profile at exit: $(cat "$HK_WORK/run.err")"
fi
if "$HK_LAUNCHER" export "$HK_WORK/r.json" --format pprof -o "$HK_WORK/report.pb.gz" 2>"$HK_WORK/export.err"; then
  hk_pass "export REPORT.json --format pprof"
else
  hk_fail "export --format pprof failed: $(cat "$HK_WORK/export.err")"
fi

# top PROFILE SAMPLE_INDEX FUNCTION BYTES: go tool pprof -top's first row is FUNCTION, with BYTES
# flat (pprof prints 5000 bytes as 4.88kB: compared through its own units).
top() {
  local profile=$1 index=$2 function=$3 bytes=$4
  if ! go tool pprof -top -sample_index="$index" "$profile" >"$HK_WORK/top.txt" 2>"$HK_WORK/top.err"; then
    hk_fail "go tool pprof -top -sample_index=$index $(basename "$profile"): $(cat "$HK_WORK/top.err")"
    return
  fi
  if problem=$("$HK_CHECK_PYTHON" - "$HK_WORK/top.txt" "$function" "$bytes" <<'PY' 2>&1
import re, sys
text, function, expected = open(sys.argv[1]).read(), sys.argv[2], int(sys.argv[3])
rows = text.split("flat%", 1)[1].splitlines()[1:]
first = rows[0].split()
units = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3}
number, unit = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", first[0]).groups()
flat = float(number) * units.get(unit or "B", 1)
assert first[-1] == function, f"first row {rows[0]!r}, expected {function}"
assert abs(flat - expected) <= max(0.01 * expected, 1), f"{function}: flat {first[0]}, expected {expected} bytes"
PY
  ); then
    hk_pass "$(basename "$profile") -sample_index=$index: $function first ($(sed -n 's/^ *//; /flat%/{n;p;q}' "$HK_WORK/top.txt"))"
  else
    hk_fail "$(basename "$profile") -sample_index=$index: $problem"$'\n'"$(cat "$HK_WORK/top.txt")"
  fi
}

for profile in "$exit_profile" "$HK_WORK/report.pb.gz"; do
  [[ -f $profile ]] || continue
  top "$profile" leaked_space leak_record 5000
  top "$profile" leaked_objects leak_record 50
  top "$profile" inuse_space make_cache_entry 204800
  go tool pprof -tags -sample_index=leaked_objects "$profile" >"$HK_WORK/tags.txt" 2>&1 || true
  if grep -Eq "^ +50(\.0)? \( *100%\): direct" "$HK_WORK/tags.txt"; then
    hk_pass "$(basename "$profile"): the 50 leaked blocks are labelled leak_kind direct"
  else
    hk_fail "$(basename "$profile"): leak_kind labels: $(cat "$HK_WORK/tags.txt")"
  fi
done
# --leaks: leaked_space is the default sample type (what pprof shows without -sample_index).
if "$HK_LAUNCHER" export "$HK_WORK/r.json" --format pprof --leaks -o "$HK_WORK/leaks-default.pb.gz" 2>"$HK_WORK/ld.err" &&
  go tool pprof -top "$HK_WORK/leaks-default.pb.gz" >"$HK_WORK/ld.top" 2>&1 && grep -q '^Type: leaked_space$' "$HK_WORK/ld.top" &&
  grep -Eq '^ +4\.88kB .* leak_record$' "$HK_WORK/ld.top"; then
  hk_pass "export --format pprof --leaks: go tool pprof -top shows leaked_space, leak_record first"
else
  hk_fail "export --format pprof --leaks: $(cat "$HK_WORK/ld.err" "$HK_WORK/ld.top" 2>/dev/null)"
fi
# Mappings carry the build-id (pprof's -raw lists mapping ranges, files and build-ids).
build_id=$(readelf -n "$program" | awk '/Build ID/ { print $3 }')
if [[ -f $exit_profile ]] && go tool pprof -raw "$exit_profile" 2>/dev/null | grep -q "$program $build_id"; then
  hk_pass "the program's mapping names its build-id $build_id"
else
  hk_fail "no mapping with the program's build-id: $(go tool pprof -raw "$exit_profile" 2>&1 | sed -n '/Mappings/,$p')"
fi

# Folded stacks, root first: ...;main;leak_record 5000.
"$HK_LAUNCHER" export "$HK_WORK/r.json" --format collapsed --leaks >"$HK_WORK/leaks.folded" 2>&1 || true
"$HK_LAUNCHER" export "$HK_WORK/r.json" --format collapsed >"$HK_WORK/live.folded" 2>&1 || true
if grep -Eq "^([^ ]*;)?main;leak_record 5000$" "$HK_WORK/leaks.folded" && [[ $(wc -l <"$HK_WORK/leaks.folded") == 1 ]] &&
  grep -Eq "^([^ ]*;)?main;make_cache_entry 204800$" "$HK_WORK/live.folded"; then
  hk_pass "collapsed: $(cat "$HK_WORK/leaks.folded")"
else
  hk_fail "collapsed stacks: $(cat "$HK_WORK/leaks.folded" "$HK_WORK/live.folded")"
fi

# A live process, by pid.
live=$(hk_program retainer_graph)
if hk_start_ready live "$live"; then
  "$HK_LAUNCHER" export "$HK_READY_PID" --format pprof -o "$HK_WORK/live.pb.gz" 2>"$HK_WORK/live.err" ||
    hk_fail "export PID --format pprof: $(cat "$HK_WORK/live.err")"
  kill -TERM "$HK_READY_PID" 2>/dev/null || true
  wait "$HK_READY_PID" 2>/dev/null || true
  if [[ -s $HK_WORK/live.pb.gz ]]; then
    top "$HK_WORK/live.pb.gz" leaked_space make_lost 77
    if go tool pprof -top -sample_index=inuse_space "$HK_WORK/live.pb.gz" 2>&1 | grep -Eq "^ +1000B .* make_payload$"; then
      hk_pass "live.pb.gz: make_payload holds 1000 bytes in use"
    else
      hk_fail "live.pb.gz: inuse_space: $(go tool pprof -top -sample_index=inuse_space "$HK_WORK/live.pb.gz" 2>&1)"
    fi
    # Live samples are split by allocating thread: the thread named "holder" made the three
    # 64-byte list nodes (make_list_node), and nothing else.
    go tool pprof -tags -sample_index=inuse_space "$HK_WORK/live.pb.gz" >"$HK_WORK/threads.txt" 2>&1 || true
    go tool pprof -top -sample_index=inuse_space -tagfocus=thread_name=holder "$HK_WORK/live.pb.gz" \
      >"$HK_WORK/holder.txt" 2>&1 || true
    if grep -Eq "192(\.0)?B .*: holder$" "$HK_WORK/threads.txt" && grep -q "thread_id:" "$HK_WORK/threads.txt" &&
      grep -Eq "^ +192B .* make_list_node$" "$HK_WORK/holder.txt"; then
      hk_pass "live.pb.gz: thread labels: holder (thread_name, thread_id) allocated make_list_node's 192 bytes"
    else
      hk_fail "live.pb.gz: thread labels: $(cat "$HK_WORK/threads.txt" "$HK_WORK/holder.txt")"
    fi
  fi
fi

# The traced process links neither zlib nor a protobuf library: the binary gzips.
if readelf -d "$HK_PRELOAD" | grep -Eq 'NEEDED.*(libz|protobuf)'; then
  hk_fail "libheapkeeper.so needs: $(readelf -d "$HK_PRELOAD" | grep NEEDED)"
else
  hk_pass "libheapkeeper.so needs neither zlib nor protobuf"
fi

# A bad HEAPKEEPER_PPROF (a path too long to hold) is one warning line; the program runs on and
# exits as it would. A profile that cannot be written (a directory) is one line too.
long=$(printf '%05000d' 0)
HEAPKEEPER_PPROF=/tmp/$long hk_exec launcher "$program" 1 1 0 >"$HK_WORK/bad.out" 2>"$HK_WORK/bad.err" || true
if [[ $(grep -c 'heapkeeper\[' "$HK_WORK/bad.err") == 1 ]] && grep -q 'HEAPKEEPER_PPROF' "$HK_WORK/bad.err" &&
  grep -q 'cache 1 leaks 1' "$HK_WORK/bad.out"; then
  hk_pass "bad HEAPKEEPER_PPROF: $(grep 'heapkeeper\[' "$HK_WORK/bad.err")"
else
  hk_fail "bad HEAPKEEPER_PPROF: $(cat "$HK_WORK/bad.err")"
fi
mkdir -p "$HK_WORK/dir.pb.gz"
HEAPKEEPER_PPROF=$HK_WORK/dir.pb.gz hk_exec launcher "$program" 1 0 0 >/dev/null 2>"$HK_WORK/dir.err" || true
if [[ $(grep -c 'heapkeeper\[' "$HK_WORK/dir.err") == 1 ]] && grep -q 'could not write the profile' "$HK_WORK/dir.err"; then
  hk_pass "a profile path that is a directory: $(grep 'heapkeeper\[' "$HK_WORK/dir.err")"
else
  hk_fail "HEAPKEEPER_PPROF=DIRECTORY: $(cat "$HK_WORK/dir.err")"
fi
hk_finish

#!/usr/bin/env bash
# Bad files get one line, with bounded work, and nothing else. (1) `heapkeeper show` on JSON of the
# wrong shape, a directory, /dev/zero, an empty, a binary, a huge or a deeply nested file, or one
# with a number beyond a double's range: exit 1, nothing on stdout (no half report), one line on
# stderr naming the file and the problem (no nlohmann or libstdc++ text). A good report still
# shows. (2) HEAPKEEPER_SUPPRESSIONS naming a directory, /dev/zero, a FIFO with no writer or a file
# over 4 MiB: one warning line at the exit scan, the leak report all the same (no suppressions),
# the program's own status; bounded in time (the FIFO hung the program) and memory (/dev/zero read
# 8.4 GB). (3) `heapkeeper run` on a FIFO named as the program does not hang opening it.
source "$(dirname "$0")/lib.sh"

program=$(hk_program exit_status)  # prints "exit_status: exiting with N", exits N
leaker=$(hk_program leak_at_start)  # a preloaded module that leaks one 4242-byte block at start
summary='Direct leak of 4242 byte(s) in 1 object(s) allocated from:'
W=$HK_WORK

# --- (1) heapkeeper show.
# show_refused NAME FILE EXPECTED: show FILE fails with status 1, no stdout, and one stderr line
# "heapkeeper: FILE: ..." holding EXPECTED.
show_refused() {
  local name=$1 file=$2 expected=$3 status=0
  timeout -k 5 "$(hk_limit)" "$HK_LAUNCHER" show "$file" >"$W/show.out" 2>"$W/show.err" || status=$?
  local lines
  lines=$(wc -l <"$W/show.err")
  if [[ $status != 1 || -s $W/show.out || $lines != 1 ]] || ! grep -qF "heapkeeper: $file: $expected" "$W/show.err"; then
    hk_fail "show $name: status $status (expected 1), $(wc -c <"$W/show.out") byte(s) on stdout, $lines line(s)" \
      "on stderr (expected one holding '$expected'):"
    head -c 600 "$W/show.out" "$W/show.err" >&2
    return
  fi
  hk_pass "show $name: $(cat "$W/show.err")"
}

json_case() {
  local name=$1 text=$2 expected=$3
  printf '%s\n' "$text" >"$W/$name.json"
  show_refused "$name" "$W/$name.json" "$expected"
}
json_case leaks_number '{"tool": "heapkeeper", "leaks": 5}' 'not a heapkeeper report: leaks is not an array'
json_case site_bytes_string '{"tool": "heapkeeper", "pid": 1, "live_sites": [{"bytes": "x"}]}' \
  'not a heapkeeper report: live_sites[0].bytes is not a whole number'
json_case frame_function_number \
  '{"tool": "heapkeeper", "leaks": [{"bytes": 1, "blocks": 1, "stack": [{"function": 7}]}]}' \
  'not a heapkeeper report: leaks[0].stack[0].function is not a string'
json_case pid_string '{"tool": "heapkeeper", "pid": "1"}' 'not a heapkeeper report: pid is not a whole number'
json_case heap_array '{"tool": "heapkeeper", "heap": []}' 'not a heapkeeper report: heap is not an object'
json_case negative_count '{"tool": "heapkeeper", "allocations": -3}' \
  'not a heapkeeper report: allocations is not a whole number, 0 or more'
json_case counts_string '{"tool": "heapkeeper", "scan": {"reference_counts": {"1": "many"}}}' \
  'not a heapkeeper report: scan.reference_counts.1 is not a whole number'
json_case site_not_object '{"tool": "heapkeeper", "leaks": [3]}' 'not a heapkeeper report: leaks[0] is not an object'
json_case tool_number '{"tool": 5}' 'not a heapkeeper report: no "tool": "heapkeeper"'
json_case array_document '[1, 2]' 'not a heapkeeper report: not a JSON object'
show_refused directory "$W" 'is a directory, not a report file'
show_refused dev_zero /dev/zero 'is larger than 64 MiB, more than any report'
: >"$W/empty.json"
show_refused empty "$W/empty.json" 'is empty, not a report'
head -c 4096 "$program" >"$W/binary.json"
show_refused binary "$W/binary.json" 'not a heapkeeper report: not valid JSON (error at byte 1)'
truncate -s 100M "$W/huge.json"
show_refused huge "$W/huge.json" 'is larger than 64 MiB, more than any report'
"$HK_CHECK_PYTHON" -c 'import sys; sys.stdout.write("{\"tool\": \"heapkeeper\", \"x\": " + "[" * 200000 + "]" * 200000 + "}")' \
  >"$W/deep.json"
show_refused deeply_nested "$W/deep.json" 'not a heapkeeper report: nested more than 32 deep'
echo '{"tool": "heapkeeper", "allocations": 1e400}' >"$W/overflow.json"
show_refused number_overflow "$W/overflow.json" 'not a heapkeeper report: a number too large for a double'
show_refused missing "$W/no-such-file.json" 'No such file or directory'

# A real report still shows, and `show` reads it from a pipe too.
status=0
(export HEAPKEEPER_REPORT=$W/good.json && hk_exec preload "$program" 0) >/dev/null 2>&1 || status=$?
if [[ $status != 0 ]] || ! "$HK_LAUNCHER" show "$W/good.json" >"$W/good.out" 2>&1 ||
  ! grep -q '^heapkeeper report for pid' "$W/good.out" ||
  ! "$HK_LAUNCHER" show <(cat "$W/good.json") >"$W/pipe.out" 2>&1 || ! cmp -s "$W/good.out" "$W/pipe.out"; then
  hk_fail "show of a real report (status $status): $(head -3 "$W/good.out")"
else
  hk_pass "show of a real report, from the file and from a pipe: $(head -1 "$W/good.out")"
fi

# --- (2) HEAPKEEPER_SUPPRESSIONS that cannot be a suppressions file.
# suppressions_refused NAME PATH EXPECTED: the traced program (leaking 4242 bytes) exits 7 in time,
# its stderr holds one heapkeeper warning naming PATH and EXPECTED, and the leak report.
suppressions_refused() {
  local name=$1 path=$2 expected=$3 status=0
  # The address space is capped so that a reader that never stops fails quickly, not the machine.
  (
    ulimit -v 4000000
    hk_exec plain env LD_PRELOAD="$HK_PRELOAD:$leaker" HEAPKEEPER_SUPPRESSIONS="$path" "$program" 7
  ) >"$W/supp.out" 2>"$W/supp.err" || status=$?
  local warnings
  warnings=$(grep -c 'suppressions' "$W/supp.err" || true)
  if [[ $status != 7 || $warnings != 1 ]] ||
    ! grep -qF "cannot read suppressions file $path: $expected; no leaks are suppressed" "$W/supp.err" ||
    ! grep -qF "$summary" "$W/supp.err"; then
    hk_fail "HEAPKEEPER_SUPPRESSIONS=$name: status $status (expected 7), $warnings suppression line(s);" \
      "expected '$expected' and the leak report; stderr:"
    head -12 "$W/supp.err" >&2
    return
  fi
  hk_pass "HEAPKEEPER_SUPPRESSIONS=$name: $(grep suppressions "$W/supp.err")"
}
mkdir -p "$W/suppressions.d"
suppressions_refused directory "$W/suppressions.d" 'it is a directory, not a regular file'
suppressions_refused /dev/zero /dev/zero 'it is a character device, not a regular file'
mkfifo "$W/suppressions.fifo"
suppressions_refused fifo "$W/suppressions.fifo" 'it is a FIFO, not a regular file'
# Over 4 MiB of comments: a real suppressions file is a few KiB.
"$HK_CHECK_PYTHON" -c 'import sys; sys.stdout.write("# a comment line of a suppressions file\n" * 110000)' \
  >"$W/huge.supp"
suppressions_refused huge "$W/huge.supp" 'it is larger than 4 MiB'
# A real one suppresses (the refusals above are not everything refused).
printf 'leak:hk_leak_at_start\n' >"$W/good.supp"
status=0
hk_exec plain env LD_PRELOAD="$HK_PRELOAD:$leaker" HEAPKEEPER_SUPPRESSIONS="$W/good.supp" "$program" 7 \
  >/dev/null 2>"$W/good-supp.err" || status=$?
if [[ $status != 7 ]] || grep -q 'heapkeeper\[' "$W/good-supp.err"; then
  hk_fail "a good suppressions file: status $status, stderr: $(head -5 "$W/good-supp.err")"
else
  hk_pass "a good suppressions file suppresses the leak, without a word"
fi

# --- (3) heapkeeper run with a FIFO named as the program: exec's own error, at once.
mkfifo "$W/program.fifo"
status=0
timeout -k 5 "$(hk_limit)" "$HK_LAUNCHER" run -- "$W/program.fifo" >/dev/null 2>"$W/run-fifo.err" || status=$?
if [[ $status != 126 ]] || ! grep -qF "cannot run $W/program.fifo: Permission denied" "$W/run-fifo.err"; then
  hk_fail "heapkeeper run -- FIFO: status $status (124: hung opening it), stderr: $(head -3 "$W/run-fifo.err")"
else
  hk_pass "heapkeeper run -- FIFO: $(cat "$W/run-fifo.err")"
fi

hk_finish

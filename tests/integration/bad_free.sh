#!/usr/bin/env bash
# Bad frees under heapkeeper (tests/programs/bad_free.c).
#   double      aborts like glibc (status 134), reporting "double free" with the allocation stack,
#               the first free's stack and the second free's, symbolized to bad_free.c's functions
#   invalid     free(p + 8) of a live block: aborts (134), reporting "invalid free" and the block
#   --on-bad-free continue (and HEAPKEEPER_ON_BAD_FREE=continue): the report is printed, the bad
#               call is ignored, and the program finishes normally (status 0, its last line)
#   stack       free of a stack address: reported on stderr (either as an invalid free or as a
#               pointer heapkeeper did not allocate), and the process survives or aborts cleanly
#   foreign-ok  the control: identical to a plain run, no diagnostics
#   double and invalid again with blocks of 4 KiB and 1 MiB, whose headers heapkeeper keeps out of
#               band (a side table, not in front of the block): the same reports, with the same
#               stacks and the block's size
source "$(dirname "$0")/lib.sh"

bad_free=$(hk_program bad_free)

run_bad_free() {
  local mode=$1
  shift
  hk_exec "$mode" "$bad_free" "$@"
}
run_bad_free_continue() {
  local mode=$1
  shift
  timeout -k 5 "$(hk_limit)" "$HK_LAUNCHER" run --on-bad-free continue -- "$bad_free" "$@"
}

# expect_in NAME MODE TEXT...: each TEXT occurs in the run's stderr.
expect_in() {
  local name=$1 mode=$2 text
  shift 2
  for text in "$@"; do
    if ! grep -qF -- "$text" "$HK_WORK/$name.$mode/err"; then
      hk_fail "$name ($mode): stderr lacks \"$text\""
      return 1
    fi
  done
}

show_err() { echo "--- stderr of $1 ($2):" >&2; head -40 "$HK_WORK/$1.$2/err" >&2; }

expect_status() {
  local name=$1 mode=$2 expected=$3 status
  status=$(hk_status "$name" "$mode")
  if [[ $status != "$expected" ]]; then
    hk_fail "$name ($mode): exit status $status, expected $expected"
    return 1
  fi
}

expect_stdout_line() {
  local name=$1 mode=$2 line=$3
  if ! grep -qxF -- "$line" "$HK_WORK/$name.$mode/out"; then
    hk_fail "$name ($mode): stdout lacks the line \"$line\""
    return 1
  fi
}

# --- double free: status and stdout as glibc's abort, plus heapkeeper's report.
hk_capture double plain run_bad_free double
hk_capture double launcher run_bad_free double
ok=1
expect_status double plain 134 || ok=0
expect_status double launcher 134 || ok=0
cmp -s "$HK_WORK/double.plain/out" "$HK_WORK/double.launcher/out" || { hk_fail "double: stdout differs from the plain run"; ok=0; }
expect_in double launcher "heapkeeper[" "double free" "allocated at:" "first freed at:" || ok=0
# Frames are symbolized: the helpers of bad_free.c (built -O0 -g) appear by name with their file.
if ! grep -E 'heapkeeper\[[0-9]+\]: +#[0-9]+ (make_block_for_bad_free|first_free_of_block|double_free_block|main) .*bad_free\.c:[0-9]+' \
    "$HK_WORK/double.launcher/err" >/dev/null; then
  hk_fail "double: no symbolized frame of bad_free.c (function and file:line) in the report"
  ok=0
fi
# Each stack section names the function that made that call.
for pair in "allocated at:/make_block_for_bad_free" "first freed at:/first_free_of_block" "freed again at:/double_free_block"; do
  section=${pair%%/*} function=${pair#*/}
  if ! awk -v section="$section" -v fn="$function" '
      index($0, section) { inside = 1; next }
      inside && /heapkeeper\[[0-9]+\]:   [a-z]/ { inside = 0 }
      inside && index($0, " " fn " ") { found = 1 }
      END { exit !found }' "$HK_WORK/double.launcher/err"; then
    hk_fail "double: the \"$section\" stack does not name $function"
    ok=0
  fi
done
if ((ok)); then hk_pass "double free: status 134, report with symbolized allocation, first-free and second-free stacks"; else show_err double launcher; fi

# --- double free of an aligned block: its header sits the alignment in front of the pointer, not
# 16 bytes (an adversarial tester's aligned_alloc(64, ...) was reported as an invalid free, without
# its allocation stack).
for alignment in 32 64 256; do
  hk_capture "double-aligned-$alignment" launcher run_bad_free double-aligned "$alignment"
  ok=1
  expect_status "double-aligned-$alignment" launcher 134 || ok=0
  expect_in "double-aligned-$alignment" launcher "double free" "block of 128 bytes" "allocated at:" "first freed at:" \
    "freed again at:" "make_aligned_block_for_bad_free" "first_free_of_block" "double_free_block" || ok=0
  if ((ok)); then
    hk_pass "double free of a $alignment-aligned block: reported with its three stacks"
  else
    show_err "double-aligned-$alignment" launcher
  fi
done

# --- invalid free of an interior pointer.
hk_capture invalid plain run_bad_free invalid
hk_capture invalid launcher run_bad_free invalid
ok=1
expect_status invalid plain 134 || ok=0
expect_status invalid launcher 134 || ok=0
cmp -s "$HK_WORK/invalid.plain/out" "$HK_WORK/invalid.launcher/out" || { hk_fail "invalid: stdout differs from the plain run"; ok=0; }
expect_in invalid launcher "invalid free" "8 bytes into a live block of 64 bytes" "invalid_free_inside_block" || ok=0
if ((ok)); then hk_pass "invalid free: status 134, report names the block and the caller"; else show_err invalid launcher; fi

# --- the same with whole-page blocks, whose headers live out of band.
for size in 4096 1048576; do
  # (glibc need not notice these: a freed 1 MiB chunk is unmapped, and its second free crashes.)
  hk_capture "double-$size" launcher run_bad_free double "$size"
  ok=1
  expect_status "double-$size" launcher 134 || ok=0
  expect_in "double-$size" launcher "double free" "block of $size bytes" "allocated at:" "first freed at:" \
    "freed again at:" "make_block_for_bad_free" "first_free_of_block" "double_free_block" || ok=0
  if ((ok)); then hk_pass "double free of a $size-byte block: reported with its three stacks"; else show_err "double-$size" launcher; fi
  hk_capture "invalid-$size" launcher run_bad_free invalid "$size"
  ok=1
  expect_status "invalid-$size" launcher 134 || ok=0
  expect_in "invalid-$size" launcher "invalid free" "8 bytes into a live block of $size bytes" "invalid_free_inside_block" || ok=0
  if ((ok)); then hk_pass "invalid free into a $size-byte block: reported with the block"; else show_err "invalid-$size" launcher; fi
done

# --- continue: the report, then the program carries on.
for mode in double invalid; do
  hk_capture "$mode-continue" launcher run_bad_free_continue "$mode"
  ok=1
  expect_status "$mode-continue" launcher 0 || ok=0
  expect_stdout_line "$mode-continue" launcher "bad_free: finished $mode" || ok=0
  expect_in "$mode-continue" launcher "$mode free" || ok=0
  if grep -q "aborting" "$HK_WORK/$mode-continue.launcher/err"; then
    hk_fail "$mode-continue: says it is aborting although the policy is continue"
    ok=0
  fi
  if ((ok)); then hk_pass "$mode free with --on-bad-free continue: reported, ignored, status 0"; else show_err "$mode-continue" launcher; fi
done
export HEAPKEEPER_ON_BAD_FREE=continue
hk_capture double-continue-env preload run_bad_free double
unset HEAPKEEPER_ON_BAD_FREE
ok=1
expect_status double-continue-env preload 0 || ok=0
expect_stdout_line double-continue-env preload "bad_free: finished double" || ok=0
if ((ok)); then hk_pass "HEAPKEEPER_ON_BAD_FREE=continue with LD_PRELOAD"; else show_err double-continue-env preload; fi

# --- free of a stack address: must be diagnosed; glibc aborts, heapkeeper may abort or ignore it.
hk_capture stack launcher run_bad_free stack
status=$(hk_status stack launcher)
ok=1
if [[ $status != 0 && $status != 134 ]]; then
  hk_fail "stack: exit status $status (expected 134 like glibc, or 0 if the free is ignored)"
  ok=0
fi
if ! grep -qE 'heapkeeper\[[0-9]+\]: .*(invalid free|did not allocate)' "$HK_WORK/stack.launcher/err"; then
  hk_fail "stack: the free of a stack address was not diagnosed"
  ok=0
fi
if ((ok)); then hk_pass "free of a stack address: diagnosed (status $status)"; else show_err stack launcher; fi

# --- the control.
hk_compare foreign-ok run_bad_free foreign-ok -- launcher preload
hk_finish

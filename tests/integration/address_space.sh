#!/usr/bin/env bash
# Address-space limits (ulimit -v, RLIMIT_AS), which count every mapping, even untouched ones: a
# program that allocates until it fails must get at least HK_ADDRESS_SPACE_FLOOR percent (default
# 90) of what it gets under glibc. Each range of heapkeeper's is a window mapped piece by piece as
# the heap grows (allocator/address_reservation.h); a block whose region is whole pages keeps its
# header out of band, so a 4 KiB or 1 MiB request takes exactly that (allocator/block_header.h);
# and heapkeeper's own footprint under a limit is some 27 MB (README, "Address-space limits").
#
# Usage: address_space.sh pages|small
#  pages  address_space_fill allocates blocks of 4 KiB (under 300 MB), 64 KiB and 1 MiB (malloc
#         until NULL, new until std::bad_alloc, which it catches) under 300 MB, 1 GB and 4 GB, plainly and under
#         heapkeeper: no crash, and at least the floor. python3 fills a list with bytes(10**6)
#         objects (1000033-byte blocks) until MemoryError under 1 GB and 4 GB: the same. And
#         python3 -c 'print(sum(range(10**6)))' under 1 GB prints what it prints plainly.
#  small  100-byte blocks under 1 GB, where 90% cannot be had: glibc puts a 100-byte block in a
#         112-byte chunk, heapkeeper in jemalloc's 128-byte class (100 bytes and a 16-byte header),
#         and jemalloc keeps a 128-byte record per one-page slab of 32 such regions: at most
#         112 / 132 = 85% before heapkeeper's fixed footprint (measured: 81%). The floor there is
#         HK_ADDRESS_SPACE_SMALL_FLOOR (default 78), so that per-block metadata cannot grow unseen.
#  tight  /bin/echo under every limit from 8 to 32 MB, 1 MB apart: where heapkeeper's own set-up or
#         exit scan finds no room left, the program must still print and exit as it does plainly.
#         (std::bad_alloc thrown inside heapkeeper could not itself be allocated there, and
#         std::terminate aborted echo under 12 to 18 MB.)
# The ratios are printed.
source "$(dirname "$0")/lib.sh"

group=${1:-}
[[ $group == pages || $group == small || $group == tight ]] || {
  echo "usage: address_space.sh pages|small|tight" >&2
  exit 2
}
fill=$(hk_program address_space_fill)
floor=${HK_ADDRESS_SPACE_FLOOR:-90}
small_floor=${HK_ADDRESS_SPACE_SMALL_FLOOR:-78}

# fill_run MODE LIMIT_KB COMMAND...: the command's output under that limit.
fill_run() {
  local mode=$1 limit=$2
  shift 2
  (
    ulimit -v "$limit"
    hk_exec "$mode" "$@"
  )
}

# check_total NAME FLOOR EXPECTED COMMAND...: runs COMMAND plainly and under heapkeeper, each under
# the limit the command's runner sets; both must end normally with the EXPECTED line, and
# heapkeeper's "allocated N blocks, B bytes" at least FLOOR percent of glibc's.
check_total() {
  local name=$1 limit=$2 want=$3 expected=$4
  shift 4
  local plain traced status=0
  plain=$(fill_run plain "$limit" "$@" 2>&1) || status=$?
  if ((status != 0)) || [[ $plain != *"$expected"* ]]; then
    hk_fail "$name: the plain run failed ($status): $plain"
    return
  fi
  traced=$(fill_run preload "$limit" "$@" 2>&1) || status=$?
  if ((status != 0)) || [[ $traced != *"$expected"* ]]; then
    hk_fail "$name: under heapkeeper: status $status, output: $traced"
    return
  fi
  local plain_total traced_total
  plain_total=$(sed -n 's/^allocated [0-9]* blocks, \([0-9]*\) bytes$/\1/p' <<<"$plain")
  traced_total=$(sed -n 's/^allocated [0-9]* blocks, \([0-9]*\) bytes$/\1/p' <<<"$traced")
  if [[ -z $plain_total || -z $traced_total || $plain_total == 0 ]]; then
    hk_fail "$name: no total in the output: plain: $plain; heapkeeper: $traced"
    return
  fi
  local permille=$((traced_total * 1000 / plain_total))
  local percent="$((permille / 10)).$((permille % 10))"
  if ((permille < want * 10)); then
    hk_fail "$name: heapkeeper got $traced_total bytes, $percent% of glibc's $plain_total (floor $want%)"
  else
    hk_pass "$name: heapkeeper got $traced_total bytes, $percent% of glibc's $plain_total (floor $want%)"
  fi
}

check_fill() {
  local limit=$1 kind=$2 bytes=$3 want=${4:-$floor}
  local expected
  expected=$([[ $kind == new ]] && echo "bad_alloc caught" || echo "malloc returned NULL")
  check_total "fill_${kind}_${bytes}_under_${limit}k" "$limit" "$want" "$expected" "$fill" "$kind" "$bytes"
}

# Python's bytes(n) is one block of n + 33 bytes (the object's header and a terminating byte).
readonly python_fill='
blocks = []
try:
    while True:
        blocks.append(bytes(10**6))
except MemoryError:
    count = len(blocks)
    del blocks
    print("MemoryError caught")
    print(f"allocated {count} blocks, {count * 10**6} bytes")
'

if [[ $group == pages ]]; then
  # (4 KiB blocks only under 300 MB: glibc needs some 10 s to fill 1 GB with them.)
  check_fill 300000 malloc 4096
  for limit in 300000 1000000; do
    check_fill "$limit" malloc 65536
    check_fill "$limit" malloc 1048576
  done
  check_fill 1000000 new 1048576
  check_fill 4000000 new 1048576

  hk_require /usr/bin/python3
  for limit in 1000000 4000000; do
    check_total "python_bytes_list_under_${limit}k" "$limit" "$floor" "MemoryError caught" \
      /usr/bin/python3 -c "$python_fill"
  done
  run_python_sum() {
    local mode=$1
    ulimit -v 1000000
    hk_exec "$mode" /usr/bin/python3 -c 'print(sum(range(10**6)))'
  }
  hk_compare python_sum_under_1g run_python_sum -- launcher preload
elif [[ $group == small ]]; then
  check_fill 1000000 malloc 100 "$small_floor"
else
  # (Below 8 MB the loader, having mapped the 8 MB library, has no room left for libc.) From
  # there up heapkeeper's set-up fails, then its later steps find less and less room: echo must
  # end as it does plainly under every limit.
  tight_failures=0
  for ((limit = 8000; limit <= 32000; limit += 1000)); do
    plain=$(fill_run plain "$limit" /bin/echo tight ok 2>/dev/null) || {
      hk_fail "tight: the plain run failed under ${limit}k"
      continue
    }
    status=0
    traced=$(fill_run preload "$limit" /bin/echo tight ok 2>"$HK_WORK/tight.err") || status=$?
    if ((status != 0)) || [[ $traced != "$plain" ]]; then
      hk_fail "tight: under ${limit}k heapkeeper made echo exit $status with '$traced': $(head -c 400 "$HK_WORK/tight.err")"
      tight_failures=$((tight_failures + 1))
    fi
  done
  ((tight_failures > 0)) || hk_pass "tight: echo under 8 to 32 MB limits exits as plainly"
fi
hk_finish

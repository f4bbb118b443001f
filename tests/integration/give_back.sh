#!/usr/bin/env bash
# Memory the program frees goes back to the system, and serves blocks of any size (issue #12;
# allocator/heap_trimmer.h, private_heap.cpp's jemalloc options). tests/programs/give_back.c:
#  - idle: 64 MiB written in 1 MiB blocks and freed, then the program idles: its resident size
#    must come back down (within 8 MiB of where it started), as it does under glibc, which unmaps
#    or trims at free. The program waits up to 20 s, so a loaded machine only slows the check.
#    jemalloc's own decay never got there: it purges from inside malloc and free, and an idle
#    program calls neither.
#  - the user's MALLOC_CONF wins: with dirty_decay_ms:-1 (never purge) the memory stays for the
#    1.5 s the program looks. So does collect mode, which keeps jemalloc's ten-second decay
#    (allocator/heap_trimmer.h says why).
#  - sizes: under a 1 GiB heap reservation, 640 MiB of 1 MiB blocks, then of 4 KiB, 64 KiB, 1 MiB
#    and 16 KiB blocks, each freed before the next: every size must reuse what the one before it
#    freed (before, 4 KiB blocks got a few MiB of the 1 GiB after 640 MiB of 1 MiB blocks were freed).
source "$(dirname "$0")/lib.sh"

program=$(hk_program give_back)

# expect NAME WANT MODE [VAR=VALUE...] -- ARGS...: the program's output must be WANT, stderr empty.
expect() {
  local name=$1 want=$2 mode=$3 out err status=0
  shift 3
  local assignments=()
  while [[ $1 != -- ]]; do
    assignments+=("$1")
    shift
  done
  shift
  out=$(
    if ((${#assignments[@]} > 0)); then export "${assignments[@]}"; fi
    hk_exec "$mode" "$program" "$@"
  ) 2>"$HK_WORK/$name.err" || status=$?
  err=$(cat "$HK_WORK/$name.err")
  if ((status != 0)) || [[ $out != "$want" ]] || [[ -n $err ]]; then
    hk_fail "$name ($mode): status $status, output '$out', want '$want'; stderr: ${err:0:300}"
  else
    hk_pass "$name ($mode): $out"
  fi
}

expect idle_plain "given back" plain -- idle 64 20000
expect idle "given back" preload -- idle 64 20000
out=$(MALLOC_CONF=dirty_decay_ms:-1 hk_exec preload "$program" idle 64 1500 2>&1) || true
if [[ $out == kept* ]]; then
  hk_pass "user's MALLOC_CONF=dirty_decay_ms:-1 keeps the memory: $out"
else
  hk_fail "MALLOC_CONF=dirty_decay_ms:-1 should keep the memory, got: $out"
fi
out=$(HEAPKEEPER_MODE=collect hk_exec preload "$program" idle 64 1500 2>&1) || true
if [[ $out == kept* ]]; then
  hk_pass "collect mode keeps jemalloc's own decay (no trimmer): $out"
else
  hk_fail "collect mode should leave purging to jemalloc's decay (allocator/heap_trimmer.h), got: $out"
fi
expect sizes_plain "all sizes served" plain -- sizes 640
expect sizes "all sizes served" preload HEAPKEEPER_HEAP_RESERVE=1G -- sizes 640
hk_finish

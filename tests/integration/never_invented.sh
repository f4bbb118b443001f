#!/usr/bin/env bash
# "A leak can be missed, never invented": collect mode never frees a block the program still has,
# and never turns heapkeeper's own mistake into the program's crash.
#   kernel_held MODE  (tests/programs/kernel_held.c) a block whose only pointer the kernel holds
#                     for 0.8 s — epoll data, a POSIX timer's sigevent (SIGEV_SIGNAL and
#                     SIGEV_THREAD), an AIO request, a libaio (kernel AIO) poll request's iocb and
#                     data — under HEAPKEEPER_MODE=collect with scans every
#                     100 ms: same stdout and status as a plain run, no diagnostic at all (periodic
#                     leak lines included), nothing collected, no leak at exit
#   reclaim_too_early a pointer hidden by XOR, so collect mode frees its block; the program's own
#                     free afterwards is one "heapkeeper reclaimed this block too early" line, the
#                     program goes on (status 0, same stdout as plain), and one block was collected
#   resurrect         the same pointer put back while collect mode holds the block for one more
#                     scan: kept, one line, intact, freed by the program alone
#   longjmp           (tests/programs/timeout_longjmp.c) a read left by siglongjmp from a SIGALRM
#                     handler (a timeout), then blocks held only by frames while the thread sleeps
#                     in another read: collect mode with 100 ms scans, same stdout and status as a
#                     plain run, no diagnostic (no leak line, nothing reclaimed too early)
#   vector            (tests/programs/vector_register_root.c) a block whose only pointer is in
#                     xmm15 of the busy main thread for 1.2 s: collect mode with 100 ms scans,
#                     stopping threads with ptrace and with signals: same stdout and status as a
#                     plain run, no diagnostic, nothing collected, no leak at exit
#   ymm               the same with the pointer in the upper half of ymm15 (bits 128..191), every
#                     other vector register zeroed; skipped (status 77 when it is the only part)
#                     where the CPU has no AVX
#   other_registers   the same with the pointer in mm7, in st0 (fildq), in the opmask register k7
#                     (AVX-512BW only; skipped elsewhere) and in the GS base
#   protected         (tests/programs/protected_roots.c) a block whose only pointer lies for 0.8 s
#                     in a PROT_NONE guard page of a reachable heap block, in an anonymous page
#                     sealed read-only, in one made write-only (PROT_WRITE), in a private mapping
#                     of /dev/zero, in a page of its data made PROT_NONE or write-only, in a heap
#                     block tagged with a protection key: collect mode with 100 ms
#                     scans, same stdout and status as a plain run (no crash), no diagnostic,
#                     nothing collected, no leak at exit
#   shared_stacks     (tests/programs/shared_stack_mapping.c) blocks held only by frames of stacks
#                     sharing one mapping (threads with a guard size of 0, threads on slices of one
#                     mmap, a suspended coroutine beside a running one): the same checks
#   fork              (tests/programs/fork_cached_stack.c) a child forked while a thread of its
#                     parent runs: glibc gives the child's scanner thread that thread's cached stack
#                     and DTV; the same checks, for the parent's and the child's reports
#   clone_vm          (tests/programs/clone_vm_child.c) a child made with clone(CLONE_VM) and no
#                     CLONE_THREAD holds the only pointer to a block in a register for 1.2 s: scans
#                     are skipped while it shares the memory (one line each), nothing collected, the
#                     block kept, same stdout and status as a plain run
#   handler_nodes     (tests/programs/handler_nodes.c) nodes a timer's handler allocates while the
#                     main thread churns through malloc (many land inside heapkeeper's own code),
#                     each then the only holder of a data block through 1.2 s of scans: the same
#                     checks (the handler's blocks came from memory no scan read: its data blocks
#                     were collected and handed out again); also with the handler's malloc 160 KiB
#                     below its frame, and on an alternate stack registered with the raw system call
#   slow_handler      (tests/programs/slow_handler_in_allocator.c) a timer's handler pauses 150 ms
#                     when it interrupts heapkeeper's code, under collect mode's 20 ms scans: no
#                     new block freed or called leaked (a thread stopped between the block turning
#                     live and its pointer being formed held only the region's address)
# Usage: never_invented.sh [kernel|reclaim|longjmp|vector|ymm|other_registers|protected|shared_stacks|fork|handler_nodes|slow_handler|clone_vm|all]
source "$(dirname "$0")/lib.sh"

kernel_held=$(hk_program kernel_held)
reclaim_too_early=$(hk_program reclaim_too_early)

# Each exit report in DIR says nothing was collected, no leak remains, and at least SCANS scans ran
# while the program held its blocks where only the root under test could reach them.
nothing_collected() {
  local directory=$1 scans=$2 label=$3 report
  for report in "$directory"/r.*.json; do
    [[ -f $report ]] || continue
    hk_json_check "$report" "r['collected']['blocks'] == 0 and r['leaked_blocks'] == 0 and r['scans'] >= $scans" \
      "$label" || true
  done
}

# Collect mode with 100 ms scans (or `scan_interval`'s), and the periodic "new leaked blocks" lines
# on (lib.sh turns them off): a mid-run scan that called the block leaked would print one, which
# fails the comparison.
run_collecting() {
  local mode=$1
  shift
  if [[ $mode == plain ]]; then
    hk_exec plain "$@"
  else
    HEAPKEEPER_MODE=collect HEAPKEEPER_SCAN_INTERVAL=${scan_interval:-100ms} HEAPKEEPER_QUIET=0 hk_exec "$mode" "$@"
  fi
}

# same_as_plain_but NAME LINE COUNT [IGNORED]: the preload run of NAME ended with status 0, as the
# plain run did, and printed the same stdout; its stderr holds COUNT heapkeeper lines matching LINE
# (a regular expression; COUNT "+" for at least one) and no other heapkeeper line but ones matching
# IGNORED. Clears `ok` on a failure.
same_as_plain_but() {
  local name=$1 line=$2 count=$3 ignored=${4:-}
  local err=$HK_WORK/$name.preload/err lines
  if [[ $(hk_status "$name" preload) != 0 || $(hk_status "$name" plain) != 0 ]]; then
    hk_fail "$name: exit status $(hk_status "$name" preload) (plain: $(hk_status "$name" plain)), expected 0"
    ok=0
  fi
  if ! cmp -s "$HK_WORK/$name.plain/out" "$HK_WORK/$name.preload/out"; then
    hk_fail "$name: stdout differs from the plain run"
    diff "$HK_WORK/$name.plain/out" "$HK_WORK/$name.preload/out" >&2 || true
    ok=0
  fi
  lines=$(grep -c "heapkeeper\[[0-9]*\]: $line" "$err" || true)
  if [[ $count == + ]] && ((lines == 0)) || [[ $count != + && $lines != "$count" ]]; then
    hk_fail "$name: $lines lines matching \"$line\", expected $count"
    ok=0
  fi
  local -a other=(-e "$line")
  [[ -n $ignored ]] && other+=(-e "$ignored")
  if grep 'heapkeeper\[' "$err" | grep -qv "${other[@]}"; then
    hk_fail "$name: other diagnostics than those lines"
    ok=0
  fi
}

part=${1:-all}

if [[ $part == all || $part == kernel ]]; then
  for held in epoll timer-signal timer-thread aio libaio; do
    hk_compare "kernel_held.$held" run_collecting "$kernel_held" "$held" -- preload
    # glibc's SIGEV_THREAD helper thread blocks every signal, SIGPWR included, so a scan that
    # stops the world with signals waits for it (3 s) and few scans run in that mode.
    scans=4
    [[ $held == timer-thread ]] && scans=1
    nothing_collected "$HK_WORK/kernel_held.$held.preload/reports" "$scans" \
      "$held: nothing collected, no leak at exit, at least $scans scans while the kernel held the block"
  done
fi
if [[ $part == all || $part == longjmp ]]; then
  # The wrapped read that siglongjmp left never ended for heapkeeper: a scan must not take the
  # thread's later sleep in read for that call's (its stack pointer and registers are gone).
  hk_compare timeout_longjmp run_collecting "$(hk_program timeout_longjmp)" -- preload
  nothing_collected "$HK_WORK/timeout_longjmp.preload/reports" 4 \
    "timeout_longjmp: nothing collected, no leak at exit, at least 4 scans while the blocks were held"
fi
if [[ $part == all || $part == vector ]]; then
  # The SSE registers are roots: ptrace's NT_PRFPREG, the signal frame's fpregs.
  for method in ptrace signals; do
    HEAPKEEPER_STOP_METHOD=$method hk_compare "vector_register_root.$method" run_collecting \
      "$(hk_program vector_register_root)" -- preload
    nothing_collected "$HK_WORK/vector_register_root.$method.preload/reports" 4 \
      "vector_register_root ($method): nothing collected, no leak at exit, at least 4 scans while xmm15 held the block"
  done
fi
if [[ $part == all || $part == ymm ]]; then
  # The upper halves of the ymm registers are roots: XSAVE's YMM_Hi128, from ptrace's NT_X86_XSTATE
  # and the signal frame's extended fpstate.
  if ! grep -qw avx /proc/cpuinfo; then
    if [[ $part == ymm ]]; then
      echo "SKIP: the CPU has no AVX (no ymm registers to hold the pointer)" >&2
      trap - EXIT
      rm -rf "$HK_WORK"
      exit 77
    fi
    echo "ymm: skipped, the CPU has no AVX"
  else
    for method in ptrace signals; do
      HEAPKEEPER_STOP_METHOD=$method hk_compare "ymm_register_root.$method" run_collecting \
        "$(hk_program vector_register_root)" ymm -- preload
      nothing_collected "$HK_WORK/ymm_register_root.$method.preload/reports" 4 \
        "ymm_register_root ($method): nothing collected, no leak at exit, at least 4 scans while ymm15 held the block"
    done
  fi
fi
if [[ $part == all || $part == other_registers ]]; then
  # st0..7 (and so mm0..7) and the AVX-512 opmask registers are roots too: the FXSAVE area's st
  # registers (a pointer copied through fildq/fistpq is read back as the integer it is) and XSAVE's
  # Opmask, from ptrace's images and the signal frame's.
  for register in mmx st k gs; do
    if [[ $register == k ]] && ! grep -qw avx512bw /proc/cpuinfo; then
      echo "k: skipped, the CPU has no AVX-512BW"
      continue
    fi
    for method in ptrace signals; do
      HEAPKEEPER_STOP_METHOD=$method hk_compare "${register}_register_root.$method" run_collecting \
        "$(hk_program vector_register_root)" "$register" -- preload
      nothing_collected "$HK_WORK/${register}_register_root.$method.preload/reports" 4 \
        "${register}_register_root ($method): nothing collected, no leak at exit, at least 4 scans while $register held the block"
    done
  done
fi
if [[ $part == all || $part == protected ]]; then
  # The marker reads a heap block's PROT_NONE pages through /proc/thread-self/mem (in place, it
  # faulted); read-only, write-only (read the same way) and /dev/zero mappings are roots, and so are
  # pages of the program's data it made PROT_NONE or write-only; a heap block tagged with a memory
  # protection key is read with every key open.
  for where in guard-page read-only write-only dev-zero data-none data-write-only pkey; do
    hk_compare "protected_roots.$where" run_collecting "$(hk_program protected_roots)" "$where" -- preload
    # A CPU without protection keys (no pku flag: pkey_alloc fails) runs no tagged block at all,
    # with or without heapkeeper: then there is nothing to hold through scans.
    if [[ $where == pkey ]] && grep -q 'no protection keys here' "$HK_WORK/protected_roots.$where.plain/out"; then
      echo "pkey: skipped, this CPU has no memory protection keys"
      continue
    fi
    nothing_collected "$HK_WORK/protected_roots.$where.preload/reports" 4 \
      "protected_roots ($where): nothing collected, no leak at exit, at least 4 scans while only it held the block"
  done
fi
if [[ $part == all || $part == shared_stacks ]]; then
  # Dead frames end at the bottom of the thread's own stack, not of the mapping holding it.
  for layout in guard-size-0 stack-slices coroutines; do
    hk_compare "shared_stack_mapping.$layout" run_collecting "$(hk_program shared_stack_mapping)" "$layout" -- preload
    nothing_collected "$HK_WORK/shared_stack_mapping.$layout.preload/reports" 4 \
      "shared_stack_mapping ($layout): nothing collected, no leak at exit, at least 4 scans while the frames held the blocks"
  done
fi
if [[ $part == all || $part == fork ]]; then
  # A heapkeeper thread's frames are no roots, its thread control block (and DTV) is.
  hk_compare fork_cached_stack run_collecting "$(hk_program fork_cached_stack)" -- preload
  nothing_collected "$HK_WORK/fork_cached_stack.preload/reports" 4 \
    "fork_cached_stack: nothing collected, no leak at exit, at least 4 scans in parent and child"
fi
if [[ $part == all || $part == handler_nodes ]]; then
  # Two runs of each: where the handler lands is timing.
  for variant in thread_stack big_frame raw_altstack; do
    for run in 1 2; do
      hk_compare "handler_nodes.$variant.$run" run_collecting "$(hk_program handler_nodes)" "$variant" -- preload
      nothing_collected "$HK_WORK/handler_nodes.$variant.$run.preload/reports" 4 \
        "handler_nodes ($variant, $run): nothing collected, no leak at exit, at least 4 scans while the handler's nodes held the data"
    done
  done
fi
if [[ $part == all || $part == slow_handler ]]; then
  # A thread stopped between a block turning live and its pointer being formed (here a slow signal
  # handler that interrupted heapkeeper's code; a descheduled or stopped thread would do): its new
  # block is kept through every scan, none called leaked. Scans every 20 ms, so that a 150 ms
  # pause spans the three scans after which collect mode frees an unreachable block.
  scan_interval=20ms hk_compare slow_handler run_collecting "$(hk_program slow_handler_in_allocator)" 10 -- preload
  nothing_collected "$HK_WORK/slow_handler.preload/reports" 4 \
    "slow_handler: nothing collected, no leak at exit, at least 4 scans while the handler paused in heapkeeper's code"
fi
if [[ $part == all || $part == clone_vm ]]; then
  # A child sharing the memory without being a thread: scans are skipped while it does, each
  # saying why in one line; nothing collected, the block kept, no leak at exit.
  hk_capture clone_vm plain run_collecting "$(hk_program clone_vm_child)"
  hk_capture clone_vm preload run_collecting "$(hk_program clone_vm_child)"
  ok=1
  same_as_plain_but clone_vm \
    'periodic leak scan skipped: process [0-9]* shares this process.s memory (clone with CLONE_VM) and cannot be stopped or read' +
  for report in "$HK_WORK/clone_vm.preload/reports"/r.*.json; do
    hk_json_check "$report" "r['collected']['blocks'] == 0 and r['leaked_blocks'] == 0" \
      "clone_vm: nothing collected, no leak at exit" || ok=0
  done
  if ((ok)); then
    hk_pass "clone_vm: scans skipped while the child shared the memory, the block kept"
  else
    tail -20 "$HK_WORK/clone_vm.preload/err" >&2
  fi
fi
if [[ $part != all && $part != reclaim ]]; then
  hk_finish
  exit 0
fi

hk_capture reclaim plain run_collecting "$reclaim_too_early"
hk_capture reclaim preload run_collecting "$reclaim_too_early"
ok=1
err=$HK_WORK/reclaim.preload/err
# One line for the program's free (no double-free report: it must not abort), besides the scans'.
same_as_plain_but reclaim \
  'heapkeeper reclaimed this block too early: free(0x[0-9a-f]*) (1500000 bytes)' 1 ': scan [0-9]*: '
for report in "$HK_WORK/reclaim.preload/reports"/r.*.json; do
  hk_json_check "$report" "r['collected']['blocks'] == 1 and r['bad_frees'] == 0" \
    "reclaim_too_early: the hidden block collected, its later free not counted as a bad free" || ok=0
done
if ((ok)); then hk_pass "reclaim_too_early: one line, the free ignored, status 0"; else tail -20 "$err" >&2; fi

# --- A block held after two scans that could not see its pointer, whose pointer is back before the
# third: that scan keeps it (one line), and the program finds it intact and frees it itself. The
# scans are asked for with `heapkeeper scan PID` between the program's steps (no periodic scans).
run_resurrect() {
  local mode=$1 pid answer
  if [[ $mode == plain ]]; then
    coproc PROGRAM { exec "$reclaim_too_early" resurrect; }
  else
    coproc PROGRAM { HEAPKEEPER_MODE=collect HEAPKEEPER_QUIET=0 LD_PRELOAD=$HK_PRELOAD exec "$reclaim_too_early" resurrect; }
  fi
  # Own copies of the pipes: bash drops PROGRAM (and closes its copies) once the program exits.
  local from to
  pid=$PROGRAM_PID
  exec {from}<&"${PROGRAM[0]}" {to}>&"${PROGRAM[1]}"
  local -a scan=(true)
  [[ $mode == plain ]] || scan=(timeout 60 "$HK_LAUNCHER" scan "$pid")
  read -r -t 20 answer <&"$from" && echo "$answer"
  "${scan[@]}" >/dev/null || echo "[scan 1 failed]"
  "${scan[@]}" >/dev/null || echo "[scan 2 failed]"
  echo unhide >&"$to"
  read -r -t 20 answer <&"$from" && echo "$answer"
  "${scan[@]}" >/dev/null || echo "[scan 3 failed]"
  echo check >&"$to"
  while read -r -t 20 answer <&"$from"; do echo "$answer"; done
  exec {from}<&- {to}>&-
  wait "$pid"
}
hk_capture resurrect plain run_resurrect
hk_capture resurrect preload run_resurrect
ok=1
err=$HK_WORK/resurrect.preload/err
same_as_plain_but resurrect \
  'heapkeeper reclaimed this block too early: 0x[0-9a-f]* (1500000 bytes) referenced again' 1
for report in "$HK_WORK/resurrect.preload/reports"/r.*.json; do
  hk_json_check "$report" "r['collected']['blocks'] == 0 and r['scans'] == 4 and r['leaked_blocks'] == 0" \
    "resurrect: nothing collected, three scans and the exit scan, no leak" || ok=0
done
if ((ok)); then hk_pass "resurrect: the held block kept when its pointer came back, one line, intact"; else tail -20 "$err" >&2; fi
hk_finish

#!/usr/bin/env bash
# A traced program's fork children find exec's original already looked up (preload/exec_calls.cpp,
# resolve_exec_originals): the parent resolves the exec family after its first fork, and every
# later child inherits the answers, where each child used to look execve up itself (in symbol
# tables and code a fresh child has not mapped: with dlsym, nine page faults a child of a shell
# loop, for a result the exec then threw away).
#
# Checked with tests/programs/exec_lookup_faults.c: two fork children, one after the other, each
# count the page faults of a failing execve (the wrapper's first call in that child); the second
# takes fewer than the first, which looked the original up itself (the same when each child looks
# it up: 4 and 4, against 4 and 2 now, 2 and 2 without heapkeeper). A traced bash's loop of five
# /bin/true prints what a plain run prints.
#
# And those lookups leave the program's dlerror() alone (preload/original_functions.h,
# lookup_original): tests/programs/dlerror_kept.c fails a dlopen, makes its first fork, wait,
# sleep, poll and (failing) execve, and prints what dlerror() then says, as a plain run does (a
# dlsym in the lookup answered NULL there, "no error").
#
# Usage: exec_originals.sh (environment from CMakeLists.txt, see lib.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

loop='for i in 1 2 3 4 5; do LD_PRELOAD= /bin/true && echo "child $i ran"; done'
expected=$(hk_exec plain bash -c "$loop" 2>&1)
traced=$(hk_exec preload bash -c "$loop" 2>&1)
if [[ $traced == "$expected" ]]; then
  hk_pass "the traced loop's output is the plain run's"
else
  hk_fail "the traced loop printed [$traced], a plain run [$expected]"
fi

faults=$(hk_exec preload "$(hk_program exec_lookup_faults)" 2>&1)
first=$(awk '$1 == "child" && $2 == "1:" { print $3 }' <<<"$faults")
second=$(awk '$1 == "child" && $2 == "2:" { print $3 }' <<<"$faults")
if [[ $first =~ ^[0-9]+$ && $second =~ ^[0-9]+$ ]] && ((second < first)); then
  hk_pass "a later child's first exec took $second page faults, the first child's $first"
else
  hk_fail "first exec of each child: [$faults]: the later child looked the original up again?"
fi

program=$(hk_program dlerror_kept)
plain_dlerror=$(hk_exec plain "$program" 2>&1)
traced_dlerror=$(hk_exec preload "$program" 2>&1)
if [[ $traced_dlerror == "$plain_dlerror" ]]; then
  hk_pass "dlerror() after the first wrapped calls says what a plain run's says"
else
  hk_fail "dlerror() after the first wrapped calls: traced [$traced_dlerror], plain [$plain_dlerror]"
fi
hk_finish

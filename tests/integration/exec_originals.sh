#!/usr/bin/env bash
# A traced program's fork children find exec's original already looked up (preload/exec_calls.cpp,
# resolve_child_originals): the exec family is resolved at start-up and every child inherits the
# answers, where each child used to look execve up itself (with dlsym, in symbol tables and code a
# fresh child has not mapped: nine page faults a child of a shell loop, for a result the exec then
# threw away).
#
# Checked with tests/programs/exec_lookup_faults.c: two fork children each count the page faults
# of a failing execve (the wrapper's first call in that child), at most one more than a plain run's
# children take (4 where a child looked the original up with dlsym, 2 now and untraced). A traced
# bash's loop of five /bin/true prints what a plain run prints.
#
# And those lookups leave the program's dlerror() alone (preload/original_functions.h,
# lookup_original): tests/programs/dlerror_kept.c fails a dlopen, makes its first fork, wait,
# sleep, poll and (failing) execve, and prints what dlerror() then says, as a plain run does (a
# dlsym in the lookup answered NULL there, "no error"). So do the lookups of the program's C++
# runtime (allocator/program_cxx_runtime.cpp): tests/programs/dlerror_new.cpp fails a dlopen
# before its first std::bad_alloc, its first failed nothrow new and its first nothrow new with a
# new-handler, each followed by dlerror(), as a plain run does (dlsym answered "no error" there too).
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

# most_faults OUTPUT: the larger of the two children's counts, or -1.
most_faults() {
  awk '$1 == "child" && $3 ~ /^[0-9]+$/ { if ($3 > m) m = $3; n++ } END { print n == 2 ? m : -1 }' <<<"$1"
}
plain_faults=$(hk_exec plain "$(hk_program exec_lookup_faults)" 2>&1)
traced_faults=$(hk_exec preload "$(hk_program exec_lookup_faults)" 2>&1)
plain_most=$(most_faults "$plain_faults")
traced_most=$(most_faults "$traced_faults")
if ((plain_most >= 0 && traced_most >= 0 && traced_most <= plain_most + 1)); then
  hk_pass "a child's first exec took at most $traced_most page faults ($plain_most untraced)"
else
  hk_fail "first exec of each child: traced [$traced_faults], plain [$plain_faults]: a child looked the original up?"
fi

# same_as_plain PROGRAM WHAT [PATTERN]: the traced program prints what a plain run prints (and that
# output matches PATTERN, when given).
same_as_plain() {
  local program plain traced
  program=$(hk_program "$1")
  plain=$(hk_exec plain "$program" 2>&1)
  traced=$(hk_exec preload "$program" 2>&1)
  if [[ $traced == "$plain" && $plain == ${3:-*} ]]; then
    hk_pass "dlerror() after $2 says what a plain run's says"
  else
    hk_fail "dlerror() after $2: traced [$traced], plain [$plain]"
  fi
}
same_as_plain dlerror_kept "the first wrapped calls"
same_as_plain dlerror_new "the first failed operator new calls" "*with a handler: /nonexistent/*"
hk_finish

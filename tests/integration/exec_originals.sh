#!/usr/bin/env bash
# A traced program's fork children find exec's original already looked up (preload/exec_calls.cpp,
# resolve_exec_originals): the parent resolves the exec family after its first fork, and every
# later child inherits the answers, where each child used to look execve up itself (the dynamic
# linker's symbol search, in pages of libc and ld.so that a fresh child has not mapped: some nine
# page faults a child of a shell loop, for a result the exec then threw away).
#
# Checked with the dynamic linker's own account of its lookups (LD_DEBUG=bindings, each line led
# by the pid that made it): a traced bash runs /bin/true five times; at most one child (the first)
# binds execve, and the loop's output is a plain run's.
#
# Usage: exec_originals.sh (environment from CMakeLists.txt, see lib.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

loop='for i in 1 2 3 4 5; do LD_PRELOAD= LD_DEBUG= /bin/true && echo "child $i ran"; done'
expected=$(hk_exec plain bash -c "$loop" 2>&1)
mkdir -p "$HK_WORK/ld"
traced=$(LD_DEBUG=bindings LD_DEBUG_OUTPUT="$HK_WORK/ld/bindings" hk_exec preload bash -c "$loop" 2>&1)
if [[ $traced == "$expected" ]]; then
  hk_pass "the traced loop's output is the plain run's"
else
  hk_fail "the traced loop printed [$traced], a plain run [$expected]"
fi

# The traced bash's pid: the one that bound the most symbols (its start-up); the others are children.
main_pid=$(cat "$HK_WORK"/ld/bindings.* | awk '/binding file/ { sub(":", "", $1); n[$1]++ } END { for (p in n) print n[p], p }' |
  sort -rn | awk 'NR == 1 { print $2 }')
children_binding=$(cat "$HK_WORK"/ld/bindings.* | grep -F "normal symbol \`execve'" |
  awk -v main="$main_pid" '{ sub(":", "", $1); if ($1 != main) print $1 }' | sort -u | wc -l)
if [[ -z $main_pid ]]; then
  hk_fail "no bindings recorded (LD_DEBUG_OUTPUT=$HK_WORK/ld/bindings)"
elif ((children_binding <= 1)); then
  hk_pass "$children_binding of 5 children looked execve up"
else
  hk_fail "$children_binding of 5 children looked execve up: the parent's lookup after its first fork was not inherited"
fi
hk_finish

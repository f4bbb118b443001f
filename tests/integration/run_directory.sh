#!/usr/bin/env bash
# `heapkeeper run` makes a private directory for its symbolizer's socket (heapkeeper-run.XXXXXX in
# $XDG_RUNTIME_DIR or /tmp); it must not outlive the run, however the run ends: the program's exit,
# the program killed alone, or the whole process group stopped by Ctrl-C (SIGINT) or `timeout`
# (SIGTERM). A directory left each time a user interrupts a traced build fills /tmp: this machine
# had 90 of them after a day of tests.
source "$(dirname "$0")/lib.sh"

# Short, so that the socket's path fits in sockaddr_un (the scratch directory's may not: the
# service is then not started at all, and nothing is left to see).
runtime=$(mktemp -d /tmp/hk-run-dir.XXXXXX)

# no_run_directory_left HOW: the directory is gone within 10 s (the symbolizer service removes it
# once the launcher it watches has ended).
no_run_directory_left() {
  local how=$1 left
  for _ in $(seq 100); do
    left=$(find "$runtime" -mindepth 1 -maxdepth 1 -name 'heapkeeper-run.*' | head -1)
    [[ -z $left ]] && break
    sleep 0.1
  done
  if [[ -n $left ]]; then
    hk_fail "$how: $left was left behind (holding: $(ls "$left" | tr '\n' ' '))"
    rm -rf "${runtime:?}"/heapkeeper-run.*
  else
    hk_pass "$how: no run directory left"
  fi
}

export XDG_RUNTIME_DIR=$runtime

"$HK_LAUNCHER" run -- /bin/true
no_run_directory_left "the program exits"

# The program (the launcher execs it: same pid) killed alone, with SIGKILL.
"$HK_LAUNCHER" run -- sleep 30 &
program=$!
sleep 1
kill -9 "$program"
wait "$program" 2>/dev/null || true
no_run_directory_left "the program killed by SIGKILL"

# The process group signalled, as Ctrl-C and `timeout` do (timeout signals its child, then its
# own process group, which holds the launcher, the program and the symbolizer service).
for signal in INT TERM; do
  timeout -s "$signal" 1 "$HK_LAUNCHER" run -- sleep 30 || true
  no_run_directory_left "the process group sent SIG$signal"
done

rm -rf "$runtime"
hk_finish

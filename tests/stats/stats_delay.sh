# HEAPKEEPER_STATS_DELAY: how long a traced process runs before it makes its live-stats segment
# (default 200 ms). A long delay keeps a process out of /dev/shm and `list`, and `stats` says when
# its segment is due at once instead of waiting for it; 0 makes the segment straight away. (The
# start-path generator, scripts/start_path_sections.py, runs its processes with a long one: under
# callgrind they outlive 200 ms, which short processes never do.)
source "$(dirname "$0")/lib.sh"
H=$HK_LAUNCHER

# sk_wait_for_segment PID: true once PID's segment exists (10 s at most).
sk_wait_for_segment() {
  local tries
  for tries in $(seq 100); do
    [[ -n $(sk_segment "$1") ]] && return 0
    sleep 0.1
  done
  return 1
}

# A day's delay: no segment after two seconds (ten times the default), and `stats` answers at once.
HEAPKEEPER_STATS_DELAY=1h "$H" run -- sleep 60 >"$SK_WORK/late.out" 2>"$SK_WORK/late.err" &
late=$!
SK_HELPERS+=("$late")
SK_PLANTED_PIDS+=("$late")
sleep 2
if [[ -z $(sk_segment "$late") ]]; then
  sk_pass "HEAPKEEPER_STATS_DELAY=1h: no segment after 2 s"
else
  sk_fail "HEAPKEEPER_STATS_DELAY=1h: a segment after 2 s: $(sk_segment "$late")"
fi
started=$(date +%s)
status=0
"$H" stats "$late" >"$SK_WORK/late.stats" 2>&1 || status=$?
took=$(($(date +%s) - started))
if ((status != 0)) && grep -q "no heapkeeper segment for pid $late yet: it runs with HEAPKEEPER_STATS_DELAY=1h and makes it in [0-9]* s or later" "$SK_WORK/late.stats"; then
  sk_pass "stats says when the delayed segment is due"
else
  sk_fail "stats on a delayed process (status $status): $(cat "$SK_WORK/late.stats")"
fi
# Without the delay read from the process's environment, a reader waits 30 s for a process whose
# publisher thread runs; 10 s is the most it waits for a delayed one, and this one is an hour off.
if ((took < 10)); then
  sk_pass "stats did not wait for a segment an hour away (${took} s)"
else
  sk_fail "stats waited ${took} s for a segment an hour away"
fi
[[ -s $SK_WORK/late.err ]] && sk_fail "a valid HEAPKEEPER_STATS_DELAY was warned about: $(cat "$SK_WORK/late.err")"
kill "$late" 2>/dev/null || true

# Its environment unreadable (overwritten by the program, as perl's $0 does; another user's; not
# dumpable): the waiting publisher thread's name says the segment is not made yet, at once, where
# the reader waited 30 s and then called the process untraced.
if command -v perl >/dev/null; then
  HEAPKEEPER_STATS_DELAY=1h "$H" run -- perl -e '$0 = "x" x 4000; sleep 60' >/dev/null 2>"$SK_WORK/perl.err" &
  perl_pid=$!
  SK_HELPERS+=("$perl_pid")
  SK_PLANTED_PIDS+=("$perl_pid")
  sleep 1
  started=$(date +%s)
  "$H" stats "$perl_pid" >"$SK_WORK/perl.stats" 2>&1 || true
  took=$(($(date +%s) - started))
  if ((took < 10)) && grep -q "no heapkeeper segment for pid $perl_pid yet: it runs with a HEAPKEEPER_STATS_DELAY longer than 10 s" "$SK_WORK/perl.stats"; then
    sk_pass "a delayed process whose environment is overwritten: said at once (${took} s)"
  else
    sk_fail "a delayed process whose environment is overwritten (${took} s): $(cat "$SK_WORK/perl.stats")"
  fi
  kill "$perl_pid" 2>/dev/null || true
fi

# A delay of 0: the segment is made without waiting, and read as any other.
HEAPKEEPER_STATS_DELAY=0 "$H" run -- sleep 60 >"$SK_WORK/now.out" 2>"$SK_WORK/now.err" &
now=$!
SK_HELPERS+=("$now")
SK_PLANTED_PIDS+=("$now")
if sk_wait_for_segment "$now" && uptime=$(sk_uptime "$now") && [[ -n $uptime ]]; then
  sk_pass "HEAPKEEPER_STATS_DELAY=0: a segment, read by stats (first snapshot at ${uptime} s)"
else
  sk_fail "HEAPKEEPER_STATS_DELAY=0: no readable segment: $(cat "$SK_WORK/now.err")"
fi
kill "$now" 2>/dev/null || true

# Processes that exec or exit at once while their segment is being made (a delay of 0): the exit
# waits for it and removes it, a new image removes the one the program it was left unfinished.
# Before, most of these runs each left a 4.5 MB file in /dev/shm (290 of 300 for dash's exec).
left=()
for round in $(seq 20); do
  for kind in dash env true; do
    case $kind in
      dash) command=(/bin/dash -c 'exec /bin/true') ;;
      env) command=(/usr/bin/env /bin/true) ;;
      true) command=(/bin/true) ;;
    esac
    # `heapkeeper run` execs the command: $! is its pid throughout.
    HEAPKEEPER_STATS_DELAY=0 "$H" run -- "${command[@]}" &
    pid=$!
    wait "$pid" || true
    SK_PLANTED_PIDS+=("$pid")
    [[ -n $(sk_segment "$pid") ]] && left+=("$pid ($kind)")
  done
done
if ((${#left[@]} == 0)); then
  sk_pass "HEAPKEEPER_STATS_DELAY=0: 60 processes that exec or exit at once leave no segment"
else
  sk_fail "HEAPKEEPER_STATS_DELAY=0: ${#left[@]} of 60 processes left a segment: ${left[*]:0:5}"
fi

# A bad value: one line naming it, and the default (a segment, made 200 ms in).
HEAPKEEPER_STATS_DELAY=soon "$H" run -- sleep 60 >"$SK_WORK/bad.out" 2>"$SK_WORK/bad.err" &
bad=$!
SK_HELPERS+=("$bad")
SK_PLANTED_PIDS+=("$bad")
if sk_wait_for_segment "$bad"; then
  sk_pass "a bad HEAPKEEPER_STATS_DELAY: the default delay, a segment"
else
  sk_fail "a bad HEAPKEEPER_STATS_DELAY: no segment"
fi
kill "$bad" 2>/dev/null || true
sleep 0.2
if [[ $(grep -c . "$SK_WORK/bad.err") == 1 ]] &&
  grep -q "invalid HEAPKEEPER_STATS_DELAY='soon' (expected a duration from 0 to 24h" "$SK_WORK/bad.err"; then
  sk_pass "a bad HEAPKEEPER_STATS_DELAY is one line naming it"
else
  sk_fail "a bad HEAPKEEPER_STATS_DELAY: $(cat "$SK_WORK/bad.err")"
fi
sk_finish

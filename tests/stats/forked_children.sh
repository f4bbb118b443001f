# A forked child's live-stats thread is deferred (allocator/engine.h, start_internal_thread_later):
# a shell's or make's children exec within milliseconds, and a thread made for each was made,
# scheduled and torn down for nothing. Checked on a traced parent (tests/stats/forked_children.c)
# whose five children do not exec: right after the fork each has one thread, its own; and all still
# publish once due (a second after the fork): one sleeping in nanosleep (a wrapped call, which
# starts the thread at once), one allocating without ever making a blocking call (the allocation
# path's check, every 4096 allocations), and three that wait from their first milliseconds on in
# waitpid, sem_wait and pthread_join (a shell's subshell, a multiprocessing pool's worker waiting
# for its queue's lock, a child that runs threads). A child that execs is the image of another
# program and starts its own thread at once (the bash loop below).
source "$(dirname "$0")/lib.sh"
: "${HK_FORKED_CHILDREN:?HK_FORKED_CHILDREN must name the forked_children program}"
H=$HK_LAUNCHER

"$H" run -- "$HK_FORKED_CHILDREN" 6 >"$SK_WORK/out" 2>"$SK_WORK/err" &
SK_HELPERS+=("$!")
for _ in $(seq 100); do
  [[ $(grep -c '^child ' "$SK_WORK/out" 2>/dev/null) == 5 ]] && break
  sleep 0.05
done
kinds=(sleeper computer reaper semaphore joiner)
for kind in "${kinds[@]}"; do
  declare "$kind=$(awk -v kind="$kind" '$2 == kind {print $3}' "$SK_WORK/out")"
  if [[ -z ${!kind} ]]; then
    sk_fail "the $kind child did not start: $(cat "$SK_WORK/out" "$SK_WORK/err")"
    sk_finish
  fi
  SK_PLANTED_PIDS+=("${!kind}")
done

for kind in "${kinds[@]}"; do
  threads=$(awk -v kind="$kind" '$2 == kind {print $4}' "$SK_WORK/out")
  if [[ $threads == threads=1 ]]; then
    sk_pass "the $kind child has no heapkeeper thread right after the fork"
  else
    sk_fail "the $kind child: $threads right after the fork, expected threads=1"
  fi
done

# Due a second after the fork; the segment is made then and published at once. Looked for from
# then until 4.5 s after the fork (the children live 6 s): on a loaded machine the child's thread
# may be scheduled late, and a fixed wait of 1.8 s failed there with nothing wrong.
sleep 1
publishes() {
  "$H" stats "$1" --json >"$SK_WORK/$2.json" 2>"$SK_WORK/$2.err" &&
    "$SK_PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if d["pid"] == int(sys.argv[2]) and d["running"] else 1)' \
      "$SK_WORK/$2.json" "$1"
}
for kind in "${kinds[@]}"; do
  pid=${!kind}
  published=0
  for _ in $(seq 14); do
    if publishes "$pid" "$kind"; then
      published=1
      break
    fi
    sleep 0.25
  done
  if ((published)); then
    sk_pass "the $kind child publishes once due"
  else
    sk_fail "the $kind child (pid $pid) publishes nothing 4.5 s after its fork: $(cat "$SK_WORK/$kind.err")"
  fi
done
wait
grep -q '^parent done' "$SK_WORK/out" || sk_fail "the parent did not finish: $(cat "$SK_WORK/out" "$SK_WORK/err")"

# A child whose thread is still deferred and whose signal handler reads a pipe while it forks: the
# handler's read starts the thread, but not while fork() holds the heap's locks (the child would
# wait for them for ever: 15 of 20 attempts hung so).
if timeout 60 "$H" run -- "$HK_FORKED_CHILDREN" signals 12 >"$SK_WORK/signals.out" 2>"$SK_WORK/signals.err" &&
  grep -q '^hung 0 of 12$' "$SK_WORK/signals.out"; then
  sk_pass "a signal handler's read during a child's fork starts no thread inside the fork"
else
  sk_fail "children forking under a reading signal handler hung: $(cat "$SK_WORK/signals.out" "$SK_WORK/signals.err")"
fi

# A forked child that enters seccomp strict mode before its thread is due (read, write and exit
# only): no thread may start after (clone, fstat and open kill it), and none before either (strict
# mode ends with the exit system call, which ends the process only with its last thread).
for how in syscall prctl; do
  timeout 30 "$H" run -- "$HK_FORKED_CHILDREN" strict "$how" >"$SK_WORK/strict.out" 2>"$SK_WORK/strict.err" || true
  if grep -q "^strict: echoed 'hello', exit 0$" "$SK_WORK/strict.out"; then
    sk_pass "a child in strict mode ($how) reads, writes and exits"
  else
    sk_fail "a child in strict mode ($how): $(cat "$SK_WORK/strict.out" "$SK_WORK/strict.err")"
  fi
done

# With periodic scans an hour apart, a forked child's scanner thread is still made once the child
# has lived a second, as its publisher is: until then every read of a regular file pays an fstat
# (is it a pipe, which may wait long?), and an hour of that made a child's small reads 2.2 times as
# slow. The child reads a regular file without ever waiting and allocates nothing, so only the
# reads' check of what is due can start either thread.
HEAPKEEPER_SCAN_INTERVAL=1h "$H" run -- "$HK_FORKED_CHILDREN" reader 30 "$HK_FORKED_CHILDREN" \
  >"$SK_WORK/reader.out" 2>"$SK_WORK/reader.err" &
SK_HELPERS+=("$!")
reader=""
for _ in $(seq 100); do
  reader=$(awk '$2 == "reader" {print $3}' "$SK_WORK/reader.out" 2>/dev/null)
  [[ -n $reader ]] && break
  sleep 0.05
done
SK_PLANTED_PIDS+=("$reader")
sleep 1.6
names=$(cat /proc/"$reader"/task/*/comm 2>/dev/null | sort | tr '\n' ' ')
if [[ $names == *heapkeeper-scan* && $names == *heapkeeper-stat* ]]; then
  sk_pass "a reading child has its scanner thread a second after its fork, whatever the interval"
else
  sk_fail "a reading child (pid $reader) has threads '$names' 1.6 s after its fork, expected the scanner's too"
fi
[[ -n $reader ]] && kill "$reader" 2>/dev/null
wait

# A signal handler that interrupts a child's fork() (jemalloc's fork handler holding every lock) and
# waits in a wrapped call must not start the deferred thread there: its creation allocates, and
# the child deadlocked (tests/stats/forked_children.c handler-fork; hung 10 times in 10 before).
if timeout 30 "$H" run -- "$HK_FORKED_CHILDREN" handler-fork >"$SK_WORK/handler.out" 2>"$SK_WORK/handler.err" &&
  grep -qx done "$SK_WORK/handler.out"; then
  sk_pass "a child forking under a signal handler that polls does not deadlock"
else
  sk_fail "a child forking under a signal handler that polls: $(cat "$SK_WORK/handler.out" "$SK_WORK/handler.err" | head -5)"
fi

# A traced shell's forked children exec without making a thread first (strace, where installed):
# the thread each made before its exec was made, scheduled and torn down for nothing.
library=$(dirname "$(dirname "$H")")/lib/libheapkeeper.so
if command -v strace >/dev/null && [[ -f $library ]]; then
  strace -f -e trace=clone,clone3,execve -o "$SK_WORK/strace" \
    env LD_PRELOAD="$library" bash -c 'for i in 1 2 3; do /bin/true; done' >/dev/null 2>&1 || true
  if "$SK_PYTHON" - "$SK_WORK/strace" <<'PY'; then
import re, sys
forked, execed, early, pending = set(), set(), [], set()
for line in open(sys.argv[1]):
    pid = int(line.split()[0])
    # A fork's line may be split by another process's line: "clone(... <unfinished ...>", then
    # "<... clone resumed>, ...) = CHILD".
    fork_done = re.search(r"\bclone\(.*SIGCHLD", line) or ("clone resumed>" in line and pid in pending)
    if re.search(r"\bclone\(.*SIGCHLD.*<unfinished", line):
        pending.add(pid)
    elif fork_done and "= " in line:
        pending.discard(pid)
        child = line.rsplit("= ", 1)[1].strip()
        if child.isdigit():
            forked.add(int(child))
    elif "execve(" in line:
        execed.add(pid)
    elif "clone3(" in line and pid in forked and pid not in execed:
        early.append(line.strip())
if len(forked) < 3 or early:
    print(f"forked {sorted(forked)}; threads made before exec: {early}", file=sys.stderr)
    sys.exit(1)
PY
    sk_pass "a traced shell's forked children exec without making a thread"
  else
    sk_fail "a traced shell's forked children made threads before they exec'd (or strace saw no forks)"
  fi
fi
sk_finish

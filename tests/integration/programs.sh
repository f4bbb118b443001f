#!/usr/bin/env bash
# The small target programs of tests/programs under heapkeeper, each compared with a plain run
# (same stdout, same status, no heapkeeper diagnostics), under `heapkeeper run` and LD_PRELOAD.
# Usage: programs.sh churn_threads|fork_exec|signal_alloc|nested_blocking_call|handler_read|handler_fork|handler_pool_reuse|dlopen_alloc|small_stacks|unwinding|descriptors
#   churn_threads  4 and 8 threads of malloc/realloc/new/delete churn with cross-thread frees
#   fork_exec      fork, exec, fork under allocation load; with HEAPKEEPER_REPORT=.../r.%p.json
#                  every process that exits writes its own report, checked against its pid
#   signal_alloc   signal handlers that allocate while the main thread churns
#   nested_blocking_call  a timer's handler writes while the main thread writes (wrapped calls
#                  nested at the end of the outer one: it spun for ever)
#   handler_read   a profiling timer's handler reads a pipe while threads start (a thread's
#                  registration, interrupted inside jemalloc, was started again: it hung)
#   handler_fork   a timer's handler forks (the child _exits) while the main thread allocates, frees
#                  and dlcloses: the fork hung on a jemalloc lock the interrupted call held, and a
#                  block of heapkeeper's fork handlers was reported as the program's leak
#   handler_pool_reuse  a timer's handler allocates and frees a 256 KiB block (a 4 KiB-aligned
#                  one, a 3 MiB one) every 100 us while the main thread churns: thousands land inside jemalloc, served from the
#                  signal-safe pool, which must reuse what the handler freed (it ran out: NULL)
#   dlopen_alloc   a plugin that allocates, loaded and unloaded repeatedly
#   small_stacks   allocation on a 32 KiB thread stack and a 16 KiB alternate signal stack
#   unwinding      threads cancelled in wrapped blocking calls, pthread_exit, a throwing
#                  new-handler, exceptions in threads: unwinds through heapkeeper's frames
#   minimum_stack  a helper thread on a PTHREAD_STACK_MIN (16 KiB) stack writing to a stream
#   other_stacks   a signal handler on an 8 KiB alternate stack, and a ucontext coroutine on a
#                  16 KiB stack, each writing a line to a stream it opens
#   garbage_frame  a leak through code without unwind information whose frame pointer points at
#                  data: the word libunwind returns as a return address (a double) is kept
#   descriptors    python3 and perl print the descriptor their first open() gets (python3 also
#                  under a limit of 16 descriptors)
#   high_descriptors  bash reads and writes its own files on descriptors 992 and 993
#   descriptor_numbers a C program dup2s its own files onto 992 and 993 and allocates through
#                  frames without unwind information
#   own_unwind_descriptors  the same on its lowest numbers, after its own unwind with libunwind
#   seccomp_filter a program whose seccomp filter kills it (or fails with EPERM) on ptrace,
#                  process_vm_readv and the other debugging calls, scanned periodically and at exit
#   seccomp_no_proc perl and ls under a killing filter they inherit, where /proc is not mounted
#                  (a sandbox or chroot without it): /proc/self/status cannot say a filter is there
#   closed_stderr  a program started with stderr closed, whose data file gets descriptor 2: the
#                  file must hold only what the program wrote (the leak report goes nowhere)
#   main_thread_exit  a main thread that ends with pthread_exit: alone, with a worker thread left
#                  running, with a SIGEV_THREAD timer due (a thread glibc makes without
#                  pthread_create), with a last thread whose key destructor re-arms itself, with an
#                  exit handler that allocates, and
#                  2,000 short threads around a main thread that returns (glibc ends the process
#                  when its last thread exits; heapkeeper's threads kept it alive)
#   thread_credentials  (root) a program that believes itself single-threaded changes its ids and
#                  capabilities through glibc, with raw system calls, and its capability sets alone:
#                  after every step every task (heapkeeper's threads too) holds the same credentials;
#                  and util-linux's setpriv dropping to nobody, which aborted (glibc's all-thread
#                  setresgid failed in heapkeeper's thread, which had lost its capabilities);
#                  a new user namespace, in the program and with `unshare -r` (EINVAL before: only
#                  a single-threaded process may make one); and a segment made as root going to
#                  the user the process becomes for good, which removes it at exit
#   no_proc        python3 in collect mode with 100 ms scans where /proc is not mounted: no scan
#                  may call a block leaked, let alone free it, without the roots /proc names
source "$(dirname "$0")/lib.sh"

# require_hidden_proc: sets hide_proc to the command that runs its arguments in a mount namespace of
# their own (root, or an unprivileged user namespace), where /proc can be hidden under a tmpfs;
# skips the part (status 77) where there is none.
require_hidden_proc() {
  hide_proc=(unshare -m)
  ((EUID == 0)) || hide_proc=(unshare -rm)
  if ! "${hide_proc[@]}" sh -c 'mount -t tmpfs none /proc' 2>/dev/null; then
    echo "skipped: no mount namespace in which to hide /proc"
    exit 77
  fi
}

program=${1:?usage: programs.sh PROGRAM}

# compare_whole NAME [VAR=VALUE...] -- CMD...: CMD's stdout, stderr and status, traced (preload and
# launcher, with the variables set) and plain, must be the same; for commands whose exit report
# cannot be written where hk_compare keeps them (a program that ends as another user).
compare_whole() {
  local name=$1 expected got mode
  shift
  local -a settings=()
  while [[ $1 != -- ]]; do settings+=("$1"); shift; done
  shift
  expected=$("$@" 2>&1; echo "status $?")
  for mode in preload launcher; do
    got=$(
      export "${settings[@]}"
      hk_exec "$mode" "$@" 2>&1
      echo "status $?"
    )
    if [[ $got == "$expected" ]]; then
      hk_pass "$name ($mode): same output and status as without heapkeeper"
    else
      hk_fail "$name ($mode): differs from the plain run:"
      diff <(echo "$expected") <(echo "$got") >&2 || true
    fi
  done
}

run_program() {
  local mode=$1
  shift
  hk_exec "$mode" "$@"
}

# Traced runs get HEAPKEEPER_REPORT=<run>/reports/r.%p.json from hk_capture.
run_fork_exec() {
  local mode=$1
  hk_exec "$mode" "$(hk_program fork_exec)" --pid-log "$PWD/pids"
}

# Every process the pid log lists as writing a report has exactly one, naming the program it ran
# at exit; processes killed by a signal have none, and no other report exists.
check_fork_reports() {
  local dir=$HK_WORK/fork_exec.launcher
  local pid writes role expected=0 found
  if [[ ! -s $dir/run/pids ]]; then
    hk_fail "fork_exec: the program wrote no pid log"
    return
  fi
  while read -r pid writes role; do
    local report=$dir/reports/r.$pid.json
    if [[ $writes == none ]]; then
      [[ -e $report ]] && hk_fail "fork_exec: $role $pid was killed by a signal, yet wrote $report"
      continue
    fi
    expected=$((expected + 1))
    if [[ ! -f $report ]]; then
      hk_fail "fork_exec: no report from $role process $pid"
      continue
    fi
    # (hk_compare's report check has already validated the JSON, the pid and the figures.)
    case $role in
      echo) hk_json_check "$report" "r['program'].endswith('/echo')" "the exec'd child reports as echo" || true ;;
      self-exec) hk_json_check "$report" "'--exec-child' in r['command_line']" "the self-exec'd child's command line" || true ;;
      *) hk_json_check "$report" "r['program'].endswith('/hk_prog_fork_exec')" "$role $pid's program" || true ;;
    esac
  done <"$dir/run/pids"
  found=$(find "$dir/reports" -name 'r.*.json' | wc -l)
  if ((found != expected)); then
    hk_fail "fork_exec: $found reports for $expected processes that exit normally"
    ls "$dir/reports" >&2
  elif ((HK_FAILURES == 0)); then
    hk_pass "fork_exec: one valid report per process ($found), each with its own pid"
  fi
}

case $program in
  churn_threads)
    churn_threads=$(hk_program churn_threads)
    hk_compare churn4 run_program "$churn_threads" 4 20000 -- launcher preload
    hk_compare churn8 run_program "$churn_threads" 8 8000 -- launcher
    ;;
  fork_exec)
    hk_compare fork_exec run_fork_exec -- launcher
    check_fork_reports
    ;;
  signal_alloc)
    # A deadlock here would otherwise cost 2 x 90 s; the plain run takes well under a second.
    HK_TIMEOUT=60  # read by lib.sh's hk_limit
    hk_compare signal_alloc run_program "$(hk_program signal_alloc)" 5000 -- launcher preload
    ;;
  nested_blocking_call)
    HK_TIMEOUT=60  # read by lib.sh's hk_limit; the program's alarm ends a hung run after 20 s
    hk_compare nested_blocking_call run_program "$(hk_program nested_blocking_call)" 300000 -- preload
    ;;
  handler_read)
    HK_TIMEOUT=60  # read by lib.sh's hk_limit; the program's alarm ends a hung run after 20 s
    # Three runs: the handler lands inside a starting thread's registration in most runs.
    for run in 1 2 3; do
      hk_compare "handler_read.$run" run_program "$(hk_program handler_read)" 20 -- preload
    done
    ;;
  handler_fork)
    : "${HK_PLUGIN:?HK_PLUGIN must name the plugin the dlclose variant loads}"
    HK_TIMEOUT=60  # read by lib.sh's hk_limit: a hung run fails in 60 s
    hk_compare handler_fork.malloc run_program "$(hk_program handler_fork)" malloc 20000 -- preload
    hk_compare handler_fork.dlclose run_program "$(hk_program handler_fork)" dlclose 3000 "$HK_PLUGIN" -- preload
    # The program frees what it allocates: no exit report, the parent's or a child's, may name a leak.
    for variant in malloc dlclose; do
      leaky=$(grep -l '"leaked_blocks": [1-9]' "$HK_WORK/handler_fork.$variant.preload/reports/"*.json 2>/dev/null || true)
      if [[ -z $leaky ]]; then
        hk_pass "handler_fork ($variant): no exit report names a leak"
      else
        hk_fail "handler_fork ($variant): leaks reported by a program that frees everything: $leaky"
      fi
    done
    ;;
  handler_pool_reuse)
    HK_TIMEOUT=150  # read by lib.sh's hk_limit; the program gives up after 60 s of alarms
    for variant in malloc aligned large; do
      hk_compare "handler_pool_reuse.$variant" run_program "$(hk_program handler_pool_reuse)" 20000 "$variant" -- preload
    done
    ;;
  dlopen_alloc)
    : "${HK_PLUGIN:?HK_PLUGIN must name the plugin dlopen_alloc loads}"
    hk_compare dlopen_alloc run_program "$(hk_program dlopen_alloc)" "$HK_PLUGIN" 8 \
      -- launcher preload
    ;;
  main_thread_exit)
    HK_TIMEOUT=30  # read by lib.sh's hk_limit: a process that never ends fails in 30 s, not 90
    for mode in alone worker churn timer destructors atexit; do
      hk_compare "main_thread_exit_$mode" run_program "$(hk_program main_thread_exit)" "$mode" -- launcher preload
    done
    ;;
  raw_clone)
    # Children made without fork() (raw_clone.c), under 5 ms scans: each hung child costs 5 s.
    HK_TIMEOUT=120  # read by lib.sh's hk_limit
    HEAPKEEPER_SCAN_INTERVAL=5ms hk_compare raw_clone run_program "$(hk_program raw_clone)" 200 -- preload
    ;;
  thread_credentials)
    if ((EUID != 0)); then
      echo "skipped: only root changes its ids and capabilities"
      exit 77
    fi
    # Scans every 20 ms: the periodic scanner's thread follows too, and scans run between steps.
    # Stopped with signals: a process whose ids changed is not dumpable, and ptrace from a thread
    # that gave up CAP_SYS_PTRACE with the program is refused; the first scan to meet that says so
    # on stderr and falls back to signals (a line this comparison would count against it).
    export HEAPKEEPER_SCAN_INTERVAL=20ms HEAPKEEPER_STOP_METHOD=signals
    HK_TIMEOUT=60  # read by lib.sh's hk_limit: a deadlock (the handler case) fails in 60 s
    for mode in glibc raw caps handler groups vfork seccomp userns; do
      hk_compare "credentials_$mode" run_program "$(hk_program thread_credentials)" "$mode" -- launcher preload
    done
    # The exec'd program runs as nobody, which may not write a report where the test keeps them:
    # stdout, stderr and status compared whole instead, without a report; scans at exit only
    # (unshare: every 20 ms, with the live-stats thread at once, both in its way).
    unset HEAPKEEPER_SCAN_INTERVAL HEAPKEEPER_STOP_METHOD
    hk_require setpriv
    shows_credentials=(sh -c 'id; grep -E "^(Cap|NoNewPrivs)" /proc/self/status')
    for drop in "--reuid=nobody --regid=nogroup --clear-groups" \
      "--no-new-privs --reuid=nobody --regid=nogroup --clear-groups" \
      "--reuid=nobody --regid=nogroup --clear-groups --inh-caps=+net_bind_service --ambient-caps=+net_bind_service"; do
      # shellcheck disable=SC2086  # $drop is setpriv's options, split on purpose
      compare_whole "setpriv $drop" HEAPKEEPER_STATS_DELAY=0 -- setpriv $drop "${shows_credentials[@]}"
    done
    compare_whole "unshare -r -m" HEAPKEEPER_STATS_DELAY=0 HEAPKEEPER_SCAN_INTERVAL=20ms -- \
      unshare -r -m "${shows_credentials[@]}"
    # A process that made its live-stats segment as root and then became 65534 for good: the file
    # goes to 65534 with it, and is gone after its exit (it stayed in /dev/shm, 4.4 MiB a run, which
    # a process of 65534's may not remove from a sticky directory).
    for way in glibc raw; do
      out=$HK_WORK/stay-$way.out
      HEAPKEEPER_STATS_DELAY=0 hk_exec preload "$(hk_program thread_credentials)" "stay-$way" >"$out" 2>&1
      pid=$(sed -n 's/^pid \([0-9]*\),.*/\1/p' "$out")
      if ! grep -q ", segment owner before: 0$" "$out" || ! grep -q "^segment owner after: 65534$" "$out"; then
        hk_fail "stay-$way: the segment's file did not go to 65534 with the process:"
        cat "$out" >&2
      elif [[ -z $pid ]] || compgen -G "/dev/shm/heapkeeper.$pid.*" >/dev/null; then
        hk_fail "stay-$way: the segment of process ${pid:-?} is still in /dev/shm after its exit"
      else
        hk_pass "stay-$way: the segment's file went to 65534 with the process, which removed it at exit"
      fi
    done
    ;;
  small_stacks)
    hk_compare small_stacks run_program "$(hk_program small_stacks)" -- launcher preload
    ;;
  unwinding)
    hk_compare unwinding run_program "$(hk_program unwinding)" -- launcher preload
    ;;
  minimum_stack)
    # heapkeeper's static TLS takes about 3 KiB of such a thread's 12 KiB of room, and its first
    # capture (libunwind's slow path, under vfprintf's frame) the rest: SIGSEGV every time.
    hk_compare minimum_stack run_program "$(hk_program small_stacks)" minimum -- launcher preload
    ;;
  other_stacks)
    # Stacks that are not the thread's: a capture on a small alternate signal stack (whose bounds
    # the sigaltstack wrapper recorded) that unwound in full (libunwind's slow path, about 9 KiB
    # below the allocation) ran into the guard page: SIGSEGV every time.
    hk_compare altstack run_program "$(hk_program small_stacks)" altstack -- launcher preload
    # A coroutine's stack, whose room nobody knows: the unwind runs on heapkeeper's private stack,
    # and the block the coroutine keeps has its whole stack (the coroutine's frames, then
    # makecontext's start).
    hk_compare coroutine run_program "$(hk_program small_stacks)" coroutine -- launcher preload
    hk_json_check "$(ls "$HK_WORK"/coroutine.launcher/reports/r.*.json)" \
      '[f.get("function") for s in r["live_sites"] if s["bytes"] == 777 for f in s["stack"]][:2] == ["coroutine_step", "coroutine_body"]' \
      "the coroutine's block has the coroutine's frames" && hk_pass "a block allocated on a coroutine's stack has its whole stack"
    ;;
  garbage_frame)
    # A word an unwinder returns from data (here the double 3.0, 0x4008000000000000) is the stack's
    # frame as captured: a stack table that took such a value for its own word naming a chain of
    # frames (bits 63..62 = 01) reported this leak with no stack at all.
    if [[ -z ${HK_PROG_GARBAGE_FRAME-} ]]; then
      echo "skipped: x86-64 only"
      exit 77
    fi
    hk_compare garbage_frame run_program "$HK_PROG_GARBAGE_FRAME" -- launcher
    word=$(cat "$HK_WORK/garbage_frame.plain/out")
    hk_json_check "$(ls "$HK_WORK"/garbage_frame.launcher/reports/r.*.json)" \
      "[[(f['function'], f['address']) for f in s['stack']] for s in r['leaks'] if s['bytes'] == 123][0][1:] == [('??', $word)] and [s['stack'][0]['function'] for s in r['leaks'] if s['bytes'] == 123] == ['allocate_under_record']" \
      "the leak's stack: allocate_under_record, then the word from the record" &&
      hk_pass "a frame read from data is kept as captured"
    ;;
  descriptors)
    # heapkeeper's own descriptors never take the program's lowest free ones: libunwind's pipe,
    # opened at start-up, once made a traced program's first open() return 5 instead of 3.
    for interpreter in python3 perl; do
      case $interpreter in
        python3) flag=-c code='import os; print(os.open("/dev/null", os.O_RDONLY))' ;;
        perl) flag=-e code='open(my $f, "<", "/dev/null") or die; print fileno($f), "\n"' ;;
      esac
      hk_compare "descriptors_$interpreter" run_program "$interpreter" "$flag" "$code" -- launcher preload
    done
    # Under a low descriptor limit (sandboxes set 16 or 32) there is no "high" number: stderr's
    # private copy must not take the program's lowest free one either.
    run_low_limit() {
      local mode=$1
      shift
      (
        ulimit -n 16
        hk_exec "$mode" "$@"
      )
    }
    hk_compare descriptors_low_limit run_low_limit /usr/bin/python3 -c 'import os; print(os.open("/dev/null", os.O_RDONLY))' \
      -- preload
    ;;
  high_descriptors)
    # Descriptor numbers are the program's, all of them: a script may put its own files on any
    # (`exec 992<in 993>out`), and heapkeeper must then neither read from them nor write into them.
    # libunwind's pipe, moved to 992 and 993, is still used by number: under heapkeeper the script's
    # `read` got EAGAIN (a pipe had replaced its file) and its output file stayed empty.
    seq 1 100 >"$HK_WORK/numbers.txt"
    run_high_descriptors() {
      local mode=$1
      # shellcheck disable=SC2016  # expanded by the traced bash
      hk_exec "$mode" bash -c 'exec 992<"$0" 993>out.txt
        for i in 1 2 3; do x=$(echo "$i"); done  # allocations of bash, with 992 and 993 its own
        read -r first <&992; read -r second <&992
        echo "read from 992: $first $second"
        echo "written to 993" >&993
        exec 993>&-
        echo "out.txt: $(cat out.txt)"' "$HK_WORK/numbers.txt"
    }
    hk_compare high_descriptors run_high_descriptors -- launcher preload
    ;;
  descriptor_numbers)
    # libunwind's pipe is used by number: the program's files there were read and written by it
    # (5 bytes of input consumed, 5 bytes of memory written into the output file).
    seq 1 100 >"$HK_WORK/numbers.txt"
    run_descriptor_numbers() {
      local mode=$1
      hk_exec "$mode" "$(hk_program descriptor_numbers)" "$HK_WORK/numbers.txt" "$PWD/out.txt"
    }
    hk_compare descriptor_numbers run_descriptor_numbers -- launcher preload
    ;;
  own_unwind_descriptors)
    # The program's own unwind made libunwind open a real pipe on 3 and 4, the numbers its files
    # took next: heapkeeper's unwinds read its input and wrote memory into its output.
    seq 1 100 >"$HK_WORK/numbers.txt"
    run_own_unwind_descriptors() {
      local mode=$1
      hk_exec "$mode" "$(hk_program own_unwind_descriptors)" "$HK_WORK/numbers.txt" "$PWD/out.txt"
    }
    hk_compare own_unwind_descriptors run_own_unwind_descriptors -- launcher preload
    ;;
  seccomp_filter)
    # A sandboxed service must live as long under heapkeeper as without it: its filter kills it
    # on a debugging call (systemd's default action for SystemCallFilter=), so heapkeeper may not
    # make one once a filter is in force. The scans are signal-stopped then; they say so in one
    # line, which is fine here (hk_compare wants none: HEAPKEEPER_QUIET keeps it quiet at exit).
    seccomp_filter=$(hk_program seccomp_filter)
    for action in errno kill; do
      hk_compare "seccomp_$action" run_program "$seccomp_filter" "$action" -- launcher preload
      (
        export HEAPKEEPER_SCAN_INTERVAL=50ms
        hk_single "seccomp_${action}_scans" launcher "$seccomp_filter" "$action"
      )
      status=$(hk_status "seccomp_${action}_scans" launcher)
      if [[ $status != 0 ]]; then
        hk_fail "seccomp_filter ($action) with 50 ms scans: exit status $status, plainly 0:"
        tail -5 "$HK_WORK/seccomp_${action}_scans.launcher/err" >&2
      else
        hk_pass "seccomp_filter ($action) with 50 ms scans: exit status 0"
      fi
    done
    ;;
  seccomp_no_proc)
    # Sandboxes (bubblewrap without --proc, minijail, chroots) may run a program under a seccomp
    # filter with no /proc mounted: heapkeeper cannot read "Seccomp:" in /proc/self/status there,
    # and must still not make the calls the filter kills for. /proc is hidden under a tmpfs in a
    # mount namespace of the run's own (root, or an unprivileged user namespace).
    require_hidden_proc
    # The exit scans' one line saying they were skipped (no /proc, no roots: programs.sh no_proc)
    # is expected; any other diagnostic still fails the comparison.
    run_without_proc() {
      local mode=$1 status=0
      shift
      # shellcheck disable=SC2016  # $@ is the inner shell's
      hk_exec "$mode" "${hide_proc[@]}" sh -c 'mount -t tmpfs none /proc && exec "$@"' sh \
        "$(hk_program seccomp_filter)" exec "$@" 2>"$PWD/stderr" || status=$?
      grep -v 'leak scan at exit skipped: /proc/thread-self/maps cannot be read' "$PWD/stderr" >&2 || true
      return "$status"
    }
    hk_compare seccomp_no_proc_perl run_without_proc perl -e 'my %h = map { $_ => [$_] } 1 .. 5000; print scalar(keys %h), "\n"' -- preload
    hk_compare seccomp_no_proc_ls run_without_proc ls -d / -- preload
    ;;
  closed_stderr)
    # heapkeeper writes to the stderr the program started with; with none, descriptor 2 is the
    # program's next file, and nothing of heapkeeper's may go there.
    run_closed_stderr() {
      local mode=$1
      hk_exec "$mode" "$(hk_program closed_stderr)" "$PWD/data.txt" 2>&-
      cat "$PWD/data.txt"
    }
    hk_compare closed_stderr run_closed_stderr -- launcher preload
    # A program that closes every descriptor, heapkeeper's copy of its stderr included, and opens
    # its own files, one of them on 2: the leak report went into that file (an adversarial
    # tester's). Descriptor 2 is written to only while it is still the stderr the program started
    # with; here the report is lost, and the file is the program's alone.
    run_closed_all() {
      local mode=$1
      hk_exec "$mode" "$(hk_program closed_stderr)" "$PWD/data.txt" close-all
      cat "$PWD/data.txt"
    }
    hk_compare closed_all run_closed_all -- launcher preload
    # A program that moves its stderr to a file of its own (dup2: a service's log, `exec 2>>log`):
    # that file is the program's, and gets nothing of heapkeeper's; the leak report goes to the
    # stderr the program started with where that is a file or a terminal (nobody waits for its
    # end, so heapkeeper keeps its copy), as before the dup2 wrapper.
    rm -f "$HK_WORK/redirected.log"
    status=0
    hk_exec preload "$(hk_program closed_stderr)" "$HK_WORK/redirected.log" redirect 2>"$HK_WORK/redirected.err" ||
      status=$?
    if ((status == 0)) && [[ $(cat "$HK_WORK/redirected.log") == "the program's data, on descriptor 2" ]] &&
      grep -q "100 byte(s) leaked in 1 allocation" "$HK_WORK/redirected.err"; then
      hk_pass "closed_stderr (redirect): the program's log holds its line alone, the leak report reached the start-up stderr"
    else
      hk_fail "closed_stderr (redirect): status $status, log [$(cat "$HK_WORK/redirected.log")], stderr [$(cat "$HK_WORK/redirected.err")]"
    fi
    ;;
  truncated_segment)
    # Another process of the user truncates the live-stats segment's file (a script emptying
    # /dev/shm, an adversarial tester's `truncate -s 0`): the publisher's next store past the
    # file's new end raised SIGBUS in the program, which died of it. Now the program runs on to its
    # own end, the segment is given up with one line saying so, and its file is removed.
    # "half": cut to half its size while the program is stopped, where `heapkeeper stats` must refuse
    # it at once (a young process's segment cut short was taken for one being made, and waited for
    # 30 s), and then given up by the program once it runs again.
    for size in 0 100 4096 half; do
      LD_PRELOAD=$HK_PRELOAD HEAPKEEPER_STATS_DELAY=0 sleep 4 2>"$HK_WORK/truncated.$size.err" &
      pid=$!
      file=""
      for ((i = 0; i < 200; i++)); do
        file=$(find /dev/shm -maxdepth 1 -name "heapkeeper.$pid.*" -print -quit 2>/dev/null || true)
        [[ -z $file ]] || break
        sleep 0.02
      done
      # Published first: the file exists from its creation on, before it is sized and its header
      # written, and a truncation then is not what this checks.
      for ((i = 0; i < 100; i++)); do
        [[ -n $file ]] && "$HK_LAUNCHER" stats "$pid" >/dev/null 2>&1 && break
        sleep 0.02
      done
      if [[ -z $file ]]; then
        hk_fail "truncated_segment ($size bytes): no segment appeared for pid $pid"
        wait "$pid" || true
        continue
      fi
      ok=1
      if [[ $size == half ]]; then
        kill -STOP "$pid"
        truncate -s "$(($(stat -c %s "$file") / 2))" "$file"
        started=$SECONDS
        stats_status=0
        timeout -k 5 60 "$HK_LAUNCHER" stats "$pid" >"$HK_WORK/truncated.stats.out" 2>"$HK_WORK/truncated.stats.err" ||
          stats_status=$?
        waited=$((SECONDS - started))
        kill -CONT "$pid"
        if ((stats_status != 1 || waited > 10)) || ! grep -q "truncated" "$HK_WORK/truncated.stats.err"; then
          hk_fail "truncated_segment (half): stats answered $stats_status after ${waited}s: $(cat "$HK_WORK/truncated.stats.err")"
          ok=0
        fi
      else
        truncate -s "$size" "$file"
      fi
      status=0
      wait "$pid" || status=$?
      ((status == 0)) || { hk_fail "truncated_segment ($size bytes): exit status $status (plainly 0)"; ok=0; }
      grep -q "was truncated by another process; the program runs on" "$HK_WORK/truncated.$size.err" ||
        { hk_fail "truncated_segment ($size bytes): no line says the segment was given up"; ok=0; }
      [[ ! -e $file ]] || { hk_fail "truncated_segment ($size bytes): $file is left behind"; rm -f "$file"; ok=0; }
      if ((ok)); then hk_pass "truncated_segment ($size bytes): the program ran to its end, the segment was given up"; fi
    done
    ;;
  redirected_stderr)
    # A process that points its own 0-2 at /dev/null tells whoever reads its old stderr that it is
    # done: `x=$(prog 2>&1)` returns then, with what it printed before, while the process lives on.
    # heapkeeper's copy of the start-up stderr kept the pipe open to the end (an adversarial
    # tester's `$(...)` waited for a script's sleeps). 8 s of sleep, 5 s allowed for the rest.
    # shellcheck disable=SC2016  # expanded by the traced shell
    for program in bash python3; do
      case $program in
        # `; :`: bash would run a last command by exec, without forking, and the exec alone
        # closes the copy (close-on-exec); here bash itself lives on, with its dup2s behind it.
        bash) command=(bash -c 'echo ready; exec >/dev/null 2>&1 </dev/null; sleep 8; :') ;;
        python3) command=(/usr/bin/python3 -c '
import os, sys, time
print("ready", flush=True)
null = os.open("/dev/null", os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
time.sleep(8)') ;;
      esac
      # Preloaded, with nothing between: a wrapper (`heapkeeper run`, timeout) holds the same pipe
      # while it waits for its child, as any wrapper does. The process ends by itself.
      started=$SECONDS
      output=$(LD_PRELOAD=$HK_PRELOAD "${command[@]}" 2>&1 &)
      waited=$((SECONDS - started))
      if [[ $output == ready ]] && ((waited <= 5)); then
        hk_pass "redirected_stderr ($program): \$(...) returned after ${waited}s with the output before the redirection"
      else
        hk_fail "redirected_stderr ($program): \$(...) returned after ${waited}s with [$output]"
      fi
    done
    ;;
  start_errno)
    # main starts with errno 0 under heapkeeper too, with live stats on (whose start-up prctl an
    # older kernel refuses) and off.
    hk_compare start_errno run_program "$(hk_program start_errno)" -- launcher preload
    HEAPKEEPER_STATS=0 hk_compare start_errno_no_stats run_program "$(hk_program start_errno)" -- preload
    ;;
  no_proc)
    # Without /proc/thread-self/maps a scan knows neither the stacks nor other allocators' heaps:
    # everything looks leaked. Scans must be skipped (with a line saying why), never run blind.
    require_hidden_proc
    python=/usr/bin/python3
    [[ -x $python ]] || { echo "skipped: no /usr/bin/python3"; exit 77; }
    run_collect_without_proc() {
      local mode=$1
      # shellcheck disable=SC2016  # $@ is the inner shell's
      HEAPKEEPER_MODE=collect HEAPKEEPER_SCAN_INTERVAL=100ms HEAPKEEPER_QUIET=0 \
        hk_exec "$mode" "${hide_proc[@]}" sh -c 'mount -t tmpfs none /proc && exec "$@"' sh "$python" -c \
        'import time; x = [str(i) for i in range(100000)]; time.sleep(1); print(len(x), sum(len(s) for s in x))'
    }
    hk_capture no_proc plain run_collect_without_proc
    hk_capture no_proc preload run_collect_without_proc
    err=$HK_WORK/no_proc.preload/err
    if [[ $(hk_status no_proc preload) != "$(hk_status no_proc plain)" ]] ||
      ! cmp -s "$HK_WORK/no_proc.plain/out" "$HK_WORK/no_proc.preload/out"; then
      hk_fail "no_proc: status $(hk_status no_proc preload) (plainly $(hk_status no_proc plain)), or stdout differs"
      tail -5 "$err" >&2
    elif grep -q 'heapkeeper\[[0-9]*\]: .*\(leaked\|reclaimed\)' "$err"; then
      hk_fail "no_proc: scans without /proc called blocks leaked or freed them:"
      grep 'heapkeeper\[' "$err" | head -5 >&2
    else
      hk_pass "no_proc: same stdout and status, no block called leaked"
    fi
    ;;
  *)
    echo "programs.sh: unknown program $program" >&2
    exit 2
    ;;
esac
hk_finish

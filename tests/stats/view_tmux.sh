# `heapkeeper view` driven in a real terminal: tmux (on a private socket) runs it in a 120x40
# pane, the test sends keys and reads the screen back with capture-pane. One mode per CTest test:
#   navigation  header, site table (RETAINED, GROWTH), sort, filter, scan, leaks tab, detail pane,
#               threads tab, the baseline (b, B), a site's retainers beside its stack, q
#   picker      the process picker lists the process, opens it, p goes back, q quits
#   layout      NO_COLOR (no colour escape at all) and ASCII, compact and too-small sizes, help
#   exit        the process exiting (normally, then killed) under the view: banner, UI stays
#   alone       `view PID` as a new user opens it, with no other command before: the program's
#               functions within a second, its leaks after g; a SIGSTOPped process says so
# Skipped (77) when tmux is not installed.
source "$(dirname "$0")/lib.sh"

MODE=${1:?usage: view_tmux.sh navigation|picker|layout|exit|alone}
command -v tmux >/dev/null || sk_skip "tmux is not installed"
SK_TMUX_SOCKET=""
SK_TMUX_SERVERS=0
H=$HK_LAUNCHER

tm() { [[ -n $SK_TMUX_SOCKET ]] && tmux -S "$SK_TMUX_SOCKET" -f /dev/null "$@"; }

# view_start "ENV... ARGS": runs `env ENV... heapkeeper view ARGS` in a fresh 120x40 pane that
# stays after the command exits. The shell around it writes the exit status to a file, which is
# simpler to wait for than tmux's #{pane_dead_status}.
view_start() {
  local command
  rm -f "$SK_WORK/view.status"
  command="env $1 $(printf %q "$H") view $2; echo \$? >$(printf %q "$SK_WORK/view.status")"
  # Each view gets a server of its own: a new session on the socket of a server that is still
  # shutting down fails ("server exited unexpectedly").
  tm kill-server 2>/dev/null || true
  SK_TMUX_SERVERS=$((SK_TMUX_SERVERS + 1))
  SK_TMUX_SOCKET=$SK_WORK/tmux.$SK_TMUX_SERVERS.socket
  tm new-session -d -s view -x 120 -y 40 "sleep 600"
  tm set-option -w -t view remain-on-exit on
  tm respawn-pane -k -t view "$command"
}

capture() { tm capture-pane -p -t view; }

# wait_for REGEX [SECONDS]: polls the screen until a line matches (extended regex).
wait_for() {
  local pattern=$1 limit=${2:-10} start=$SECONDS
  while ((SECONDS - start < limit)); do
    capture >"$SK_WORK/screen.txt" 2>/dev/null || true
    if grep -Eq -- "$pattern" "$SK_WORK/screen.txt"; then return 0; fi
    sleep 0.2
  done
  echo "--- no line matches /$pattern/ after ${limit}s; the screen:" >&2
  cat "$SK_WORK/screen.txt" >&2
  return 1
}

# wait_without REGEX [SECONDS]: polls until no line matches.
wait_without() {
  local pattern=$1 limit=${2:-10} start=$SECONDS
  while ((SECONDS - start < limit)); do
    capture >"$SK_WORK/screen.txt" 2>/dev/null || true
    if ! grep -Eq -- "$pattern" "$SK_WORK/screen.txt"; then return 0; fi
    sleep 0.2
  done
  echo "--- /$pattern/ still on the screen after ${limit}s:" >&2
  cat "$SK_WORK/screen.txt" >&2
  return 1
}

# expect DESCRIPTION REGEX [SECONDS]
expect() { if wait_for "$2" "${3:-10}"; then sk_pass "$1"; else sk_fail "$1"; fi; }
expect_not() { if wait_without "$2" "${3:-10}"; then sk_pass "$1"; else sk_fail "$1"; fi; }

keys() { tm send-keys -t view "$@"; }

# quit_cleanly: q ends the view with status 0 and the pane's process is gone.
quit_cleanly() {
  keys q
  local start=$SECONDS dead="" status=""
  while ((SECONDS - start < 10)); do
    dead=$(tm display-message -p -t view '#{pane_dead}' 2>/dev/null || true)
    [[ $dead == 1 && -s $SK_WORK/view.status ]] && break
    sleep 0.2
  done
  status=$(cat "$SK_WORK/view.status" 2>/dev/null || true)
  if [[ $dead == 1 && $status == 0 ]]; then
    sk_pass "q quits with status 0"
  else
    sk_fail "after q: pane dead '$dead', exit status '$status'"
    capture >&2 || true
  fi
}

mode_navigation() {
  sk_start_target 2000 200 50 churn || { sk_fail "target"; return; }
  local pid=$SK_TARGET_PID
  view_start "LC_ALL=C.UTF-8" "$pid"
  expect "the title names the pid and the program" "^ heapkeeper  pid $pid  .*live_target"
  expect "the figures show live bytes and rates" "^ Live  .* blocks .*allocs/s [0-9]"
  expect "the header breaks RSS down" "^ RSS   [0-9.]+ [KMG]iB = live [0-9.]+ [KMG]?i?B \+ slack .* \+ heapkeeper .* \+ kept .* \+ outside [0-9.]+ [KMG]?i?B"
  expect "the site table shows make_record" "^ +[0-9.]+ [KMG]?i?B +200 .* make_record +live_target\.c:[0-9]+"
  expect "the default sort is live bytes" "sort: live bytes$"
  local order
  for order in "blocks" "alloc rate" "leaked bytes" "retained bytes" "growth" "live bytes"; do
    keys s
    expect "s sorts by $order" "sort: $order$" 5
  done
  expect "the sorted column is marked" "LIVE ▼"
  keys /
  expect "/ opens the filter prompt" "^ Filter: "
  keys -l make_rec
  keys Enter
  expect "the filter is applied" "filter: make_rec \(1 of [0-9]+\)"
  expect_not "the filter hides the other sites" "leak_buffers|_IO_file_doallocate"
  expect "the filter keeps make_record" "make_record"
  keys Escape
  expect "Esc clears the filter" "leak_buffers"
  expect_not "no filter is shown after Esc" "filter:"
  keys g
  expect "g scans in the background and reports the result" "^ scan #[0-9]+: [0-9.]+ [KMG]?i?B leaked in [1-9][0-9]* blocks" 20
  expect "the figures show the scan" "^ Scan  #[0-9]+ .*leaked [0-9.]+ KiB in 16 blocks"
  keys Tab
  expect "Tab switches to the leaks tab" "^KIND +BYTES ▼ +BLOCKS"
  expect "the leaks tab lists leak_buffers" "^(in)?direct .* leak_buffers +live_target\.c:[0-9]+"
  keys Enter
  expect "Enter opens the detail pane" "^ Stack \([0-9]+ frames\) of the (in)?direct leak: "
  expect "the detail pane shows the leaking frame" "^ #0 +leak_buffers  at .*live_target\.c:[0-9]+  in hk_stats_live_target\+0x[0-9a-f]+$"
  expect "the detail pane shows the caller" "^ #1 +main  at "
  keys Enter
  expect_not "Enter closes the detail pane" "^ Stack \("
  keys l
  expect "l switches to the threads tab" "^ +TID +# NAME"
  expect "the threads tab lists the main thread" "^ +$pid +[0-9]+ hk_stats_live"
  keys Tab
  expect "Tab cycles back to the sites tab" "^ +LIVE ▼ +BLOCKS"
  keys End Home Down Up PageDown PageUp j k
  expect "moving around keeps the screen" "make_record"
  expect "the sites table has a RETAINED and a GROWTH column" "^ +LIVE ▼ +BLOCKS +ALLOCS/S +LEAKED +RETAINED +GROWTH +FUNCTION"
  expect "after the scan, RETAINED shows what make_record's site retains" "^ +[0-9.]+ [KMG]?i?B +200 .* [0-9.]+ [KMG]?i?B +(-|\+[0-9.]+ [KMG]?i?B/s) +make_record "
  # b marks a baseline: LIVE and BLOCKS become changes since it (make_record's 200 blocks stay put);
  # B goes back to what the sites hold.
  keys b
  expect "b marks a baseline: the sites show changes since it" "^ +ΔLIVE ▼ +ΔBLOCKS +ALLOCS/S"
  expect "the tab bar shows the heap's change since the mark" "since the mark [0-9]+s ago: [+-]?[0-9.]+ [KMG]?i?B$"
  expect "make_record, unchanged since the mark, shows 0 B and 0 blocks" "^ +0 B +0 .* make_record "
  keys B
  expect "B clears the baseline" "^ +LIVE ▼ +BLOCKS +ALLOCS/S"
  expect_not "no baseline in the tab bar after B" "since the mark"
  keys /
  keys -l make_record
  keys Enter
  keys Enter
  expect "Enter on a site shows its stack with its retainers beside it" "^ Stack \([0-9]+ frames\) of the site: .* Retained by"
  expect "the retainers pane names the global that holds the site's blocks" " #1 global g_records in /" 20
  expect "then the array it points to, and a block of the site" " -> 0x[0-9a-f]+ +[0-9.]+ [KMG]?i?B  allocate_records "
  # Only the function: the half-width pane cuts the source path, whose length depends on where the
  # checkout is (an absolute path without ccache's base directory).
  expect "the stack is still shown on the left" "^ #0 +make_record  at "
  keys Enter
  expect_not "Enter closes the stack and the retainers" "Retained by"
  quit_cleanly
}

mode_picker() {
  sk_start_target 1000 100 50 || { sk_fail "target"; return; }
  local pid=$SK_TARGET_PID
  view_start "LC_ALL=C.UTF-8" ""
  expect "the picker lists tracked processes" "^ heapkeeper: tracked processes"
  expect "the picker lists the target as running" "^ +$pid +(running|sleeping) .*hk_stats_live"
  keys End Home Down Up
  expect "the picker survives moving around" "^ +$pid +(running|sleeping)"
  # Typing digits selects the pid that starts with them; Enter opens it.
  keys -l "$pid"
  keys Enter
  expect "digits and Enter open the chosen process" "^ heapkeeper  pid $pid "
  keys p
  expect "p goes back to the picker" "^ heapkeeper: tracked processes"
  quit_cleanly
}

# sgr_colours FILE: prints the colour parameters of every SGR escape in a capture-pane -e dump.
sgr_colours() {
  "$SK_PYTHON" -c '
import re, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
found = set()
for params in re.findall(r"\x1b\[([0-9;:]*)m", text):
    for p in re.split(r"[;:]", params):
        if p and (30 <= int(p) <= 38 or 40 <= int(p) <= 48 or 90 <= int(p) <= 107):
            found.add(p)
print(" ".join(sorted(found)))' "$1"
}

mode_layout() {
  sk_start_target 1000 100 50 churn || { sk_fail "target"; return; }
  local pid=$SK_TARGET_PID
  # With colours first, to show that the check below would see them.
  view_start "LC_ALL=C.UTF-8" "$pid"
  expect "the view starts" "^ heapkeeper  pid $pid "
  sleep 0.5
  tm capture-pane -p -e -t view >"$SK_WORK/colour.txt"
  if [[ -n $(sgr_colours "$SK_WORK/colour.txt") ]]; then sk_pass "colours are used by default"; else sk_fail "no colour escape without NO_COLOR"; fi
  quit_cleanly

  view_start "LC_ALL=C NO_COLOR=1" "$pid"
  expect "the view starts under NO_COLOR and LC_ALL=C" "^ heapkeeper  pid $pid "
  expect "the ASCII chart is drawn" "^ +[0-9.]+ [KMG]?i?B\|.*:"
  sleep 1.2
  tm capture-pane -p -e -t view >"$SK_WORK/nocolor.txt"
  local colours
  colours=$(sgr_colours "$SK_WORK/nocolor.txt")
  if [[ -z $colours ]]; then sk_pass "NO_COLOR: no colour escape at all"; else sk_fail "NO_COLOR: colour parameters $colours"; fi
  if capture | LC_ALL=C grep -q '[^ -~]'; then sk_fail "non-ASCII output under LC_ALL=C"; else sk_pass "ASCII only under LC_ALL=C"; fi
  expect "the sorted column is marked in ASCII" "LIVE v"

  tm resize-window -t view -x 70 -y 20
  expect "70x20: the compact view" "^ live [0-9.]+ [KMG]?i?B in [0-9,]+ blocks  allocs/s"
  expect_not "70x20: no chart or heap line" "^ Heap | live bytes now "
  expect "70x20: the table is still there" "make_record"
  tm resize-window -t view -x 50 -y 12
  expect "50x12: one line says the terminal is too small" "^terminal too small \(need 60x15\)"
  tm resize-window -t view -x 30 -y 5
  expect "30x5: still alive" "^terminal too small"
  tm resize-window -t view -x 120 -y 40
  expect "120x40 again: the full view" "^ Heap  mapped "
  keys '?'
  expect "? shows the key help" "heapkeeper view: keys"
  keys x
  expect_not "any key closes the help" "heapkeeper view: keys"
  keys c
  expect "c asks for confirmation" "Collect: .*\(y/N\)"
  keys n
  expect "anything but y cancels" "collection cancelled"
  quit_cleanly
}

mode_exit() {
  sk_start_target 1000 100 50 churn || { sk_fail "target"; return; }
  local pid=$SK_TARGET_PID
  view_start "LC_ALL=C.UTF-8" "$pid"
  expect "the view starts" "^ heapkeeper  pid $pid .*(running|sleeping)"
  sk_stop_target || true
  expect "a normal exit shows the banner" "PROCESS EXITED" 10
  expect "and says so on the status line" "the process exited: these are its last figures"
  expect "the last figures stay" "make_record"
  keys g
  expect "g after the exit explains" "cannot scan any more"
  sleep 1
  local state
  state=$(tm display-message -p -t view '#{pane_dead}')
  if [[ $state == 0 ]]; then sk_pass "the UI stays up after the exit"; else sk_fail "the UI ended with the process"; fi
  quit_cleanly

  sk_start_target 1000 100 50 || { sk_fail "second target"; return; }
  pid=$SK_TARGET_PID
  sk_plant_pid "$pid"  # a killed process leaves its segment behind
  view_start "LC_ALL=C.UTF-8" "$pid"
  expect "the view starts (second target)" "^ heapkeeper  pid $pid .*(running|sleeping)"
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  SK_TARGET_PID=""
  expect "a killed process shows the banner" "PROCESS EXITED" 10
  expect "and says it is gone" "the process is gone"
  quit_cleanly
}

mode_alone() {
  sk_start_target_unwatched 1000 100 50 || { sk_fail "target"; return; }
  local pid=$SK_TARGET_PID
  view_start "LC_ALL=C.UTF-8" "$pid"
  expect "the view starts" "^ heapkeeper  pid $pid " 5
  # Within a second of the view's first screen: the view is a watcher, and the process publishes
  # its site table (symbolized) as soon as a watcher arrives.
  expect "the program's own function within 1 s, with no other reader" \
    "^ +[0-9.]+ [KMG]?i?B +100 .* make_record +live_target\.c:[0-9]+" 1
  keys g
  expect "g finds the leaks" "^ scan #[0-9]+: [0-9.]+ [KMG]?i?B leaked in [1-9][0-9]* blocks" 20
  keys Tab
  expect "the leaks tab lists leak_buffers, with no other reader" "^(in)?direct .* leak_buffers +live_target\.c:[0-9]+" 3
  kill -STOP "$pid"
  wait_stopped "$pid"
  expect "a SIGSTOPped process is shown as stopped" "stopped: figures frozen" 5
  keys g
  expect "g on a stopped process explains at once" "the process is stopped: it answers once continued" 3
  kill -CONT "$pid"
  expect_not "continued, it is no longer stopped" "stopped: figures frozen" 5
  quit_cleanly
}

case $MODE in
  alone) mode_alone ;;
  navigation) mode_navigation ;;
  picker) mode_picker ;;
  layout) mode_layout ;;
  exit) mode_exit ;;
  *) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
sk_finish

#!/usr/bin/env bash
# Memory freed by the program goes back to the OS (issue 12), as glibc gives it back:
#  - idle: 256 MiB of 64 KiB blocks freed, then 1.5 s of quiet. glibc trims its heap at once;
#    jemalloc's decay runs only when an arena is active, so heapkeeper used to keep all 256 MiB
#    resident for as long as the program stayed quiet. Its own threads now purge what has decayed
#    (dirty_decay_ms 200, muzzy 0). Required: resident at most 64 MiB above glibc's.
#  - idle with live stats and scans off: nothing of heapkeeper's runs, and decay is driven by the
#    program alone; reported, not required (the README says so).
#  - cycle: 64 MiB kept live while cycling through 1 MiB, 64 KiB, 4 KiB and 256-byte blocks: the
#    heap's mapped address space at most twice the peak of live bytes (freed memory of one size
#    class serves the next), and the peak resident set is printed beside glibc's (the 1.3x goal is
#    the benchmark's, scripts/bench.sh, not a test's).
source "$(dirname "$0")/lib.sh"

program=$(hk_program give_back)

resident() { sed -n "s/^$1 \([0-9]*\)$/\1/p" "$2"; }

hk_exec plain "$program" idle 256 >"$HK_WORK/idle.plain" || hk_fail "idle: the plain run failed"
hk_exec preload "$program" idle 256 >"$HK_WORK/idle.traced" || hk_fail "idle: the traced run failed"
plain=$(resident resident_kib "$HK_WORK/idle.plain")
traced=$(resident resident_kib "$HK_WORK/idle.traced")
if [[ -z $plain || -z $traced ]]; then
  hk_fail "idle: no figures ($(cat "$HK_WORK/idle.plain" "$HK_WORK/idle.traced"))"
elif ((traced > plain + 64 * 1024)); then
  hk_fail "idle: 1.5 s after freeing 256 MiB, heapkeeper keeps $((traced / 1024)) MiB resident, glibc $((plain / 1024)) MiB"
else
  hk_pass "idle: 1.5 s after freeing 256 MiB, heapkeeper keeps $((traced / 1024)) MiB resident, glibc $((plain / 1024)) MiB"
fi

HEAPKEEPER_STATS=0 hk_exec preload "$program" idle 256 >"$HK_WORK/idle.quiet" || hk_fail "idle without stats: the run failed"
echo "note: with live stats and scans off, $(($(resident resident_kib "$HK_WORK/idle.quiet") / 1024)) MiB stay resident while the program is idle (decay needs activity)"

hk_exec plain "$program" cycle 64 >"$HK_WORK/cycle.plain" || hk_fail "cycle: the plain run failed"
HEAPKEEPER_REPORT=$HK_WORK/cycle.json hk_exec preload "$program" cycle 64 >"$HK_WORK/cycle.traced" ||
  hk_fail "cycle: the traced run failed"
if [[ -s $HK_WORK/cycle.json ]]; then
  "$HK_CHECK_PYTHON" - "$HK_WORK/cycle.json" "$(resident peak_resident_kib "$HK_WORK/cycle.plain")" \
    "$(resident peak_resident_kib "$HK_WORK/cycle.traced")" <<'PY' && hk_pass "$(cat "$HK_WORK/cycle.verdict")" || hk_fail "$(cat "$HK_WORK/cycle.verdict")"
import json, os, sys
doc = json.load(open(sys.argv[1]))
mapped, peak = doc["heap"]["mapped_bytes"], doc["peak_live_bytes"]
plain, traced = int(sys.argv[2]), int(sys.argv[3])
text = (f"cycle: mapped heap {mapped / 2**20:.0f} MiB for a peak of {peak / 2**20:.0f} MiB live "
        f"({mapped / peak:.2f}x, at most 2x); peak RSS {traced / 1024:.0f} MiB, glibc {plain / 1024:.0f} MiB "
        f"({traced / plain:.2f}x)")
open(os.path.join(os.path.dirname(sys.argv[1]), "cycle.verdict"), "w").write(text)
sys.exit(0 if mapped <= 2 * peak else 1)
PY
else
  hk_fail "cycle: no report"
fi
hk_finish

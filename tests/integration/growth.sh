#!/usr/bin/env bash
# Which sites grow (stats/site_growth.h): tests/programs/growth_workload.c keeps one more 4 KiB
# block from grow_cache every 50 ms (reachable: no scan reports it) while churn's live bytes go up
# and down around a level. Watched through `stats --json`, grow_cache must become `growing` with a
# positive rate near 80 KiB/s, churn never; `stats` (text) names grow_cache on a "growing:" line.
source "$(dirname "$0")/lib.sh"

program=$(hk_program growth_workload)
hk_start_ready growth "$program" || hk_finish
pid=$HK_READY_PID
trap 'kill "$pid" 2>/dev/null || true; hk_cleanup' EXIT

# site_state FILE FUNCTION: "growing RATE" or "steady RATE" for the site whose top frame is FUNCTION.
site_state() {
  "$HK_CHECK_PYTHON" -c '
import json, sys
doc = json.load(open(sys.argv[1]))
for s in doc["sites"]:
    if s["stack"] and s["stack"][0]["function"] == sys.argv[2]:
        print(("growing" if s["growing"] else "steady"), int(s["growth_bytes_per_second"]))
        break
else:
    print("absent 0")' "$1" "$2"
}

# Set before the loop: when the first `stats` fails, the failure below must say so, not die on an
# unset variable (set -u) with no message.
grew="" churned="" cache_state=none cache_rate=0 churn_state=none churn_rate=0
for _ in $(seq 40); do
  "$HK_LAUNCHER" stats "$pid" --json >"$HK_WORK/stats.json" 2>"$HK_WORK/stats.err" || break
  read -r cache_state cache_rate < <(site_state "$HK_WORK/stats.json" grow_cache)
  read -r churn_state churn_rate < <(site_state "$HK_WORK/stats.json" churn)
  [[ $churn_state == growing ]] && churned="churn reported growing at $churn_rate B/s"
  if [[ $cache_state == growing ]]; then
    grew="grow_cache growing at $cache_rate B/s"
    break
  fi
  sleep 1
done
if [[ -n $grew ]] && ((cache_rate > 40000 && cache_rate < 120000)); then
  hk_pass "$grew (4 KiB every 50 ms: about 80 KiB/s)"
else
  hk_fail "grow_cache not growing in 40 s (last: $cache_state $cache_rate; $(cat "$HK_WORK/stats.err"))"
fi
if [[ -z $churned && $churn_state == steady ]]; then
  hk_pass "churn, up and down around a level, is not growing"
else
  hk_fail "${churned:-churn: $churn_state $churn_rate}"
fi
if "$HK_LAUNCHER" stats "$pid" >"$HK_WORK/stats.txt" 2>&1 && grep -q "growing: grow_cache" "$HK_WORK/stats.txt" &&
   ! grep -q "growing: churn" "$HK_WORK/stats.txt"; then
  hk_pass "stats (text) names grow_cache, not churn, as growing"
else
  hk_fail "stats (text): $(cat "$HK_WORK/stats.txt")"
fi
kill -TERM "$pid"
wait "$pid" || true
hk_finish

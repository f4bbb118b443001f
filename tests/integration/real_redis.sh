#!/usr/bin/env bash
# redis-server (Debian's links jemalloc and calls malloc_usable_size, nallocx and mallctl) under
# heapkeeper on a loopback port: a bounded redis-benchmark run must succeed, a live `heapkeeper
# scan` must find no leak, the same commands must answer as without heapkeeper, and the exit
# report must be valid with no leak (a clean shutdown).
set -euo pipefail
command -v redis-server >/dev/null && command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null || {
  echo "redis-server/redis-tools not installed: skipped"; exit 77; }
work=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
cleanup() { redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
printf 'port %s\nbind 127.0.0.1\nsave ""\nappendonly no\ndir %s\n' "$port" "$work" > "$work/redis.conf"

queries() {
  redis-cli -p "$1" set greeting hello >/dev/null
  redis-cli -p "$1" rpush list a b c d e >/dev/null
  redis-cli -p "$1" get greeting
  redis-cli -p "$1" lrange list 0 -1
  redis-cli -p "$1" incrby counter 41
}
wait_for() { for _ in $(seq 1 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

# Without heapkeeper: the reference answers.
redis-server "$work/redis.conf" >"$work/plain.log" 2>&1 &
wait_for "$port" || { echo "FAIL: plain redis-server did not start"; cat "$work/plain.log"; exit 1; }
queries "$port" > "$work/plain.out"
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait

HEAPKEEPER_REPORT="$work/report.%p.json" timeout -k 5 50 "$HK_LAUNCHER" run -- redis-server "$work/redis.conf" \
  >"$work/hk.log" 2>"$work/hk.err" &
wait_for "$port" || { echo "FAIL: redis-server under heapkeeper did not start"; cat "$work/hk.log" "$work/hk.err"; exit 1; }
queries "$port" > "$work/hk.out"
diff -u "$work/plain.out" "$work/hk.out" || { echo "FAIL: answers differ under heapkeeper"; exit 1; }
timeout 40 redis-benchmark -p "$port" -n 5000 -q -t set,get,lpush,lpop,incr > "$work/bench.out" 2>&1 || {
  echo "FAIL: redis-benchmark failed"; cat "$work/bench.out"; exit 1; }
pid=$(redis-cli -p "$port" info server | tr -d '\r' | sed -n 's/^process_id://p')
scan=$("$HK_LAUNCHER" scan "$pid" --json)
leaked=$(printf '%s' "$scan" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leaked_blocks"])')
[ "$leaked" = 0 ] || { echo "FAIL: live scan of redis found $leaked leaked blocks"; echo "$scan"; exit 1; }
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait || true
report=$(ls "$work"/report.*.json | head -1)
python3 - "$report" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["live_blocks"] == d["allocations"] - d["frees"], "live blocks do not balance"
assert d.get("leaked_blocks", 0) == 0, f"leaks reported at exit: {d.get('leaks')}"
print(f"ok: redis under heapkeeper: {d['allocations']} allocations, no leak at a clean shutdown")
PY
if grep -q "heapkeeper\[" "$work/hk.err"; then echo "FAIL: heapkeeper diagnostics:"; cat "$work/hk.err"; exit 1; fi

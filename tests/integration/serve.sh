#!/usr/bin/env bash
# `heapkeeper serve` against the tools that scrape it. tests/programs/retainer_graph.c runs under
# heapkeeper (it leaks 77 bytes from make_lost and holds a 1000-byte make_payload) and
# `heapkeeper serve --listen 127.0.0.1:0` serves it:
#   - go tool pprof (Debian's golang-go) fetches /debug/pprof/heap?pid=N&leaks=1 and names make_lost
#     with 77 bytes first (leaked_space is that URL's default sample type), and the URL without
#     leaks=1 shows make_payload's 1000 bytes in use;
#   - /metrics is Prometheus's text format for a plain client and OpenMetrics for a scraper that prefers it
#     (content negotiation); promtool check metrics accepts the text format;
#   - a real Prometheus (Debian's prometheus) scrapes it every 200 ms and its HTTP API answers
#     heapkeeper_live_bytes and heapkeeper_leaked_bytes of the pid with the process's figures
#     (Prometheus 2.x asks for OpenMetrics first: its metadata then names the counter family
#     heapkeeper_allocations, which only the OpenMetrics answer declares);
#   - /api/processes lists the pid; unknown pids, bad queries, unknown paths and other methods
#     get 4xx answers of one line;
#   - hostile clients: garbage, a head that never ends, a client that stalls (cut at --timeout),
#     hundreds of idle connections — the server answers a normal request meanwhile, keeps its
#     memory and descriptors bounded, and exits 0 on SIGTERM;
#   - the address: ":0" is loopback, 0.0.0.0 is served only when named and then said on stderr,
#     a host name is refused, a port in use is one line.
# Ports are picked free (port 0, or asked of the kernel), never fixed: tests run in parallel.
source "$(dirname "$0")/lib.sh"

hk_require promtool prometheus go
export HOME=$HK_WORK GOCACHE=$HK_WORK/gocache GOFLAGS=-mod=mod GOTOOLCHAIN=local PPROF_TMPDIR=$HK_WORK/pprof
H=$HK_LAUNCHER
helpers=()
stop_helpers() {
  local pid
  for pid in "${helpers[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${helpers[@]}"; do wait "$pid" 2>/dev/null || true; done
  helpers=()
}
trap 'stop_helpers; hk_cleanup' EXIT

# start_serve NAME ARGS...: `heapkeeper serve ARGS` in the background (stderr in NAME.err); sets
# SERVE_PID and SERVE_URL from its "serving http://..." line. Returns 1 if none came in 10 s.
start_serve() {
  local name=$1
  shift
  "$H" serve "$@" 2>"$HK_WORK/$name.err" &
  SERVE_PID=$!
  helpers+=("$SERVE_PID")
  SERVE_URL=""
  for _ in $(seq 200); do
    SERVE_URL=$(sed -n 's|^heapkeeper: serving \(http://[^ ]*\)/ .*|\1|p' "$HK_WORK/$name.err")
    [[ -n $SERVE_URL ]] && return 0
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.05
  done
  return 1
}

# fetch URL OUTPUT [ACCEPT] [METHOD]: the body in OUTPUT; prints "STATUS CONTENT-TYPE".
fetch() {
  "$HK_CHECK_PYTHON" - "$@" <<'PY'
import http.client, sys, urllib.parse
url, output = sys.argv[1], sys.argv[2]
accept = sys.argv[3] if len(sys.argv) > 3 else ""
method = sys.argv[4] if len(sys.argv) > 4 else "GET"
parts = urllib.parse.urlsplit(url)
connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
target = parts.path + ("?" + parts.query if parts.query else "")
connection.request(method, target, headers={"Accept": accept} if accept else {})
response = connection.getresponse()
open(output, "wb").write(response.read())
print(response.status, response.getheader("Content-Type"))
PY
}

program=$(hk_program retainer_graph)
hk_start_ready traced "$program" || hk_finish
PID=$HK_READY_PID
helpers+=("$PID")
if ! start_serve serve --listen 127.0.0.1:0 --timeout 1; then
  hk_fail "serve did not start: $(cat "$HK_WORK/serve.err")"
  hk_finish
fi
URL=$SERVE_URL
hk_pass "serve: $(tail -1 "$HK_WORK/serve.err")"

# --- go tool pprof fetches the profile over HTTP.
if go tool pprof -top "$URL/debug/pprof/heap?pid=$PID&leaks=1" >"$HK_WORK/leaks.top" 2>"$HK_WORK/leaks.err" &&
  grep -Eq '^ +77B +100% +100% +77B +100% +make_lost$' "$HK_WORK/leaks.top"; then
  hk_pass "go tool pprof $URL/debug/pprof/heap?pid=N&leaks=1: $(grep make_lost "$HK_WORK/leaks.top" | sed 's/^ *//')"
else
  hk_fail "go tool pprof with leaks=1: $(cat "$HK_WORK/leaks.top" "$HK_WORK/leaks.err")"
fi
if go tool pprof -top "$URL/debug/pprof/heap?pid=$PID" >"$HK_WORK/live.top" 2>&1 &&
  grep -Eq '^ +1000B .* make_payload$' "$HK_WORK/live.top" && grep -q 'Type: inuse_space' "$HK_WORK/live.top"; then
  hk_pass "go tool pprof without leaks=1: inuse_space, make_payload 1000 bytes"
else
  hk_fail "go tool pprof without leaks=1: $(cat "$HK_WORK/live.top")"
fi
# Clients asking in a loop get the last profile (with its Age) rather than a scan each: at most one
# of four requests in a row makes a new one.
if "$HK_CHECK_PYTHON" - "$URL" "$PID" >"$HK_WORK/repeat.out" 2>&1 <<'PY'; then
import gzip, http.client, sys, urllib.parse
parts = urllib.parse.urlsplit(sys.argv[1])
ages, bodies = [], []
for _ in range(4):
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.request("GET", f"/debug/pprof/heap?pid={sys.argv[2]}")
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        sys.exit(f"status {response.status}: {body[:200]!r}")
    gzip.decompress(body)
    ages.append(response.getheader("Age"))
    bodies.append(body)
reused = [age for age in ages if age is not None]
print("Age headers:", ages)
sys.exit(0 if len(reused) >= 3 and all(age.isdigit() for age in reused) else 1)
PY
  hk_pass "/debug/pprof/heap four times in a row: $(cat "$HK_WORK/repeat.out")"
else
  hk_fail "/debug/pprof/heap four times in a row: $(cat "$HK_WORK/repeat.out")"
fi
# A process that ended has no profile, though one was made for it a moment ago (and a pid the kernel
# hands out again names another process: the cache is keyed by the pid and its start time).
if hk_start_ready second "$program"; then
  second=$HK_READY_PID
  read -r first_status _ < <(fetch "$URL/debug/pprof/heap?pid=$second" "$HK_WORK/second.body")
  kill "$second"
  wait "$second" 2>/dev/null || true
  read -r gone_status _ < <(fetch "$URL/debug/pprof/heap?pid=$second" "$HK_WORK/second_gone.body")
  if [[ $first_status == 200 && $gone_status == 404 ]]; then
    hk_pass "/debug/pprof/heap for a process that has just ended: $gone_status $(cat "$HK_WORK/second_gone.body")"
  else
    hk_fail "/debug/pprof/heap before and after the process ended: $first_status, then $gone_status $(head -c 200 "$HK_WORK/second_gone.body")"
  fi
fi
# Without a pid: the only running tracked process of the user (other tests may run some).
count_running() {
  "$H" list --json | "$HK_CHECK_PYTHON" -c 'import json,sys; print(sum(r.get("running", False) for r in json.load(sys.stdin)))'
}
# Another test's traced process (ctest -j2) may start or end around the request: the answer must
# match the count taken on one side of it (before, or after).
before=$(count_running)
read -r status _ < <(fetch "$URL/debug/pprof/heap" "$HK_WORK/nopid.body")
after=$(count_running)
if ((status == 400)); then running=$((before > after ? before : after)); else running=$((before < after ? before : after)); fi
if { [[ $running == 1 && $status == 200 ]] && gzip -t "$HK_WORK/nopid.body"; } ||
  { ((running > 1)) && [[ $status == 400 ]] && grep -q 'name one with ?pid=N' "$HK_WORK/nopid.body"; }; then
  hk_pass "/debug/pprof/heap without pid, $running running: $status"
else
  hk_fail "/debug/pprof/heap without pid, $running running: $status $(head -c 300 "$HK_WORK/nopid.body")"
fi

# --- /metrics: content negotiation; promtool checks the text format.
read -r status type < <(fetch "$URL/metrics" "$HK_WORK/metrics.txt")
if [[ $status == 200 && $type == "text/plain; version=0.0.4; charset=utf-8" ]] &&
  grep -q "^heapkeeper_live_bytes{pid=\"$PID\",program=\"$(basename "$program")\"} [1-9]" "$HK_WORK/metrics.txt" &&
  ! grep -q '# EOF' "$HK_WORK/metrics.txt"; then
  hk_pass "/metrics without Accept: $type"
else
  hk_fail "/metrics: $status $type: $(head -c 500 "$HK_WORK/metrics.txt")"
fi
if promtool check metrics <"$HK_WORK/metrics.txt" >"$HK_WORK/promtool.out" 2>&1; then
  hk_pass "promtool check metrics accepts /metrics"
else
  hk_fail "promtool check metrics: $(cat "$HK_WORK/promtool.out")"
fi
prometheus_accept="application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
read -r status type < <(fetch "$URL/metrics" "$HK_WORK/metrics.om" "$prometheus_accept")
if [[ $status == 200 && $type == "application/openmetrics-text; version=1.0.0; charset=utf-8" ]] &&
  [[ $(tail -1 "$HK_WORK/metrics.om") == "# EOF" ]] && grep -q '^# TYPE heapkeeper_allocations counter$' "$HK_WORK/metrics.om" &&
  grep -q "^heapkeeper_allocations_total{pid=\"$PID\"," "$HK_WORK/metrics.om"; then
  hk_pass "/metrics with Prometheus's Accept header: $type"
else
  hk_fail "/metrics as OpenMetrics: $status $type: $(head -c 500 "$HK_WORK/metrics.om")"
fi
read -r status type < <(fetch "$URL/metrics" "$HK_WORK/metrics.tp" "text/plain;version=0.0.4;q=1,*/*;q=0.1")
[[ $status == 200 && $type == text/plain* ]] && hk_pass "/metrics asking for text/plain: $type" ||
  hk_fail "/metrics asking for text/plain: $status $type"

# --- /api/processes.
read -r status type < <(fetch "$URL/api/processes" "$HK_WORK/processes.json")
if [[ $status == 200 && $type == application/json ]] && "$HK_CHECK_PYTHON" -c '
import json, sys
rows = [r for r in json.load(open(sys.argv[1])) if r["pid"] == int(sys.argv[2])]
sys.exit(0 if len(rows) == 1 and rows[0]["running"] and rows[0]["live_bytes"] > 0 else 1)' \
  "$HK_WORK/processes.json" "$PID"; then
  hk_pass "/api/processes lists pid $PID as running"
else
  hk_fail "/api/processes: $status $type $(head -c 500 "$HK_WORK/processes.json")"
fi

# --- Bad requests: 4xx, one line.
bad() {
  local target=$1 expected=$2 method=${3:-GET}
  read -r status _ < <(fetch "$URL$target" "$HK_WORK/bad.body" "" "$method")
  if [[ $status == "$expected" && $(wc -l <"$HK_WORK/bad.body") == 1 ]]; then
    hk_pass "$method $target: $status $(cat "$HK_WORK/bad.body")"
  else
    hk_fail "$method $target: $status (expected $expected): $(head -c 300 "$HK_WORK/bad.body")"
  fi
}
bad "/debug/pprof/heap?pid=999999999" 404
bad "/debug/pprof/heap?pid=$PID&leaks=maybe" 400
bad "/debug/pprof/heap?pid=12ab" 400
bad "/debug/pprof/heap?pid=$PID&sort=size" 400
bad "/metrics?format=json" 400
bad "/debug/pprof/profile" 404
bad "/metrics" 405 POST
read -r status _ < <(fetch "$URL/metrics" "$HK_WORK/head.body" "" HEAD)
[[ $status == 200 && ! -s $HK_WORK/head.body ]] && hk_pass "HEAD /metrics: 200, no body" ||
  hk_fail "HEAD /metrics: $status, $(wc -c <"$HK_WORK/head.body") bytes"

# --- A real Prometheus scrapes it.
free_port() { "$HK_CHECK_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
prometheus_port=$(free_port)
cat >"$HK_WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 200ms
  scrape_timeout: 200ms
scrape_configs:
  - job_name: heapkeeper
    static_configs:
      - targets: ['${URL#http://}']
EOF
prometheus --config.file="$HK_WORK/prometheus.yml" --storage.tsdb.path="$HK_WORK/tsdb" \
  --web.listen-address="127.0.0.1:$prometheus_port" >"$HK_WORK/prometheus.log" 2>&1 &
helpers+=("$!")
expected_live=$("$H" stats "$PID" --json | "$HK_CHECK_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["live_bytes"])')
# prometheus_api PATH: Prometheus's JSON answer to GET PATH (the query string already encoded).
prometheus_api() {
  "$HK_CHECK_PYTHON" -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "http://127.0.0.1:$prometheus_port$1" 2>/dev/null
}
query() {
  prometheus_api "/api/v1/query?query=$("$HK_CHECK_PYTHON" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1")" |
    "$HK_CHECK_PYTHON" -c 'import json,sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null
}
live="" leaked=""
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  live=$(query "heapkeeper_live_bytes{pid=\"$PID\",job=\"heapkeeper\"}" || true)
  leaked=$(query "heapkeeper_leaked_bytes{pid=\"$PID\"}" || true)
  [[ -n $live && -n $leaked ]] && break
  sleep 0.2
done
if [[ $live == "$expected_live" && $leaked == 77 ]]; then
  hk_pass "Prometheus's API: heapkeeper_live_bytes{pid=\"$PID\"} $live (stats says $expected_live), heapkeeper_leaked_bytes 77"
else
  hk_fail "Prometheus's API: live '$live' (expected $expected_live), leaked '$leaked' (expected 77); log: $(tail -5 "$HK_WORK/prometheus.log")"
fi

# Prometheus parsed the OpenMetrics answer (it asks for that format first): its metadata names the
# counter family heapkeeper_allocations, as only OpenMetrics declares it (promtool check metrics
# reads the text format only).
metadata=$(prometheus_api "/api/v1/metadata?metric=heapkeeper_allocations" || true)
if "$HK_CHECK_PYTHON" -c '
import json, sys
entries = json.loads(sys.argv[1])["data"].get("heapkeeper_allocations", [])
sys.exit(0 if any(e["type"] == "counter" and e["help"] == "Allocations since start." for e in entries) else 1)' "$metadata" 2>/dev/null; then
  hk_pass "Prometheus read /metrics as OpenMetrics: metadata of the counter family heapkeeper_allocations"
else
  hk_fail "Prometheus's metadata of heapkeeper_allocations: $metadata"
fi

# --- Hostile clients, while the server must keep answering.
serve_fds() { find "/proc/$SERVE_PID/fd" -mindepth 1 2>/dev/null | wc -l; }
serve_rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVE_PID/status"; }
rss_before=$(serve_rss_kib)
if message=$("$HK_CHECK_PYTHON" - "${URL#http://}" <<'PY' 2>&1
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
address = (host, int(port))

def connect():
    s = socket.create_connection(address, timeout=30)
    return s

def answer(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk

def status(data):
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else repr(data[:60])

def metrics_ok(what):
    s = connect()
    started = time.monotonic()
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    data = answer(s)
    assert status(data) == "200", f"{what}: /metrics answered {status(data)}"
    return time.monotonic() - started

# Garbage (a TLS hello): 400 at once, not at the timeout.
s = connect()
started = time.monotonic()
s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(200)))
data = answer(s)
assert status(data) == "400" and time.monotonic() - started < 0.9, f"garbage: {status(data)}"
print("garbage: 400 at once")

# The limit on the head is exact however it arrives: a head of 16 KiB (its blank line included)
# sent in one piece is answered, one byte more is 431 (up to 4 KiB more were taken).
def head_of(size):
    start = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"
for size, expected in ((16384, "200"), (16385, "431"), (16384 + 4000, "431")):
    s = connect()
    s.sendall(head_of(size))
    data = answer(s)
    assert status(data) == expected, f"a head of {size} bytes: {status(data)}, not {expected}"
print("a head of 16384 bytes: 200, of 16385: 431")

# A head that never ends: 431 after 16 KiB, however much more the client sends.
s = connect()
s.sendall(b"GET /metrics HTTP/1.1\r\n")
sent = 0
try:
    while sent < 1 << 20:
        s.sendall(b"X-Filler: " + b"a" * 990 + b"\r\n")
        sent += 1002
except (BrokenPipeError, ConnectionResetError):
    pass
try:
    data = answer(s)
except ConnectionResetError:
    data = b"reset"
assert status(data) in ("431", "'reset'") or data == b"reset", f"endless head: {status(data)}"
print(f"endless head: {status(data)} after {sent} bytes sent")

# A client that stalls mid-request: /metrics is answered meanwhile; the staller gets 408 once the
# timeout (1 s) has passed.
stalled = connect()
stalled.sendall(b"GET /metr")
took = metrics_ok("while a client stalls")
data = answer(stalled)
assert status(data) == "408", f"stalled client: {status(data)}"
print(f"stalled client: /metrics meanwhile in {took:.3f} s, then the staller got 408")

# Hundreds of idle connections: the oldest idle ones are dropped, a real request is answered.
idle = [connect() for _ in range(300)]
metrics_ok("with 300 idle connections")
for s in idle:
    s.close()
print("300 idle connections: /metrics answered")
PY
); then
  hk_pass "hostile clients: $(echo "$message" | paste -sd ';')"
else
  hk_fail "hostile clients: $message"
fi
sleep 0.3
fds=$(serve_fds)
rss_after=$(serve_rss_kib)
if kill -0 "$SERVE_PID" 2>/dev/null && ((fds < 80 && rss_after < rss_before + 32768)); then
  hk_pass "the server lives on: $fds descriptors open, RSS $rss_before -> $rss_after KiB"
else
  hk_fail "after hostile clients: alive $(kill -0 "$SERVE_PID" 2>/dev/null && echo yes || echo no), $fds fds, RSS $rss_before -> $rss_after KiB"
fi
read -r status _ < <(fetch "$URL/metrics" "$HK_WORK/after.txt")
[[ $status == 200 ]] && hk_pass "/metrics after the hostile clients: 200" || hk_fail "/metrics after the hostile clients: $status"

kill -TERM "$SERVE_PID"
status=0
wait "$SERVE_PID" || status=$?
[[ $status == 0 ]] && hk_pass "SIGTERM: serve exits 0" || hk_fail "SIGTERM: serve exited $status"

# --- Addresses.
if start_serve any --listen 0.0.0.0:0 && grep -q "which is not a loopback address" "$HK_WORK/any.err" &&
  [[ $(fetch "${SERVE_URL/0.0.0.0/127.0.0.1}/" "$HK_WORK/any.body") == 200* ]]; then
  hk_pass "--listen 0.0.0.0:0 is served, and said: $(head -1 "$HK_WORK/any.err" | cut -c1-100)..."
else
  hk_fail "--listen 0.0.0.0:0: $(cat "$HK_WORK/any.err")"
fi
kill "$SERVE_PID" 2>/dev/null || true
if start_serve loop --listen :0 && [[ $SERVE_URL == http://127.0.0.1:* ]] && ! grep -q "not a loopback" "$HK_WORK/loop.err" &&
  port=${SERVE_URL##*:} && grep -qi "0100007F:$(printf '%04X' "$port") 00000000:0000 0A" /proc/net/tcp; then
  hk_pass "--listen :0 listens on loopback only ($SERVE_URL)"
  if "$H" serve --listen "127.0.0.1:$port" 2>"$HK_WORK/inuse.err"; then
    hk_fail "a second serve on port $port started"
  elif [[ $(wc -l <"$HK_WORK/inuse.err") == 1 ]] && grep -q "cannot listen on 127.0.0.1:$port: Address already in use" "$HK_WORK/inuse.err"; then
    hk_pass "a port in use: $(cat "$HK_WORK/inuse.err")"
  else
    hk_fail "a port in use: $(cat "$HK_WORK/inuse.err")"
  fi
else
  hk_fail "--listen :0: $SERVE_URL $(cat "$HK_WORK/loop.err")"
fi
kill "$SERVE_PID" 2>/dev/null || true
status=0
"$H" serve --listen myhost.example:6060 2>"$HK_WORK/name.err" || status=$?
if [[ $status == 2 && $(wc -l <"$HK_WORK/name.err") == 1 ]] && grep -q 'not the host name "myhost.example"' "$HK_WORK/name.err"; then
  hk_pass "a host name is refused: $(cat "$HK_WORK/name.err")"
else
  hk_fail "--listen myhost.example:6060: status $status, $(cat "$HK_WORK/name.err")"
fi
stop_helpers
hk_finish

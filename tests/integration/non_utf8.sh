#!/usr/bin/env bash
# Names that are not UTF-8 never abort the program and reach JSON losslessly. A command line, a
# program path and a thread name of arbitrary bytes (Linux allows any but NUL and '/'): the
# program's fate is the same as without heapkeeper (cat of a missing r\xe9sum\xe9.txt exits 1; it
# used to exit 134, an uncaught JSON exception at exit), the exit report and every JSON answer of a
# live process (stats, list, scan, report) are valid JSON for python3, jq and `heapkeeper show`,
# and json_text's escapes (U+EF80..U+EFFF, README.md) give back the exact bytes.
source "$(dirname "$0")/lib.sh"

hk_require cat sleep bash

# The program itself under a name that is not UTF-8, so its path is not either.
cat_copy=$HK_WORK/$'c\xe0t'
cp "$(command -v cat)" "$cat_copy"
# Arguments: Latin-1 bytes, valid UTF-8 (kept as it is), a valid UTF-8 encoding of U+EF81 (which
# must be escaped too, or it would read back as the byte 0x81), a truncated sequence, a lone 0xff.
missing=$'r\xe9sum\xe9.txt'
run_cat() {
  local mode=$1
  hk_exec "$mode" "$cat_copy" "$missing" $'caf\xc3\xa9' $'\xee\xbe\x81' $'cut\xe2\x82' $'\xff'
}
hk_compare non_utf8_argv run_cat -- launcher preload

# hk_decoded FILE EXPRESSION: python3 loads FILE, decodes json_text's escapes with `raw` and
# checks EXPRESSION (r: the document).
hk_decoded() {
  local file=$1 expression=$2 message
  if message=$("$HK_CHECK_PYTHON" - "$file" "$expression" 2>&1 <<'PY'
import json, sys
def raw(text):
    return b"".join(bytes([ord(c) - 0xEF00]) if 0xEF80 <= ord(c) <= 0xEFFF else c.encode() for c in text)
with open(sys.argv[1], "rb") as f:
    data = f.read()
data.decode("utf-8")  # strict: the document is valid UTF-8
r = json.loads(data)
if not eval(sys.argv[2], {"r": r, "raw": raw}):
    sys.exit(f"not true: {sys.argv[2]}")
PY
  ); then
    return 0
  fi
  hk_fail "$file: $message"
  return 1
}

expected_args=$("$HK_CHECK_PYTHON" -c '
import sys
print(repr([b"r\xe9sum\xe9.txt", b"caf\xc3\xa9", b"\xee\xbe\x81", b"cut\xe2\x82", b"\xff"]))')
for mode in launcher preload; do
  for report in "$HK_WORK"/non_utf8_argv.$mode/reports/r.*.json; do
    [[ -e $report ]] || { hk_fail "non_utf8_argv ($mode): no exit report"; continue; }
    if hk_decoded "$report" "[raw(a) for a in r['command_line'][1:]] == $expected_args and raw(r['program']).endswith(b'/c\\xe0t') and 'caf\\u00e9' in r['command_line']"; then
      hk_pass "non_utf8_argv ($mode): the report's command line and program path decode to the exact bytes"
    fi
    if command -v jq >/dev/null 2>&1; then
      if jq -e '.command_line | length == 6' "$report" >/dev/null 2>"$HK_WORK/jq.err"; then
        hk_pass "non_utf8_argv ($mode): jq reads the report"
      else
        hk_fail "non_utf8_argv ($mode): jq cannot read the report: $(cat "$HK_WORK/jq.err")"
      fi
    fi
    status=0
    "$HK_LAUNCHER" show "$report" >"$HK_WORK/show.out" 2>&1 || status=$?
    if [[ $status != 0 ]]; then
      hk_fail "non_utf8_argv ($mode): heapkeeper show exited $status: $(head -3 "$HK_WORK/show.out")"
    elif ! grep -qF 'c\xe0t' "$HK_WORK/show.out"; then
      hk_fail "non_utf8_argv ($mode): heapkeeper show does not name the program as c\\xe0t: $(head -1 "$HK_WORK/show.out")"
    else
      hk_pass "non_utf8_argv ($mode): heapkeeper show prints it: $(head -1 "$HK_WORK/show.out")"
    fi
  done
done

# --- A live process whose program, command line and thread name are not UTF-8.
# (bash, which waits for a sleep it forks, takes any argument; $0 of the script is the last one)
shell_copy=$HK_WORK/$'sh\xe9ll'
cp "$(command -v bash)" "$shell_copy"
# In a session of its own (setsid execs in place: same pid), so that its sleep goes with it.
setsid "$HK_LAUNCHER" run -- "$shell_copy" -c 'sleep 30; exit 0' $'\xe9t\xe9' >/dev/null 2>"$HK_WORK/live.err" &
live=$!
hk_wait_for_segment "$live" || true
check_answer() {
  local description=$1 expression=$2
  shift 2
  local out=$HK_WORK/answer.json status=0
  timeout 60 "$HK_LAUNCHER" "$@" >"$out" 2>"$HK_WORK/answer.err" || status=$?
  if [[ $status != 0 ]]; then
    hk_fail "$description: exited $status: $(head -3 "$HK_WORK/answer.err")"
  elif hk_decoded "$out" "$expression"; then
    if command -v jq >/dev/null 2>&1 && ! jq -e . "$out" >/dev/null 2>&1; then
      hk_fail "$description: jq cannot read it"
    else
      hk_pass "$description: valid JSON, names decode to the exact bytes"
    fi
  fi
}
if ! compgen -G "/dev/shm/heapkeeper.$live.*" >/dev/null; then
  hk_fail "the live process published no segment within 10 s"
else
  check_answer "stats --json" \
    "raw(r['program']).endswith(b'/sh\\xe9ll') and raw(r['command_line']).endswith(b' \\xe9t\\xe9') and any(raw(t['name']) == b'sh\\xe9ll' for t in r['threads'])" \
    stats "$live" --json
  check_answer "list --json" "any(p['pid'] == $live and raw(p['program']).endswith(b'/sh\\xe9ll') for p in r)" list --json
  check_answer "scan --json" "'leaked_blocks' in r" scan "$live" --json
  check_answer "report --json" "[raw(a) for a in r['command_line']][-1:] == [b'\\xe9t\\xe9']" report "$live" --json
  if ! kill -0 "$live" 2>/dev/null; then hk_fail "the live process died during the requests: $(tail -3 "$HK_WORK/live.err")"; fi
fi
kill -TERM -- -"$live" 2>/dev/null || kill "$live" 2>/dev/null || true
wait "$live" 2>/dev/null || true

hk_finish

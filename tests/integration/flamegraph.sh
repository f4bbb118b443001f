#!/usr/bin/env bash
# `heapkeeper flamegraph`: SVG flame graphs of tests/programs/diff_workload.c's exit report, which
# keeps 200 1 KiB blocks from make_cache_entry and leaks 50 100-byte blocks from leak_record.
# Checked as a person would look at them: rendered in headless Chromium, the screenshots kept in
# $HK_LOG_DIR/flamegraph (pixels cannot be asserted robustly, so the checks read the SVG): each
# frame's rect is as wide as its share of the bytes (make_cache_entry 204800 of the live total,
# leak_record all of the leaked 5000), labels fit their frames, titles give bytes and percentage,
# and the file needs nothing from outside (no link, no external script). Without Chromium, or
# where it cannot run, the rendering is skipped with one line; the SVG checks still run.
source "$(dirname "$0")/lib.sh"

program=$(hk_program diff_workload)
HEAPKEEPER_REPORT=$HK_WORK/r.json hk_exec launcher "$program" 200 50 0 >/dev/null 2>"$HK_WORK/run.err" ||
  hk_fail "the workload failed: $(cat "$HK_WORK/run.err")"
for kind in live leaks; do
  flag=()
  [[ $kind == leaks ]] && flag=(--leaks)
  "$HK_LAUNCHER" flamegraph "$HK_WORK/r.json" -o "$HK_WORK/$kind.svg" "${flag[@]}" 2>"$HK_WORK/$kind.err" ||
    hk_fail "flamegraph ${flag[*]}: $(cat "$HK_WORK/$kind.err")"
done

# check SVG FUNCTION BYTES: FUNCTION's frame holds BYTES and its rect's width is BYTES / total of
# the drawing's inner width (to a hundredth of a pixel, as written).
check() {
  local svg=$1 function=$2 bytes=$3
  [[ -s $svg ]] || return 0  # its absence already failed
  if problem=$("$HK_CHECK_PYTHON" - "$svg" "$function" "$bytes" <<'PY' 2>&1
import re, sys, xml.etree.ElementTree as ET
path, function, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(path, encoding="utf-8").read()
ns = {"s": "http://www.w3.org/2000/svg"}
root = ET.fromstring(text)
total, inner = int(root.get("data-total-bytes")), float(root.get("data-inner-width"))
frames = root.findall("s:g[@class='frame']", ns)
assert frames, "no frame drawn"
found = [g for g in frames if g.get("data-name") == function]
assert len(found) == 1, f"{function}: {len(found)} frames named so"
g = found[0]
rect, label, title = g.find("s:rect", ns), g.find("s:text", ns), g.find("s:title", ns).text
assert int(g.get("data-bytes")) == expected, f"{function} holds {g.get('data-bytes')}, expected {expected}"
width = float(rect.get("width"))
assert abs(width - inner * expected / total) <= 0.01, f"{function}: width {width}, expected {inner * expected / total:.2f}"
assert f"{expected} bytes" in title and re.search(r"\d+\.\d\d%\)$", title), f"title {title!r}"
for f in frames:  # labels fit their frames, and are the name or its start
    name, shown, w = f.get("data-name"), f.find("s:text", ns).text or "", float(f.find("s:rect", ns).get("width"))
    assert len(shown) * 7.3 + 6 <= w + 0.01, f"label {shown!r} overflows its {w}-pixel frame"
    assert shown == name or name.startswith(shown[:-2]), f"label {shown!r} of {name!r}"
# Self-contained: the only URL is the SVG namespace; the script is inline.
assert not re.search(r"href|<image|@import|url\(", text), "refers to something outside the file"
assert set(re.findall(r"https?://[^\"' ]+", text)) == {"http://www.w3.org/2000/svg"}, "a URL other than the namespace"
print(f"{function}: {width:.2f} of {inner:.0f} pixels for {expected} of {total} bytes; title {title!r}")
PY
  ); then
    hk_pass "$(basename "$svg"): $problem"
  else
    hk_fail "$(basename "$svg"): $problem"
  fi
}
check "$HK_WORK/live.svg" make_cache_entry 204800
check "$HK_WORK/live.svg" leak_record 5000
check "$HK_WORK/leaks.svg" leak_record 5000

# Rendered as a browser shows it (headless Chromium, no sandbox: CI runs as root). The screenshots
# are kept for people to look at; they must be the size asked for and not blank.
log_dir=${HK_LOG_DIR:-$HK_WORK/logs}/flamegraph
mkdir -p "$log_dir"
chromium=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $chromium ]]; then
  echo "SKIP (rendering only): chromium is not installed (scripts/install-deps.sh installs it)"
else
  for kind in live leaks; do
    [[ -s $HK_WORK/$kind.svg ]] || continue
    cp "$HK_WORK/$kind.svg" "$log_dir/$kind.svg"
    height=$(sed -n 's/.*<svg [^>]*height="\([0-9.]*\)".*/\1/p' "$HK_WORK/$kind.svg" | head -n 1)
    height=${height%.*}
    rm -f "$log_dir/$kind.png"
    HOME=$HK_WORK XDG_CONFIG_HOME=$HK_WORK/config XDG_CACHE_HOME=$HK_WORK/cache \
      timeout -k 5 "$(hk_limit)" "$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
      --no-first-run --user-data-dir="$HK_WORK/chromium" --hide-scrollbars --window-size="1200,$height" \
      --screenshot="$log_dir/$kind.png" "file://$log_dir/$kind.svg" >"$HK_WORK/chromium.log" 2>&1 || true
    if [[ ! -s $log_dir/$kind.png ]]; then
      echo "SKIP (rendering only): chromium could not run here: $(grep -v '^$' "$HK_WORK/chromium.log" | tail -n 1)"
      break
    fi
    if problem=$("$HK_CHECK_PYTHON" - "$log_dir/$kind.png" "$height" <<'PY' 2>&1
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
width, height = struct.unpack(">II", data[16:24])
assert (width, height) == (1200, int(sys.argv[2])), f"{width}x{height}"
pixels, at = b"", 8
while at < len(data):
    length, kind = struct.unpack(">I4s", data[at:at + 8])
    if kind == b"IDAT":
        pixels += data[at + 8:at + 8 + length]
    at += 12 + length
values = len(set(zlib.decompress(pixels)))
assert values > 16, f"only {values} distinct byte values: blank?"
print(f"{width}x{height}, {values} distinct byte values")
PY
    ); then
      hk_pass "Chromium rendered $kind.svg: $log_dir/$kind.png ($problem)"
    else
      hk_fail "Chromium's screenshot of $kind.svg: $problem"
    fi
  done
fi
hk_finish

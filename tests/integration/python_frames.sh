#!/usr/bin/env bash
# Python frames in heapkeeper's stacks (allocator/python_frames.h), on Debian's CPython 3.11:
# python_shapes.py allocates at lines it marks (nested calls, a generator, a method, a thread, an
# exception unwound through frames, a reference cycle a global keeps, small objects, a C
# extension's leak), and the exit report must name each site's Python frames — function, file and
# line, exactly — where the interpreter's eval loop stands in the native stack; the leak report must
# name the Python line that called the extension; the largest sites by line must be the lines
# tracemalloc ranks first; `--python-objects` must make small objects blocks of their own.
# HEAPKEEPER_PYTHON=0 turns it off, a bad value is one warning, and a CPython other than 3.11 gets
# one line saying its stacks are native only. A handler on an 8 KiB alternate signal stack that
# allocates under Python frames runs as it does without heapkeeper.
source "$(dirname "$0")/lib.sh"

python=/usr/bin/python3.11
hk_require "$python"
if [[ -z ${HK_PYLEAK-} ]]; then
  echo "SKIP: built without CPython 3.11's headers (libpython3.11-dev)" >&2
  exit 77
fi
script=$(dirname "$(readlink -f "$0")")/python_shapes.py
export PYTHONPATH=${HK_PYLEAK%/*} PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
unset PYTHONMALLOC

run_shapes() { local mode=$1; shift; hk_exec "$mode" "$python" "$@" "$script"; }
run_shapes_objects() {
  local mode=$1 limit
  limit=$(hk_limit)
  timeout -k 5 "$limit" "$HK_LAUNCHER" run --python-objects -- "$python" "$script"
}

hk_capture tracemalloc plain run_shapes -X tracemalloc=1
hk_capture shapes launcher run_shapes
hk_capture objects launcher run_shapes_objects
for run in shapes.launcher objects.launcher; do
  [[ $(cat "$HK_WORK/$run/status") == 0 ]] || hk_fail "$run: exit status $(cat "$HK_WORK/$run/status")"
done
hk_check_reports shapes launcher || true
hk_check_reports objects launcher || true

if message=$("$HK_CHECK_PYTHON" - "$script" "$HK_WORK" <<'PY' 2>&1
import glob, json, re, sys
script, work = sys.argv[1], sys.argv[2]

# The marks: "# SITE name" where a site allocates, "# CALL name function" on the way to it.
sites, calls = {}, {}
for number, text in enumerate(open(script), 1):
    if m := re.search(r"# SITE (\S+)$", text):
        sites[m.group(1)] = number
    if m := re.search(r"# CALL (\S+) (\S+)$", text):
        calls[(m.group(1), m.group(2))] = number
module_line = calls[("nested", "<module>")]
def chain(name, functions):
    """Expected Python frames, innermost first: the site, then each caller's call line."""
    expected = [(functions[0], sites[name])]
    for function in functions[1:]:
        expected.append((function, module_line if function == "<module>" else calls[(name, function)]))
    return expected
expected = {
    "nested": chain("nested", ["inner", "middle", "outer", "main", "<module>"]),
    "generator": chain("generator", ["numbers", "main", "<module>"]),
    "method": chain("method", ["Holder.grow", "main", "<module>"]),
    "raise": chain("raise", ["thrower", "catcher", "main", "<module>"]),
    "after_raise": [("catcher", sites["after_raise"]), ("main", calls[("raise", "main")]), ("<module>", module_line)],
    "cycle": chain("cycle", ["make_cycle", "main", "<module>"]),
    "thread": [("worker", sites["thread"])],  # then threading.py's run and _bootstrap frames
}

problems = []
def report(run):
    paths = glob.glob(f"{work}/{run}/reports/r.*.json")
    return json.load(open(paths[0])) if len(paths) == 1 else {}
def python_frames(stack):
    return [f for f in stack if f.get("language") == "python"]
def described(stack):
    return " < ".join(f"{f.get('file', '?').rsplit('/', 1)[-1]}:{f.get('line')} in {f.get('function')}"
                      + (" [py]" if f.get("language") == "python" else "") for f in stack)

shapes = report("shapes.launcher")
live = shapes.get("live_sites", [])
for name, frames in expected.items():
    found = [s for s in live if [(f["function"], f.get("line")) for f in python_frames(s["stack"])][:len(frames)] == frames]
    if not found:
        problems.append(f"no live site with Python frames {frames}; sites: " +
                        "; ".join(described(s["stack"]) for s in live[:10]))
        continue
    stack = found[0]["stack"]
    first = python_frames(stack)[0]
    if first.get("file") != script:
        problems.append(f"{name}: file {first.get('file')!r}, expected {script!r}")
    # Merged where the interpreter stands: the innermost frame is native (the allocator), and no
    # eval-loop frame remains between the Python frames.
    if stack[0].get("language") == "python":
        problems.append(f"{name}: no native frame before the Python ones: {described(stack)}")
    if any(f.get("function") == "_PyEval_EvalFrameDefault" for f in stack):
        problems.append(f"{name}: an eval-loop frame was left in: {described(stack)}")
thread = [s for s in live if python_frames(s["stack"])[:1] and python_frames(s["stack"])[0]["function"] == "worker"]
if thread and [f["function"] for f in python_frames(thread[0]["stack"])][1:2] != ["Thread.run"]:
    problems.append(f"thread: expected Thread.run to call worker: {described(thread[0]['stack'])}")

# The extension's leak: found by its size, named by the Python line that called it.
leaks = [l for l in shapes.get("leaks", []) if l.get("bytes") == (1 << 20) + 1]
if len(leaks) != 1:
    problems.append(f"expected one leak of 1 MiB + 1 byte, got {len(leaks)}")
else:
    stack = leaks[0]["stack"]
    got = [(f["function"], f.get("line")) for f in python_frames(stack)][:3]
    if got != chain("extension", ["call_extension", "main", "<module>"]):
        problems.append(f"extension leak: Python frames {got}: {described(stack)}")
    if stack[0].get("function") != "leak" or "hk_pyleak" not in stack[0].get("module", ""):
        problems.append(f"extension leak: first frame not hk_pyleak's leak: {described(stack)}")
text = open(f"{work}/shapes.launcher/err").read()
wanted = f"{script}:{sites['extension']} in call_extension [py]"
if wanted not in text:
    problems.append(f"the leak text does not name {wanted!r}:\n{text[-3000:]}")
# The cycle a global keeps is reachable, never a leak.
for l in shapes.get("leaks", []):
    if any(f.get("function") == "make_cycle" for f in python_frames(l["stack"])):
        problems.append(f"the global's cycle was reported leaked: {described(l['stack'])}")

# The largest sites, summed by their innermost Python line, are tracemalloc's top lines.
by_line = {}
for s in live:
    frames = python_frames(s["stack"])
    if frames:
        key = f"{frames[0].get('file')}:{frames[0].get('line')}"
        by_line[key] = by_line.get(key, 0) + s["bytes"]
ours = [line for line, _ in sorted(by_line.items(), key=lambda item: -item[1])][:6]
theirs = open(f"{work}/tracemalloc.plain/out").read().split()
if ours != theirs:
    problems.append(f"top lines differ: heapkeeper {ours}, tracemalloc {theirs}")

# Small objects: blocks of their own only with --python-objects.
def objects_blocks(r):
    return sum(s["blocks"] for s in r.get("live_sites", [])
               if python_frames(s["stack"])[:1] and python_frames(s["stack"])[0].get("line") == sites["objects"])
if objects_blocks(report("objects.launcher")) < 20000:
    problems.append(f"--python-objects: {objects_blocks(report('objects.launcher'))} blocks at the tuples' line, "
                    "expected 20000 or more")
if objects_blocks(shapes) >= 20000:
    problems.append("without --python-objects the tuples were blocks of their own (pymalloc was not in use)")
if problems:
    sys.exit("\n".join(problems))
PY
); then
  hk_pass "Python frames name every site's function, file and line"
else
  hk_fail "$message"
fi

# The live view (the segment's table of Python code names): `heapkeeper stats` names the top site by
# its Python line.
live_code=$'import time\ndef grow():\n    return [bytearray(100000) for _ in range(50)]\nKEEP = grow()\nprint("ready", flush=True)\ntime.sleep(60)'
if hk_start_ready live "$python" -c "$live_code"; then
  stats=$(timeout -k 5 "$(hk_limit)" "$HK_LAUNCHER" stats "$HK_READY_PID" 2>&1 || true)
  kill "$HK_READY_PID" 2>/dev/null || true
  hk_wait "$HK_READY_PID" || true
  if grep -q '4.8 MiB in *50 blocks  <string>:3 in grow.<locals>.<listcomp> \[py\]' <<<"$stats"; then
    hk_pass "heapkeeper stats names a Python site by its line"
  else
    hk_fail "heapkeeper stats: expected the list comprehension's line as the top site: $stats"
  fi
fi

# Code that dies and whose addresses new code takes: functions made by exec from one source in a
# loop, each compiled under its own file name and dropped before the next. CPython hands the next
# code object, its name and its line table the addresses the last ones had; each block must still
# be named by the file its own code came from (gen00.py ... gen07.py, told apart by their sizes).
reuse_code=$'import ctypes, gc\ngc.disable()\nKEEP = [None] * 8\nnames = ["gen%02d.py" % i for i in range(8)]
for i in range(8):\n    ns = {}\n    exec(compile("def f(n):\\n    return bytearray(n)\\n", names[i], "exec"), ns)
    KEEP[i] = ns["f"]((1 << 20) + i)\n    ns.clear()\n    del ns\nctypes.CDLL(None).exit(0)'
reuse_run() { local mode=$1; shift; hk_exec "$mode" "$python" -c "$reuse_code"; }
hk_capture reuse launcher reuse_run
hk_json_check "$(ls "$HK_WORK"/reuse.launcher/reports/r.*.json)" \
  '(sorted((s["bytes"] // s["blocks"] - (1 << 20) - 1, [f for f in s["stack"] if f.get("language") == "python"][0]["file"])
          for s in r["live_sites"] if s["bytes"] // s["blocks"] > (1 << 20))
   == [(i, "gen%02d.py" % i) for i in range(8)])' \
  "code whose address other code took keeps its own file" && hk_pass "reused code addresses keep their own names"

# A library loaded with RTLD_GLOBAL (ctypes' mode for libraries other libraries link against):
# the dynamic linker mallocs the new global scope list and keeps it in the main program's
# link_map, which its start-up allocator put in the tail of its own data segment's last page,
# past the segment's end. Reachable, never a leak.
global_run() { local mode=$1; shift; hk_exec "$mode" "$python" -c 'import ctypes; ctypes.CDLL("libz.so.1", mode=ctypes.RTLD_GLOBAL)'; }
hk_capture global launcher global_run
hk_json_check "$(ls "$HK_WORK"/global.launcher/reports/r.*.json)" 'r["leaked_blocks"] == 0' \
  "dlopen(RTLD_GLOBAL): the linker's scope list is not leaked" && hk_pass "dlopen(RTLD_GLOBAL) leaks nothing"

# --python-objects and a PYTHONMALLOC of the user's: malloc_debug (every object through malloc
# already) stands; pymalloc is replaced, with one line saying so.
allocator_of() {
  PYTHONMALLOC=$1 "$HK_LAUNCHER" run --python-objects -- "$python" -c 'import os; print(os.environ["PYTHONMALLOC"])' \
    2>"$HK_WORK/pythonmalloc.$1.err"
}
if [[ $(allocator_of malloc_debug) == malloc_debug && ! -s $HK_WORK/pythonmalloc.malloc_debug.err &&
  $(allocator_of pymalloc) == malloc &&
  $(cat "$HK_WORK/pythonmalloc.pymalloc.err") == "heapkeeper: --python-objects: PYTHONMALLOC=pymalloc replaced by malloc" ]]; then
  hk_pass "--python-objects keeps PYTHONMALLOC=malloc_debug and says when it replaces pymalloc"
else
  hk_fail "--python-objects and PYTHONMALLOC: $(cat "$HK_WORK"/pythonmalloc.*.err)"
fi

# A signal handler on an 8 KiB alternate stack (crash handlers' size) that allocates under Python
# frames: the capture records its native caller alone there, as in a native program
# (programs.sh other_stacks); walking and merging the Python frames too took 12 KiB below the
# allocation and ran into the guard page: SIGSEGV every time.
altstack_run() {
  local mode=$1
  hk_exec "$mode" "$python" -c $'import hk_pyleak\ndef handle():\n    return hk_pyleak.log_on_small_altstack()\nprint(handle())'
}
hk_compare altstack altstack_run -- launcher

# Off, a bad setting, another CPython.
off_run() { local mode=$1; shift; hk_exec "$mode" "$python" -c 'import sys; x = bytearray(1 << 20); print("ok")'; }
HEAPKEEPER_PYTHON=0 hk_capture off launcher off_run
HEAPKEEPER_PYTHON=maybe hk_capture bad launcher off_run
hk_json_check "$(ls "$HK_WORK"/off.launcher/reports/r.*.json)" \
  'not any(f.get("language") == "python" for s in r["live_sites"] for f in s["stack"])' \
  "HEAPKEEPER_PYTHON=0: no Python frames" || true
hk_json_check "$(ls "$HK_WORK"/bad.launcher/reports/r.*.json)" \
  'any(f.get("language") == "python" for s in r["live_sites"] for f in s["stack"])' \
  "HEAPKEEPER_PYTHON=maybe: the default (on)" || true
if [[ $(grep -c 'heapkeeper\[' "$HK_WORK/bad.launcher/err") != 1 ]] ||
  ! grep -q 'HEAPKEEPER_PYTHON' "$HK_WORK/bad.launcher/err"; then
  hk_fail "HEAPKEEPER_PYTHON=maybe: expected one warning line: $(cat "$HK_WORK/bad.launcher/err")"
fi
hk_no_diagnostics off launcher || true
other_run() { local mode=$1; shift; hk_exec "$mode" "$HK_PROG_OTHER_PYTHON"; }
hk_capture other launcher other_run
if [[ $(grep -c 'heapkeeper\[' "$HK_WORK/other.launcher/err") != 1 ]] ||
  ! grep -q 'CPython 3.12 in this process: stacks show its native frames only' "$HK_WORK/other.launcher/err"; then
  hk_fail "another CPython: expected one line saying so: $(cat "$HK_WORK/other.launcher/err")"
else
  hk_pass "another CPython gets one line"
fi
hk_finish

#!/usr/bin/env python3
"""Runs the leak corpus: each program under heapkeeper and, when asked, under other leak checkers,
and compares every tool's leak figures with the program's stated expectation.

Only heapkeeper must match: the expectation is the truth, and the other tools are run to show
where they see things differently. The table prints each tool's figures per program; after it,
one line counts each tool's exact matches ("exact: heapkeeper 30/30, valgrind 26/30, ...").

Tools (--tools, comma-separated; heapkeeper always runs; default heapkeeper,valgrind,lsan, each
when available), and what their figures are:
  heapkeeper  the JSON report's leaks[]: direct blocks / indirect blocks / bytes.
  valgrind    memcheck --leak-check=full: "definitely lost" / "indirectly lost" blocks / their bytes
              ("possibly lost" — blocks reached only through interior pointers — not counted).
  lsan        the -fsanitize=leak build (--lsan-programs): "Direct leak" / "Indirect leak" objects
              / their bytes. It does not scan mmap'd memory and reports cycles as indirect only.
  heaptrack   heaptrack 1.x: every block not freed at exit counts as leaked, reachable or not (it
              records allocations, it does not scan memory), and it does not classify: blocks are
              its "leaked allocations" stat, bytes heaptrack_print's leaked cost (after its
              built-in suppressions). The programs' suppressions are not passed on: heaptrack
              1.4.0's --suppressions reads every pattern as empty and hides every leak.
  gperftools  libtcmalloc.so.4 preloaded with HEAPCHECK=normal (gperftools' heap checker, a
              conservative scan at exit): "detected leaks of N bytes in M objects", no
              classification. It has no suppression file (only in-program annotations), so the
              programs' suppressions cannot be applied.
A tool's result *matches* a program (an exact match) when its leaked blocks — direct plus indirect
for the tools that classify — and its leaked bytes equal the expectation. Tools that classify are
also counted for the split ("classified": direct and indirect each as expected). A program a tool
did not run (skipped, crashed, timed out, unparsable output) counts as no match. Programs that
run heapkeeper's collect mode only make sense under heapkeeper: the other tools skip them, and
they are left out of the other tools' counts ("valgrind N/29" beside "heapkeeper 30/30").
In the table, '*' marks figures that do not match, '~' a match whose direct/indirect split differs.
--json FILE writes the per-tool counts and every figure for scripts/bench.sh.

Expectations live in each program's opening comment, one `corpus:` directive per line:
  expect direct=D indirect=I [cycle=C] bytes=B
                                         exact figures (each may be a range LOW..HIGH); cycle:
                                         blocks no direct leak reaches (heapkeeper's kind; other
                                         tools may count them as direct or indirect)
  env NAME=VALUE                         set for the heapkeeper run (and the other tools' runs)
  suppress PATTERN                       leak:PATTERN for heapkeeper and LeakSanitizer, fun:PATTERN for valgrind
  expect-suppressed blocks=N bytes=M     the JSON report's suppressed_leaks
  expect-status N                        the heapkeeper run's exit status (default 0)
  direct-leak-in FUNCTION                a direct leak whose allocation stack names FUNCTION
  cycle-leak-in FUNCTION                 a cycle leak (heapkeeper's kind) whose stack names FUNCTION
  json PATH OP VALUE                     a figure of the JSON report (PATH: a.b.0.c or len(a.b))
  stderr-before REGEX ||| REGEX          the first line matches before the second does
  stderr-absent REGEX                    no line of stderr matches
  stdout-lines N / stdout-last TEXT / stdout-contains TEXT
  valgrind skip / valgrind-args ARGS...  skip valgrind, or run it with a lighter workload
  lsan skip / heaptrack skip / gperftools skip   skip that tool
Besides, every heapkeeper run must write its JSON report with a successful exit scan, print no
diagnostic other than periodic-scan lines, and print a stderr SUMMARY agreeing with the JSON.

Python 3 standard library only. Exit status: 0 when heapkeeper matched everywhere, 1 otherwise.
"""

import argparse
import concurrent.futures
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

DIRECTIVE = re.compile(r"^\s*(?://+|/?\*+)?\s*corpus:\s*(\S+)\s*(.*?)\s*$")
HEAPKEEPER_TIMEOUT = 60
TOOL_TIMEOUT = 120
# Every tool --tools knows, in the order of the table; heapkeeper always runs.
ALL_TOOLS = ("heapkeeper", "valgrind", "lsan", "heaptrack", "gperftools")
DEFAULT_TOOLS = "heapkeeper,valgrind,lsan"
# Tools whose reports split leaks into direct and indirect ones.
CLASSIFYING_TOOLS = ("heapkeeper", "valgrind", "lsan")


class Figure:
    """An expected count: exact, or a closed range."""

    def __init__(self, text):
        low, _, high = text.partition("..")
        self.low = int(low)
        self.high = int(high) if high else self.low

    def matches(self, value):
        return value is not None and self.low <= value <= self.high

    def __str__(self):
        return str(self.low) if self.low == self.high else f"{self.low}..{self.high}"

    def __add__(self, other):
        total = Figure("0")
        total.low, total.high = self.low + other.low, self.high + other.high
        return total


class Leaks:
    """One tool's leak figures for one program. Tools that do not classify leave direct and
    indirect as None and give only the total of blocks."""

    def __init__(self, blocks, leaked_bytes, direct=None, indirect=None, cycle=None):
        self.blocks = blocks
        self.bytes = leaked_bytes
        self.direct = direct
        self.indirect = indirect
        self.cycle = cycle  # heapkeeper only: blocks no direct leak reaches (unreferenced cycles)

    @classmethod
    def classified(cls, direct, indirect, leaked_bytes, cycle=None):
        return cls(direct + indirect + (cycle or 0), leaked_bytes, direct, indirect, cycle)

    def text(self):
        if self.direct is None:
            return f"{self.blocks}/{self.bytes}"
        if self.cycle:
            return f"{self.direct}/{self.indirect}+{self.cycle}c/{self.bytes}"
        return f"{self.direct}/{self.indirect}/{self.bytes}"

    def as_json(self):
        return {"blocks": self.blocks, "bytes": self.bytes, "direct": self.direct, "indirect": self.indirect,
                "cycle": self.cycle}


class Program:
    def __init__(self, source):
        self.source = source
        self.name = os.path.splitext(os.path.basename(source))[0]
        self.expect = None
        self.env = {}
        self.suppressions = []
        self.expect_suppressed = None
        self.expect_status = 0
        self.direct_in = []
        self.cycle_in = []
        self.json_checks = []
        self.stderr_before = []
        self.stderr_absent = []
        self.stdout_lines = None
        self.stdout_last = None
        self.stdout_contains = []
        self.valgrind_skip = False
        self.valgrind_args = []
        self.lsan_skip = False
        self.heaptrack_skip = False
        self.gperftools_skip = False
        with open(source, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                m = DIRECTIVE.match(line)
                if m:
                    self._directive(m.group(1), m.group(2), f"{source}:{number}")

    def _directive(self, keyword, rest, where):
        if keyword == "expect":
            fields = dict(item.split("=", 1) for item in rest.split())
            self.expect = {k: Figure(fields[k]) for k in ("direct", "indirect", "bytes")}
            self.expect["cycle"] = Figure(fields.get("cycle", "0"))
        elif keyword == "env":
            name, _, value = rest.partition("=")
            self.env[name] = value
        elif keyword == "suppress":
            self.suppressions.append(rest)
        elif keyword == "expect-suppressed":
            fields = dict(item.split("=", 1) for item in rest.split())
            self.expect_suppressed = (int(fields["blocks"]), int(fields["bytes"]))
        elif keyword == "expect-status":
            self.expect_status = int(rest)
        elif keyword == "direct-leak-in":
            self.direct_in.append(rest)
        elif keyword == "cycle-leak-in":
            self.cycle_in.append(rest)
        elif keyword == "json":
            path, op, value = rest.rsplit(None, 2)
            self.json_checks.append((path, op, float(value)))
        elif keyword == "stderr-before":
            first, _, second = rest.partition("|||")
            self.stderr_before.append((re.compile(first.strip()), re.compile(second.strip())))
        elif keyword == "stderr-absent":
            self.stderr_absent.append(re.compile(rest))
        elif keyword == "stdout-lines":
            self.stdout_lines = int(rest)
        elif keyword == "stdout-last":
            self.stdout_last = rest
        elif keyword == "stdout-contains":
            self.stdout_contains.append(rest)
        elif keyword == "valgrind":
            self.valgrind_skip = rest == "skip"
        elif keyword == "valgrind-args":
            self.valgrind_args = shlex.split(rest)
        elif keyword == "lsan":
            self.lsan_skip = rest == "skip"
        elif keyword == "heaptrack":
            self.heaptrack_skip = rest == "skip"
        elif keyword == "gperftools":
            self.gperftools_skip = rest == "skip"
        else:
            raise ValueError(f"{where}: unknown corpus directive '{keyword}'")

    def expected_text(self):
        e = self.expect
        if e["cycle"].high:
            return f"{e['direct']}/{e['indirect']}+{e['cycle']}c/{e['bytes']}"
        return f"{e['direct']}/{e['indirect']}/{e['bytes']}"

    @property
    def heapkeeper_only(self):
        """Programs of heapkeeper's collect mode: the collector frees leaked blocks, so no other
        tool's figures can be compared with the expectation."""
        return self.env.get("HEAPKEEPER_MODE") == "collect"

    def skips(self, tool):
        """Whether `tool` (not heapkeeper) is not run on this program."""
        if self.heapkeeper_only:
            return True
        return {"valgrind": self.valgrind_skip, "lsan": self.lsan_skip, "heaptrack": self.heaptrack_skip,
                "gperftools": self.gperftools_skip}[tool]

    def exact(self, leaks):
        """An exact match: leaked blocks (direct + indirect + cycle) and leaked bytes as expected."""
        e = self.expect
        return (leaks is not None and (e["direct"] + e["indirect"] + e["cycle"]).matches(leaks.blocks)
                and e["bytes"].matches(leaks.bytes))

    def classified(self, leaks):
        """An exact match with direct and indirect blocks each as expected (tools that classify)."""
        e = self.expect
        if not self.exact(leaks) or leaks.direct is None:
            return False
        if leaks.cycle is not None:  # heapkeeper: cycle leaks are a kind of their own
            return (e["direct"].matches(leaks.direct) and e["indirect"].matches(leaks.indirect)
                    and e["cycle"].matches(leaks.cycle))
        # Tools without the kind count a cycle's blocks as direct (valgrind's clique leader) or
        # indirect (LeakSanitizer), as they like.
        return (e["direct"].low <= leaks.direct <= e["direct"].high + e["cycle"].high
                and e["indirect"].low <= leaks.indirect <= e["indirect"].high + e["cycle"].high)


def clean_environment():
    """The runner's environment without anything that would change how a tool behaves."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("HEAPKEEPER_") or key in ("LD_PRELOAD", "LSAN_OPTIONS", "ASAN_OPTIONS", "VALGRIND_OPTS"):
            del env[key]
    return env


def json_value(doc, path):
    length = path.startswith("len(") and path.endswith(")")
    if length:
        path = path[4:-1]
    value = doc
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return len(value) if length else value


def compare(value, op, expected):
    return {
        "==": value == expected,
        "!=": value != expected,
        ">": value > expected,
        ">=": value >= expected,
        "<": value < expected,
        "<=": value <= expected,
    }[op]


def allocated_in(leak, function):
    """Whether a frame of the leak's stack is `function` (a C++ name may carry its parameters)."""
    for frame in leak.get("stack", []):
        name = frame.get("function") or ""
        if name == function or name.startswith(function + "("):
            return True
    return False


def run_heapkeeper(program, binary, preload, work):
    """Returns (figures, problems): the direct/indirect/bytes of the JSON report, and what failed."""
    report = os.path.join(work, "heapkeeper.json")
    env = clean_environment()
    env.update(program.env)
    env["LD_PRELOAD"] = preload
    env["HEAPKEEPER_REPORT"] = report
    if program.suppressions:
        path = os.path.join(work, "heapkeeper.supp")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"leak:{pattern}\n" for pattern in program.suppressions)
        env["HEAPKEEPER_SUPPRESSIONS"] = path
    try:
        run = subprocess.run([binary], env=env, capture_output=True, text=True, errors="replace", timeout=HEAPKEEPER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, [f"timed out after {HEAPKEEPER_TIMEOUT} s"]
    problems = []
    stdout, stderr = run.stdout, run.stderr
    if run.returncode < 0:
        problems.append(f"killed by signal {-run.returncode} ({signal.Signals(-run.returncode).name}), expected exit status {program.expect_status}")
    elif run.returncode != program.expect_status:
        problems.append(f"exit status {run.returncode}, expected {program.expect_status}")

    doc = None
    try:
        with open(report, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as error:
        problems.append(f"no JSON report: {error}")
    figures = None
    if doc is not None:
        if "leaks" not in doc or not doc.get("scan", {}).get("ok"):
            problems.append(f"the JSON report has no successful exit scan: scan={doc.get('scan')}")
        else:
            leaks = doc["leaks"]
            direct = sum(l["blocks"] for l in leaks if l["kind"] == "direct")
            indirect = sum(l["blocks"] for l in leaks if l["kind"] == "indirect")
            leaked = sum(l["bytes"] for l in leaks)
            cycle = sum(l["blocks"] for l in leaks if l["kind"] == "cycle")
            figures = Leaks.classified(direct, indirect, leaked, cycle)
            if not program.classified(figures):
                problems.append(f"leaks {figures.text()}, expected {program.expected_text()}")
            if (doc.get("leaked_blocks"), doc.get("leaked_bytes")) != (figures.blocks, leaked):
                problems.append(
                    f"leaked_blocks/leaked_bytes {doc.get('leaked_blocks')}/{doc.get('leaked_bytes')} disagree with "
                    f"the sum of leaks[] {figures.blocks}/{leaked}")
            summary = re.search(r"SUMMARY: heapkeeper: (\d+) byte\(s\) leaked in (\d+) allocation\(s\)\.", stderr)
            if figures.blocks > 0 and (summary is None or (int(summary.group(1)), int(summary.group(2))) != (leaked, figures.blocks)):
                problems.append(f"stderr SUMMARY {summary.group(0) if summary else '(none)'} disagrees with the JSON")
            if figures.blocks == 0 and "detected memory leaks" in stderr:
                problems.append("stderr reports leaks the JSON does not have")
            for function in program.direct_in:
                if not any(l["kind"] == "direct" and allocated_in(l, function) for l in leaks):
                    problems.append(f"no direct leak allocated in {function}()")
            for function in program.cycle_in:
                if not any(l["kind"] == "cycle" and allocated_in(l, function) for l in leaks):
                    problems.append(f"no cycle leak allocated in {function}()")
            if program.expect_suppressed is not None:
                got = doc.get("suppressed_leaks", {})
                got = (got.get("blocks"), got.get("bytes"))
                if got != program.expect_suppressed:
                    problems.append(f"suppressed_leaks {got[0]}/{got[1]}, expected {program.expect_suppressed[0]}/{program.expect_suppressed[1]}")
        for path, op, value in program.json_checks:
            try:
                got = json_value(doc, path)
            except (KeyError, IndexError, ValueError, TypeError):
                problems.append(f"JSON has no {path}")
                continue
            if not compare(got, op, value):
                problems.append(f"JSON {path} = {got}, expected {op} {value:g}")

    lines = stderr.splitlines()
    for line in lines:
        if re.search(r"heapkeeper\[\d+\]: ", line) and not re.search(r"heapkeeper\[\d+\]: scan \d+: ", line):
            problems.append(f"unexpected diagnostic: {line.strip()}")
    for first, second in program.stderr_before:
        i = next((n for n, line in enumerate(lines) if first.search(line)), None)
        j = next((n for n, line in enumerate(lines) if second.search(line)), None)
        if i is None or j is None or i > j:
            problems.append(f"stderr: no line matching '{first.pattern}' before one matching '{second.pattern}'")
    for pattern in program.stderr_absent:
        hit = next((line for line in lines if pattern.search(line)), None)
        if hit is not None:
            problems.append(f"stderr has '{hit.strip()}' (must not match '{pattern.pattern}')")
    out_lines = stdout.splitlines()
    if program.stdout_lines is not None and len(out_lines) != program.stdout_lines:
        problems.append(f"stdout has {len(out_lines)} lines, expected {program.stdout_lines}")
    if program.stdout_last is not None and (not out_lines or out_lines[-1] != program.stdout_last):
        problems.append(f"stdout's last line is {out_lines[-1] if out_lines else '(none)'!r}, expected {program.stdout_last!r}")
    for text in program.stdout_contains:
        if text not in stdout:
            problems.append(f"stdout lacks {text!r}")
    if problems:
        tail = "\n".join(("stdout: " + l) for l in out_lines[-5:]) + "\n" + "\n".join(("stderr: " + l) for l in lines[-25:])
        problems.append("output tail:\n" + tail)
    return figures, problems


def run_valgrind(program, valgrind, binary, work):
    """Returns (Leaks of definitely and indirectly lost blocks, note)."""
    log = os.path.join(work, "valgrind.log")
    command = [valgrind, "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite,indirect",
               "--errors-for-leak-kinds=definite,indirect", f"--log-file={log}"]
    if program.suppressions:
        path = os.path.join(work, "valgrind.supp")
        with open(path, "w", encoding="utf-8") as f:
            for n, pattern in enumerate(program.suppressions):
                f.write(f"{{\n   corpus_{n}\n   Memcheck:Leak\n   match-leak-kinds: all\n   ...\n   fun:{pattern}\n   ...\n}}\n")
        command.append(f"--suppressions={path}")
    env = clean_environment()
    env.update(program.env)
    try:
        subprocess.run(command + [binary] + program.valgrind_args, env=env, capture_output=True, timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None, "no log"
    if "All heap blocks were freed" in text:
        return Leaks.classified(0, 0, 0), ""
    definite = re.search(r"definitely lost: ([\d,]+) bytes in ([\d,]+) blocks", text)
    indirect = re.search(r"indirectly lost: ([\d,]+) bytes in ([\d,]+) blocks", text)
    if definite is None or indirect is None:
        return None, "unparsed"
    number = lambda s: int(s.replace(",", ""))
    return Leaks.classified(number(definite.group(2)), number(indirect.group(2)),
                            number(definite.group(1)) + number(indirect.group(1))), ""


def run_lsan(program, binary, work):
    """Returns (Leaks of direct and indirect leaks, note)."""
    env = clean_environment()
    env.update(program.env)
    options = ["detect_leaks=1"]
    if program.suppressions:
        path = os.path.join(work, "lsan.supp")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"leak:{pattern}\n" for pattern in program.suppressions)
        options.append(f"suppressions={path}")
    env["LSAN_OPTIONS"] = ":".join(options)
    try:
        run = subprocess.run([binary], env=env, capture_output=True, text=True, errors="replace", timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    if "LeakSanitizer has encountered a fatal error" in run.stderr or "LeakSanitizer does not work" in run.stderr:
        return None, "lsan error"
    direct = indirect = leaked = 0
    for kind, size, count in re.findall(r"(Direct|Indirect) leak of (\d+) byte\(s\) in (\d+) object\(s\)", run.stderr):
        leaked += int(size)
        if kind == "Direct":
            direct += int(count)
        else:
            indirect += int(count)
    return Leaks.classified(direct, indirect, leaked), ""


def run_heaptrack(program, heaptrack, heaptrack_print, binary, work):
    """Returns (Leaks: blocks not freed at exit and their bytes, unclassified; note)."""
    output = os.path.join(work, "heaptrack")
    env = clean_environment()
    env.update(program.env)
    try:
        run = subprocess.run([heaptrack, "-o", output, binary], env=env, capture_output=True, text=True,
                             errors="replace", timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    # The recorder's statistics come last on stderr, after anything the program printed.
    counts = re.findall(r"leaked allocations:\s*(\d+)", run.stderr)
    traces = [os.path.join(work, f) for f in os.listdir(work) if f.startswith("heaptrack.") and not f.endswith(".txt")]
    if not counts or not traces:
        return None, "no trace"
    # A flame graph of the leaked cost has one line per stack ending in its leaked bytes: exact,
    # unlike the human-formatted "total memory leaked".
    stacks = os.path.join(work, "heaptrack.leaked.txt")
    try:
        subprocess.run([heaptrack_print, "-f", traces[0], "--print-peaks", "0", "--print-allocators", "0",
                        "--print-temporary", "0", "--print-leaks", "0", "--flamegraph-cost-type", "leaked",
                        "-F", stacks], capture_output=True, timeout=TOOL_TIMEOUT, check=True)
        with open(stacks, encoding="utf-8", errors="replace") as f:
            leaked = sum(int(line.rsplit(None, 1)[1]) for line in f if line.strip())
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        return None, "unparsed"
    return Leaks(int(counts[-1]), leaked), ""


def run_gperftools(program, tcmalloc, binary, work):
    """Returns (Leaks: the heap checker's leaked objects and bytes, unclassified; note)."""
    env = clean_environment()
    env.update(program.env)
    env.update({"LD_PRELOAD": tcmalloc, "HEAPCHECK": "normal", "HEAP_CHECK_DUMP_DIRECTORY": work})
    pprof = shutil.which("google-pprof") or shutil.which("pprof")
    if pprof:
        env["PPROF_PATH"] = pprof
    try:
        run = subprocess.run([binary], env=env, capture_output=True, text=True, errors="replace", timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    found = re.search(r"Leak check _main_ detected leaks of (\d+) bytes in (\d+) objects", run.stderr)
    if found:
        return Leaks(int(found.group(2)), int(found.group(1))), ""
    if re.search(r"No leaks found for check \"_main_\"", run.stderr):
        return Leaks(0, 0), ""
    if run.returncode < 0:
        return None, f"signal {-run.returncode}"
    return None, "no check" if "heap leak checker is active" in run.stderr else "not active"


def run_program(program, args, work_root):
    work = tempfile.mkdtemp(prefix=program.name + ".", dir=work_root)
    row = {"program": program, "problems": [], "results": {}}
    binary = os.path.join(args.programs, program.name)
    if not os.access(binary, os.X_OK):
        row["results"]["heapkeeper"] = (None, "missing")
        row["problems"] = [f"program not built: {binary}"]
        return row
    figures, row["problems"] = run_heapkeeper(program, binary, args.preload, work)
    row["results"]["heapkeeper"] = (figures, "error")
    for tool in args.tools:
        if tool == "heapkeeper" or program.skips(tool):
            continue
        # Each tool in its own directory: heaptrack and the heap checker drop files there.
        scratch = os.path.join(work, tool)
        os.mkdir(scratch)
        if tool == "valgrind":
            row["results"][tool] = run_valgrind(program, args.valgrind, binary, scratch)
        elif tool == "lsan":
            lsan_binary = os.path.join(args.lsan_programs, program.name)
            if os.access(lsan_binary, os.X_OK):
                row["results"][tool] = run_lsan(program, lsan_binary, scratch)
        elif tool == "heaptrack":
            row["results"][tool] = run_heaptrack(program, args.heaptrack, args.heaptrack_print, binary, scratch)
        elif tool == "gperftools":
            row["results"][tool] = run_gperftools(program, args.tcmalloc, binary, scratch)
    return row


def cell(program, result, skipped):
    """A table cell: the tool's figures; '*' when they do not match, '~' when only the split differs."""
    if result is None:
        return skipped
    figures, note = result
    if figures is None:
        return note or "error"
    if not program.exact(figures):
        return figures.text() + " *"
    if figures.direct is not None and not program.classified(figures):
        return figures.text() + " ~"
    return figures.text()


def find_tcmalloc():
    """libtcmalloc.so.4 (gperftools with the heap checker), from ld.so's cache or the usual places."""
    try:
        cache = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    except OSError:
        cache = ""
    for line in cache.splitlines():
        fields = line.split()
        if fields and fields[0] == "libtcmalloc.so.4" and "x86-64" in line:
            return fields[-1]
    for directory in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        path = os.path.join(directory, "libtcmalloc.so.4")
        if os.path.exists(path):
            return path
    return None


def available_tools(args):
    """Resolves each requested tool's files; returns {tool: why it cannot run} for the missing ones."""
    missing = {}
    if "valgrind" in args.tools:
        args.valgrind = shutil.which("valgrind")
        if args.valgrind is None:
            missing["valgrind"] = "not installed"
    if "lsan" in args.tools and (not args.lsan_programs or not os.path.isdir(args.lsan_programs)):
        missing["lsan"] = "no -fsanitize=leak build of the corpus (--lsan-programs)"
    if "heaptrack" in args.tools:
        args.heaptrack, args.heaptrack_print = shutil.which("heaptrack"), shutil.which("heaptrack_print")
        if args.heaptrack is None or args.heaptrack_print is None:
            missing["heaptrack"] = "heaptrack or heaptrack_print not installed"
    if "gperftools" in args.tools:
        args.tcmalloc = args.tcmalloc or find_tcmalloc()
        if not args.tcmalloc or not os.path.exists(args.tcmalloc):
            missing["gperftools"] = "libtcmalloc.so.4 not found (package libgoogle-perftools4)"
    return missing


def summarize(rows, tools, missing):
    """Per tool: exact matches, classified matches, programs run, skipped and failed."""
    summary = {}
    for tool in tools:
        compared = [row for row in rows if tool == "heapkeeper" or not row["program"].heapkeeper_only]
        counts = {"programs": len(compared), "exact": 0, "classified": None, "run": 0, "skipped": 0, "errors": 0,
                  "available": tool not in missing}
        if tool in CLASSIFYING_TOOLS:
            counts["classified"] = 0
        if tool in missing:
            counts["why_not_available"] = missing[tool]
        for row in compared:
            result = row["results"].get(tool)
            if result is None:
                counts["skipped"] += 1
                continue
            figures = result[0]
            if figures is None:
                counts["errors"] += 1
                continue
            counts["run"] += 1
            counts["exact"] += row["program"].exact(figures)
            if counts["classified"] is not None:
                counts["classified"] += row["program"].classified(figures)
        summary[tool] = counts
    return summary


def write_json(path, rows, tools, summary, seconds):
    doc = {"programs": len(rows), "seconds": round(seconds, 1), "tools": summary, "results": []}
    for row in rows:
        program = row["program"]
        e = program.expect
        entry = {"program": program.name,
                 "expected": {k: str(e[k]) for k in ("direct", "indirect", "bytes")},
                 "heapkeeper_problems": len(row["problems"])}
        for tool in tools:
            result = row["results"].get(tool)
            if result is None:
                entry[tool] = None
            elif result[0] is None:
                entry[tool] = {"error": result[1] or "error"}
            else:
                entry[tool] = dict(result[0].as_json(), exact=program.exact(result[0]),
                                   classified=program.classified(result[0]))
        doc["results"].append(entry)
    text = json.dumps(doc, indent=1) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preload", required=True, help="libheapkeeper.so")
    parser.add_argument("--programs", required=True, help="directory of the corpus programs")
    parser.add_argument("--lsan-programs", help="directory of the same programs built with -fsanitize=leak")
    parser.add_argument("--source-dir", default=here, help="directory of the corpus sources (expectations)")
    parser.add_argument("--tools", default=DEFAULT_TOOLS,
                        help=f"comma-separated, of {','.join(ALL_TOOLS)} (default {DEFAULT_TOOLS}); heapkeeper always runs")
    parser.add_argument("--tcmalloc", help="libtcmalloc.so.4 for --tools gperftools (default: found with ldconfig)")
    parser.add_argument("--json", metavar="FILE", help="also write the per-tool match counts and figures as JSON ('-': stdout, instead of the table)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-valgrind", action="store_true", help="do not run valgrind even if installed")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("only", nargs="*", help="run only these programs")
    args = parser.parse_args()
    args.preload = os.path.abspath(args.preload)
    requested = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in requested if t not in ALL_TOOLS]
    if unknown:
        parser.error(f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(ALL_TOOLS)}")
    if args.no_valgrind and "valgrind" in requested:
        requested.remove("valgrind")
    args.tools = [t for t in ALL_TOOLS if t == "heapkeeper" or t in requested]
    missing = available_tools(args)
    # A tool that is not available is reported as such, as before (valgrind not installed, no
    # LeakSanitizer build), but never makes the run fail.
    runnable = [t for t in args.tools if t not in missing]

    programs = []
    for entry in sorted(os.listdir(args.source_dir)):
        if entry.endswith((".c", ".cpp")):
            program = Program(os.path.join(args.source_dir, entry))
            if program.expect is None:
                continue
            if not args.only or program.name in args.only:
                programs.append(program)
    if not programs:
        print("no corpus programs selected", file=sys.stderr)
        return 1
    # The programs that sleep or churn longest first, so two workers finish together.
    programs.sort(key=lambda p: (not p.env, p.name))

    started = time.monotonic()
    work_root = tempfile.mkdtemp(prefix="heapkeeper-leak-corpus.")
    run_args = argparse.Namespace(**vars(args))
    run_args.tools = runnable
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda p: run_program(p, run_args, work_root), programs))
    rows.sort(key=lambda r: r["program"].name)
    seconds = time.monotonic() - started
    summary = summarize(rows, args.tools, missing)
    if args.json:
        write_json(args.json, rows, args.tools, summary, seconds)
    # With --json -, stdout carries the JSON alone; the table goes to stderr.
    out = sys.stderr if args.json == "-" else sys.stdout

    table = [("program", "expected") + tuple(args.tools)]
    for row in rows:
        p = row["program"]
        cells = []
        for tool in args.tools:
            if tool == "heapkeeper":
                hk = cell(p, row["results"]["heapkeeper"], "error")
                if row["problems"]:
                    hk = hk.rstrip(" *~") + " FAIL"
                cells.append(hk)
            else:
                cells.append(cell(p, row["results"].get(tool), "-" if tool in missing else "skipped"))
        table.append((p.name, p.expected_text()) + tuple(cells))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for n, r in enumerate(table):
        print(" | ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip(), file=out)
        if n == 0:
            print("-+-".join("-" * w for w in widths), file=out)
    print("\nfigures: direct blocks/indirect blocks/bytes (valgrind: definitely/indirectly lost); "
          "heaptrack and gperftools: blocks/bytes, unclassified; '*': does not match the expectation; "
          "'~': matches but splits direct/indirect differently; only heapkeeper mismatches fail.", file=out)
    for tool, why in missing.items():
        print(f"{tool}: not run ({why})", file=out)
    if "valgrind" not in args.tools:
        print("valgrind: not run (--no-valgrind or not in --tools)", file=out)

    def count(tool, key):
        c = summary[tool]
        return f"{tool} {c[key]}/{c['programs']}" if c["available"] else f"{tool} -"
    print("\nexact: " + ", ".join(count(t, "exact") for t in args.tools)
          + "  (leaked blocks, direct + indirect, and bytes as expected)", file=out)
    classifying = [t for t in args.tools if t in CLASSIFYING_TOOLS]
    print("classified: " + ", ".join(count(t, "classified") for t in classifying)
          + "  (direct and indirect blocks each as expected too)", file=out)
    not_run = [f"{t} {summary[t]['skipped'] + summary[t]['errors']}" for t in args.tools
               if summary[t]["available"] and summary[t]["skipped"] + summary[t]["errors"]]
    if not_run:
        print("not run or no result (counted as no match): " + ", ".join(not_run), file=out)

    failures = [row for row in rows if row["problems"]]
    for row in failures:
        print(f"\nFAIL {row['program'].name}:", file=out)
        for problem in row["problems"]:
            print("  " + problem.replace("\n", "\n    "), file=out)
    print(f"\n{len(rows)} programs, {len(failures)} heapkeeper failure(s), {seconds:.1f} s", file=out)
    if failures or args.keep:
        print(f"scratch directory kept: {work_root}", file=out)
    else:
        shutil.rmtree(work_root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

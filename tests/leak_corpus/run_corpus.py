#!/usr/bin/env python3
"""Runs the leak corpus: each program under heapkeeper, and under valgrind and LeakSanitizer when
they are available, and compares every tool's leak figures with the program's stated expectation.

Only heapkeeper must match: the expectation is the truth, and the other tools are run to show
where they see things differently (LeakSanitizer reports cycles as indirect only and does not scan
mmap'd memory; valgrind calls interior-pointer-only blocks "possibly lost"). The table prints
direct blocks / indirect blocks / leaked bytes per tool; a '*' marks a disagreement.

Expectations live in each program's opening comment, one `corpus:` directive per line:
  expect direct=D indirect=I bytes=B     exact figures (each may be a range LOW..HIGH)
  env NAME=VALUE                         set for the heapkeeper run (and the other tools' runs)
  suppress PATTERN                       leak:PATTERN for heapkeeper and LeakSanitizer, fun:PATTERN for valgrind
  expect-suppressed blocks=N bytes=M     the JSON report's suppressed_leaks
  expect-status N                        the heapkeeper run's exit status (default 0)
  direct-leak-in FUNCTION                a direct leak whose allocation stack names FUNCTION
  json PATH OP VALUE                     a figure of the JSON report (PATH: a.b.0.c or len(a.b))
  stderr-before REGEX ||| REGEX          the first line matches before the second does
  stderr-absent REGEX                    no line of stderr matches
  stdout-lines N / stdout-last TEXT / stdout-contains TEXT
  valgrind skip / valgrind-args ARGS...  skip valgrind, or run it with a lighter workload
  lsan skip                              skip LeakSanitizer
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
        self.json_checks = []
        self.stderr_before = []
        self.stderr_absent = []
        self.stdout_lines = None
        self.stdout_last = None
        self.stdout_contains = []
        self.valgrind_skip = False
        self.valgrind_args = []
        self.lsan_skip = False
        with open(source, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                m = DIRECTIVE.match(line)
                if m:
                    self._directive(m.group(1), m.group(2), f"{source}:{number}")

    def _directive(self, keyword, rest, where):
        if keyword == "expect":
            fields = dict(item.split("=", 1) for item in rest.split())
            self.expect = {k: Figure(fields[k]) for k in ("direct", "indirect", "bytes")}
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
        else:
            raise ValueError(f"{where}: unknown corpus directive '{keyword}'")

    def expected_text(self):
        e = self.expect
        return f"{e['direct']}/{e['indirect']}/{e['bytes']}"

    def matches(self, figures):
        if figures is None:
            return False
        direct, indirect, leaked = figures
        e = self.expect
        return e["direct"].matches(direct) and e["indirect"].matches(indirect) and e["bytes"].matches(leaked)


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
            figures = (direct, indirect, leaked)
            if not program.matches(figures):
                problems.append(f"leaks {direct}/{indirect}/{leaked}, expected {program.expected_text()}")
            if (doc.get("leaked_blocks"), doc.get("leaked_bytes")) != (direct + indirect, leaked):
                problems.append(
                    f"leaked_blocks/leaked_bytes {doc.get('leaked_blocks')}/{doc.get('leaked_bytes')} disagree with "
                    f"the sum of leaks[] {direct + indirect}/{leaked}")
            summary = re.search(r"SUMMARY: heapkeeper: (\d+) byte\(s\) leaked in (\d+) allocation\(s\)\.", stderr)
            if direct + indirect > 0 and (summary is None or (int(summary.group(1)), int(summary.group(2))) != (leaked, direct + indirect)):
                problems.append(f"stderr SUMMARY {summary.group(0) if summary else '(none)'} disagrees with the JSON")
            if direct + indirect == 0 and "detected memory leaks" in stderr:
                problems.append("stderr reports leaks the JSON does not have")
            for function in program.direct_in:
                if not any(l["kind"] == "direct" and allocated_in(l, function) for l in leaks):
                    problems.append(f"no direct leak allocated in {function}()")
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
    """Returns ((definitely lost blocks, indirectly lost blocks, their bytes), note)."""
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
        return (0, 0, 0), ""
    definite = re.search(r"definitely lost: ([\d,]+) bytes in ([\d,]+) blocks", text)
    indirect = re.search(r"indirectly lost: ([\d,]+) bytes in ([\d,]+) blocks", text)
    if definite is None or indirect is None:
        return None, "unparsed"
    number = lambda s: int(s.replace(",", ""))
    return (number(definite.group(2)), number(indirect.group(2)),
            number(definite.group(1)) + number(indirect.group(1))), ""


def run_lsan(program, binary, work):
    """Returns ((direct blocks, indirect blocks, bytes), note)."""
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
    return (direct, indirect, leaked), ""


def run_program(program, args, work_root):
    work = tempfile.mkdtemp(prefix=program.name + ".", dir=work_root)
    row = {"program": program, "problems": [], "valgrind": None, "lsan": None}
    binary = os.path.join(args.programs, program.name)
    if not os.access(binary, os.X_OK):
        row["heapkeeper"] = (None, "missing")
        row["problems"] = [f"program not built: {binary}"]
        return row
    figures, row["problems"] = run_heapkeeper(program, binary, args.preload, work)
    row["heapkeeper"] = (figures, "error")
    if args.valgrind and not program.valgrind_skip:
        row["valgrind"] = run_valgrind(program, args.valgrind, binary, work)
    if args.lsan_programs and not program.lsan_skip:
        lsan_binary = os.path.join(args.lsan_programs, program.name)
        if os.access(lsan_binary, os.X_OK):
            row["lsan"] = run_lsan(program, lsan_binary, work)
    return row


def cell(program, result, skipped):
    """A table cell: D/I/B, a '*' when it disagrees with the expectation."""
    if result is None:
        return skipped
    figures, note = result
    if figures is None:
        return note or "error"
    text = "/".join(str(v) for v in figures)
    return text if program.matches(figures) else text + " *"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preload", required=True, help="libheapkeeper.so")
    parser.add_argument("--programs", required=True, help="directory of the corpus programs")
    parser.add_argument("--lsan-programs", help="directory of the same programs built with -fsanitize=leak")
    parser.add_argument("--source-dir", default=here, help="directory of the corpus sources (expectations)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-valgrind", action="store_true", help="do not run valgrind even if installed")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("only", nargs="*", help="run only these programs")
    args = parser.parse_args()
    args.preload = os.path.abspath(args.preload)
    args.valgrind = None if args.no_valgrind else shutil.which("valgrind")
    if args.lsan_programs and not os.path.isdir(args.lsan_programs):
        args.lsan_programs = None

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
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda p: run_program(p, args, work_root), programs))
    rows.sort(key=lambda r: r["program"].name)

    valgrind_absent = "-" if args.valgrind is None else "skipped"
    lsan_absent = "-" if args.lsan_programs is None else "skipped"
    table = [("program", "expected", "heapkeeper", "valgrind", "lsan")]
    for row in rows:
        p = row["program"]
        hk = cell(p, row["heapkeeper"], "error")
        if row["problems"]:
            hk = hk.rstrip(" *") + " FAIL"
        table.append((p.name, p.expected_text(), hk, cell(p, row["valgrind"], valgrind_absent), cell(p, row["lsan"], lsan_absent)))
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for n, r in enumerate(table):
        print(" | ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip())
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    print("\nfigures: direct blocks/indirect blocks/bytes (valgrind: definitely/indirectly lost); "
          "'*': disagrees with the expectation; only heapkeeper mismatches fail.")
    if args.valgrind is None:
        print("valgrind: not run (--no-valgrind, or not installed)")
    if args.lsan_programs is None:
        print("lsan: no -fsanitize=leak build of the corpus")

    failures = [row for row in rows if row["problems"]]
    for row in failures:
        print(f"\nFAIL {row['program'].name}:")
        for problem in row["problems"]:
            print("  " + problem.replace("\n", "\n    "))
    print(f"\n{len(rows)} programs, {len(failures)} heapkeeper failure(s), {time.monotonic() - started:.1f} s")
    if failures or args.keep:
        print(f"scratch directory kept: {work_root}")
    else:
        shutil.rmtree(work_root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark's report (scripts/bench.sh): the machine, the table of every workload under every
configuration, and each other part's summary, as plain text for the terminal and as Markdown for
BUILD/bench/results.md."""

import datetime
import hashlib
import os
import re
import subprocess
import time

from .common import ROOT_DIR


def version_of(package):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
        return out.stdout if out.returncode == 0 else "?"
    except OSError:
        return "?"


def read_tsv(path):
    if not path.is_file() or not path.stat().st_size:
        return []
    return [line.split("\t") for line in path.read_text().splitlines()]


class Report:
    def __init__(self, bench):
        self.bench = bench

    def table(self, style):
        """The table part's summary, one row per workload and configuration."""
        bench = self.bench
        describe_workload = {name: w["description"] for name, w in bench.workloads.items()}
        lines = []
        text_row = "{:<34} {:<28} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8}  {}"
        if style == "markdown":
            lines.append("| workload | configuration | wall s | × glibc | CPU × glibc | peak RSS MiB | × glibc | runs ok "
                         "| status |")
            lines.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
        else:
            lines.append(text_row.format("workload", "configuration", "wall s", "x glibc", "CPU x", "RSS MiB", "x glibc",
                                         "runs ok", "status"))
        last = None
        for number, row in enumerate(read_tsv(bench.summary)):
            w, c, wall, rw, rss, rr, runs_ok, status, detail, rc = row
            if detail:
                status += f" ({detail})"
            cells = (describe_workload[w], bench.describe[c], wall, rw, rc, rss, rr, runs_ok, status)
            if style == "markdown":
                lines.append("| " + " | ".join(cells) + " |")
            else:
                if w != last and number > 0:
                    lines.append("")
                lines.append(text_row.format(*cells))
            last = w
        return lines

    @staticmethod
    def tsv(style, path):
        """A TSV with a header line; columns of numbers are right-aligned."""
        rows = read_tsv(path)
        cols = max(len(r) for r in rows)
        width = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(cols)]
        number = re.compile(r"^[-+]?[0-9./]+( \(.*\))?$|^-$")
        text = [any(i < len(r) and not number.search(r[i]) for r in rows[1:]) for i in range(cols)]
        lines = []
        for n, row in enumerate(rows):
            cells = [row[i] if i < len(row) else "" for i in range(cols)]
            if style == "markdown":
                lines.append("".join(f"| {v} " for v in cells) + "|")
                if n == 0:
                    lines.append("".join("|---" if text[i] else "|---:" for i in range(cols)) + "|")
                continue
            line = ""
            for i, v in enumerate(cells):
                if text[i] and i == cols - 1:
                    line += "  " + v  # no trailing blanks
                else:
                    line += ("  " if i > 0 else "") + (v.ljust(width[i]) if text[i] else v.rjust(width[i]))
            lines.append(line)
        return lines

    def text(self, style):
        bench = self.bench
        bullet = "- " if style == "markdown" else ""
        markdown = style == "markdown"
        out = [""] + [bullet + line for line in machine_lines(bench)]
        if read_tsv(bench.summary):
            out.append("")
            if markdown:
                out += ["## Wall time and peak RSS", ""]
            out += self.table(style)
        if len(read_tsv(bench.goals_summary)) > 1:
            out.append("")
            if markdown:
                out += ["## Goals of issue #12", ""]
            else:
                out.append("goals of issue #12 (from the table's runs; medians, paired by round):")
            out += self.tsv(style, bench.goals_summary)
        if read_tsv(bench.overhead_summary):
            out.append("")
            if markdown:
                out += ["## Periodic-scan overhead", ""]
            else:
                out.append(f"periodic-scan overhead (python3 churn, PYTHONMALLOC=malloc, {bench.overhead_iterations} iterations):")
            out += self.tsv(style, bench.overhead_summary) + ["", bench.overhead_verdict]
        if read_tsv(bench.python_frames_summary):
            out.append("")
            if markdown:
                out += ["## Python frames in stacks", ""]
            else:
                out.append("Python frames in stacks (python3 churn, PYTHONMALLOC=malloc, 24-frame stacks):")
            out += self.tsv(style, bench.python_frames_summary) + ["", bench.python_frames_verdict]
        if read_tsv(bench.first_summary):
            out.append("")
            if markdown:
                out += ["## Time to first leak report", ""]
            else:
                out.append(f"time to first leak report (late_leak: 12,345 bytes lost {bench.late_leak_at} s into a "
                           f"{bench.late_duration} s run; seconds after the leak):")
            out += self.tsv(style, bench.first_summary)
        if read_tsv(bench.corpus_summary):
            out.append("")
            if markdown:
                out += ["## Leak-report quality (leak corpus)", ""]
            else:
                out.append("leak-report quality (tests/leak_corpus: exact expected leaks; a match: leaked blocks and "
                           "bytes as expected):")
            out += self.tsv(style, bench.corpus_summary)
            out.append("")
            text = (bench.out_dir / "leak_corpus.txt").read_text(errors="replace")
            out += [line for line in text.splitlines() if re.match(r"(exact|classified):", line)]
        out.append("")
        out += [(bullet or "note: ") + line for line in notes(bench)]
        return "\n".join(out) + "\n"


def machine_lines(bench):
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    took = ", ".join(f"{p} {bench.part_seconds[p]}s" for p in bench.parts_order if p in bench.part_seconds)
    try:
        commit = subprocess.run(["git", "-C", str(ROOT_DIR), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(ROOT_DIR), "status", "--porcelain", "--", "allocator", "preload",
                                  "collector", "stats", "report", "include"], capture_output=True, text=True).stdout
        if changed.strip():
            commit += " (the source tree had uncommitted changes in heapkeeper's library)"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    uname = os.uname()
    py = bench.sizes["python_churn"]
    sq = bench.sizes["sqlite"]
    python_version = subprocess.run([bench.python, "-c", "import platform; print(platform.python_version())"],
                                    capture_output=True, text=True).stdout.strip()
    versions = f"python {python_version},"
    if bench.sqlite:
        versions += f" sqlite {subprocess.run([bench.sqlite, '-version'], capture_output=True, text=True).stdout.split()[0]},"
    versions += (f" glibc {version_of('libc6')}, jemalloc {version_of('libjemalloc2')}, mimalloc "
                 f"{version_of('libmimalloc2.0')}, heaptrack {version_of('heaptrack')}, valgrind "
                 f"{version_of('valgrind')}, gperftools {version_of('libgoogle-perftools4')}")
    elapsed = int(time.monotonic()) - bench.bench_started
    return [
        f"machine: {len(os.sched_getaffinity(0))} CPUs, {cpu_model or 'unknown CPU'}",
        f"kernel:  {uname.sysname} {uname.release} {uname.machine}",
        f"date:    {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; heapkeeper commit {commit}",
        f"runs:    {bench.runs} per configuration, round-robin; medians of successful runs; benchmark took "
        f"{elapsed}s ({took or 'nothing run'})",
        f"sizes:   python_churn {py['full']} iterations (small: {py['small']}), sqlite {sq['full']} orders = "
        f"{sq['full'] * 3} rows (small: {sq['small']}); scan overhead: python_churn {bench.overhead_iterations} "
        f"iterations; late_leak {bench.late_duration} s",
        f"versions: {versions}",
    ]

def notes(bench):
    notes = []
    if "hk-off" in bench.active or "hk-detect" in bench.active:
        digest = hashlib.sha256(bench.hk_copy.read_bytes()).hexdigest()[:12]
        notes.append(f"heapkeeper: {bench.hk_source} (built {bench.hk_built}, copied at the start; sha256 {digest}), "
                     f"HEAPKEEPER_STACK_DEPTH={os.environ.get('HEAPKEEPER_STACK_DEPTH') or 'default'}")
    notes += [f"{bench.describe[t]}: {bench.tool_note[t]}" for t in bench.selected if bench.tool_note.get(t)]
    notes += bench.skip_notes
    for key in sorted(bench.given_up):
        w, c = key.split("/", 1)
        notes.append(f"{bench.describe[c]} on {bench.workloads[w]['description']}: not repeated after its first failure "
                     f"({bench.given_up[key]}); see {bench.log_dir}/")
    traces = []
    for w in bench.only:
        sizes = sorted(bench.trace_bytes.get(w, []))
        if sizes:
            traces.append(f"{sizes[(len(sizes) + 1) // 2 - 1] / 1048576:.1f} MiB for {w}")
    if traces:
        notes.append("heaptrack records to a file (-o /tmp/heapkeeper-bench.*/heaptrack.*, deleted after each run), "
                     f"median size: {', '.join(traces)}; its wall time includes writing and compressing it")
    if bench.given_up.get("sqlite/lsan") == "killed by signal 11":
        notes.append("LeakSanitizer on sqlite3: preloaded liblsan initialises on the first malloc, but sqlite3 calls "
                     "signal() before that, through a not-yet-resolved interceptor (NULL call)")
    if bench.part("table"):
        if "heaptrack" in bench.active:
            notes.append("heaptrack's peak RSS is that of the largest process in its tree (the program, "
                         "heaptrack_interpret or the compressor it pipes into), not their sum")
        if "valgrind" in bench.active or "gperftools" in bench.active:
            notes.append(f"[small]: run on the small variant (python_churn {bench.sizes['python_churn']['small']} "
                         f"iterations, sqlite {bench.sizes['sqlite']['small']} orders); ratios are to glibc [small], "
                         "where interpreter start-up weighs more")
        notes.append("a run is ok when it exits normally and its stdout equals the glibc run's; leak checkers may "
                     "exit non-zero when they report leaks")
    if bench.first_summary.is_file() and bench.first_summary.stat().st_size:
        notes.append(f"first leak report: seconds from late_leak's own line announcing the leak ({bench.late_leak_at} s "
                     f"into a {bench.late_duration} s run) to the first line naming the leaked block, medians of "
                     f"{bench.first_report_rounds} run(s); exit: when late_leak and the tool's exit work ended, also "
                     f"counted from the leak; stamped lines: {bench.log_dir}/late.*.log")
    if bench.corpus_status:
        notes.append(f"leak corpus: {bench.corpus_status}; per-program figures: {bench.out_dir}/leak_corpus.txt and "
                     "leak_corpus.json; LeakSanitizer runs the corpus built with -fsanitize=leak")
    notes.append(f"per-run stdout/stderr: {bench.log_dir}/; every run: {bench.out_dir}/*.tsv")
    return notes

"""Benchmarks heapkeeper against plain glibc malloc, other allocators and other memory tools
(scripts/bench.sh). The workloads, configurations and sizes are data: bench.toml.

Four parts (--parts), in this order:
 table         each workload (bench/workloads/) under each configuration; repetitions go round-robin
               over the configurations so drift on the machine (thermal, noisy neighbours) is spread
               over all of them instead of landing on one. Every run is timed by timed_run.py (wall
               time, and peak RSS and CPU time from wait4()'s rusage). A run counts only if its stdout
               matches the plain-glibc run of the same workload, so a fast but broken configuration
               shows up as FAIL, not as a good number. Medians and ratios to glibc.
 scan-overhead heapkeeper detect with periodic scans every 10 s against the same without periodic
               scans, alternating, on a long python3 run (PYTHONMALLOC=malloc, so every object is a
               block the scans mark); the goal is at most 5% more wall time.
 first-report  bench/workloads/late_leak.c leaks a block one second into a fixed 20 s run;
               bench/first_report.py times how long after the leak each tool's first report naming it
               appears: heapkeeper's periodic scans (every 10 s, every 1 s), a scan on demand
               (`heapkeeper report PID`) and its exit report, against LeakSanitizer, valgrind, the
               gperftools heap checker (at exit) and heaptrack (heaptrack_print after exit).
 corpus        leak-report quality: tests/leak_corpus/run_corpus.py runs the leak corpus (exact
               expected figures) under every leak checker and counts each tool's exact matches.
The tables go to the terminal and to BUILD/bench/results.md; each part's runs and summary to
BUILD/bench/*.tsv.

Packages the benchmark needs are installed (scripts/install-deps.sh) only when missing. Tools that
are not available, or fail a start-up check, are skipped with a note. valgrind, the gperftools heap
checker and LeakSanitizer with full stacks (lsan-full) are one to two orders of magnitude slower than
the rest, so they run a small variant of each workload and are compared with plain glibc on that
same small variant.
"""

import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import bench_report, timed_run
from .common import (DEBIAN_PYTHON, HARNESS_DIR, ROOT_DIR, Fatal, Messages, awk_string, expand, expand_all, find_lib,
                     install_missing, load_data, median, missing_packages, paired_median, parse_options)

BENCH_DIR = ROOT_DIR / "bench"
WORKLOAD_DIR = BENCH_DIR / "workloads"
PARTS = ["table", "scan-overhead", "first-report", "corpus"]
# Nothing in the caller's environment may change how a run behaves.
CLEAN_ENV_UNSET = ["LD_PRELOAD", "PYTHONMALLOC", "HEAPKEEPER_MODE", "HEAPKEEPER_SCAN_INTERVAL", "HEAPKEEPER_REPORT",
                   "HEAPKEEPER_EXITCODE", "HEAPKEEPER_QUIET", "LSAN_OPTIONS", "HEAPCHECK"]
messages = Messages("bench.sh")
note = messages.note


def usage(data):
    workloads = ", ".join(w["name"] for w in data["workload"])
    tools = ", ".join(t["name"] for t in data["tool"])
    return f"""Usage: scripts/bench.sh [options]

  --runs N            repetitions per configuration (default 5; --quick: 2)
  --quick             2 runs and smaller workloads (CI smoke test)
  --only W[,W...]     workloads to run: {workloads}
  --tools T[,T...]    configurations to run: {tools}
                      ('heapkeeper' means hk-off,hk-detect; glibc is always added as the baseline)
  --parts P[,P...]    parts to run: {", ".join(PARTS)} (default: all)
  --build DIR         heapkeeper's build directory (default: build): its lib/libheapkeeper.so,
                      bin/heapkeeper and tests/leak_corpus/; results go to DIR/bench/
  --lib PATH          libheapkeeper.so to test (default: DIR/lib/libheapkeeper.so, or $HEAPKEEPER_LIB)
  --timeout S         kill a run after S seconds (default 300)
  --no-install        never call apt-get; skip what is missing
  -h, --help          this text

Writes DIR/bench/results.md; per-run logs go to DIR/bench/logs/."""


def clean_env(*additions):
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV_UNSET}
    for extra in additions:
        env.update(extra)
    return env


def env_command(assignments):
    """`env -u ... NAME=VALUE...`: for commands whose helpers must not see the assignments."""
    words = ["env"]
    for name in CLEAN_ENV_UNSET:
        words += ["-u", name]
    return words + [f"{k}={v}" for k, v in assignments.items()]


def positive(value, option):
    if not re.fullmatch(r"[1-9][0-9]*", str(value)):
        raise Fatal(f"{option} must be a positive integer, not '{value}'")
    return int(value)


def version_of(package):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
        return out.stdout if out.returncode == 0 else "?"
    except OSError:
        return "?"


class Bench:
    def __init__(self, argv):
        self.data = load_data("bench.toml")
        self.tools = {t["name"]: t for t in self.data["tool"]}
        self.workloads = {w["name"]: w for w in self.data["workload"]}
        small = self.data["baseline_small"]
        self.describe = {t["name"]: t["description"] for t in self.data["tool"]}
        self.describe[small["name"]] = small["description"]
        self.small_tools = [small["name"]] + [t["name"] for t in self.data["tool"] if t.get("small")]
        self.parse(argv)

    # ------------------------------------------------------------------ options and set-up

    def parse(self, argv):
        spec = {"--runs": "--runs needs a number", "--quick": None, "--only": "--only needs a workload name",
                "--tools": "--tools needs a list", "--parts": "--parts needs a list",
                "--build": "--build needs a directory", "--lib": "--lib needs a path",
                "--timeout": "--timeout needs seconds", "--no-install": None, "-h": None, "--help": None}
        options, _ = parse_options(argv, spec)
        if "-h" in options or "--help" in options:
            print(usage(self.data))
            raise SystemExit(0)
        words = lambda text: text.replace(",", " ").split()
        self.quick = "--quick" in options
        self.runs = positive(options.get("--runs", 2 if self.quick else 5), "--runs")
        self.timeout = positive(options.get("--timeout", 300), "--timeout")
        self.allow_install = "--no-install" not in options
        self.only = words(options.get("--only", " ".join(self.workloads)))
        tools = words(options.get("--tools", " ".join(self.tools)))
        self.parts = words(options.get("--parts", " ".join(PARTS)))
        build_dir = Path(options.get("--build", ROOT_DIR / "build"))
        hk_lib = options.get("--lib", os.environ.get("HEAPKEEPER_LIB", ""))

        # Without a build, only the other tools run (heapkeeper's configurations are skipped with a note).
        try:
            build_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            raise Fatal(f"cannot create {build_dir}")
        self.build_dir = build_dir.resolve()
        self.out_dir = self.build_dir / "bench"
        self.log_dir = self.out_dir / "logs"
        self.hk_lib = Path(os.path.abspath(hk_lib)) if hk_lib else self.build_dir / "lib/libheapkeeper.so"
        self.hk_cli = self.build_dir / "bin/heapkeeper"
        self.corpus_programs = self.build_dir / "tests/leak_corpus"
        for p in self.parts:
            if p not in PARTS:
                raise Fatal(f"unknown part '{p}' (known: {' '.join(PARTS)})")
        if not self.parts:
            raise Fatal("--parts selected nothing")
        for w in self.only:
            if w not in self.workloads:
                raise Fatal(f"unknown workload '{w}' (known: {' '.join(self.workloads)})")
        if not self.only:
            raise Fatal("--only selected no workload")
        expanded = []
        for t in tools:
            if t == "heapkeeper":
                expanded += ["hk-off", "hk-detect"]
            elif t in self.tools:
                expanded.append(t)
            else:
                raise Fatal(f"unknown tool '{t}' (known: {' '.join(self.tools)} heapkeeper)")
        if "glibc" not in expanded:
            note("adding glibc: it is the baseline for ratios and output checks")
            expanded.insert(0, "glibc")
        # Keep the canonical order whatever order the user typed.
        self.selected = [t for t in self.tools if t in expanded]
        sizes = self.data["sizes"]["quick" if self.quick else "full"]
        self.sizes = sizes
        self.overhead_iterations = sizes["scan_overhead"]["iterations"]
        self.overhead_interval = sizes["scan_overhead"]["interval"]
        self.late_duration = sizes["first_report"]["duration"]
        self.late_interval = sizes["first_report"]["interval"]
        self.first_report_rounds = min(self.runs, sizes["first_report"]["rounds"])
        self.late_leak_at = self.data["first_report"]["leak_at"]
        self.skip_notes = []

    def part(self, name):
        return name in self.parts

    def skip(self, what, why):
        self.skip_notes.append(f"{what}: skipped, {why}")
        note(f"{what}: skipped, {why}")

    def install(self):
        requirements = list(self.data["requirements"].items())
        if self.part("table"):
            for w in self.only:
                requirements += list(self.workloads[w].get("requirements", {}).items())
        for t in self.selected:
            requirements += list(self.tools[t].get("requirements", {}).items())
        install_missing(missing_packages(requirements), self.allow_install, self.out_dir / "apt.log", messages)

    def set_up(self):
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            raise Fatal(f"cannot create {self.out_dir}")
        self.install()
        if os.access(DEBIAN_PYTHON, os.X_OK):
            self.python = DEBIAN_PYTHON
        elif shutil.which("python3"):
            # Resolve wrappers such as pyenv shims: the tools must see the interpreter, not a shell script.
            try:
                self.python = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"], check=True,
                                             capture_output=True, text=True).stdout.strip()
            except (OSError, subprocess.CalledProcessError):
                raise Fatal("python3 does not run")
        else:
            raise Fatal("python3 is missing and could not be installed")
        self.sqlite = None
        if self.part("table") and "sqlite" in self.only:
            self.sqlite = shutil.which("sqlite3")
            if not self.sqlite:
                raise Fatal("sqlite3 is missing and could not be installed (or drop it with --only)")
        for path in list(self.log_dir.glob("*.out")) + list(self.log_dir.glob("*.err")):
            path.unlink()
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="heapkeeper-bench.", dir="/tmp"))
        self.cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        self.rusage_exec = self.out_dir / "hk-rusage-exec"
        self.compile(self.rusage_exec, HARNESS_DIR / "rusage_exec.c")
        for old in ("hk-measure", "hk-measure.c", "hk-measure.py"):  # left by older versions of the benchmark
            (self.out_dir / old).unlink(missing_ok=True)

    def compile(self, output, source, *flags):
        """Compiles a C helper; rebuilt when the source is newer."""
        if os.access(output, os.X_OK) and output.stat().st_mtime > source.stat().st_mtime:
            return
        if not self.cc:
            raise Fatal(f"no C compiler (cc, gcc or clang) for {source.relative_to(ROOT_DIR)}")
        output.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run([self.cc, "-O2", "-Wall", "-Wextra", *flags, "-o", f"{output}.new", str(source)],
                                capture_output=True, text=True)
        head = "\n".join(result.stderr.splitlines()[:5])
        if result.returncode != 0:
            raise Fatal(f"compiling {source} failed: {head}")
        if result.stderr:
            note(f"warnings compiling {source}: {head}")
        os.replace(f"{output}.new", output)

    # ------------------------------------------------------------------ configurations

    def values(self, tool="", tag="", lib=""):
        return {"python": self.python, "sqlite": self.sqlite or "", "workloads": str(WORKLOAD_DIR),
                "tmp": str(self.tmp_dir), "tag": tag, "lib": lib, "hk_cli": str(self.hk_cli),
                "late_interval": self.late_interval, "pid": "{pid}"}

    def tool_setup(self, name, tag):
        """(environment additions, wrapper words) of configuration `name` for the run `tag`."""
        if name == self.data["baseline_small"]["name"]:
            name = "glibc"
        tool = self.tools[name]
        values = self.values(name, tag, self.lib.get(name, ""))
        env = {k: expand(v, values) for k, v in tool.get("env", {}).items()}
        if name == "gperftools" and self.pprof:
            env["PPROF_PATH"] = self.pprof
        return env, expand_all(tool.get("wrapper", []), values)

    def check_runs(self, name):
        """A configuration is usable when its files exist and it runs /bin/true cleanly."""
        env, wrapper = self.tool_setup(name, "check")
        err = self.tmp_dir / "check.err"
        outcome = timed_run.run([*wrapper, "/bin/true"], env=clean_env(env), stdout=self.tmp_dir / "check.out",
                                stderr=err, timeout=60, cwd=self.tmp_dir, rusage_exec=self.rusage_exec)
        text = err.read_bytes().decode(errors="replace")
        preload = [line for line in text.splitlines() if "cannot be preloaded" in line]
        if preload:
            self.skip(name, f"ld.so will not preload it: {preload[0]}")
            return False
        if outcome.how != "exit:0":
            head = err.read_bytes()[:200].decode(errors="replace").replace("\n", " ")
            self.skip(name, f"a start-up check (/bin/true under it) ended with {outcome.how}: {head}")
            return False
        return True

    def find_configurations(self):
        self.lib, self.tool_note, self.pprof, self.active = {}, {}, "", []
        self.hk_copy = self.tmp_dir / "libheapkeeper.so"
        for t in self.selected:
            tool = self.tools[t]
            if tool.get("library"):
                path = find_lib(tool["library"])
                if not path:
                    self.skip(t, f"{tool['library']} not found (package {tool['package']})")
                    continue
                self.lib[t] = path
            elif tool.get("heapkeeper"):
                if not self.hk_lib.is_file():
                    self.skip(t, f"{self.hk_lib} does not exist yet (build it: cmake -S . -B {self.build_dir} "
                                 f"&& cmake --build {self.build_dir} -j2)")
                    continue
                # Run a private copy: the build tree may be rebuilt by someone else while the benchmark runs.
                if not self.hk_copy.is_file():
                    try:
                        shutil.copyfile(self.hk_lib, self.hk_copy)
                    except OSError:
                        raise Fatal(f"cannot copy {self.hk_lib}")
                    self.hk_source = os.path.abspath(self.hk_lib)
                    built = datetime.datetime.fromtimestamp(self.hk_lib.stat().st_mtime, datetime.timezone.utc)
                    self.hk_built = built.strftime("%Y-%m-%d %H:%M UTC")
                self.lib[t] = str(self.hk_copy)
            elif tool.get("command") and not shutil.which(tool["command"]):
                self.skip(t, f"{tool['command']} not installed")
                continue
            if t == "gperftools":
                self.pprof = shutil.which("google-pprof") or shutil.which("pprof") or ""
                if not self.pprof:
                    self.tool_note[t] = "no pprof found, leak reports stay unsymbolized"
            if self.check_runs(t):
                self.active.append(t)

    def is_small(self, name):
        return name in self.small_tools

    # ------------------------------------------------------------------ workloads

    def sqlite_script(self, orders):
        path = self.out_dir / f"sqlite_workload.{orders}.sql"
        generator = WORKLOAD_DIR / "sqlite_workload.py"
        if not (path.is_file() and path.stat().st_size) or generator.stat().st_mtime > path.stat().st_mtime:
            with open(f"{path}.new", "wb") as f:
                if subprocess.run([self.python, str(generator), "--orders", str(orders)], stdout=f).returncode:
                    raise Fatal("cannot generate the sqlite workload")
            os.replace(f"{path}.new", path)
        return path

    def workload_command(self, name, size):
        """(environment, command) of workload `name` at size full or small."""
        workload = self.workloads[name]
        sizes = self.sizes[workload["size"]]
        values = self.values()
        values.update(sizes)
        values["n"] = sizes[size]
        if name == "sqlite":
            values["sqlite_script"] = str(self.sqlite_script(values["n"]))
        return dict(workload.get("env", {})), expand_all(workload["command"], values)

    def measure(self, command, env, stdout, stderr, what):
        try:
            return timed_run.run(command, env=env, stdout=stdout, stderr=stderr, timeout=self.timeout,
                                 cwd=self.tmp_dir, rusage_exec=self.rusage_exec)
        except OSError as error:
            raise Fatal(f"the measuring failed on {what}: {error}")

    @staticmethod
    def program_stdout(tool, path):
        """heaptrack's wrapper script prints its own lines around the program's output; drop them."""
        data = path.read_bytes()
        if tool != "heaptrack":
            return data
        kept, started = [], False
        for line in data.splitlines(keepends=True):
            if started:
                if line.startswith(b"Heaptrack finished!"):
                    break
                kept.append(line)
            elif line.startswith(b"starting application, this might take some time"):
                started = True
        return b"".join(kept)

    # ------------------------------------------------------------------ part: table

    def run_table(self):
        configs = []
        for t in self.active:
            if self.is_small(t) and "glibc-small" not in configs:
                configs.append("glibc-small")
            configs.append(t)
        # Run the small variants last in each round, behind their own baseline.
        configs = [t for t in configs if not self.is_small(t)] + [t for t in configs if self.is_small(t)]
        rows = ["workload\tconfiguration\trun\twall_s\tmaxrss_kib\tstatus\tdetail\tcpu_s"]
        reference = {}
        for w in self.only:  # generate the SQL scripts before the clock starts
            if w == "sqlite":
                self.sqlite_script(self.sizes["sqlite"]["full"])
                self.sqlite_script(self.sizes["sqlite"]["small"])
        # One untimed glibc run of each workload first: the interpreter, the libraries and the
        # scripts come into the page cache before the first measured run, not during it.
        for w in self.only:
            env, command = self.workload_command(w, "full")
            self.measure(command, clean_env(env), os.devnull, os.devnull, "the warm-up")
        note(f"table: {self.runs} round(s) of: workloads [{' '.join(self.only)}] x configurations [{' '.join(configs)}]")
        started = int(time.monotonic())
        for rep in range(1, self.runs + 1):
            for w in self.only:
                for c in configs:
                    key = f"{w}/{c}"
                    if key in self.given_up:
                        continue
                    size = "small" if self.is_small(c) else "full"
                    tag = f"{w}.{c}.{rep}"
                    workload_env, command = self.workload_command(w, size)
                    tool_env, wrapper = self.tool_setup(c, tag)
                    out, err = self.log_dir / f"{tag}.out", self.log_dir / f"{tag}.err"
                    # The wrapper (heaptrack, valgrind) goes before the workload, the tool's
                    # assignments after the workload's.
                    result = self.measure([*wrapper, *command], clean_env(workload_env, tool_env), out, err, tag)
                    how = result.how
                    status, detail = "ok", ""
                    ref_key = f"{w}/{size}"
                    stdout = self.program_stdout(c, out)
                    leak_checker = self.tools.get(c, {}).get("leak_checker", False)
                    if how == "timeout":
                        status, detail = "FAIL", f"timeout after {self.timeout}s"
                    elif how.startswith("signal:"):
                        status, detail = "FAIL", f"killed by signal {how[7:]}"
                    elif b"cannot be preloaded" in err.read_bytes():
                        status, detail = "FAIL", "ld.so did not preload the library"
                    elif how != "exit:0" and not leak_checker:
                        status, detail = "FAIL", f"exit status {how[5:]}"
                    elif c in ("glibc", "glibc-small") and ref_key not in reference:
                        if how != "exit:0":
                            raise Fatal(f"{w} under plain glibc ended with {how}; see {err}")
                        if not stdout:
                            raise Fatal(f"{w} under plain glibc printed nothing; see {out}")
                        reference[ref_key] = self.out_dir / f"reference.{w}.{size}.out"
                        reference[ref_key].write_bytes(stdout)
                    elif ref_key not in reference:
                        status, detail = "FAIL", "no glibc reference output"
                    elif stdout != reference[ref_key].read_bytes():
                        status, detail = "FAIL", "stdout differs from glibc"
                    elif how != "exit:0":
                        detail = f"exit {how[5:]}: leaks reported"
                    if c == "heaptrack":
                        for f in sorted(self.tmp_dir.glob(f"heaptrack.{tag}.*")):
                            self.trace_bytes.setdefault(w, []).append(f.stat().st_size)
                            f.unlink()
                    for f in self.tmp_dir.glob("*.heap"):  # gperftools' leak profiles
                        f.unlink()
                    # A glibc run is never skipped: without it there is no baseline.
                    if status == "FAIL" and not c.startswith("glibc"):
                        self.given_up[key] = detail
                    rows.append(f"{w}\t{c}\t{rep}\t{result.wall:.3f}\t{result.maxrss_kib}\t{status}\t{detail}\t{result.cpu:.3f}")
                    print(f"bench.sh: [{rep}/{self.runs}] {w:<11} {self.describe[c]:<28} {result.wall:7.2f} s "
                          f"{result.maxrss_kib / 1024:8.1f} MiB  {status}{f' ({detail})' if detail else ''}",
                          file=sys.stderr, flush=True)
                    self.results.write_text("\n".join(rows) + "\n")
        self.part_seconds["table"] = int(time.monotonic()) - started
        self.summary.write_text(self.table_summary(rows[1:]))

    def table_summary(self, rows):
        """One row per workload and configuration: medians, ratios to the glibc baseline of the same
        size, successful/total runs. A ratio is the median of each round's ratio to the glibc run of
        the same round: on a shared machine the load drifts within minutes, and runs a few seconds
        apart see nearly the same load, so paired ratios are much steadier than a ratio of medians."""
        order, runs = [], {}
        for row in rows:
            w, c, rep, wall, rss, status, detail, cpu = row.split("\t")
            key = (w, c)
            if key not in runs:
                order.append(key)
                runs[key] = {"total": 0, "ok": {}, "info": "", "why": None}
            entry = runs[key]
            entry["total"] += 1
            if status == "ok":
                entry["ok"][rep] = (float(wall), float(rss), float(cpu))
                if detail:
                    entry["info"] = detail
            elif entry["why"] is None:
                entry["why"] = detail
        lines = []
        for w, c in order:
            entry = runs[(w, c)]
            base = runs.get((w, "glibc-small" if self.is_small(c) else "glibc"), {"ok": {}})["ok"]
            wall = rss = rw = rr = rc = "-"
            ok = entry["ok"]
            if ok:
                wall = f"{median([v[0] for v in ok.values()]):.2f}"
                rss = f"{median([v[1] for v in ok.values()]) / 1024:.1f}"
                pairs = [(v, base[rep]) for rep, v in ok.items() if rep in base and base[rep][0] > 0]
                if pairs:
                    rw = f"{paired_median([v[0] / b[0] for v, b in pairs]):.2f}"
                    rr = f"{paired_median([v[1] / b[1] for v, b in pairs]):.2f}"
                cpu_pairs = [v[2] / b[2] for v, b in pairs if b[2] > 0]
                if cpu_pairs:
                    rc = f"{paired_median(cpu_pairs):.2f}"
            st = "ok" if len(ok) == entry["total"] else "FAIL"
            detail = (entry["why"] or "") if st == "FAIL" else entry["info"]
            lines.append(f"{w}\t{c}\t{wall}\t{rw}\t{rss}\t{rr}\t{len(ok)}/{entry['total']}\t{st}\t{detail}\t{rc}\n")
        return "".join(lines)

    # ------------------------------------------------------------------ part: scan-overhead

    def run_scan_overhead(self):
        """heapkeeper detect with periodic scans against the same without them, alternating (which
        one goes first alternates too), on python_churn long enough for several scans. Both write
        the JSON report, which counts the scans, so the two differ only in HEAPKEEPER_SCAN_INTERVAL."""
        started = int(time.monotonic())
        env = {"PYTHONHASHSEED": "0", "PYTHONMALLOC": "malloc"}
        command = [self.python, str(WORKLOAD_DIR / "python_churn.py"), str(self.overhead_iterations),
                   "--cache-entries", str(self.sizes["python_churn"]["cache"])]
        rows = ["configuration\trun\twall_s\tmaxrss_kib\tstatus\tscans\tcpu_s"]
        reference = self.out_dir / "reference.overhead.out"
        # glibc once, untimed in the comparison: the reference output, and the page cache warmed.
        result = self.measure(command, clean_env(env), reference, self.log_dir / "overhead.glibc.err", "overhead.glibc")
        if result.how != "exit:0" or not reference.stat().st_size:
            raise Fatal(f"python_churn under glibc ended with {result.how}")
        rows.append(f"glibc\t1\t{result.wall:.3f}\t{result.maxrss_kib}\tok\t-\t{result.cpu:.3f}")
        note(f"scan-overhead: {self.runs} round(s) of heapkeeper detect with and without periodic scans every "
             f"{self.overhead_interval} (python_churn {self.overhead_iterations} iterations, glibc: {result.wall:.3f} s)")
        for rep in range(1, self.runs + 1):
            for c in (["hk-noscan", "hk-scan"] if rep % 2 else ["hk-scan", "hk-noscan"]):
                tag = f"overhead.{c}.{rep}"
                report = self.tmp_dir / f"{tag}.json"
                hk_env = {"LD_PRELOAD": self.lib["hk-detect"], "HEAPKEEPER_MODE": "detect", "HEAPKEEPER_REPORT": str(report)}
                if c == "hk-scan":
                    hk_env["HEAPKEEPER_SCAN_INTERVAL"] = self.overhead_interval
                out = self.log_dir / f"{tag}.out"
                result = self.measure(command, clean_env(env, hk_env), out, self.log_dir / f"{tag}.err", tag)
                status = "ok"
                if result.how != "exit:0":
                    status = f"FAIL: {result.how}"
                elif out.read_bytes() != reference.read_bytes():
                    status = "FAIL: stdout differs from glibc"
                try:
                    scans = str(json.loads(report.read_text())["scans"])
                except (OSError, ValueError, KeyError):
                    scans = "-"
                report.unlink(missing_ok=True)
                rows.append(f"{c}\t{rep}\t{result.wall:.3f}\t{result.maxrss_kib}\t{status}\t{scans}\t{result.cpu:.3f}")
                print(f"bench.sh: [{rep}/{self.runs}] scan-overhead {c:<10} {result.wall:7.2f} s "
                      f"{result.maxrss_kib / 1024:8.1f} MiB  {scans} scans  {status}", file=sys.stderr, flush=True)
                self.overhead_runs.write_text("\n".join(rows) + "\n")
        self.part_seconds["scan-overhead"] = int(time.monotonic()) - started
        summary, verdict = self.overhead_summary_of(rows[1:])
        self.overhead_summary.write_text(summary)
        self.overhead_verdict = verdict
        if self.quick:
            self.overhead_verdict += (f" [--quick: short runs with scans every {self.overhead_interval}; "
                                      "the goal is stated for 10 s scans on the full run]")

    def overhead_summary_of(self, rows):
        """Medians per configuration, and the paired ratio: each round's run with scans over the run
        without them in the same round, so drift between rounds cancels out. CPU time (the process's
        user + system, the scanner thread's included) is reported beside wall time: on a shared
        machine it does not count waiting for a core, so it shows the scans' cost with less noise."""
        total, failed, ok = {}, {}, {}
        for row in rows:
            c, rep, wall, rss, status, scans, cpu = row.split("\t")
            total[c] = total.get(c, 0) + 1
            if status != "ok":
                failed[c] = status
                continue
            ok.setdefault(c, {})[rep] = (float(wall), float(rss), float(cpu), scans)
        names = {"glibc": "glibc (reference, one run)", "hk-noscan": "heapkeeper detect, no periodic scans",
                 "hk-scan": f"heapkeeper detect, scans every {self.overhead_interval}"}
        lines = ["configuration\twall s\tx glibc\tCPU s\tpeak RSS MiB\tperiodic scans per run\truns ok\n"]
        walls = lambda c: [v[0] for v in ok[c].values()]
        for c in ("glibc", "hk-noscan", "hk-scan"):
            if c not in total:
                continue
            runs = ok.get(c, {})
            w = median(walls(c)) if runs else None
            scans = [int(v[3]) - (0 if c == "glibc" else 1) for v in runs.values() if v[3] != "-"]
            lines.append("\t".join([
                names[c], "-" if w is None else f"{w:.2f}",
                "-" if w is None or "glibc" not in ok else f"{w / median(walls('glibc')):.2f}",
                f"{median([v[2] for v in runs.values()]):.2f}" if runs else "-",
                f"{median([v[1] for v in runs.values()]) / 1024:.1f}" if runs else "-",
                awk_string(median(scans)) if scans else "-",
                f"{len(runs)}/{total[c]}" + (f" ({failed[c]})" if c in failed else "")]) + "\n")
        scan, noscan = ok.get("hk-scan", {}), ok.get("hk-noscan", {})
        pairs = [v[0] / noscan[rep][0] for rep, v in scan.items() if rep in noscan]
        cpu_pairs = [v[2] / noscan[rep][2] for rep, v in scan.items() if rep in noscan and noscan[rep][2] > 0]
        if not pairs:
            return "".join(lines), "no successful pair of runs: no verdict"
        paired = paired_median(pairs)
        ratio = median(walls("hk-scan")) / median(walls("hk-noscan"))
        verdict = (f"periodic scans every {self.overhead_interval} cost {(paired - 1) * 100:+.1f}% wall time (median of "
                   f"{len(pairs)} paired ratios: {paired:.3f}; ratio of medians: {ratio:.3f})")
        if cpu_pairs:
            verdict += f" and {(paired_median(cpu_pairs) - 1) * 100:+.1f}% CPU time"
        return "".join(lines), verdict + f"; goal at most +5% wall time: {'met' if paired <= 1.05 else 'MISSED'}"

    # ------------------------------------------------------------------ part: first-report

    def run_first_report(self):
        """late_leak under each tool, watched by bench/first_report.py."""
        started = int(time.monotonic())
        late_leak = self.out_dir / "late_leak"
        self.compile(late_leak, WORKLOAD_DIR / "late_leak.c", "-g", "-fno-omit-frame-pointer")
        configs = []
        for config in self.data["first_report"]["config"]:
            if config["tool"] not in self.active:
                continue
            if config.get("needs_cli") and not os.access(self.hk_cli, os.X_OK):
                self.skip("heapkeeper report on demand", f"{self.hk_cli} is not built")
                continue
            configs.append(config)
        self.first_configs = configs
        rows = ["configuration\trun\tafter_leak_s\tsource\texit_after_leak_s\tstatus"]
        rounds = self.first_report_rounds
        note(f"first-report: {rounds} round(s) of late_leak ({self.late_duration} s, leak at {self.late_leak_at} s) "
             f"under [{' '.join(c['name'] for c in configs)}]")
        result_file = self.tmp_dir / "first.json"
        for rep in range(1, rounds + 1):
            for config in configs:
                c = config["name"]
                tag = f"late.{c}.{rep}"
                values = self.values(config["tool"], tag)
                env, wrapper = self.tool_setup(config["tool"], tag)
                env.update({k: expand(v, values) for k, v in config.get("env", {}).items()})
                watch = []
                for option in ("on_leak", "after"):
                    if config.get(option):
                        watch += [f"--{option.replace('_', '-')}", expand(config[option], values)]
                command = [self.python, str(BENCH_DIR / "first_report.py"), "--leak", self.data["first_report"]["leak"],
                           "--report", config["report"], "--timeout", str(self.timeout), "--result", str(result_file),
                           "--log", str(self.log_dir / f"{tag}.log"), *watch, "--",
                           *env_command(env), *wrapper, str(late_leak), str(self.late_duration), self.late_leak_at]
                if subprocess.run(command, cwd=self.tmp_dir, stdin=subprocess.DEVNULL).returncode:
                    raise Fatal(f"bench/first_report.py failed on {tag}")
                r = json.loads(result_file.read_text())
                seen = r["report_after_leak_s"] is not None
                good = r["status"] in ("exit:0", "exit:1", "exit:23") and seen
                status = "ok" if good else "FAIL: " + (r["status"] if seen else f"no report naming the leak ({r['status']})")
                exit_after = "-" if r["leak_s"] is None else f"{r['exit_s'] - r['leak_s']:.2f}"
                after = "-" if not seen else f"{r['report_after_leak_s']:.2f}"
                rows.append("\t".join([c, str(rep), after, r["source"] or "-", exit_after, status]))
                self.first_runs.write_text("\n".join(rows) + "\n")
                for f in list(self.tmp_dir.glob(f"{tag}.*")) + list(self.tmp_dir.glob(f"heaptrack.{tag}.*")) + \
                        list(self.tmp_dir.glob("*.heap")):
                    f.unlink()
                print(f"bench.sh: [{rep}/{rounds}] first-report {c:<10} report {after} s after the leak "
                      f"({r['source'] or '-'}), exit {exit_after} s after it  {status}", file=sys.stderr, flush=True)
        self.part_seconds["first-report"] = int(time.monotonic()) - started
        self.first_summary.write_text(self.first_report_summary_of(rows[1:], configs))

    def first_report_summary_of(self, rows, configs):
        """Per configuration: medians of the successful runs, and how many succeeded."""
        lines = ["tool\thow the leak is reported\tfirst leak report (s)\texit (s after the leak)\truns ok\n"]
        for config in configs:
            mine = [row.split("\t") for row in rows if row.split("\t")[0] == config["name"]]
            good = [row for row in mine if row[5] == "ok"]
            why = next((row[5] for row in mine if row[5] != "ok"), "")
            values = self.values()
            lines.append("\t".join([
                expand(config["description"], values), config["how"],
                f"{median([row[2] for row in good]):.2f}" if good else "-",
                f"{median([row[4] for row in good]):.2f}" if good else "-",
                f"{len(good)}/{len(mine)}" + (f" ({why})" if why else "")]) + "\n")
        return "".join(lines)

    # ------------------------------------------------------------------ part: corpus

    def run_corpus(self):
        """Leak-report quality: the leak corpus (exact expected figures) under every leak checker in
        use. One program at a time: the corpus's timing checks (scans during a 1.2 s churn) need the
        CPU, and valgrind or heaptrack on the other core would starve them."""
        hk_active = self.lib.get("hk-detect") if "hk-detect" in self.active else \
            self.lib.get("hk-off") if "hk-off" in self.active else None
        if not hk_active:
            return self.skip("corpus", "it needs heapkeeper (hk-off or hk-detect in --tools)")
        if not os.access(self.corpus_programs / "lost_malloc", os.X_OK):
            return self.skip("corpus", f"no corpus programs in {self.corpus_programs} (configure with "
                                       "-DHEAPKEEPER_BUILD_TESTS=ON and build)")
        started = int(time.monotonic())
        tools = ",".join(["heapkeeper"] + [t for t in ("valgrind", "lsan", "heaptrack", "gperftools") if t in self.active])
        args = ["--preload", hk_active, "--programs", str(self.corpus_programs),
                "--source-dir", str(ROOT_DIR / "tests/leak_corpus"), "--tools", tools,
                "--json", str(self.corpus_json), "--jobs", "1"]
        if (self.corpus_programs / "lsan").is_dir():
            args += ["--lsan-programs", str(self.corpus_programs / "lsan")]
        if self.lib.get("gperftools"):
            args += ["--tcmalloc", self.lib["gperftools"]]
        note(f"corpus: tests/leak_corpus/run_corpus.py --tools {tools}")
        with open(self.out_dir / "leak_corpus.txt", "wb") as log:
            result = subprocess.run([self.python, str(ROOT_DIR / "tests/leak_corpus/run_corpus.py"), *args],
                                    env=clean_env(), cwd=self.tmp_dir, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.corpus_status = "ok" if result.returncode == 0 else \
            f"heapkeeper FAILED on the corpus (see {self.out_dir / 'leak_corpus.txt'})"
        self.part_seconds["corpus"] = int(time.monotonic()) - started
        if self.corpus_json.is_file() and self.corpus_json.stat().st_size:
            doc = json.loads(self.corpus_json.read_text())
            counts_as = self.data["corpus"]["counts_as"]
            lines = ["tool\texact matches\tdirect/indirect split too\tno result\twhat counts as leaked\n"]
            for tool, c in doc["tools"].items():
                if not c["available"]:
                    lines.append(f"{tool}\t-\t-\t-\tnot available: {c.get('why_not_available', '')}\n")
                    continue
                split = "-" if c["classified"] is None else f"{c['classified']}/{c['programs']}"
                lines.append(f"{tool}\t{c['exact']}/{c['programs']}\t{split}\t{c['skipped'] + c['errors']}\t"
                             f"{counts_as[tool]}\n")
            self.corpus_summary.write_text("".join(lines))

    # ------------------------------------------------------------------ the whole run

    def main(self):
        self.set_up()
        try:
            return self.run()
        finally:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def run(self):
        self.find_configurations()
        out = self.out_dir
        self.results, self.summary = out / "runs.tsv", out / "summary.tsv"
        self.overhead_runs, self.overhead_summary = out / "scan_overhead.tsv", out / "scan_overhead_summary.tsv"
        self.first_runs, self.first_summary = out / "first_report.tsv", out / "first_report_summary.tsv"
        self.corpus_json, self.corpus_summary = out / "leak_corpus.json", out / "leak_corpus_summary.tsv"
        for path in (self.results, self.summary, self.overhead_runs, self.overhead_summary, self.first_runs,
                     self.first_summary, self.corpus_json, self.corpus_summary):
            path.unlink(missing_ok=True)
        self.part_seconds, self.given_up, self.trace_bytes = {}, {}, {}
        self.overhead_verdict, self.corpus_status, self.first_configs = "", "", []
        self.bench_started = int(time.monotonic())
        if self.part("table"):
            self.run_table()
        if self.part("scan-overhead"):
            if "hk-detect" in self.active:
                self.run_scan_overhead()
            else:
                self.skip("scan-overhead", "it needs heapkeeper (hk-detect in --tools)")
        if self.part("first-report"):
            self.run_first_report()
        if self.part("corpus"):
            self.run_corpus()
        report = bench_report.Report(self)
        print(report.text("text"), end="", flush=True)
        (out / "results.md").write_text("# heapkeeper benchmark\n" + report.text("markdown"))
        note(f"wrote {out / 'results.md'}")
        return self.exit_status()

    def exit_status(self):
        """Non-zero when glibc or heapkeeper failed, so CI notices. Other tools failing
        (LeakSanitizer crashes some programs, for one) is their problem, reported in the tables."""
        def rows(path):
            return [line.split("\t") for line in path.read_text().splitlines()] if path.is_file() else []
        if any(r[7] == "FAIL" and (r[1].startswith("glibc") or r[1].startswith("hk-")) for r in rows(self.summary)):
            return 1
        if any("\tFAIL" in "\t".join(r) for r in rows(self.overhead_runs)):
            return 1
        if any(re.match(r"hk-[a-z0-9]+$", r[0]) and re.fullmatch(r"[0-9]+", r[1]) and r[-1].startswith("FAIL")
               for r in rows(self.first_runs)[1:]):
            return 1
        return 1 if self.corpus_status.startswith("heapkeeper") else 0

    def machine_lines(self):
        cpu_model = ""
        try:
            with open("/proc/cpuinfo") as f:
                cpu_model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
        except OSError:
            pass
        took = ", ".join(f"{p} {self.part_seconds[p]}s" for p in PARTS if p in self.part_seconds)
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
        py = self.sizes["python_churn"]
        sq = self.sizes["sqlite"]
        versions = f"python {subprocess.run([self.python, '-c', 'import platform; print(platform.python_version())'], capture_output=True, text=True).stdout.strip()},"
        if self.sqlite:
            versions += f" sqlite {subprocess.run([self.sqlite, '-version'], capture_output=True, text=True).stdout.split()[0]},"
        versions += (f" glibc {version_of('libc6')}, jemalloc {version_of('libjemalloc2')}, mimalloc "
                     f"{version_of('libmimalloc2.0')}, heaptrack {version_of('heaptrack')}, valgrind "
                     f"{version_of('valgrind')}, gperftools {version_of('libgoogle-perftools4')}")
        elapsed = int(time.monotonic()) - self.bench_started
        return [
            f"machine: {len(os.sched_getaffinity(0))} CPUs, {cpu_model or 'unknown CPU'}",
            f"kernel:  {uname.sysname} {uname.release} {uname.machine}",
            f"date:    {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; heapkeeper commit {commit}",
            f"runs:    {self.runs} per configuration, round-robin; medians of successful runs; benchmark took "
            f"{elapsed}s ({took or 'nothing run'})",
            f"sizes:   python_churn {py['full']} iterations (small: {py['small']}), sqlite {sq['full']} orders = "
            f"{sq['full'] * 3} rows (small: {sq['small']}); scan overhead: python_churn {self.overhead_iterations} "
            f"iterations; late_leak {self.late_duration} s",
            f"versions: {versions}",
        ]

    def notes(self):
        notes = []
        if "hk-off" in self.active or "hk-detect" in self.active:
            digest = hashlib.sha256(self.hk_copy.read_bytes()).hexdigest()[:12]
            notes.append(f"heapkeeper: {self.hk_source} (built {self.hk_built}, copied at the start; sha256 {digest}), "
                         f"HEAPKEEPER_STACK_DEPTH={os.environ.get('HEAPKEEPER_STACK_DEPTH') or 'default'}")
        notes += [f"{self.describe[t]}: {self.tool_note[t]}" for t in self.selected if self.tool_note.get(t)]
        notes += self.skip_notes
        for key in sorted(self.given_up):
            w, c = key.split("/", 1)
            notes.append(f"{self.describe[c]} on {self.workloads[w]['description']}: not repeated after its first failure "
                         f"({self.given_up[key]}); see {self.log_dir}/")
        traces = []
        for w in self.only:
            sizes = sorted(self.trace_bytes.get(w, []))
            if sizes:
                traces.append(f"{sizes[(len(sizes) + 1) // 2 - 1] / 1048576:.1f} MiB for {w}")
        if traces:
            notes.append("heaptrack records to a file (-o /tmp/heapkeeper-bench.*/heaptrack.*, deleted after each run), "
                         f"median size: {', '.join(traces)}; its wall time includes writing and compressing it")
        if self.given_up.get("sqlite/lsan") == "killed by signal 11":
            notes.append("LeakSanitizer on sqlite3: preloaded liblsan initialises on the first malloc, but sqlite3 calls "
                         "signal() before that, through a not-yet-resolved interceptor (NULL call)")
        if self.part("table"):
            if "heaptrack" in self.active:
                notes.append("heaptrack's peak RSS is that of the largest process in its tree (the program, "
                             "heaptrack_interpret or the compressor it pipes into), not their sum")
            if "valgrind" in self.active or "gperftools" in self.active:
                notes.append(f"[small]: run on the small variant (python_churn {self.sizes['python_churn']['small']} "
                             f"iterations, sqlite {self.sizes['sqlite']['small']} orders); ratios are to glibc [small], "
                             "where interpreter start-up weighs more")
            notes.append("a run is ok when it exits normally and its stdout equals the glibc run's; leak checkers may "
                         "exit non-zero when they report leaks")
        if self.first_summary.is_file() and self.first_summary.stat().st_size:
            notes.append(f"first leak report: seconds from late_leak's own line announcing the leak ({self.late_leak_at} s "
                         f"into a {self.late_duration} s run) to the first line naming the leaked block, medians of "
                         f"{self.first_report_rounds} run(s); exit: when late_leak and the tool's exit work ended, also "
                         f"counted from the leak; stamped lines: {self.log_dir}/late.*.log")
        if self.corpus_status:
            notes.append(f"leak corpus: {self.corpus_status}; per-program figures: {self.out_dir}/leak_corpus.txt and "
                         "leak_corpus.json; LeakSanitizer runs the corpus built with -fsanitize=leak")
        notes.append(f"per-run stdout/stderr: {self.log_dir}/; every run: {self.out_dir}/*.tsv")
        return notes


def main(argv):
    try:
        return Bench(argv).main()
    except Fatal as error:
        print(f"bench.sh: error: {error}", file=sys.stderr)
        return 1

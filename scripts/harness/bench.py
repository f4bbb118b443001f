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
 python-frames what Python frames in stacks cost each allocation (heapkeeper with and without them on
               python3 churn, PYTHONMALLOC=malloc, 24-frame stacks), beside tracemalloc's cost with
               24-frame tracebacks on the same workload; the goal is at most 100 ns per allocation.
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
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import bench_report, timed_run
from .bench_parts import WORKLOAD_DIR, BenchParts, clean_env, messages, note
from .common import (DEBIAN_PYTHON, HARNESS_DIR, ROOT_DIR, Fatal, expand, expand_all, find_lib, install_missing,
                     load_data, missing_packages, parse_options)

PARTS = ["table", "scan-overhead", "python-frames", "first-report", "corpus"]
# A heapkeeper JSON report of a benchmark run: one per process (%p), removed after the run.
REPORT_PREFIX = "hkreport."


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


def positive(value, option):
    if not re.fullmatch(r"[1-9][0-9]*", str(value)):
        raise Fatal(f"{option} must be a positive integer, not '{value}'")
    return int(value)


class Bench(BenchParts):
    def __init__(self, argv):
        self.data = load_data("bench.toml")
        self.tools = {t["name"]: t for t in self.data["tool"]}
        self.workloads = {w["name"]: w for w in self.data["workload"]}
        small = self.data["baseline_small"]
        self.describe = {t["name"]: t["description"] for t in self.data["tool"]}
        self.describe[small["name"]] = small["description"]
        self.small_tools = [small["name"]] + [t["name"] for t in self.data["tool"] if t.get("small")]
        self.parts_order = PARTS
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
        # The reports the timed runs write ({report}) go to memory (/dev/shm) when it can hold them:
        # on a disk's file system, creating a file costs what that file system's recent past makes
        # it cost. On this machine's ext4 (no journal) every create scans past each inode freed in
        # the last minutes (ext4's recently_deleted()), and /tmp is shared with every other
        # process's churn: 0.5-1 ms a report there against about 0.05 ms in memory, in the shell
        # loop's 100 reports a run a figure of the machine's history rather than of either tool.
        shm = Path("/dev/shm")
        self.report_dir = (Path(tempfile.mkdtemp(prefix="heapkeeper-bench-reports.", dir=shm))
                           if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else self.tmp_dir)
        self.cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        self.rusage_exec = self.out_dir / "hk-rusage-exec"
        self.compile(self.rusage_exec, HARNESS_DIR / "rusage_exec.c")
        self.compile_shared_libraries()
        if self.part("table"):
            self.compile_programs()
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
        values = {"python": self.python, "sqlite": self.sqlite or "", "workloads": str(WORKLOAD_DIR),
                  "tmp": str(self.tmp_dir), "tag": tag, "lib": lib, "hk_cli": str(self.hk_cli),
                  "late_interval": self.late_interval, "pid": "{pid}",
                  "report": str(self.report_dir / f"{REPORT_PREFIX}{tag}.%p.json")}
        values.update({name: str(self.out_dir / f"hk-{name}") for name in self.data.get("programs", {})})
        values.update({name: str(self.out_dir / f"hk-{name}.so") for name in self.data.get("shared_libraries", {})})
        return values

    def compile_programs(self):
        """The C programs of [programs] that a selected workload's command names."""
        for name, source in self.data.get("programs", {}).items():
            if any("{" + name + "}" in " ".join(self.workloads[w]["command"]) for w in self.only):
                self.compile(self.out_dir / f"hk-{name}", WORKLOAD_DIR / source)

    def compile_shared_libraries(self):
        """The libraries of [shared_libraries] that a selected configuration's environment names."""
        for name, source in self.data.get("shared_libraries", {}).items():
            if any("{" + name + "}" in " ".join(self.tools[t].get("env", {}).values()) for t in self.selected):
                self.compile(self.out_dir / f"hk-{name}.so", WORKLOAD_DIR / source, "-shared", "-fPIC")

    def runs_on(self, workload, config):
        """Whether the table runs `workload` under `config` (a workload may name its configurations)."""
        tools = self.workloads[workload].get("tools")
        return tools is None or config in tools

    def processes(self, workload):
        """Processes one run of `workload` starts, for the per-process goals (1 unless it says)."""
        sizes = dict(self.sizes[self.workloads[workload]["size"]])
        sizes["n"] = sizes["full"]
        return int(expand(str(self.workloads[workload].get("processes", 1)), sizes))

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

    def workload_command(self, name, size, tag=""):
        """(environment, command) of workload `name` at size full or small, for the run `tag`."""
        workload = self.workloads[name]
        sizes = self.sizes[workload["size"]]
        values = self.values(tag=tag)
        values.update(sizes)
        values["n"] = sizes[size]
        if name == "sqlite":
            values["sqlite_script"] = str(self.sqlite_script(values["n"]))
        env = {k: expand(v, values) for k, v in workload.get("env", {}).items()}
        return env, expand_all(workload["command"], values)

    def prepare_workloads(self):
        """Each selected workload's `prepare` command, once, before the table's clock starts."""
        for name in self.only:
            prepare = self.workloads[name].get("prepare")
            if not prepare:
                continue
            values = self.values()
            values.update(self.sizes[self.workloads[name]["size"]])
            values["n"] = values["full"]
            result = subprocess.run(expand_all(prepare, values), capture_output=True, text=True)
            if result.returncode != 0:
                raise Fatal(f"preparing {name} failed: {result.stderr.strip()[:200]}")

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

    # ------------------------------------------------------------------ the whole run

    def main(self):
        self.set_up()
        try:
            return self.run()
        finally:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            shutil.rmtree(self.report_dir, ignore_errors=True)

    def run(self):
        self.find_configurations()
        out = self.out_dir
        self.results, self.summary = out / "runs.tsv", out / "summary.tsv"
        self.overhead_runs, self.overhead_summary = out / "scan_overhead.tsv", out / "scan_overhead_summary.tsv"
        self.first_runs, self.first_summary = out / "first_report.tsv", out / "first_report_summary.tsv"
        self.python_frames_runs = out / "python_frames.tsv"
        self.python_frames_summary = out / "python_frames_summary.tsv"
        self.heap_runs, self.goals_summary = out / "heap_figures.tsv", out / "goals_summary.tsv"
        self.corpus_json, self.corpus_summary = out / "leak_corpus.json", out / "leak_corpus_summary.tsv"
        for path in (self.results, self.summary, self.heap_runs, self.goals_summary, self.overhead_runs, self.overhead_summary, self.first_runs,
                     self.first_summary, self.corpus_json, self.corpus_summary, self.python_frames_runs,
                     self.python_frames_summary):
            path.unlink(missing_ok=True)
        self.part_seconds, self.given_up, self.trace_bytes = {}, {}, {}
        self.overhead_verdict, self.corpus_status, self.first_configs = "", "", []
        self.python_frames_verdict = ""
        self.bench_started = int(time.monotonic())
        if self.part("table"):
            self.run_table()
        if self.part("scan-overhead"):
            if "hk-detect" in self.active:
                self.run_scan_overhead()
            else:
                self.skip("scan-overhead", "it needs heapkeeper (hk-detect in --tools)")
        if self.part("python-frames"):
            if "hk-detect" in self.active:
                self.run_python_frames()
            else:
                self.skip("python-frames", "it needs heapkeeper (hk-detect in --tools)")
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
        python_frames_runs = getattr(self, "python_frames_runs", None)  # absent when the part never ran
        if python_frames_runs and any(r[0].startswith("hk-") and r[-1].startswith("FAIL")
                                      for r in rows(python_frames_runs)[1:]):
            return 1
        if any(re.match(r"hk-[a-z0-9]+$", r[0]) and re.fullmatch(r"[0-9]+", r[1]) and r[-1].startswith("FAIL")
               for r in rows(self.first_runs)[1:]):
            return 1
        return 1 if self.corpus_status.startswith("heapkeeper") else 0

def main(argv):
    try:
        return Bench(argv).main()
    except Fatal as error:
        print(f"bench.sh: error: {error}", file=sys.stderr)
        return 1

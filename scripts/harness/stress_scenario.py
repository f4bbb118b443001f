"""One stress scenario (scripts/stress.sh --internal-run NAME): its workload run without heapkeeper
and under `heapkeeper run`, and the checks common to every scenario.

Every scenario checks that
  - stdout and the exit status are the same as without heapkeeper, and nothing crashed or hung;
  - every exit report (HEAPKEEPER_REPORT, one per process) is consistent: live_blocks equals
    allocations - frees, peak >= live, no bad free, a successful exit scan; and agrees with the
    program's own counts where it prints them (allocation calls, leaked blocks, pid log);
  - `heapkeeper stats --json`, run while the scenario runs, reads every tracked process of the
    scenario it catches alive, and its figures are sane (live <= mapped, no wrapped counter...);
    the project's programs also stop at a "hold point" where the live stats must show exactly the
    blocks the program holds at one call site (tests/stress/stress_common.h);
  - no leak is reported for a leak-free program, and the leakers' leaks are found exactly where
    they are made.
The JSON is read by tests/stress/check.py. The scenario's files stay in BUILD/stress/logs/NAME/:
plain/ and hk/ (out, err, status, seconds, run/ the working directory; hk/ also reports/, samples/,
hold/), failures (one line per failed check), skipped, note (the table's note), summary (what the
exit reports add up to: reports peak leaked leaked_bytes scans allocations collected), sampled.
"""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from . import stress_live_stats, stress_workloads, timed_run
from .common import DEBIAN_PYTHON, ROOT_DIR, expand, expand_all, first_line_matching, have, read_text, spaced

STRESS_SOURCES = ROOT_DIR / "tests/stress"
CHECK = [DEBIAN_PYTHON, str(STRESS_SOURCES / "check.py")]
SUMMARY_FIELDS = ("reports", "peak", "leaked", "leaked_bytes", "scans", "allocations", "collected")


class Skip(Exception):
    """The scenario cannot run here (its program cannot be had)."""


def describe_status(status):
    """'exit N', 'killed by SIGNAME' or 'timed out'."""
    if status in (124, 137):
        return f"timed out (status {status})"
    if status > 128:
        try:
            return f"killed by {signal.Signals(status - 128).name}"
        except ValueError:
            return f"killed by SIG{status - 128}"
    return f"exit {status}"


class RunContext:
    """One run of a workload (mode plain or hk): where it runs, with what environment, and where
    its output goes. Workloads (the data's commands, stress_workloads.py) run commands through it."""

    def __init__(self, scenario, mode, directory, env):
        self.scenario, self.mode, self.env = scenario, mode, env
        self.cwd = directory / "run"
        self.out = open(directory / "out", "wb", buffering=0)
        self.err = open(directory / "err", "wb", buffering=0)

    def close(self):
        self.out.close()
        self.err.close()

    def path(self, name):
        return self.cwd / name

    def echo(self, text, to=None):
        data = (text + "\n").encode()
        if to is None:
            self.out.write(data)
        else:
            with open(self.path(to), "ab") as f:
                f.write(data)

    def _output(self, target):
        return self.out if target is None else open(self.path(target), "wb")

    def start(self, argv, *, traced=True, stdin=None, stdout=None, stderr=None, env=None):
        """Starts a command of the workload (under `heapkeeper run` in the hk run when traced), bounded
        by what is left of the scenario's time. Stays in the scenario's process group (timeout
        --foreground): the driver ends the group as a whole."""
        argv = [str(a) for a in argv]
        if traced and self.mode == "hk":
            argv = [self.scenario.hk, "run", "--library", self.scenario.hk_lib, "--", *argv]
        out = self._output(stdout)
        err = self.err if stderr is None else out if stderr == "stdout" else open(self.path(stderr), "wb")
        try:
            return timed_run.Command(argv, env={**self.env, **(env or {})}, cwd=self.cwd,
                                     stdin=timed_run.DEVNULL if stdin is None else stdin if stdin == timed_run.PIPE
                                     else self.path(stdin),
                                     stdout=out, stderr=err, timeout=self.scenario.limit(), kill_after=5,
                                     own_group=False)
        finally:
            for f in {out, err} - {self.out, self.err}:
                f.close()

    def run(self, argv, **options):
        """The command's status (124: timed out), as a shell's `run` had it."""
        return self.start(argv, **options).wait().status

    def step(self, argv, **options):
        """One step of a multi-command workload: a failing step is written to stdout as
        "[exit N] CMD", so it is part of the comparison, and the workload goes on."""
        status = self.run(argv, **options)
        if status != 0:
            self.echo(f"[exit {status}] {' '.join(str(a) for a in argv)}", to=options.get("stdout"))
        return 0

    def command(self, argv, **options):
        """A helper command, never traced (redis-cli, the tree generator)."""
        return self.run(argv, traced=False, **options)


class Scenario:
    def __init__(self, spec, *, hk, hk_lib, build_dir, log_dir, quick, limit):
        self.spec, self.name = spec, spec["name"]
        self.hk, self.hk_lib, self.build_dir = str(hk), str(hk_lib), build_dir
        self.dir = log_dir / self.name
        self.deadline = time.monotonic() + limit
        self.values = {"sources": str(STRESS_SOURCES), "build": str(build_dir), "python": DEBIAN_PYTHON,
                       "scenario_dir": str(self.dir), "run_dir": ""}
        self.values.update(spec.get("sizes", {}).get("quick" if quick else "full", {}))

    # ------------------------------------------------------------------ messages

    def fail(self, text):
        """A failed check: the scenario goes on, so one run shows every problem."""
        print(f"FAIL: {text}", file=sys.stderr, flush=True)
        with open(self.dir / "failures", "a") as f:
            f.write(text + "\n")

    @staticmethod
    def passed(text):
        print(f"ok: {text}", file=sys.stderr, flush=True)

    def limit(self):
        """Seconds the next command may take: what is left of the scenario's budget (at least 5)."""
        return max(5, int(self.deadline - time.monotonic()))

    def expand(self, template):
        return expand(template, self.values)

    # ------------------------------------------------------------------ the two runs

    def workload(self, context):
        """Runs the scenario's workload; returns its status."""
        values = dict(self.values, run_dir=str(context.cwd))  # the two runs may go at once
        for name, file in self.spec.get("files", {}).items():
            text = read_text(expand(file["template"], values))
            for key, value in file.get("replace", {}).items():
                # The first on each line, as sed's s/// had it.
                text = "\n".join(line.replace(key, expand(value, values), 1) for line in text.split("\n"))
            context.path(name).write_text(text)
        workload = self.spec["workload"]
        if isinstance(workload, str):
            return getattr(stress_workloads, workload)(context, values)
        status = 0
        for entry in workload:
            kind = "run" if "run" in entry else "step"
            status = getattr(context, kind)(expand_all(entry[kind], values), stdin=entry.get("stdin"))
        return status

    def capture(self, mode):
        """Runs the workload in SC_DIR/MODE/run with stdout, stderr, status and wall time saved in
        SC_DIR/MODE/{out,err,status,seconds}. Traced runs write their reports to
        SC_DIR/hk/reports/r.PID.json and are sampled (SC_DIR/hk/samples)."""
        directory = self.dir / mode
        shutil.rmtree(directory, ignore_errors=True)
        (directory / "run").mkdir(parents=True)
        env = dict(self.env)
        helpers = []
        stop = threading.Event()
        if mode == "hk":
            token = f"{self.name}.{os.getpid()}.{random.randint(0, 32767)}"
            for sub in ("reports", "samples", "hold"):
                (directory / sub).mkdir()
            env.update(HEAPKEEPER_REPORT=str(directory / "reports/r.%p.json"), HK_STRESS_RUN=token)
            if self.spec.get("hold"):
                env["HK_STRESS_HOLD"] = str(directory / "hold")
            env.update({k: self.expand(v) for k, v in self.spec.get("hk_env", {}).items()})
            helpers.append(threading.Thread(target=stress_live_stats.sampler,
                                            args=(self.hk, directory / "samples", token, os.getpid(), stop)))
            if self.spec.get("hold"):
                helpers.append(threading.Thread(target=stress_live_stats.hold_responder,
                                                args=(self.hk, directory / "hold", stop)))
        started = time.monotonic()
        context = RunContext(self, mode, directory, env)
        for helper in helpers:
            helper.start()
        status = 1
        try:
            status = self.workload(context)
        finally:
            context.close()
            (directory / "status").write_text(f"{status}\n")
            (directory / "seconds").write_text(f"{time.monotonic() - started:.1f}\n")
            stop.set()
            for helper in helpers:
                helper.join()

    def compare(self):
        """The plain and the traced run, and the checks common to every scenario: same stdout and
        status, no crash or hang, no unexpected heapkeeper diagnostic, the hold point, at least one
        readable mid-run stats sample, sane samples."""
        if self.spec.get("parallel"):
            errors = []

            def plain():
                try:
                    self.capture("plain")
                except BaseException as error:  # noqa: B036 - re-raised below, in the scenario's thread
                    errors.append(error)
            thread = threading.Thread(target=plain)
            thread.start()
            self.capture("hk")
            thread.join()
            if errors:
                raise errors[0]
        else:
            self.capture("plain")
            self.capture("hk")
        plain_dir, hk_dir = self.dir / "plain", self.dir / "hk"
        plain_status, hk_status = int(read_text(plain_dir / "status")), int(read_text(hk_dir / "status"))
        print(f"plain run: {describe_status(plain_status)} in {read_text(plain_dir / 'seconds').strip()} s; "
              f"under heapkeeper: {describe_status(hk_status)} in {read_text(hk_dir / 'seconds').strip()} s",
              file=sys.stderr, flush=True)
        if hk_status in (124, 137) or hk_status > 128:
            tail = "".join(line + " " for line in read_text(hk_dir / "err").splitlines()[-3:])
            self.fail(f"under heapkeeper: {describe_status(hk_status)} (without: {describe_status(plain_status)}); "
                      f"stderr ends: {tail}")
        elif hk_status != plain_status:
            self.fail(f"exit status {hk_status} under heapkeeper, {plain_status} without")
        else:
            self.passed(f"same exit status ({hk_status})")
        if plain_status in (124, 137):
            self.fail("the plain run timed out")
        plain_out, hk_out = (plain_dir / "out").read_bytes(), (hk_dir / "out").read_bytes()
        if plain_out == hk_out:
            lines = plain_out.count(b"\n")
            self.passed(f"same stdout ({lines} lines)")
        else:
            diff = subprocess.run(["diff", str(plain_dir / "out"), str(hk_dir / "out")], capture_output=True,
                                  text=True, errors="replace").stdout
            changed = [line for line in diff.splitlines() if line[:1] in "<>" and line][:2]
            self.fail("stdout differs from the plain run: " + "".join(line + " " for line in changed))
            print("\n".join(diff.splitlines()[:20]), file=sys.stderr, flush=True)
        # heapkeeper's own diagnostics start with "heapkeeper[PID]:"; periodic scans' lines are the
        # only ones a healthy run prints (and only when a scenario turns scans on).
        unexpected = [line for line in read_text(hk_dir / "err").splitlines()
                      if re.search(r"heapkeeper\[[0-9]+\]|cannot be preloaded", line)]
        if self.spec.get("allow_scan_lines"):
            unexpected = [line for line in unexpected
                          if not re.search(r"heapkeeper\[[0-9]+\]: scan [0-9]+: [0-9]+ new leaked blocks", line)]
        if unexpected:
            self.fail("heapkeeper diagnostics on stderr: " + "".join(line + " " for line in unexpected[:3]))
        if self.spec.get("hold"):
            verdict = read_text(hk_dir / "hold/result").rstrip("\n")
            if verdict.startswith("ok"):
                self.passed(f"hold point: {verdict.removeprefix('ok ')}")
            elif verdict.startswith("FAIL"):
                self.fail(f"hold point: {verdict.removeprefix('FAIL ')}")
            else:
                self.fail("the program never reached its hold point (HK_STRESS_HOLD)")
        sample_program = self.spec.get("sample_program")
        check = subprocess.run([*CHECK, "samples", str(hk_dir / "samples"),
                                *(["--program", self.expand(sample_program)] if sample_program else [])],
                               capture_output=True, text=True)
        message = check.stdout.rstrip("\n")
        if check.returncode == 0:
            self.passed(f"mid-run heapkeeper stats --json: {message}")
            (self.dir / "sampled").write_text(message + "\n")
        else:
            self.fail(f"mid-run stats: {spaced(message, 3)}")
        errors_log = read_text(hk_dir / "samples/errors.log")
        if errors_log:
            self.fail(f"heapkeeper stats --json could not read a running process: {spaced(errors_log, 2)}")

    def check_reports(self, options):
        """The traced run's exit reports (tests/stress/check.py reports OPTIONS); writes the summary
        the results table reads."""
        check = subprocess.run([*CHECK, "reports", str(self.dir / "hk/reports"), "--summary", str(self.dir / "summary"),
                                *options], capture_output=True, text=True)
        message = check.stdout.rstrip("\n")
        if check.returncode == 0:
            self.passed(f"exit reports: {read_text(self.dir / 'summary').split(' ')[0]} valid, consistent with the program")
        else:
            self.fail(f"exit reports: {spaced(message, 3)}")
            if len(message.splitlines()) > 3:
                print(message, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ checks of single scenarios

    def check_scan_growth(self):
        """The slow leaker: periodic scans find a leak count that grows, up to what the program leaked."""
        seconds = self.values["ticks"] * self.values["interval_ms"] // 1000
        check = subprocess.run([*CHECK, "scan-growth", str(self.dir / "hk/samples"), str(self.dir / "hk/err"),
                                "--min-scans", str(seconds * 2 // 3), "--final", str(self.values["ticks"])],
                               capture_output=True, text=True)
        message = check.stdout.rstrip("\n")
        self.values["growth"] = "no growth seen"
        if check.returncode == 0:
            self.passed(message)
            found = [m.group(1) for m in re.finditer(r"^periodic scans found ([0-9]* \.\. [0-9]*) leaked blocks.*$",
                                                     message, re.M)]
            self.values["growth"] = "\n".join(f"periodic scans found {m}" for m in found)
        else:
            self.fail(f"periodic scans: {spaced(message, 3)}")

    def check_collect_bound(self):
        """Collect mode: peak live bytes stay under the bound while the plain run's RSS grows past it."""
        plain_rss = first_line_matching(self.dir / "plain/err", r"^collect_leaker: maxrss_kib=(.*)$")
        reports = sorted((self.dir / "hk/reports").glob("r.*.json"))
        if not plain_rss or not reports:
            return self.fail("collect: the plain run's peak RSS or the exit report is missing")
        bound = self.values["bound"]
        check = subprocess.run([*CHECK, "collect", str(reports[0]), "--ticks", str(self.values["ticks"]),
                                "--chunk", str(self.values["chunk_kib"] * 1024), "--bound", str(bound),
                                "--plain-rss-kib", plain_rss], capture_output=True, text=True)
        if check.returncode == 0:
            self.passed(f"collect: peak live {self.values['peak'] // 1048576} MiB within the bound of {bound // 1048576} "
                        f"MiB; peak RSS {int(plain_rss) // 1024} MiB without heapkeeper, "
                        f"{self.values['hk_rss'] // 1024} MiB under it")
        else:
            self.fail(f"collect: {spaced(check.stdout.rstrip(chr(10)), 3)}")

    def check_wait_timing(self):
        """Waits are never cut short (stdout says so); neither may scans stretch them much."""
        plain, traced = self.values["plain_seconds"], self.values["hk_seconds"]
        if float(traced) <= float(plain) * 1.5 + 3:
            self.passed(f"timing: {plain} s without heapkeeper, {traced} s under 100 ms scans")
        else:
            self.fail(f"timing: {traced} s under 100 ms scans against {plain} s without")

    CHECKS = {"scan-growth": check_scan_growth, "collect-bound": check_collect_bound,
              "wait-timing": check_wait_timing}

    # ------------------------------------------------------------------ the scenario

    def prepare(self):
        """Skips what cannot run here; sets the environment both runs share."""
        spec = self.spec
        if spec.get("program"):
            program = self.build_dir / "tests/stress" / f"hk_stress_{spec['program']}"
            if not os.access(program, os.X_OK):
                raise Skip(f"{program} is not built (configure with -DHEAPKEEPER_BUILD_TESTS=ON and build)")
            self.values["program"] = str(program)
        for need in spec.get("needs", []):
            requirement, message = (need, None) if isinstance(need, str) else need
            requirement = self.expand(requirement)
            if not have(requirement):
                raise Skip(message or f"{requirement} is not installed")
        for name, command in spec.get("resolve", {}).items():
            self.values[name] = os.path.basename(os.path.realpath(shutil.which(command)))
        self.env = {k: v for k, v in os.environ.items() if k not in spec.get("unset", [])}
        self.env.update({k: self.expand(v) for k, v in spec.get("env", {}).items()})
        for command in spec.get("prepare", []):
            subprocess.run(expand_all(command, self.values), env=self.env, cwd=self.dir, check=True,
                           stdin=subprocess.DEVNULL)

    def run(self):
        os.chdir(self.dir)
        try:
            self.prepare()
        except Skip as reason:
            (self.dir / "skipped").write_text(f"{reason}\n")
            print(f"SKIP: {reason}", file=sys.stderr, flush=True)
            return
        self.compare()
        for name, (file, pattern, default) in self.spec.get("facts", {}).items():
            value = first_line_matching(self.dir / file, pattern) or default
            self.values[name] = int(value) if value.isdigit() else value
        self.check_reports(expand_all(self.spec.get("reports", []), self.values))
        fields = read_text(self.dir / "summary").split()
        self.values.update({name: int(fields[i]) if i < len(fields) else 0 for i, name in enumerate(SUMMARY_FIELDS)})
        sampled = read_text(self.dir / "sampled").rstrip("\n")
        self.values["sampled"] = re.sub(r"^[0-9]* samples of ", "stats read from ", sampled) if sampled else "no stats read"
        self.values["plain_seconds"] = read_text(self.dir / "plain/seconds").strip()
        self.values["hk_seconds"] = read_text(self.dir / "hk/seconds").strip()
        for check in self.spec.get("checks", []):
            self.CHECKS[check](self)
        (self.dir / "note").write_text(self.expand(self.spec["note"]) + "\n")

"""Unit tests of the benchmark and stress harness (scripts/harness/): the timed-run wrapper on real
commands, the benchmark's summaries and verdicts on fixed runs (figures worked out by hand), the
template filling of the data files, and the data files themselves. No verdict depends on timing.
Python 3.11 standard library; run by CTest as harness.unit (or: python3 tests/harness/test_harness.py).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from harness import bench, stress_scenario, stress_workloads, timed_run  # noqa: E402
from harness.common import Fatal, awk_string, expand, load_data, median, parse_options  # noqa: E402

MIB = 1024


class TimedRunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.scratch = Path(tempfile.mkdtemp(prefix="harness-test."))
        cc = shutil.which("cc") or shutil.which("gcc")
        cls.rusage_exec = None
        if cc:
            cls.rusage_exec = cls.scratch / "rusage_exec"
            subprocess.run([cc, "-O2", "-o", str(cls.rusage_exec), str(ROOT / "scripts/harness/rusage_exec.c")],
                           check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.scratch, ignore_errors=True)

    def test_exit_status_output_and_environment(self):
        out, err = self.scratch / "out", self.scratch / "err"
        outcome = timed_run.run(["sh", "-c", 'echo "$GREETING"; echo oops >&2; exit 3'],
                                env={"GREETING": "hello", "PATH": os.environ["PATH"]}, stdout=out, stderr=err)
        self.assertEqual((outcome.exit_code, outcome.how, outcome.status), (3, "exit:3", 3))
        self.assertEqual(out.read_text(), "hello\n")
        self.assertEqual(err.read_text(), "oops\n")

    def test_signal_is_reported_as_a_shell_would(self):
        outcome = timed_run.run(["sh", "-c", "kill -SEGV $$"])
        self.assertEqual((outcome.how, outcome.status), ("signal:11", 139))

    def test_a_missing_command_is_status_127_with_a_message(self):
        err = self.scratch / "missing.err"
        outcome = timed_run.run(["/nonexistent/program"], stderr=err)
        self.assertEqual(outcome.status, 127)
        self.assertIn("cannot run /nonexistent/program", err.read_text())

    def test_timeout_kills_the_whole_group(self):
        pid_file = self.scratch / "straggler"
        outcome = timed_run.run(["sh", "-c", f"sleep 600 & echo $! > {pid_file}; wait"], timeout=1)
        self.assertTrue(outcome.timed_out)
        self.assertEqual(outcome.how, "timeout")
        self.assertProcessGone(int(pid_file.read_text()))

    def test_a_finished_command_leaves_no_straggler_in_its_group(self):
        pid_file = self.scratch / "left"
        outcome = timed_run.run(["sh", "-c", f"sleep 600 & echo $! > {pid_file}"])
        self.assertEqual(outcome.status, 0)
        self.assertProcessGone(int(pid_file.read_text()))

    def test_foreground_timeout_terms_then_kills_like_gnu_timeout(self):
        # A command that ignores SIGTERM gets SIGKILL after kill_after: status 137, as timeout -k gives.
        outcome = timed_run.run(["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"], timeout=1, kill_after=1,
                                own_group=False)
        self.assertEqual((outcome.how, outcome.status), ("timeout", 137))
        outcome = timed_run.run(["sleep", "600"], timeout=1, kill_after=5, own_group=False)
        self.assertEqual(outcome.status, 124)

    def test_peak_rss_is_the_commands_own_with_the_trampoline(self):
        if self.rusage_exec is None:
            self.skipTest("no C compiler")
        small = timed_run.run(["/bin/true"], rusage_exec=self.rusage_exec)
        plain = timed_run.run(["/bin/true"])
        # Forked from this Python process, /bin/true inherits its peak RSS; from the trampoline, not.
        self.assertLess(small.maxrss_kib, 8 * MIB)
        self.assertGreater(plain.maxrss_kib, small.maxrss_kib)
        big = timed_run.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"], stderr=os.devnull,
                            rusage_exec=self.rusage_exec)
        self.assertEqual(big.how, "exit:0")
        self.assertGreaterEqual(big.maxrss_kib, 64 * MIB)
        self.assertLess(big.maxrss_kib, 80 * MIB)
        killed = timed_run.run(["sh", "-c", "kill -TERM $$"], rusage_exec=self.rusage_exec)
        self.assertEqual(killed.how, "signal:15")

    def assertProcessGone(self, pid):
        for _ in range(50):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return
            except FileNotFoundError:
                return
            time.sleep(0.1)
        self.fail(f"process {pid} is still running")


class BenchSummaryTest(unittest.TestCase):
    def setUp(self):
        self.bench = bench.Bench.__new__(bench.Bench)
        self.bench.data = load_data("bench.toml")
        self.bench.small_tools = ["glibc-small", "lsan-full", "gperftools", "valgrind"]
        self.bench.overhead_interval = "10s"

    def test_ratios_are_medians_of_paired_rounds(self):
        rows = ["w\tglibc\t1\t1.000\t1000\tok\t\t1.000", "w\tglibc\t2\t2.000\t1000\tok\t\t2.000",
                "w\thk-off\t1\t1.500\t2048\tok\t\t1.500", "w\thk-off\t2\t2.000\t1024\tok\t\t2.000",
                "w\tlsan\t1\t0.000\t0\tFAIL\tkilled by signal 11\t0.000",
                "w\tglibc-small\t1\t0.100\t512\tok\t\t0.100", "w\tvalgrind\t1\t5.000\t4096\tok\texit 1: leaks reported\t4.000"]
        self.assertEqual(self.bench.table_summary(rows).splitlines(), [
            "w\tglibc\t1.50\t1.00\t1.0\t1.00\t2/2\tok\t\t1.00",
            # wall median 1.75; paired ratios 1.5 and 1.0 -> 1.25; RSS ratios 2.048 and 1.024 -> 1.536
            "w\thk-off\t1.75\t1.25\t1.5\t1.54\t2/2\tok\t\t1.25",
            "w\tlsan\t-\t-\t-\t-\t0/1\tFAIL\tkilled by signal 11\t-",
            "w\tglibc-small\t0.10\t1.00\t0.5\t1.00\t1/1\tok\t\t1.00",
            # compared with glibc [small] of the same round
            "w\tvalgrind\t5.00\t50.00\t4.0\t8.00\t1/1\tok\texit 1: leaks reported\t40.00"])

    def test_goals_are_paired_figures_against_their_limits(self):
        b = self.bench
        b.workloads = {w["name"]: w for w in b.data["workload"]}
        b.describe = {t["name"]: t["description"] for t in b.data["tool"]}
        b.sizes = b.data["sizes"]["full"]
        processes = b.processes("true")
        rows = [f"true\tglibc\t1\t0.500\t1000\tok\t\t0.4", f"true\thk-detect\t1\t{0.5 + processes * 0.0005:.4f}\t4072\tok\t\t0.4",
                "shell-loop\tlsan\t1\t0.200\t3000\tok\t\t0.2", "shell-loop\tlsan\t2\t0.400\t3000\tok\t\t0.2",
                "shell-loop\thk-detect\t1\t0.300\t3000\tok\t\t0.2", "shell-loop\thk-detect\t2\t0.400\t3000\tok\t\t0.2",
                "size-cycle\tglibc\t1\t1.0\t100000\tok\t\t1.0", "size-cycle\thk-detect\t1\t1.0\t120000\tok\t\t1.0",
                "make\thk-detect\t1\t1.0\t1000\tok\t\t1.0", "make\tlsan\t1\t0.0\t0\tFAIL\tstdout differs from glibc\t0.0"]
        heap = ["size-cycle\thk-detect\t1\t300\t100", "size-cycle\thk-detect\t2\t-\t-"]
        summary = {line.split("\t")[0]: line.split("\t")[2:] for line in b.goals_summary_of(rows, heap).splitlines()[1:]}
        self.assertEqual(summary["fixed cost: /bin/true, wall time per process over plain"], ["0.50 ms", "<= 1 ms", "met"])
        self.assertEqual(summary["fixed cost: /bin/true, peak RSS over plain"], ["3.00 MiB", "<= 1 MiB", "missed by 2.00 MiB"])
        # paired with LeakSanitizer's run of the same round: 1.5 and 1.0 -> 1.25
        self.assertEqual(summary["process-heavy: bash loop, reports on, wall time against LeakSanitizer"],
                         ["1.25x", "<= 1x (LeakSanitizer = 1)", "missed by 25%"])
        self.assertEqual(summary["memory given back: size-class cycle, peak RSS against glibc"], ["1.20x", "<= 1.3x", "met"])
        self.assertEqual(summary["memory given back: size-class cycle, mapped heap over peak live bytes"],
                         ["3.00x", "<= 2x", "missed by 50%"])
        self.assertEqual(summary["sqlite3: peak RSS against glibc"], ["-", "<= 1.3x", "not measured"])
        self.assertEqual(summary["process-heavy: make -j2, reports on, wall time against LeakSanitizer"],
                         ["-", "<= 1x (LeakSanitizer = 1)", "not measured (LeakSanitizer: stdout differs from glibc)"])

    def test_scan_overhead_verdict(self):
        def verdict(scan_walls):
            rows = ["glibc\t1\t1.000\t1000\tok\t-\t1.000"]
            for rep, wall in enumerate(scan_walls, 1):
                rows += [f"hk-noscan\t{rep}\t2.000\t2000\tok\t1\t2.000", f"hk-scan\t{rep}\t{wall}\t2000\tok\t6\t{wall}"]
            return self.bench.overhead_summary_of(rows)
        summary, text = verdict(["2.100", "2.080", "2.000"])
        self.assertIn("median of 3 paired ratios: 1.040", text)
        self.assertTrue(text.endswith("goal at most +5% wall time: met"))
        self.assertIn("heapkeeper detect, scans every 10s\t2.08\t2.08\t2.08\t2.0\t5\t3/3", summary)
        _, text = verdict(["2.200", "2.120"])
        self.assertIn("cost +8.0% wall time", text)
        self.assertTrue(text.endswith("MISSED"))
        _, text = self.bench.overhead_summary_of(["glibc\t1\t1.000\t1000\tok\t-\t1.000",
                                                  "hk-scan\t1\t2.000\t1000\tFAIL: exit:1\t-\t2.000"])
        self.assertEqual(text, "no successful pair of runs: no verdict")

    def test_bench_exit_status_flags_only_glibc_and_heapkeeper(self):
        scratch = Path(tempfile.mkdtemp(prefix="harness-test."))
        try:
            b = self.bench
            b.summary, b.overhead_runs, b.first_runs = scratch / "s", scratch / "o", scratch / "f"
            b.corpus_status = "ok"
            b.summary.write_text("w\tlsan\t-\t-\t-\t-\t0/1\tFAIL\tkilled\t-\n")
            self.assertEqual(b.exit_status(), 0)
            b.summary.write_text("w\thk-detect\t-\t-\t-\t-\t0/1\tFAIL\tkilled\t-\n")
            self.assertEqual(b.exit_status(), 1)
            b.summary.unlink()
            b.first_runs.write_text("configuration\trun\ta\ts\te\tstatus\nlsan\t1\t-\t-\t-\tFAIL: timeout\n")
            self.assertEqual(b.exit_status(), 0)
            b.first_runs.write_text("configuration\trun\ta\ts\te\tstatus\nhk-scan1\t1\t-\t-\t-\tFAIL: timeout\n")
            self.assertEqual(b.exit_status(), 1)
        finally:
            shutil.rmtree(scratch)


class DataTest(unittest.TestCase):
    def test_expand_fills_names_and_arithmetic_and_leaves_code_alone(self):
        values = {"threads": 32, "messages": 1500, "lines": 7}
        self.assertEqual(expand("{threads * messages} messages, {threads // 5}", values), "48000 messages, 6")
        code = "seq 1 {lines} | awk '{ print $1 }'; x=${EPOCHREALTIME/./}; y=${start/./}"
        self.assertEqual(expand(code, values), code.replace("{lines}", "7"))

    def test_awk_numbers(self):
        self.assertEqual(awk_string(5.0), "5")
        self.assertEqual(awk_string(1.0 / 3), "0.333333")
        self.assertEqual(median(["3", "1", "2"]), 2)
        self.assertEqual(median([4, 1, 2, 3]), 2.5)
        self.assertIsNone(median([]))

    def test_options(self):
        spec = {"--runs": "--runs needs a number", "--quick": None}
        self.assertEqual(parse_options(["--runs=3", "--quick"], spec), ({"--runs": "3", "--quick": True}, []))
        self.assertEqual(parse_options(["--runs", "4"], spec)[0], {"--runs": "4"})
        with self.assertRaisesRegex(Fatal, "--runs needs a number"):
            parse_options(["--runs"], spec)
        with self.assertRaisesRegex(Fatal, "unknown option '--bogus'"):
            parse_options(["--bogus"], spec)
        self.assertEqual(parse_options(["a", "--quick", "b"], spec, positional=True)[1], ["a", "b"])

    def test_stress_scenarios_are_complete(self):
        data = load_data("stress.toml")
        names = [s["name"] for s in data["scenario"]]
        self.assertEqual(len(names), len(set(names)))
        for s in data["scenario"]:
            with self.subTest(scenario=s["name"]):
                self.assertTrue(s["description"] and s["note"])
                workload = s["workload"]
                if isinstance(workload, str):
                    self.assertTrue(callable(getattr(stress_workloads, workload)))
                else:
                    self.assertTrue(all(("run" in e) != ("step" in e) for e in workload))
                for check in s.get("checks", []):
                    self.assertIn(check, stress_scenario.Scenario.CHECKS)
                sizes = s.get("sizes", {})
                if sizes:
                    self.assertEqual(set(sizes["full"]), set(sizes["quick"]))

    def test_bench_data_is_consistent(self):
        data = load_data("bench.toml")
        tools = {t["name"] for t in data["tool"]}
        for config in data["first_report"]["config"]:
            self.assertIn(config["tool"], tools)
        for run in ("full", "quick"):
            for w in data["workload"]:
                self.assertIn("full", data["sizes"][run][w["size"]])
                self.assertIn("small", data["sizes"][run][w["size"]])
        workloads = {w["name"]: w for w in data["workload"]}
        for w in workloads.values():
            self.assertTrue(set(w.get("tools", [])) <= tools, w["name"])
        for goal in data["goal"]:
            self.assertIn(goal["workload"], workloads)
            self.assertIn(goal["tool"], tools)
            self.assertIn(goal["metric"], ("wall_over_ms", "rss_over_mib", "wall_ratio", "rss_ratio", "mapped_over_live"))
            if "tools" in workloads[goal["workload"]]:
                self.assertIn(goal["tool"], workloads[goal["workload"]]["tools"])
                self.assertIn(goal.get("against", "glibc"), workloads[goal["workload"]]["tools"])


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""The benchmark's four parts, run by bench.Bench (of which BenchParts is a part): the table, the
periodic-scan overhead, the time to the first leak report and the leak corpus. Each runs its
commands, writes every run to a TSV in BUILD/bench/ and its summary to another; the summaries are
computed from the runs alone (medians, paired ratios, verdicts) by the *_summary_of methods, which
the unit tests call on fixed runs."""

import json
import os
import subprocess
import sys
import time

from .common import ROOT_DIR, Fatal, Messages, awk_string, expand, median, paired_median

BENCH_DIR = ROOT_DIR / "bench"
WORKLOAD_DIR = BENCH_DIR / "workloads"
# Nothing in the caller's environment may change how a run behaves.
CLEAN_ENV_UNSET = ["LD_PRELOAD", "PYTHONMALLOC", "HEAPKEEPER_MODE", "HEAPKEEPER_SCAN_INTERVAL", "HEAPKEEPER_REPORT",
                   "HEAPKEEPER_EXITCODE", "HEAPKEEPER_QUIET", "LSAN_OPTIONS", "HEAPCHECK"]
messages = Messages("bench.sh")
note = messages.note


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


class BenchParts:

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
        self.prepare_workloads()
        heap_rows = ["workload\tconfiguration\trun\tmapped_bytes\tpeak_live_bytes"]
        # One untimed glibc run of each workload first: the interpreter, the libraries and the
        # scripts come into the page cache before the first measured run, not during it.
        for w in self.only:
            env, command = self.workload_command(w, "full", "warm-up")
            self.measure(command, clean_env(env), os.devnull, os.devnull, "the warm-up")
            self.remove_reports()
        note(f"table: {self.runs} round(s) of: workloads [{' '.join(self.only)}] x configurations [{' '.join(configs)}]")
        started = int(time.monotonic())
        for rep in range(1, self.runs + 1):
            for w in self.only:
                for c in configs:
                    key = f"{w}/{c}"
                    if key in self.given_up or not self.runs_on(w, c):
                        continue
                    size = "small" if self.is_small(c) else "full"
                    tag = f"{w}.{c}.{rep}"
                    workload_env, command = self.workload_command(w, size, tag)
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
                    if self.workloads[w].get("heap_figures") and self.tools.get(c, {}).get("heapkeeper"):
                        report_env = {"HEAPKEEPER_REPORT": self.values(tag=tag)["report"]}
                        self.measure([*wrapper, *command], clean_env(workload_env, tool_env, report_env), os.devnull,
                                     os.devnull, f"{tag} (its report)")
                        mapped, peak = self.heap_figures(tag)
                        heap_rows.append(f"{w}\t{c}\t{rep}\t{mapped}\t{peak}")
                        self.heap_runs.write_text("\n".join(heap_rows) + "\n")
                    self.remove_reports()
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
        self.goals_summary.write_text(self.goals_summary_of(rows[1:], heap_rows[1:]))

    def remove_reports(self):
        for f in self.report_dir.glob("hkreport.*"):
            f.unlink()

    def heap_figures(self, tag):
        """(mapped heap bytes, peak live bytes) from the run's heapkeeper report, or ("-", "-"). The
        timing trampoline (rusage_exec) is traced too and writes a report of its own: the workload's
        is the one with the largest peak."""
        best = ("-", "-")
        for path in self.report_dir.glob(f"hkreport.{tag}.*.json"):
            try:
                document = json.loads(path.read_text())
                figures = (int(document["heap"]["mapped_bytes"]), int(document["peak_live_bytes"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if best[1] == "-" or figures[1] > best[1]:
                best = figures
        return best

    def goals_summary_of(self, rows, heap_rows):
        """Issue #12's goals (bench.toml's [[goal]]) from the table's runs and heapkeeper's heap
        figures: per goal, the figure, the limit and whether it is met or by how much it is missed.
        Figures against another configuration are paired by round, as the table's ratios."""
        runs, failed = {}, {}
        for row in rows:
            w, c, rep, wall, rss, status, detail, _cpu = row.split("\t")
            if status == "ok":
                runs.setdefault((w, c), {})[rep] = (float(wall), float(rss))
            else:
                failed.setdefault((w, c), detail)
        heap = {}
        for row in heap_rows:
            w, c, _rep, mapped, peak = row.split("\t")
            if mapped != "-" and peak != "-" and float(peak) > 0:
                heap.setdefault((w, c), []).append(float(mapped) / float(peak))
        lines = ["goal\tconfiguration\tmeasured\tgoal\tverdict\n"]
        for goal in self.data.get("goal", []):
            w, tool, metric, limit = goal["workload"], goal["tool"], goal["metric"], float(goal["limit"])
            against = goal.get("against", "glibc")
            mine, base = runs.get((w, tool), {}), runs.get((w, against), {})
            pairs = [(v, base[rep]) for rep, v in mine.items() if rep in base]
            value = None
            if metric == "wall_over_ms" and pairs:
                value = median([(v[0] - b[0]) * 1000 / self.processes(w) for v, b in pairs])
            elif metric == "rss_over_mib" and pairs:
                value = median([(v[1] - b[1]) / 1024 for v, b in pairs])
            elif metric in ("wall_ratio", "rss_ratio"):
                column = 0 if metric == "wall_ratio" else 1
                ratios = [v[column] / b[column] for v, b in pairs if b[column] > 0]
                value = paired_median(ratios) if ratios else None
            elif metric == "mapped_over_live" and heap.get((w, tool)):
                value = median(heap[(w, tool)])
            unit = {"wall_over_ms": " ms", "rss_over_mib": " MiB"}.get(metric, "x")
            vs = "" if against == "glibc" else f" ({self.describe.get(against, against)} = 1)"
            goal_text = f"<= {limit:g}{unit}{vs}"
            if value is None:
                why = [f"{self.describe.get(x, x)}: {failed[(w, x)]}" for x in (tool, against) if (w, x) in failed]
                verdict = "not measured" + (f" ({'; '.join(why)})" if why else "")
                lines.append(f"{goal['text']}\t{self.describe.get(tool, tool)}\t-\t{goal_text}\t{verdict}\n")
                continue
            if value <= limit:
                verdict = "met"
            elif unit == "x":
                # A tenth of a percent near the goal: "missed by 0%" said nothing.
                over = (value / limit - 1) * 100
                verdict = f"missed by {over:.1f}%" if over < 10 else f"missed by {over:.0f}%"
            else:
                verdict = f"missed by {value - limit:.2f}{unit}"
            lines.append(f"{goal['text']}\t{self.describe.get(tool, tool)}\t{value:.2f}{unit}\t{goal_text}\t{verdict}\n")
        return "".join(lines)

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

    # ------------------------------------------------------------------ part: python-frames

    PYTHON_FRAMES_CONFIGS = {
        "glibc": "glibc",
        "tracemalloc": "glibc, tracemalloc with 24-frame tracebacks (PYTHONTRACEMALLOC=24)",
        "hk-native": "heapkeeper detect, native frames only (HEAPKEEPER_PYTHON=0)",
        "hk-python": "heapkeeper detect, Python frames merged in (the default)",
    }

    def run_python_frames(self):
        """What Python frames cost each allocation: python_churn (PYTHONMALLOC=malloc, 24-frame stacks)
        under heapkeeper with and without them, and, for scale, plain glibc with and without
        tracemalloc keeping 24-frame tracebacks; round-robin, the order turning each round. The
        heapkeeper runs write the JSON report, whose allocation count divides the differences."""
        started = int(time.monotonic())
        env = {"PYTHONHASHSEED": "0", "PYTHONMALLOC": "malloc"}
        command = [self.python, str(WORKLOAD_DIR / "python_churn.py"), str(self.sizes["python_churn"]["full"]),
                   "--cache-entries", str(self.sizes["python_churn"]["cache"])]
        rows = ["configuration\trun\twall_s\tcpu_s\tallocations\tstatus"]
        reference = self.out_dir / "reference.python_frames.out"
        names = list(self.PYTHON_FRAMES_CONFIGS)
        for rep in range(0, self.runs + 1):  # round 0: untimed warm-up, and the reference output
            turn = rep % len(names)
            for c in names[turn:] + names[:turn]:
                tag = f"python_frames.{c}.{rep}"
                report = self.tmp_dir / f"{tag}.%p.json"  # one per process: the timing wrapper's too
                extra = {}
                if c == "tracemalloc":
                    extra = {"PYTHONTRACEMALLOC": "24"}
                elif c.startswith("hk-"):
                    extra = {"LD_PRELOAD": self.lib["hk-detect"], "HEAPKEEPER_MODE": "detect",
                             "HEAPKEEPER_REPORT": str(report), "HEAPKEEPER_BINARY": str(self.hk_cli),
                             "HEAPKEEPER_PYTHON": "0" if c == "hk-native" else "1"}
                out = reference if rep == 0 and c == "glibc" else self.log_dir / f"{tag}.out"
                result = self.measure(command, clean_env(env, extra), out, self.log_dir / f"{tag}.err", tag)
                status = "ok"
                if result.how != "exit:0":
                    status = f"FAIL: {result.how}"
                elif rep > 0 and out.read_bytes() != reference.read_bytes():
                    status = "FAIL: stdout differs from glibc"
                counts = []
                for path in self.tmp_dir.glob(f"{tag}.*.json"):
                    try:
                        counts.append(int(json.loads(path.read_text())["allocations"]))
                    except (OSError, ValueError, KeyError):
                        pass
                    path.unlink(missing_ok=True)
                allocations = str(max(counts)) if counts and max(counts) > 0 else "-"
                if rep == 0:
                    continue
                rows.append(f"{c}\t{rep}\t{result.wall:.3f}\t{result.cpu:.3f}\t{allocations}\t{status}")
                print(f"bench.sh: [{rep}/{self.runs}] python-frames {c:<12} {result.wall:7.2f} s  CPU {result.cpu:7.2f} s  "
                      f"{status}", file=sys.stderr, flush=True)
                self.python_frames_runs.write_text("\n".join(rows) + "\n")
        self.part_seconds["python-frames"] = int(time.monotonic()) - started
        summary, verdict = self.python_frames_summary_of(rows[1:])
        self.python_frames_summary.write_text(summary)
        self.python_frames_verdict = verdict

    def python_frames_summary_of(self, rows):
        """Per configuration the median wall and CPU time; the extra CPU nanoseconds per allocation of
        Python frames (hk-python over hk-native) and of tracemalloc (over glibc), each the median of
        the rounds' paired differences divided by the allocations heapkeeper counted (the workload
        is deterministic: every configuration makes the same calls). CPU time, user and system, does
        not count waiting for a core, so it is steadier than wall time on a shared machine."""
        runs, failed, allocations = {}, {}, []
        for row in rows:
            c, rep, wall, cpu, count, status = row.split("\t")
            if status != "ok":
                failed[c] = status
                continue
            runs.setdefault(c, {})[rep] = (float(wall), float(cpu))
            if count != "-":
                allocations.append(int(count))
        lines = ["configuration\twall s\tCPU s\truns ok\n"]
        for c, name in self.PYTHON_FRAMES_CONFIGS.items():
            got = runs.get(c, {})
            lines.append("\t".join([name, f"{median([v[0] for v in got.values()]):.2f}" if got else "-",
                                     f"{median([v[1] for v in got.values()]):.2f}" if got else "-",
                                     f"{len(got)}" + (f" ({failed[c]})" if c in failed else "")]) + "\n")
        if not allocations:
            return "".join(lines), "no heapkeeper run counted its allocations: no verdict"
        count = median(allocations)

        def extra_ns(tool, against):
            pairs = [(v[1] - runs[against][rep][1]) for rep, v in runs.get(tool, {}).items() if rep in runs.get(against, {})]
            return paired_median(pairs) * 1e9 / count if pairs else None

        python, tracemalloc = extra_ns("hk-python", "hk-native"), extra_ns("tracemalloc", "glibc")
        if python is None:
            return "".join(lines), "no successful pair of heapkeeper runs: no verdict"
        verdict = (f"Python frames cost {python:+.0f} ns of CPU per allocation ({awk_string(count)} allocations; "
                   f"median of paired differences)")
        if tracemalloc is not None:
            verdict += f"; tracemalloc with 24-frame tracebacks costs {tracemalloc:+.0f} ns per allocation over glibc"
        return "".join(lines), verdict + f"; goal at most 100 ns: {'met' if python <= 100 else 'MISSED'}"

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

#!/usr/bin/env python3
"""The checks of scripts/stress.sh that read heapkeeper's JSON: exit reports, live-stats samples
taken with `heapkeeper stats --json` while a scenario ran, the hold point, the slow leaker's scans
and the collect-mode bound. Python 3 standard library only.

Each subcommand prints one line per problem found and exits 1 if there was any, 0 otherwise
(`hold` exits 3 while the live figures do not show the held blocks yet, so the script can poll).
`reports` also writes a one-line summary for the results table with --summary.

  reports DIR [--summary FILE] [--no-leaks] [--min-allocations N] [--programs NAME=COUNT,...]
          [--count NAME=COUNT]... [--pid-log FILE] [--leaks-only-in FUNCTION] [--leaked-blocks N]
          [--leak-free NAME,...] [--leaks-only-via FUNCTION]
          (--programs: exactly these programs wrote reports; --count: this one, whatever the others;
          --no-leaks: no report has a leak; --leak-free: no report of these programs has one;
          --leaks-only-in / --leaks-only-via: every leak's top frame / some frame is FUNCTION;
          --pid-log: one report per process logged as writing one, none from the others, and
          none with a leak from the process logged as the parent)
  samples DIR [--min N] [--program NAME]
  hold STATS_JSON BLOCKS BYTES
  scan-growth DIR STDERR --min-scans N --final N
  collect REPORT --ticks N --chunk BYTES --bound BYTES --plain-rss-kib N
"""

import argparse
import glob
import json
import os
import re
import sys

HOLD_FUNCTION = "stress_hold_blocks"
# Figures this large are a negative number read as unsigned: a counter went below zero.
WRAPPED = 1 << 62


def load(path):
    with open(path) as f:
        return json.load(f)


def top_function(stack):
    return stack[0].get("function", "") if stack else ""


def report_problems(path, r):
    """Consistency of one exit report with itself."""
    problems = []
    name = os.path.basename(path)
    match = re.fullmatch(r"r\.(\d+)\.json", name)
    if match and r.get("pid") != int(match.group(1)):
        problems.append(f"{name}: pid {r.get('pid')} in a report named for {match.group(1)}")
    for key in ("allocations", "frees", "live_blocks", "live_bytes", "peak_live_bytes"):
        if not isinstance(r.get(key), int) or r[key] < 0 or r[key] >= WRAPPED:
            problems.append(f"{name}: {key} is {r.get(key)!r}")
    if problems:
        return problems
    if r["live_blocks"] != r["allocations"] - r["frees"]:
        problems.append(f"{name} ({r.get('program')}): live_blocks {r['live_blocks']} != "
                        f"allocations {r['allocations']} - frees {r['frees']}")
    if r["peak_live_bytes"] < r["live_bytes"]:
        problems.append(f"{name}: peak_live_bytes {r['peak_live_bytes']} < live_bytes {r['live_bytes']}")
    if r.get("bad_frees", 0) != 0:
        problems.append(f"{name} ({r.get('program')}): {r['bad_frees']} bad frees")
    scan = r.get("scan")
    if scan is None or not scan.get("ok") or not scan.get("at_exit"):
        problems.append(f"{name} ({r.get('program')}): no successful exit scan: {scan and scan.get('failure')}")
    leaks = r.get("leaks", [])
    if sum(l["blocks"] for l in leaks) != r.get("leaked_blocks", 0):
        problems.append(f"{name}: leak groups add up to {sum(l['blocks'] for l in leaks)} blocks, "
                        f"leaked_blocks says {r.get('leaked_blocks')}")
    return problems


def cmd_reports(a):
    paths = sorted(glob.glob(os.path.join(a.dir, "r.*.json")))
    problems = []
    if not paths:
        problems.append(f"no exit report in {a.dir}: was heapkeeper loaded at all?")
    leftovers = glob.glob(os.path.join(a.dir, "*.tmp.*"))
    if leftovers:
        problems.append(f"temporary report files left behind: {[os.path.basename(p) for p in leftovers]}")
    reports = {}
    for path in paths:
        try:
            reports[path] = load(path)
        except ValueError as error:
            problems.append(f"{os.path.basename(path)}: not valid JSON: {error}")
    programs = {}
    peak = leaked = leaked_bytes = scans = allocations = collected = 0
    for path, r in reports.items():
        problems += report_problems(path, r)
        program = os.path.basename(r.get("program", "?"))
        programs[program] = programs.get(program, 0) + 1
        peak = max(peak, r.get("peak_live_bytes", 0))
        leaked += r.get("leaked_blocks", 0)
        leaked_bytes += r.get("leaked_bytes", 0)
        scans += r.get("scans", 0)
        allocations += r.get("allocations", 0)
        collected += r.get("collected", {}).get("blocks", 0)
        leak_free = a.no_leaks or (a.leak_free and program in a.leak_free.split(","))
        if leak_free and r.get("leaked_blocks", 0) != 0:
            where = sorted({top_function(l["stack"]) for l in r.get("leaks", [])})
            problems.append(f"{os.path.basename(path)} ({program}): {r['leaked_blocks']} leaked blocks "
                            f"({r.get('leaked_bytes')} bytes) in a leak-free program, at {where}")
        if a.leaks_only_via:
            for l in r.get("leaks", []):
                if not any(a.leaks_only_via in f.get("function", "") for f in l["stack"]):
                    problems.append(f"{os.path.basename(path)}: a {l['kind']} leak of {l['blocks']} blocks "
                                    f"at {top_function(l['stack'])!r}, not called from {a.leaks_only_via}")
        if a.leaks_only_in:
            for l in r.get("leaks", []):
                if a.leaks_only_in not in top_function(l["stack"]):
                    problems.append(f"{os.path.basename(path)}: a {l['kind']} leak of {l['blocks']} blocks "
                                    f"at {top_function(l['stack'])!r}, not in {a.leaks_only_in}")
    if a.leaked_blocks is not None and leaked != a.leaked_blocks:
        problems.append(f"{leaked} leaked blocks reported at exit, the program leaked {a.leaked_blocks}")
    if a.min_allocations is not None and allocations < a.min_allocations:
        problems.append(f"the reports count {allocations} allocations, fewer than the {a.min_allocations} "
                        f"the program says it made")
    if a.programs:
        expected = {}
        for item in a.programs.split(","):
            name, _, count = item.partition("=")
            expected[name] = int(count)
        if programs != expected:
            problems.append(f"reports by program {dict(sorted(programs.items()))}, expected {dict(sorted(expected.items()))}")
    for item in a.count or []:
        name, _, count = item.partition("=")
        if programs.get(name, 0) != int(count):
            problems.append(f"{programs.get(name, 0)} reports from {name}, expected {count} (all: {dict(sorted(programs.items()))})")
    if a.pid_log:
        problems += check_pid_log(a.pid_log, a.dir, reports)
    if a.summary:
        with open(a.summary, "w") as f:
            f.write(f"{len(reports)} {peak} {leaked} {leaked_bytes} {scans} {allocations} {collected}\n")
    for p in problems:
        print(p)
    return 1 if problems else 0


def check_pid_log(log, directory, reports):
    """Every process the program logged as writing a report has exactly one; no other exists."""
    problems = []
    expected = {}
    with open(log) as f:
        for line in f:
            pid, writes, role = line.split()
            expected[int(pid)] = (writes, role)
    by_pid = {r.get("pid"): r for r in reports.values()}
    for pid, (writes, role) in sorted(expected.items()):
        if writes == "report" and pid not in by_pid:
            problems.append(f"no report from the {role} process {pid}")
        if writes == "none" and pid in by_pid:
            problems.append(f"the {role} process {pid} ended with _exit, yet wrote a report")
        if role == "parent" and by_pid.get(pid, {}).get("leaked_blocks", 0) != 0:
            problems.append(f"the parent process {pid} reports {by_pid[pid]['leaked_blocks']} leaked blocks")
    extra = sorted(set(by_pid) - set(expected))
    if extra:
        problems.append(f"reports from processes the program did not log: {extra}")
    return problems


def sample_problems(path, d):
    problems = []
    name = os.path.basename(path)
    for key in ("allocations", "frees", "live_blocks", "live_bytes", "peak_live_bytes"):
        if not isinstance(d.get(key), int) or d[key] < 0 or d[key] >= WRAPPED:
            problems.append(f"{name}: {key} is {d.get(key)!r}")
    if problems:
        return problems
    heap = d.get("heap", {})
    mapped = heap.get("mapped_bytes", 0)
    if d["live_blocks"] != d["allocations"] - d["frees"]:
        problems.append(f"{name}: live_blocks {d['live_blocks']} != allocations - frees")
    if d["peak_live_bytes"] < d["live_bytes"]:
        problems.append(f"{name}: peak_live_bytes {d['peak_live_bytes']} < live_bytes {d['live_bytes']}")
    # The counters are per thread and summed without a lock: allow a little skew, not more.
    slack = (1 << 20) + mapped // 10
    if d["live_bytes"] > mapped + slack:
        problems.append(f"{name}: live_bytes {d['live_bytes']} > heap mapped_bytes {mapped}")
    if heap.get("resident_bytes", 0) > mapped + slack:
        problems.append(f"{name}: resident_bytes {heap.get('resident_bytes')} > mapped_bytes {mapped}")
    if mapped > heap.get("reserved_bytes", 0):
        problems.append(f"{name}: mapped_bytes {mapped} > reserved_bytes {heap.get('reserved_bytes')}")
    if d.get("bad_frees", 0) != 0:
        problems.append(f"{name}: {d['bad_frees']} bad frees")
    if not d.get("pid") or d.get("uptime_seconds", 0) <= 0:
        problems.append(f"{name}: pid {d.get('pid')} uptime {d.get('uptime_seconds')}")
    return problems


def read_samples(directory):
    samples = []
    problems = []
    for path in sorted(glob.glob(os.path.join(directory, "stats.*.json"))):
        try:
            samples.append((path, load(path)))
        except ValueError as error:
            problems.append(f"{os.path.basename(path)}: `heapkeeper stats --json` printed invalid JSON: {error}")
    return samples, problems


def cmd_samples(a):
    samples, problems = read_samples(a.dir)
    for path, d in samples:
        problems += sample_problems(path, d)
    programs = sorted({os.path.basename(d.get("program", "?")) for _, d in samples})
    if len(samples) < a.min:
        problems.append(f"{len(samples)} readable `heapkeeper stats --json` samples taken mid-run, expected at least {a.min}")
    if a.program and a.program not in programs:
        problems.append(f"no mid-run sample of {a.program} (sampled: {programs})")
    for p in problems:
        print(p)
    if not problems:
        print(f"{len(samples)} samples of {', '.join(programs)}")
    return 1 if problems else 0


def cmd_hold(a):
    d = load(a.stats)
    sites = [s for s in d.get("sites", []) if top_function(s.get("stack", [])).startswith(HOLD_FUNCTION)]
    blocks = sum(s["live_blocks"] for s in sites)
    size = sum(s["live_bytes"] for s in sites)
    if blocks == a.blocks and size == a.bytes:
        print(f"live stats show the {blocks} held blocks ({size} bytes) at {HOLD_FUNCTION}")
        return 0
    print(f"live stats show {blocks} blocks ({size} bytes) at {HOLD_FUNCTION}, the program holds "
          f"{a.blocks} ({a.bytes} bytes); {len(d.get('sites', []))} sites, live_blocks {d.get('live_blocks')}")
    return 3


def cmd_scan_growth(a):
    """The slow leaker: periodic scans find a leak count that grows, up to what the program leaked."""
    problems = []
    totals = []
    pattern = re.compile(r"heapkeeper\[\d+\]: scan (\d+): (\d+) new leaked blocks .*; (\d+) leaked in all")
    with open(a.stderr) as f:
        for line in f:
            m = pattern.search(line)
            if m:
                totals.append(int(m.group(3)))
    if len(totals) < a.min_scans:
        problems.append(f"{len(totals)} periodic scans reported new leaks on stderr, expected at least {a.min_scans}")
    if any(later < earlier for earlier, later in zip(totals, totals[1:])):
        problems.append(f"the leak count found by periodic scans went down: {totals}")
    if totals and totals[-1] > a.final:
        problems.append(f"a periodic scan found {totals[-1]} leaked blocks, more than the {a.final} leaked")
    if totals and totals[-1] < a.final * 0.7:
        problems.append(f"the last periodic scan found {totals[-1]} leaked blocks, far fewer than the {a.final} leaked")
    # The live stats, sampled while it ran, show the same growth and only the expected site.
    samples, read_problems = read_samples(a.dir)
    problems += read_problems
    seen = []
    for path, d in sorted(samples, key=lambda item: item[1].get("uptime_seconds", 0)):
        if d.get("scans"):
            seen.append(d["scans"][-1]["leaked_blocks"])
        for leak in d.get("leaks", []):
            if leak.get("stack") and a.function not in top_function(leak["stack"]):
                problems.append(f"{os.path.basename(path)}: a leak at {top_function(leak['stack'])!r}")
    if len(seen) < 2 or seen[-1] <= seen[0]:
        problems.append(f"the live stats' last-scan leak counts do not grow over the run: {seen}")
    elif any(later < earlier for earlier, later in zip(seen, seen[1:])):
        problems.append(f"the live stats' leak count went down: {seen}")
    for p in problems:
        print(p)
    if not problems:
        print(f"periodic scans found {totals[0]} .. {totals[-1]} leaked blocks ({len(totals)} scans with new leaks); "
              f"live stats saw {seen[0]} .. {seen[-1]}")
    return 1 if problems else 0


def cmd_collect(a):
    r = load(a.report)
    problems = []
    collected = r.get("collected", {}).get("blocks", 0)
    left = r.get("leaked_blocks", 0)
    if r.get("config", {}).get("mode") != "collect":
        problems.append(f"the report's mode is {r.get('config', {}).get('mode')!r}, not collect")
    if r["peak_live_bytes"] > a.bound:
        problems.append(f"peak live bytes {r['peak_live_bytes']} above the bound {a.bound}")
    if a.plain_rss_kib * 1024 < 2 * a.bound:
        problems.append(f"without heapkeeper the peak RSS was only {a.plain_rss_kib} KiB: it should grow well beyond "
                        f"the bound ({a.bound // 1024} KiB)")
    # Freeing more than was lost would mean a reachable block was collected. Fewer is possible: a
    # conservative scan misses a leak while a stale copy of its pointer survives (allow two).
    if collected + left > a.ticks or collected + left < a.ticks - 2:
        problems.append(f"{collected} chunks collected and {left} left at exit, the program lost {a.ticks}")
    for leak in r.get("leaks", []):
        if leak["bytes"] != leak["blocks"] * a.chunk or "lose_chunk" not in top_function(leak["stack"]):
            problems.append(f"an unexpected leak at exit: {leak['blocks']} blocks, {leak['bytes']} bytes at "
                            f"{top_function(leak['stack'])!r}")
    for p in problems:
        print(p)
    return 1 if problems else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("reports")
    p.add_argument("dir")
    p.add_argument("--summary")
    p.add_argument("--no-leaks", action="store_true")
    p.add_argument("--leak-free")
    p.add_argument("--min-allocations", type=int)
    p.add_argument("--programs")
    p.add_argument("--count", action="append")
    p.add_argument("--pid-log")
    p.add_argument("--leaks-only-in")
    p.add_argument("--leaks-only-via")
    p.add_argument("--leaked-blocks", type=int)
    p.set_defaults(run=cmd_reports)
    p = sub.add_parser("samples")
    p.add_argument("dir")
    p.add_argument("--min", type=int, default=1)
    p.add_argument("--program")
    p.set_defaults(run=cmd_samples)
    p = sub.add_parser("hold")
    p.add_argument("stats")
    p.add_argument("blocks", type=int)
    p.add_argument("bytes", type=int)
    p.set_defaults(run=cmd_hold)
    p = sub.add_parser("scan-growth")
    p.add_argument("dir")
    p.add_argument("stderr")
    p.add_argument("--min-scans", type=int, required=True)
    p.add_argument("--final", type=int, required=True)
    p.add_argument("--function", default="leak_one_record")
    p.set_defaults(run=cmd_scan_growth)
    p = sub.add_parser("collect")
    p.add_argument("report")
    p.add_argument("--ticks", type=int, required=True)
    p.add_argument("--chunk", type=int, required=True)
    p.add_argument("--bound", type=int, required=True)
    p.add_argument("--plain-rss-kib", type=int, required=True)
    p.set_defaults(run=cmd_collect)
    a = parser.parse_args()
    try:
        return a.run(a)
    except (OSError, ValueError, KeyError) as error:
        print(f"{a.command}: {type(error).__name__}: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

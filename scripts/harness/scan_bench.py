"""Scan benchmark (bench/scan_bench.sh, issue #3): the time each tool spends finding leaks at exit in
the same program, bench/workloads/big_heap.c (a reachable binary tree of N ~100-byte blocks plus
leaked chains).
 - heapkeeper: the exit scan's stop-the-world pause and marking throughput (from its JSON report),
   with the reference graph retained sizes are computed from (the default when a JSON report is
   written) and without it (HEAPKEEPER_RETAINED=0): issue #13's goal is a pause at most 1.2x the
   one without the graph. On a shared VM one pause varies by 20-50% from run to run (the other vCPU's
   load, how the host backs the heap's pages), more than the graph costs, so the two are timed in
   --pairs pairs (default 7), the order swapped every pair, and judged by the median of the per-pair
   ratios; the ratio of the fastest pause of each kind is printed beside it;
 - LeakSanitizer: wall time with detect_leaks=1 minus wall time with detect_leaks=0;
 - valgrind memcheck: wall time with --leak-check=full minus --leak-check=no (smaller heap: it is
   ~50x slower overall, so it gets N/10 blocks and its time is scaled by 10, as noted).
Medians of --runs runs (default 3) for the other figures."""

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import timed_run
from .common import ROOT_DIR, awk_string, median


def elapsed(command, env=None):
    """Wall seconds of a command whose output and status do not matter."""
    return timed_run.run(command, env={**os.environ, **(env or {})}, stdout=os.devnull, stderr=os.devnull).wall


def main(argv):
    settings = {"--blocks": 10000000, "--runs": 3, "--pairs": 7}
    args = list(argv)
    while args:
        option = args.pop(0)
        if option in settings and args and args[0].isdigit() and int(args[0]) > 0:
            settings[option] = int(args.pop(0))
        else:
            print(f"scan_bench.sh: unknown option or bad value {option} (use --blocks N, --runs R, --pairs P)",
                  file=sys.stderr)
            return 2
    blocks, runs, pairs = settings["--blocks"], settings["--runs"], settings["--pairs"]
    lib = ROOT_DIR / "build/lib/libheapkeeper.so"
    if not lib.is_file():
        print(f"scan_bench.sh: build first (scripts/build.sh): {lib} is missing", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp())
    try:
        return measure(work, lib, blocks, runs, pairs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def exit_scan(big_heap, blocks, lib, report, retained):
    """The exit scan's figures from big_heap's JSON report, with or without the reference graph."""
    env = {"HEAPKEEPER_REPORT": str(report), "LD_PRELOAD": str(lib)}
    if not retained:
        env["HEAPKEEPER_RETAINED"] = "0"
    elapsed([big_heap, blocks, 100], env)
    return json.loads(report.read_text())


def measure(work, lib, blocks, runs, pairs):
    source = str(ROOT_DIR / "bench/workloads/big_heap.c")
    big_heap, big_heap_lsan = str(work / "big_heap"), str(work / "big_heap_lsan")
    subprocess.run(["gcc", "-O2", "-o", big_heap, source], check=True)
    have_lsan = subprocess.run(["gcc", "-O2", "-fsanitize=leak", "-o", big_heap_lsan, source],
                               stderr=subprocess.DEVNULL).returncode == 0
    have_valgrind = shutil.which("valgrind") is not None
    small = blocks // 10
    pauses, rates, leaks, lsan, valgrind = [], [], [], [], []
    plain_pauses, graph_ratios, analyses = [], [], []
    report = work / "report.json"
    load_before = os.getloadavg()[0]
    for pair in range(max(pairs, runs)):
        for retained in (True, False) if pair % 2 == 0 else (False, True):
            d = exit_scan(big_heap, blocks, lib, report, retained)
            if not retained:
                plain_pauses.append(d["scan"]["pause_ms"] / 1000)
                continue
            pauses.append(d["scan"]["pause_ms"] / 1000)
            rates.append(d["scan"]["mark_throughput_gbps"])
            leaks.append(d["leaked_blocks"])
            analyses.append(d["scan"].get("retained", {}).get("analysis_ms", 0) / 1000)
        graph_ratios.append(pauses[-1] / plain_pauses[-1] if plain_pauses[-1] > 0 else 0)
        if pair >= runs:
            continue
        if have_lsan:
            with_check = elapsed([big_heap_lsan, blocks, 100], {"LSAN_OPTIONS": "detect_leaks=1:exitcode=0"})
            lsan.append(with_check - elapsed([big_heap_lsan, blocks, 100], {"LSAN_OPTIONS": "detect_leaks=0"}))
        if have_valgrind:
            with_check = elapsed(["valgrind", "--leak-check=full", "--errors-for-leak-kinds=none", big_heap, small, 100])
            valgrind.append((with_check - elapsed(["valgrind", "--leak-check=no", big_heap, small, 100])) * 10)

    model = ""
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    print(f"machine: {len(os.sched_getaffinity(0))} cores, {model}, {os.uname().release}, {today}; load average "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"heap: {blocks} reachable blocks of ~100 bytes (~{blocks * 112 // 1048576} MiB with headers) + 100 leaked "
          f"3-block chains; medians of {runs} runs, of {max(pairs, runs)} runs for heapkeeper")
    print("| tool | leak-check time (s) | x heapkeeper | notes |\n|---|---:|---:|---|")
    hk = median(pauses)
    print(f"| heapkeeper (stop-the-world pause) | {hk:.3f} | 1.00 | marking {median(rates):.2f} GB/s, "
          f"{awk_string(median(leaks))} leaked blocks found; recording the reference graph, analysed "
          f"in {median(analyses):.2f} s after the pause |")
    ratio = median(graph_ratios)
    verdict = "met" if ratio <= 1.2 else f"**missed by {(ratio - 1.2) * 100:.0f} points**"
    print(f"| heapkeeper without the reference graph | {median(plain_pauses):.3f} | "
          f"{median(plain_pauses) / hk:.2f} | HEAPKEEPER_RETAINED=0; the pause with the graph is {ratio:.2f}x this "
          f"(median of {len(graph_ratios)} alternated pairs: {', '.join(f'{r:.2f}' for r in graph_ratios)}; "
          f"fastest against fastest {min(pauses) / min(plain_pauses):.2f}x; goal at most 1.2x: {verdict}) |")
    if have_lsan:
        print(f"| LeakSanitizer (exit check) | {median(lsan):.3f} | {median(lsan) / hk:.2f} | gcc -fsanitize=leak |")
    else:
        print("| LeakSanitizer | - | - | not available |")
    if have_valgrind:
        print(f"| valgrind memcheck (--leak-check=full) | {median(valgrind):.3f} | {median(valgrind) / hk:.2f} | "
              f"measured on {small} blocks, scaled x10 |")
    else:
        print("| valgrind | - | - | not installed |")
    return 0

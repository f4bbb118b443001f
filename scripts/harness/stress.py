"""Stress scenarios for heapkeeper (scripts/stress.sh, issue #5): real programs from Debian and the
project's own stress programs (tests/stress/), each run without heapkeeper and under `heapkeeper
run`, then compared (stress_scenario.py says what every scenario checks). The scenarios are data:
stress.toml.

Each scenario runs in a process of its own (this harness again, --internal-run) in its own process
group, bounded in time as a whole and in every command it starts, so that a hang is cut short and a
failing scenario cannot stop the others. At the end a table (scenario, result, duration, peak live
bytes, leaks, scans, note) is printed and written to BUILD/stress/results.md; each scenario's files
(stdout, stderr, reports, stats samples) stay in BUILD/stress/logs/NAME/.
"""

import os
import shutil
import sys
import traceback
from pathlib import Path

from . import timed_run
from .common import (DEBIAN_PYTHON, HARNESS_DIR, ROOT_DIR, Fatal, Messages, human_bytes, install_missing,
                     load_data, missing_packages, parse_options, read_text)
from .stress_scenario import Scenario

messages = Messages("stress.sh")
note = messages.note


def usage(names):
    return f"""Usage: scripts/stress.sh [options] [SCENARIO...]

Runs the named stress scenarios (all by default) with and without heapkeeper and prints a table.

  --list            list the scenarios and exit
  --quick           shorter scenarios (the whole set in about 3 minutes on 2 cores)
  --lib PATH        libheapkeeper.so to test (default: BUILD/lib/libheapkeeper.so)
  --build-dir DIR   build tree with bin/heapkeeper and tests/stress/ (default: build)
  --no-install      never call apt-get; scenarios whose program is missing are skipped
  -h, --help        this text

Scenarios: {" ".join(names)}
Writes BUILD/stress/results.md; per-scenario logs go to BUILD/stress/logs/SCENARIO/."""


def main(argv):
    data = load_data("stress.toml")
    scenarios = {s["name"]: s for s in data["scenario"]}
    try:
        spec = {"--list": None, "--quick": None, "--no-install": None, "--lib": "--lib needs a path",
                "--build-dir": "--build-dir needs a directory",
                # Internal: run one scenario in this process (the driver starts one per scenario).
                "--internal-run": "--internal-run needs a scenario", "-h": None, "--help": None}
        options, selected = parse_options(argv, spec, positional=True)
        if "-h" in options or "--help" in options:
            print(usage(scenarios))
            return 0
        if "--list" in options:
            for s in data["scenario"]:
                print(f"{s['name']:<15} {s['description']}")
            return 0
        for name in selected:
            if name not in scenarios:
                raise Fatal(f"unknown scenario '{name}' (valid: {' '.join(scenarios)})")
        selected = selected or list(scenarios)
        quick = "--quick" in options
        build_dir = Path(options.get("--build-dir", ROOT_DIR / "build"))
        if not build_dir.is_dir():
            raise Fatal(f"no build directory '{build_dir}' (build first: scripts/build.sh -DHEAPKEEPER_BUILD_TESTS=ON)")
        build_dir = build_dir.resolve()
        hk = build_dir / "bin/heapkeeper"
        hk_lib = Path(options.get("--lib") or build_dir / "lib/libheapkeeper.so")
        if not os.access(hk, os.X_OK):
            raise Fatal(f"{hk} is missing (build first: scripts/build.sh -DHEAPKEEPER_BUILD_TESTS=ON)")
        if not os.access(hk_lib, os.R_OK):
            raise Fatal(f"the preload library {hk_lib} is missing")
        hk_lib = Path(os.path.abspath(hk_lib))
    except Fatal as error:
        print(f"stress.sh: error: {error}", file=sys.stderr)
        return 2

    # Start from heapkeeper's defaults whatever the caller's environment holds; fixed locale and
    # timezone so that sort, git and friends print the same in every run.
    for name in [k for k in os.environ if k == "LD_PRELOAD" or k.startswith("HEAPKEEPER_")]:
        del os.environ[name]
    os.environ.update(LC_ALL="C", TZ="UTC")
    log_dir = build_dir / "stress/logs"
    limit = data["limits"]["quick" if quick else "full"]

    if "--internal-run" in options:
        name = options["--internal-run"]
        scenario = Scenario(scenarios[name], hk=hk, hk_lib=hk_lib, build_dir=build_dir, log_dir=log_dir,
                            quick=quick, limit=limit)
        try:
            scenario.run()
        except Exception as error:  # a bug in the scenario or the harness: say where
            traceback.print_exc()
            print(f"stress.sh: {name}: internal error: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        return 0
    return drive([scenarios[n] for n in selected], build_dir, hk_lib, quick, limit, "--no-install" not in options)


def drive(selected, build_dir, hk_lib, quick, limit, allow_install):
    """Runs each scenario in a process group of its own and prints the table."""
    out_dir = build_dir / "stress"
    log_dir = out_dir / "logs"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        print(f"stress.sh: error: cannot create {out_dir}", file=sys.stderr)
        return 2
    # The checks themselves run on Debian's python3.
    requirements = [("python3", [DEBIAN_PYTHON])]
    for s in selected:
        requirements += list(s.get("packages", {}).items())
    install_missing(missing_packages(requirements), allow_install, out_dir / "apt.log", messages)
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        print(f"stress.sh: error: {DEBIAN_PYTHON} is missing and could not be installed (the checks need it)",
              file=sys.stderr)
        return 2

    mode_text = "quick" if quick else "full"
    note(f"{mode_text} run of {len(selected)} scenario(s) against {hk_lib}; logs in {log_dir}")
    rows, failed = [], 0
    for index, spec in enumerate(selected, 1):
        name = spec["name"]
        directory = log_dir / name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        print(f"[{index}/{len(selected)}] {name:<15} ", end="", file=sys.stderr, flush=True)
        # The scenario's own commands are bounded by what is left of its limit; this outer limit
        # only catches a scenario stuck outside them. Its group is killed when it ends, with any
        # straggler (e.g. a server a timed-out command left behind).
        command = [sys.executable, str(HARNESS_DIR), "stress", "--internal-run", name, "--build-dir", str(build_dir),
                   "--lib", str(hk_lib), *(["--quick"] if quick else [])]
        outcome = timed_run.run(command, stdout=directory / "log", stderr=timed_run.STDOUT,
                                timeout=limit + 60, kill_after=10, own_group=True)
        status = outcome.status
        peak = leaks = scans = "-"
        summary = read_text(directory / "summary").split()
        if len(summary) >= 5:
            leaks, scans = summary[2], summary[4]
            if int(summary[0]) > 0:
                peak = human_bytes(int(summary[1]))
            else:
                leaks = scans = "-"
        note_text = read_text(directory / "note").rstrip("\n")
        failures = read_text(directory / "failures")
        if (directory / "skipped").exists():
            result, note_text = "SKIP", read_text(directory / "skipped").rstrip("\n")
        elif failures or status != 0:
            result = "FAIL"
            failed += 1
            if failures:
                note_text = failures.splitlines()[0].encode()[:100].decode(errors="ignore")
            else:
                internal = [line for line in read_text(directory / "log").splitlines() if "internal error" in line]
                note_text = f"scenario script ended with {internal[0] if internal else f'status {status}'}"
        else:
            result = "PASS"
        print(f"{result} ({outcome.wall:.1f} s)", file=sys.stderr, flush=True)
        if result == "FAIL":
            print(f"    log: {directory / 'log'}", file=sys.stderr)
            lines = failures.splitlines()[:5] if failures else read_text(directory / "log").splitlines()[-5:]
            print("".join(f"    {line}\n" for line in lines), end="", file=sys.stderr, flush=True)
        rows.append(f"| {name} | {result} | {outcome.wall:.1f} s | {peak} | {leaks} | {scans} | {note_text.replace('|', '/')} |")

    table = "\n".join(["| scenario | result | duration | peak live | leaks | scans | note |",
                       "|---|---|---:|---:|---:|---:|---|", *rows]) + "\n"
    (out_dir / "results.md").write_text(table)
    print(f"\n{table}\n({mode_text} run; table in {out_dir / 'results.md'}, logs in {log_dir})", flush=True)
    if failed:
        print(f"{failed} scenario(s) failed", file=sys.stderr)
        return 1
    return 0

"""heapkeeper's test harness: `python3 scripts/harness bench|stress|scan-bench [OPTION...]`,
which scripts/bench.sh, scripts/stress.sh and bench/scan_bench.sh call. Python 3.11 or later,
standard library only."""

import os
import sys

if sys.version_info < (3, 11):
    sys.exit(f"harness: needs Python 3.11 or later (tomllib), this is {sys.version.split()[0]}")
# Run as a directory (python3 scripts/harness): make the package importable as `harness`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import bench, scan_bench, stress, timed_run  # noqa: E402

FRONT_ENDS = {"bench": bench.main, "stress": stress.main, "scan-bench": scan_bench.main}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in FRONT_ENDS:
        print(f"usage: {sys.argv[0]} {{{'|'.join(FRONT_ENDS)}}} [OPTION...]", file=sys.stderr)
        return 2
    timed_run.install_interrupt_handlers()
    try:
        return FRONT_ENDS[sys.argv[1]](sys.argv[2:])
    except timed_run.Interrupted:
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())

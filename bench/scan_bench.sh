#!/usr/bin/env bash
# Scan benchmark (issue #3): the time heapkeeper, LeakSanitizer and valgrind spend finding leaks at
# exit in bench/workloads/big_heap.c: scripts/harness/scan_bench.py. Usage: bench/scan_bench.sh [--blocks N] [--runs R]
py=/usr/bin/python3; [[ -x $py ]] || py=python3
exec "$py" "$(dirname "${BASH_SOURCE[0]}")/../scripts/harness" scan-bench "$@"

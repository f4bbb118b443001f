#!/usr/bin/env bash
# Scan benchmark (issue #3): the time each tool spends finding leaks at exit in the same program,
# bench/workloads/big_heap.c (a reachable binary tree of N ~100-byte blocks plus leaked chains).
#  - heapkeeper: the exit scan's stop-the-world pause and marking throughput (from its JSON report);
#  - LeakSanitizer: wall time with detect_leaks=1 minus wall time with detect_leaks=0;
#  - valgrind memcheck: wall time with --leak-check=full minus --leak-check=no (smaller heap: it is
#    ~50x slower overall, so it gets N/10 blocks and its time is scaled by 10, as noted).
# Medians of --runs runs (default 3). Usage: bench/scan_bench.sh [--blocks N] [--runs R]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
blocks=10000000
runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --blocks) blocks=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "scan_bench.sh: unknown option $1 (use --blocks N, --runs R)" >&2; exit 2 ;;
  esac
done
lib=$root/build/lib/libheapkeeper.so
[ -f "$lib" ] || { echo "scan_bench.sh: build first (scripts/build.sh): $lib is missing" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -o "$work/big_heap" "$root/bench/workloads/big_heap.c"
have_lsan=0
gcc -O2 -fsanitize=leak -o "$work/big_heap_lsan" "$root/bench/workloads/big_heap.c" 2>/dev/null && have_lsan=1
have_valgrind=0
command -v valgrind >/dev/null && have_valgrind=1
small=$((blocks / 10))

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
elapsed() { local t0; t0=$(now); "$@" >/dev/null 2>&1 || true; echo "$(now) - $t0" | bc -l; }

: > "$work/hk_pause"; : > "$work/hk_gbps"; : > "$work/hk_leaks"; : > "$work/lsan"; : > "$work/vg"
for ((r = 1; r <= runs; ++r)); do
  HEAPKEEPER_REPORT=$work/report.json LD_PRELOAD=$lib "$work/big_heap" "$blocks" 100 >/dev/null 2>&1 || true
  python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
d = json.load(open(f"{work}/report.json"))
s = d["scan"]
open(f"{work}/hk_pause", "a").write(f"{s['pause_ms'] / 1000}\n")
open(f"{work}/hk_gbps", "a").write(f"{s['mark_throughput_gbps']}\n")
open(f"{work}/hk_leaks", "a").write(f"{d['leaked_blocks']}\n")
PY
  if [ $have_lsan = 1 ]; then
    with=$(LSAN_OPTIONS=detect_leaks=1:exitcode=0 elapsed "$work/big_heap_lsan" "$blocks" 100)
    without=$(LSAN_OPTIONS=detect_leaks=0 elapsed "$work/big_heap_lsan" "$blocks" 100)
    echo "$with - $without" | bc -l >> "$work/lsan"
  fi
  if [ $have_valgrind = 1 ]; then
    with=$(elapsed valgrind --leak-check=full --errors-for-leak-kinds=none "$work/big_heap" "$small" 100)
    without=$(elapsed valgrind --leak-check=no "$work/big_heap" "$small" 100)
    echo "($with - $without) * 10" | bc -l >> "$work/vg"
  fi
done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r), $(date -u +%F)"
echo "heap: $blocks reachable blocks of ~100 bytes (~$((blocks * 112 / 1048576)) MiB with headers) + 100 leaked 3-block chains; medians of $runs runs"
printf '| tool | leak-check time (s) | x heapkeeper | notes |\n|---|---:|---:|---|\n'
hk=$(median < "$work/hk_pause")
printf '| heapkeeper (stop-the-world pause) | %.3f | 1.00 | marking %.2f GB/s, %s leaked blocks found |\n' "$hk" "$(median < "$work/hk_gbps")" "$(median < "$work/hk_leaks")"
if [ $have_lsan = 1 ]; then
  l=$(median < "$work/lsan")
  printf '| LeakSanitizer (exit check) | %.3f | %.2f | gcc -fsanitize=leak |\n' "$l" "$(echo "$l / $hk" | bc -l)"
else
  echo "| LeakSanitizer | - | - | not available |"
fi
if [ $have_valgrind = 1 ]; then
  v=$(median < "$work/vg")
  printf '| valgrind memcheck (--leak-check=full) | %.3f | %.2f | measured on %s blocks, scaled x10 |\n' "$v" "$(echo "$v / $hk" | bc -l)" "$small"
else
  echo "| valgrind | - | - | not installed |"
fi

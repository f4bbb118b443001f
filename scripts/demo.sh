#!/usr/bin/env bash
# The demo: installs what is missing, builds heapkeeper, runs a small program with two real leaks
# (examples/leaky_cache.c) under `heapkeeper run`, and prints the report.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh" --build  # the demo needs no test tools
"$root/scripts/build.sh" -DHEAPKEEPER_BUILD_TESTS=OFF
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -g -O1 -o "$work/leaky_cache" "$root/examples/leaky_cache.c"
echo "\$ heapkeeper run --report report.json -- leaky_cache"
"$root/build/bin/heapkeeper" run --report "$work/report.json" -- "$work/leaky_cache"
echo
echo "\$ heapkeeper show report.json"
"$root/build/bin/heapkeeper" show "$work/report.json"

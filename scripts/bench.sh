#!/usr/bin/env bash
# Benchmarks heapkeeper against glibc, other allocators and other memory tools: scripts/harness/bench.py
# (--help for the options). Debian's python3 when there is one: a pyenv shim on PATH is slow.
py=/usr/bin/python3; [[ -x $py ]] || py=python3
exec "$py" "$(dirname "${BASH_SOURCE[0]}")/harness" bench "$@"

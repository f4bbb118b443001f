#!/usr/bin/env bash
# Stress scenarios for heapkeeper, with and without it: scripts/harness/stress.py (--help for the
# options, --list for the scenarios). Debian's python3 when there is one: a pyenv shim on PATH is slow.
py=/usr/bin/python3; [[ -x $py ]] || py=python3
exec "$py" "$(dirname "${BASH_SOURCE[0]}")/harness" stress "$@"

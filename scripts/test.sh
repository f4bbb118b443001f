#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test tier with CTest
# (unit tests under glibc and under heapkeeper, integration tests on real programs).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" -DHEAPKEEPER_BUILD_TESTS=ON
cd "$root/build"
ctest --output-on-failure -j2 --timeout 300

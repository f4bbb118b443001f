#!/usr/bin/env bash
# Installs Debian packages, only those missing: with no PACKAGE, the ones heapkeeper builds and
# tests with (scripts/test.sh); otherwise the ones named (the benchmark and the stress scenarios ask
# for what their tools need, scripts/harness/). A PACKAGE holding a regex bracket, such as
# 'libmimalloc[0-9.]+', names the newest package whose whole name matches it, once the package lists
# are fresh (Debian names some libraries after their ABI). One package that cannot be installed does
# not keep the others out: each is retried alone and named in a line "heapkeeper: ... failed".
# Exits non-zero when something could not be installed.
#
# Usage: scripts/install-deps.sh [--log FILE] [--build|--tools|PACKAGE...]
#   --log FILE  apt-get's output goes there
#   --build     only what building heapkeeper needs; --tools only what its tests run and check
#               with (scripts/test.sh installs the tools while it builds: Chromium and Go alone
#               take minutes to download and unpack)
set -euo pipefail

log=/dev/stdout
if [[ ${1-} == --log ]]; then
  (($# >= 2)) || { echo "install-deps.sh: --log needs a file" >&2; exit 2; }
  log=$2
  shift 2
fi
build_packages=(
  build-essential cmake pkg-config binutils libpython3.11-dev
  libjemalloc-dev libunwind-dev libboost-dev libgtest-dev libdw-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev libncurses-dev zlib1g-dev
)
# The programs the tests preload into, the linters, and the tools the tests check heapkeeper's
# output with (Go's pprof reads its profiles, headless Chromium renders its flame graphs, promtool
# checks its Prometheus text).
tool_packages=(
  python3 python3.11 sqlite3 git perl gcc bc valgrind strace libgoogle-perftools4 libaio1 tmux redis-server redis-tools clang-format clang-tidy
  golang-go chromium prometheus
)
case ${1-} in
  --build) packages=("${build_packages[@]}") ;;
  --tools) packages=("${tool_packages[@]}") ;;
  "") packages=("${build_packages[@]}" "${tool_packages[@]}") ;;
  *) packages=("$@") ;;
esac
missing=()
for p in "${packages[@]}"; do
  [[ $p == *'['* ]] && { missing+=("$p"); continue; }
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

echo "heapkeeper: installing missing packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "heapkeeper: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq >>"$log" 2>&1 ||
  echo "heapkeeper: apt-get update failed; trying the cached package lists"

wanted=()
status=0
for p in "${missing[@]}"; do
  if [[ $p == *'['* ]]; then
    name=$(apt-cache search --names-only "^$p\$" 2>/dev/null | awk '{ print $1 }' | sort -V | tail -n 1)
    [[ -n $name ]] || { echo "heapkeeper: no package matches $p: install failed"; status=1; continue; }
    p=$name
  fi
  wanted+=("$p")
done
((${#wanted[@]})) || exit $status
if ! "${sudo_cmd[@]}" apt-get install -y -qq "${wanted[@]}" >>"$log" 2>&1; then
  for p in "${wanted[@]}"; do
    "${sudo_cmd[@]}" apt-get install -y -qq "$p" >>"$log" 2>&1 || { echo "heapkeeper: apt-get install $p failed"; status=1; }
  done
fi
exit $status

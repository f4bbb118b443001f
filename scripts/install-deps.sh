#!/usr/bin/env bash
# Installs the Debian packages heapkeeper builds and tests with, only when some are missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config binutils
  libjemalloc-dev libunwind-dev libboost-dev libgtest-dev libdw-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev libncurses-dev
  python3 sqlite3 git perl gcc bc valgrind tmux redis-server redis-tools clang-format clang-tidy
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "heapkeeper: installing missing packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "heapkeeper: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"

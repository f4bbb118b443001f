#!/usr/bin/env bash
# Applies or checks the repository's .clang-format and .clang-tidy.
#
#   scripts/lint.sh           check: any file clang-format would change, or any clang-tidy finding,
#                             is an error (CI runs this through CTest, label "lint")
#   scripts/lint.sh --fix     rewrite the files in place with clang-format
#
# clang-tidy reads the compile commands of a build directory (default build/, or $HEAPKEEPER_BUILD_DIR),
# which CMake writes (CMAKE_EXPORT_COMPILE_COMMANDS). It checks the code that ships — the preload
# library's layers and the viewer; tests and benchmark programs are formatted but not tidied.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${HEAPKEEPER_BUILD_DIR:-$root/build}
fix=0
case "${1:-}" in
  --fix) fix=1 ;;
  "") ;;
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  *) echo "lint.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac
for tool in clang-format clang-tidy; do
  command -v "$tool" >/dev/null || { echo "lint.sh: $tool is not installed (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
cd "$root"
mapfile -t sources < <(git ls-files '*.c' '*.cpp' '*.h')
if ((fix)); then
  clang-format -i "${sources[@]}"
  exit 0
fi

status=0
if ! clang-format --dry-run --Werror "${sources[@]}"; then
  echo "lint.sh: files differ from .clang-format (scripts/lint.sh --fix rewrites them)" >&2
  status=1
fi

[[ -f "$build_dir/compile_commands.json" ]] || { echo "lint.sh: no $build_dir/compile_commands.json (configure with CMake first)" >&2; exit 1; }
mapfile -t shipped < <(git ls-files 'allocator/*.cpp' 'analysis/*.cpp' 'collector/*.cpp' 'preload/*.cpp' 'report/*.cpp' 'stats/*.cpp' 'viewer/*.cpp')
# GCC-only flags in the compile commands (LTO, -Wno-error=restrict) mean nothing to clang.
if ! printf '%s\0' "${shipped[@]}" |
    xargs -0 -n4 -P"$(nproc)" clang-tidy -p "$build_dir" --quiet \
      --extra-arg=-Wno-unknown-warning-option --extra-arg=-Wno-ignored-optimization-argument 2>/dev/null; then
  echo "lint.sh: clang-tidy found problems (above)" >&2
  status=1
fi
exit $status

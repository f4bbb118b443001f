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
# The translation units the build compiles for the shipped layers, as compile_commands.json lists
# them: a file of its own, or a unity file that includes a batch of them (viewer/, analysis/:
# CMakeLists.txt). Checking a batch in one run walks the JSON, fmt and Boost headers' syntax
# trees once, not once per file: the checks' matchers traverse every declaration, headers'
# included, and were three quarters of lint's time.
mapfile -t shipped < <("${HK_LINT_PYTHON:-python3}" - "$build_dir/compile_commands.json" "$root" <<'PY'
import json, os, re, sys
entries, root = json.load(open(sys.argv[1])), os.path.realpath(sys.argv[2])
layers = r"(allocator|analysis|collector|preload|report|stats|viewer)"
files = set()
for entry in entries:
    path = os.path.realpath(os.path.join(entry.get("directory", ""), entry["file"]))
    relative = os.path.relpath(path, root)
    if re.fullmatch(layers + r"/[^/]+\.cpp", relative) or re.search("/" + layers + r"/CMakeFiles/[^/]+/Unity/[^/]+\.cxx$", path):
        files.add(path)
print("\n".join(sorted(files)))
PY
)
((${#shipped[@]} > 0)) || { echo "lint.sh: no shipped sources in $build_dir/compile_commands.json" >&2; exit 1; }
# GCC-only flags in the compile commands (LTO, -Wno-error=restrict) mean nothing to clang.
# tidy [CLANG-TIDY OPTION...] < NUL-separated files: clang-tidy on each, $(nproc) at a time.
tidy() {
  xargs -0 -n1 -P"$(nproc)" clang-tidy -p "$build_dir" --quiet "$@" \
    --extra-arg=-Wno-unknown-warning-option --extra-arg=-Wno-ignored-optimization-argument 2>/dev/null
}
own=() unity=()
for file in "${shipped[@]}"; do
  if [[ $file == *.cxx ]]; then unity+=("$file"); else own+=("$file"); fi
done
# A unity file's #include of .cpp files is what it is for: that check is off there alone.
if ! { ((${#own[@]} == 0)) || printf '%s\0' "${own[@]}" | tidy; } ||
  ! { ((${#unity[@]} == 0)) || printf '%s\0' "${unity[@]}" | tidy --checks=-bugprone-suspicious-include; }; then
  echo "lint.sh: clang-tidy found problems (above)" >&2
  status=1
fi
exit $status

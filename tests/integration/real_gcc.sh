#!/usr/bin/env bash
# Real gcc under heapkeeper: the driver and its children (cc1, as, collect2, ld — all traced)
# compile workload.c; the object file must be byte-identical to the one a plain gcc produces, and
# the linked program must run (plainly and under heapkeeper) with the same output.
source "$(dirname "$0")/lib.sh"

hk_require gcc
source_file=$(dirname "$(readlink -f "$0")")/workload.c
export LC_ALL=C

run_gcc() {
  local mode=$1
  cp "$source_file" prog.c
  # Relative paths and no debug info: the object depends only on the source and the compiler.
  hk_step "$mode" gcc -O2 -Wall -c prog.c -o prog.o
  echo "object sha256: $(sha256sum <prog.o | cut -d' ' -f1)"
  hk_step "$mode" gcc -O2 -Wall -Wextra -o prog prog.c
  hk_step "$mode" gcc -O0 -g -fsanitize=undefined -o prog-ubsan prog.c
  echo "--- prog (plain)"
  hk_step plain ./prog
  echo "--- prog (traced like the compiler)"
  hk_step "$mode" ./prog
  echo "--- prog-ubsan (traced like the compiler)"
  hk_step "$mode" ./prog-ubsan
}

hk_compare gcc run_gcc -- launcher
hk_finish

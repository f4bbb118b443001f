#!/usr/bin/env bash
# preload/start_path.ld must place every function a short traced process runs (issue #12, "fixed
# cost"). The kernel maps a library's code 64 KiB around each page a process first executes; the
# linker script gathers the start-up, first-allocation, fork and exit code at the start of the text,
# so that /bin/true maps a few of those windows rather than the whole library. A function renamed or
# added on that path falls back into the cold text, and every traced process pays a window for it
# without any other test noticing (it happened three times before this test: about 64 KiB of RSS a
# process each time). scripts/start_path_sections.py --check runs the same short processes under
# callgrind and names what ran outside the script; it also checks the built library's layout window
# by window (jemalloc's ctl.pic.o padded so that the code start-up does not run covers whole
# windows, the objects before the section's first boundary within it), which a changed jemalloc
# archive or a grown .plt would undo without any other test noticing.
source "$(dirname "$0")/lib.sh"
hk_require valgrind nm cc

if output=$(timeout --kill-after=5 "$(hk_limit)" "$HK_CHECK_PYTHON" "$HK_SOURCE_DIR/scripts/start_path_sections.py" --check \
  "$HK_SOURCE_DIR/preload/start_path.ld" "$HK_PRELOAD" 2>&1); then
  hk_pass "$output"
else
  hk_fail "$output"
fi

hk_finish

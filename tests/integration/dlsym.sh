#!/usr/bin/env bash
# Allocation functions reached through dlsym and dlvsym instead of a direct call.
#  - tests/programs' dlsym_alloc: malloc, free, calloc, realloc, posix_memalign and
#    malloc_usable_size looked up on libc's handle, with dlvsym, with RTLD_NEXT from the program and
#    from a plugin, mixed with plain malloc and free; and lookups of other names (strlen, missing
#    symbols and versions with dlerror's text, RTLD_NEXT and RTLD_DEFAULT from inside the plugin)
#    that must answer exactly as without heapkeeper. Compared with a plain run.
#  - python3's ctypes on libc's handle: strdup then free (glibc's free on heapkeeper's block used to
#    abort python with "munmap_chunk(): invalid pointer"), compared with a plain run; and blocks
#    lost that way (strdup's and ctypes' own malloc) are in the leak report with their stacks.
#  - A C program's C++ plugin loaded with RTLD_LOCAL, whose C++ runtime is outside the global scope:
#    its new-handler runs once and its catch takes std::bad_alloc, as without heapkeeper.
#  - MALLOC_CONF options that would turn on the private jemalloc's profiling (prof_leak) or
#    background threads change nothing: same output and status as without heapkeeper.
#  - A module preloaded before libheapkeeper.so that defines malloc_usable_size: start-up names that
#    one function, and only it, as not routed to heapkeeper; without the module, no such line.
source "$(dirname "$0")/lib.sh"

: "${HK_DLSYM_PLUGIN:?HK_DLSYM_PLUGIN must name the plugin dlsym_alloc loads}"

run_dlsym_alloc() {
  local mode=$1
  hk_exec "$mode" "$(hk_program dlsym_alloc)" "$HK_DLSYM_PLUGIN"
}
hk_compare dlsym_alloc run_dlsym_alloc -- launcher preload

hk_require /usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1
# shellcheck disable=SC2016  # Python source
ctypes_workload='
import ctypes
libc = ctypes.CDLL("libc.so.6")
libc.strdup.restype = ctypes.c_void_p
libc.malloc.restype = ctypes.c_void_p
libc.realloc.restype = ctypes.c_void_p
for i in range(1000):
    copy = libc.strdup(b"heapkeeper %d" % i)
    print(ctypes.string_at(copy).decode()) if i % 250 == 0 else None
    libc.free(ctypes.c_void_p(copy))
    block = libc.realloc(ctypes.c_void_p(libc.malloc(16)), 4096)
    libc.free(ctypes.c_void_p(block))
lost_copy = libc.strdup(b"k" * 777)
lost_block = libc.malloc(999)
lost_copy = lost_block = None
print("done")
'
run_ctypes() {
  local mode=$1
  hk_exec "$mode" /usr/bin/python3 -c "$ctypes_workload"
}
hk_compare ctypes run_ctypes -- launcher preload

# Both lost blocks are reported, each with the stack of the ctypes call that made it.
report=$(find "$HK_WORK/ctypes.launcher/reports" -name 'r.*.json' | head -1)
if [[ -n $report ]]; then
  for size in 778 999; do
    hk_json_check "$report" \
      "any(l['bytes'] == $size and l['blocks'] == 1 and any(f.get('function') == 'ffi_call' for f in l['stack'])
           for l in r['leaks'])" \
      "the $size-byte block lost through ctypes is reported leaked, allocated under ffi_call" &&
      hk_pass "ctypes: the lost $size-byte block is reported with its allocation stack"
  done
fi

first=$(dirname "$(hk_program exit_status)")/libhk_prog_first_definition.so
for order in first none; do
  preload=$HK_PRELOAD
  [[ $order == first ]] && preload=$first:$HK_PRELOAD
  line=$(LD_PRELOAD=$preload "$(hk_program exit_status)" 0 2>&1 >/dev/null | grep "not routed" || true)
  if [[ $order == first ]]; then
    [[ $line == *"are not tracked: malloc_usable_size" ]] && hk_pass "a module defining malloc_usable_size first: $line" ||
      hk_fail "a module defining malloc_usable_size first: '$line' (expected malloc_usable_size alone named)"
  else
    [[ -z $line ]] && hk_pass "every allocation function is routed to heapkeeper: no warning" ||
      hk_fail "a plain run warned: $line"
  fi
done

run_local_plugin() {
  local mode=$1 host
  host=$(hk_program local_plugin_host)
  hk_exec "$mode" "$host" "$(dirname "$host")/libhk_prog_local_cxx_plugin.so"
}
hk_compare local_plugin run_local_plugin -- launcher preload
run_conf() {
  local mode=$1
  MALLOC_CONF=prof_leak:true,prof_leak_error:true,background_thread:true hk_exec "$mode" "$(hk_program exit_status)" 3
}
hk_compare malloc_conf run_conf -- launcher preload
hk_finish

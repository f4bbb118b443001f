// Loading libdw on first use (see libdw_loader.h).
#include "report/libdw_loader.h"

#include <dlfcn.h>

#include <mutex>

#include "allocator/diagnostics.h"

namespace heapkeeper::report {
namespace {

// Resolves `name` into `slot`; false when it is missing.
template <typename Function>
bool resolve(void* library, const char* name, Function& slot) {
  slot = reinterpret_cast<Function>(dlsym(library, name));
  return slot != nullptr;
}

bool resolve_all(void* library, LibdwFunctions& f) {
  return resolve(library, "dwfl_begin", f.begin) && resolve(library, "dwfl_end", f.end) &&
         resolve(library, "dwfl_report_begin", f.report_begin) && resolve(library, "dwfl_report_end", f.report_end) &&
         resolve(library, "dwfl_linux_proc_report", f.linux_proc_report) &&
         resolve(library, "dwfl_report_elf", f.report_elf) &&
         resolve(library, "dwfl_module_build_id", f.module_build_id) &&
         resolve(library, "dwfl_linux_proc_find_elf", f.linux_proc_find_elf) &&
         resolve(library, "dwfl_build_id_find_debuginfo", f.build_id_find_debuginfo) &&
         resolve(library, "dwfl_addrmodule", f.addrmodule) && resolve(library, "dwfl_module_info", f.module_info) &&
         resolve(library, "dwfl_module_getelf", f.module_getelf) &&
         resolve(library, "dwfl_module_addrinfo", f.module_addrinfo) &&
         resolve(library, "dwfl_module_getsrc", f.module_getsrc) &&
         resolve(library, "dwfl_module_nextcu", f.module_nextcu) && resolve(library, "dwfl_lineinfo", f.lineinfo) &&
         resolve(library, "dwarf_haspc", f.haspc) && resolve(library, "dwarf_getsrc_die", f.getsrc_die) &&
         resolve(library, "dwarf_linesrc", f.linesrc) && resolve(library, "dwarf_lineno", f.lineno);
}

LibdwFunctions g_functions;
const LibdwFunctions* g_loaded = nullptr;
std::once_flag g_once;

void load() {
  // RTLD_LOCAL: libdw's symbols stay out of the program's global scope. Never unloaded: the
  // symbolizer's session holds libdw's objects until the process ends.
  void* library = dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* why = dlerror();
    alloc::DiagnosticLine()
        .text("cannot load libdw.so.1 (")
        .text(why != nullptr ? why : "unknown error")
        .text("): stacks show exported symbol names only")
        .emit();
    return;
  }
  if (!resolve_all(library, g_functions)) {
    alloc::DiagnosticLine()
        .text("libdw.so.1 lacks a function heapkeeper needs: stacks show exported symbol names only")
        .emit();
    return;
  }
  g_loaded = &g_functions;
}

}  // namespace

const LibdwFunctions* libdw() {
  std::call_once(g_once, load);
  return g_loaded;
}

}  // namespace heapkeeper::report

// Symbolizer turns the return addresses recorded in allocation stacks of the current process into
// function, module and source-line frames for reports. It is the only place heapkeeper reads
// DWARF: stacks are recorded as bare addresses on the malloc hot path, and names are looked up
// here, lazily and with a per-address cache, when a report is written (by a background thread or at
// exit). It wraps an elfutils libdwfl session built from /proc/<pid>/maps; the session and the
// cache sit behind one mutex, so any thread may call it, one lookup at a time.
//
// A frame of a library the program has since unloaded (dlclose) is named from the record kept when
// it was unloaded (allocator/unloaded_modules.h): its path, load bias and build-id give module and
// offset; its function and file:line come from the file, opened again by path, only when the
// file's build-id is the one that was loaded (a rebuilt, replaced or deleted file gives module and
// offset only; so does a library without a build-id, which cannot be told from a rebuilt one).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "allocator/unloaded_modules.h"

// libdwfl's opaque handles, declared here so that only symbolizer.cpp includes elfutils headers.
struct Dwfl;
struct Dwfl_Module;

namespace heapkeeper::report {

struct SymbolizedFrame {
  uintptr_t address = 0;  // the return address as recorded
  std::string function;   // demangled; "??" when unknown
  // Full path of the ELF object as /proc/<pid>/maps names it ("[vdso]" for the kernel's vDSO,
  // "... (deleted)" for a file replaced on disk); "??" if the address is in no mapped object.
  std::string module;
  // address - module load bias, i.e. the address as the ELF file itself numbers it, so that
  // `addr2line -e <module> <module_offset>` works for PIE executables, shared libraries and
  // non-PIE executables alike (for the last the bias is 0). 0 when module is "??".
  uintptr_t module_offset = 0;
  std::string file;       // source file when debug info exists, else empty
  int line = 0;           // 0 when unknown
  std::string build_id;   // the module's GNU build-id in lower-case hex; empty when unknown
  bool unloaded = false;  // the module had been unloaded (dlclose) when the frame was named
};

class Symbolizer {
 public:
  Symbolizer();  // does not touch /proc until first use
  ~Symbolizer();
  Symbolizer(const Symbolizer&) = delete;
  Symbolizer& operator=(const Symbolizer&) = delete;

  // Symbolizes a *return address*: it looks up address-1 so that the line of the call instruction
  // is found rather than the line after it, but reports `address` as given. `generation` is the
  // stack's (StackView::generation): the address is named in the module that held it then, which
  // may have been unloaded since; kMappedNow names it by what is mapped now. Results are cached.
  // If the address is not inside any known module and the dynamic loader has loaded or unloaded
  // something since the module list was read (dlopen), re-reads the list once before giving up.
  // Never fails: unknown parts come back as "??", empty or 0.
  SymbolizedFrame resolve(uintptr_t return_address, uint32_t generation = alloc::kMappedNow);

  // Forgets the module list, the files of unloaded libraries and every cached answer. The next
  // resolve() reads /proc again. Neither a forked child nor a dlclose needs it: resolve() notices
  // the new pid, and a dlclose recorded by the interposed one, by itself.
  void invalidate();

  // "function module+0xoffset file:line" one-liner used in human reports, e.g.
  // "make_list /tmp/prog+0x11a9 prog.c:12". The file:line part is omitted when unknown (and
  // ":line" alone when only the file is known); the file is shown as libdw gives it. An address in
  // no module prints as "?? 0x<address>" so the raw value is not lost. A frame of an unloaded
  // library ends in " (unloaded)", or " (unloaded, BuildId: <hex>)" when its function is unknown.
  static std::string format(const SymbolizedFrame& frame);

 private:
  // A library unloaded since: its file, opened by path for its symbols if its build-id still
  // matches (module null otherwise), and the frames already named in it.
  struct UnloadedModuleSymbols {
    Dwfl* session = nullptr;
    Dwfl_Module* module = nullptr;
    std::unordered_map<uintptr_t, SymbolizedFrame> cache;
  };

  // Everything below requires mutex_ to be held.
  SymbolizedFrame symbolize_locked(uintptr_t return_address);
  SymbolizedFrame symbolize_unloaded_locked(uintptr_t return_address, const alloc::UnloadedModule& record);
  UnloadedModuleSymbols& unloaded_symbols_locked(const alloc::UnloadedModule& record);
  void forget_unloaded_locked();
  Dwfl_Module* module_containing_locked(uintptr_t lookup_address);
  bool read_module_list_locked();
  void forget_module_list_locked();

  std::mutex mutex_;
  Dwfl* session_ = nullptr;  // null until first use and after invalidate()
  // Which process the module list describes: the vDSO module's name embeds it, and after fork the
  // child must not keep describing (and reading the memory of) its parent.
  pid_t session_pid_ = 0;
  // The dynamic loader's load/unload counters when the module list was last read; an unknown
  // address triggers a re-read only when they have moved, so garbage or JIT addresses do not each
  // cost a pass over /proc/self/maps.
  unsigned long long loader_loads_seen_ = 0;
  unsigned long long loader_unloads_seen_ = 0;
  // The module generation the cache and module list describe: a dlclose since may have unmapped
  // modules they still name, and another library may be mapped in their place.
  uint32_t generation_seen_ = 0;
  bool module_list_stale_ = false;
  std::unordered_map<uintptr_t, SymbolizedFrame> cache_;          // addresses named by what is mapped
  std::unordered_map<uint32_t, UnloadedModuleSymbols> unloaded_;  // by UnloadedModule::index
};

}  // namespace heapkeeper::report

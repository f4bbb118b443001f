// Symbolizer turns the return addresses recorded in allocation stacks of the current process into
// function, module and source-line frames for reports. It is the only place heapkeeper reads
// DWARF: stacks are recorded as bare addresses on the malloc hot path, and names are looked up
// here, lazily and with a per-address cache, when a report is written (by a background thread or at
// exit). It wraps an elfutils libdwfl session built from /proc/<pid>/maps; the session and the
// cache sit behind one mutex, so any thread may call it, one lookup at a time.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

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
  std::string file;  // source file when debug info exists, else empty
  int line = 0;      // 0 when unknown
};

class Symbolizer {
 public:
  Symbolizer();  // does not touch /proc until first use
  ~Symbolizer();
  Symbolizer(const Symbolizer&) = delete;
  Symbolizer& operator=(const Symbolizer&) = delete;

  // Symbolizes a *return address*: it looks up address-1 so that the line of the call instruction
  // is found rather than the line after it, but reports `address` as given. Results are cached per
  // address. If the address is not inside any known module and the dynamic loader has loaded or
  // unloaded something since the module list was read (dlopen), re-reads the list once before
  // giving up. Never fails: unknown parts come back as "??", empty or 0.
  SymbolizedFrame resolve(uintptr_t return_address);

  // Forgets the module list and every cached answer (after dlclose, or in a forked child). The next
  // resolve() reads /proc again. A forked child does not strictly need this: resolve() notices the
  // new pid by itself.
  void invalidate();

  // "function module+0xoffset file:line" one-liner used in human reports, e.g.
  // "make_list /tmp/prog+0x11a9 prog.c:12". The file:line part is omitted when unknown (and
  // ":line" alone when only the file is known); the file is shown as libdw gives it. An address in
  // no module prints as "?? 0x<address>" so the raw value is not lost.
  static std::string format(const SymbolizedFrame& frame);

 private:
  // Everything below requires mutex_ to be held.
  SymbolizedFrame symbolize_locked(uintptr_t return_address);
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
  std::unordered_map<uintptr_t, SymbolizedFrame> cache_;
};

}  // namespace heapkeeper::report

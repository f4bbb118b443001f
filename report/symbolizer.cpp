// Symbolizer implementation: one libdwfl session describing the current process's mapped ELF
// objects, queried for the symbol, module and source line of each return address, with dladdr as a
// fallback for the name and abi::__cxa_demangle for C++ symbols. Runs only at report time, so it is
// free to allocate (libdw and libelf allocate through malloc; heapkeeper's callers hold the
// reentrancy guard, so those allocations are not tracked), read files and take locks.
#include "report/symbolizer.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "report/libdw_loader.h"

namespace heapkeeper::report {
namespace {

constexpr const char* kUnknown = "??";

// libdwfl keeps each ELF and debug file it opens open until the session ends, and opens them
// without O_CLOEXEC; the traced program must not pass them on to whatever it execs.
int close_on_exec(int fd) {
  if (fd >= 0) fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
  return fd;
}

int find_elf_of_mapping(Dwfl_Module* module, void** userdata, const char* module_name, Dwarf_Addr base,
                        char** file_name, Elf** elf) {
  return close_on_exec(libdw()->linux_proc_find_elf(module, userdata, module_name, base, file_name, elf));
}

// Separate debug info is looked up only where it is installed locally, by build ID under
// /usr/lib/debug/.build-id (where Debian's -dbgsym and Fedora's -debuginfo packages put it).
// dwfl_standard_find_debuginfo would, after its local search, ask debuginfod: that dlopens
// libdebuginfod and libcurl into the traced program and, when DEBUGINFOD_URLS is set, downloads
// files over the network while the program is exiting. Objects built with -g carry their DWARF in
// the main file, which libdwfl reads without calling this at all.
int find_local_debuginfo(Dwfl_Module* module, void** userdata, const char* module_name, Dwarf_Addr base,
                         const char* file_name, const char* debuglink_file, GElf_Word debuglink_crc,
                         char** debuginfo_file_name) {
  return close_on_exec(libdw()->build_id_find_debuginfo(module, userdata, module_name, base, file_name, debuglink_file,
                                                        debuglink_crc, debuginfo_file_name));
}

// libdwfl keeps a pointer to the callbacks (and to the search path) for the session's lifetime,
// so both live in static storage. A null path means libdwfl's default, /usr/lib/debug.
char* debuginfo_search_path = nullptr;
const Dwfl_Callbacks kProcessCallbacks = {
    .find_elf = find_elf_of_mapping,
    .find_debuginfo = find_local_debuginfo,
    .section_address = nullptr,
    .debuginfo_path = &debuginfo_search_path,
};

struct LoaderCounters {
  unsigned long long loads = 0;
  unsigned long long unloads = 0;
};

// glibc counts every object the dynamic loader maps and unmaps; reading the counters costs one
// dl_iterate_phdr callback, far less than re-reading /proc/self/maps.
LoaderCounters current_loader_counters() {
  LoaderCounters counters;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t size, void* data) -> int {
        auto* out = static_cast<LoaderCounters*>(data);
        // The counters were appended to dl_phdr_info later; size says whether they are present.
        if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
          out->loads = info->dlpi_adds;
          out->unloads = info->dlpi_subs;
        }
        return 1;  // the counters are global, so the first object is enough
      },
      &counters);
  return counters;
}

// Turns a symbol-table name into what a reader expects: without the symbol version that glibc's
// and libstdc++'s full symbol tables append ("__libc_start_main@@GLIBC_2.34"), and demangled when
// it is an Itanium-ABI C++ name.
std::string readable_function_name(const char* symbol) {
  std::string name(symbol, std::strcspn(symbol, "@"));
  // Only C++ names start with _Z; demangling anything else would at best fail and at worst turn a
  // C name such as "_Zero" into nonsense.
  if (name.compare(0, 2, "_Z") == 0) {
    int status = 0;
    char* demangled = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
    if (status == 0 && demangled != nullptr) name = demangled;
    std::free(demangled);
  }
  return name;
}

// dwfl_linux_proc_report names the vDSO "[vdso: <pid>]" so that it can read the image from that
// process's memory; reports show "[vdso]" so that their text does not change from run to run.
std::string module_display_name(const char* dwfl_name) {
  if (dwfl_name == nullptr || dwfl_name[0] == '\0') return kUnknown;
  if (std::strncmp(dwfl_name, "[vdso", 5) == 0) return "[vdso]";
  return dwfl_name;
}

// dladdr sees only what the dynamic loader exports (.dynsym), but it knows objects libdwfl could
// not open, such as a library whose file was deleted or replaced after it was loaded.
std::string function_name_from_loader(uintptr_t lookup_address) {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(lookup_address), &info) == 0 || info.dli_sname == nullptr) {
    return "";
  }
  return readable_function_name(info.dli_sname);
}

// dwfl_addrmodule answers from a table of module start addresses and, in elfutils 0.188, returns
// the highest module (usually ld.so) for every address above it: the stack, the kernel half,
// UINTPTR_MAX. Checking the module's own bounds turns those back into misses.
Dwfl_Module* module_at(Dwfl* session, uintptr_t address) {
  Dwfl_Module* module = libdw()->addrmodule(session, address);
  if (module == nullptr) return nullptr;
  Dwarf_Addr start = 0;
  Dwarf_Addr end = 0;
  libdw()->module_info(module, nullptr, &start, &end, nullptr, nullptr, nullptr, nullptr);
  return (address >= start && address < end) ? module : nullptr;
}

// dwfl_module_getsrc finds an address's compilation unit through .debug_aranges, which clang does
// not emit unless asked (-gdwarf-aranges) and which libdw 0.188 does not rebuild from the units
// themselves. Asking each unit whether it covers the address is slower but always works; it only
// runs for addresses the fast path could not place, each of which is then cached by the caller.
void source_line_without_aranges(Dwfl_Module* module, uintptr_t address, SymbolizedFrame& frame) {
  Dwarf_Addr bias = 0;
  for (Dwarf_Die* unit = libdw()->module_nextcu(module, nullptr, &bias); unit != nullptr;
       unit = libdw()->module_nextcu(module, unit, &bias)) {
    if (libdw()->haspc(unit, address - bias) <= 0) continue;
    Dwarf_Line* line_record = libdw()->getsrc_die(unit, address - bias);
    const char* file = line_record != nullptr ? libdw()->linesrc(line_record, nullptr, nullptr) : nullptr;
    int line = 0;
    if (file != nullptr && libdw()->lineno(line_record, &line) == 0) {
      frame.file = file;
      frame.line = line > 0 ? line : 0;
    }
    return;
  }
}

// Lower-case hex of a build-id, as `readelf -n` and /usr/lib/debug/.build-id show it.
std::string hex_text(const unsigned char* bytes, size_t length) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  text.reserve(2 * length);
  for (size_t i = 0; i < length; ++i) {
    text += kDigits[bytes[i] >> 4];
    text += kDigits[bytes[i] & 15];
  }
  return text;
}

std::string build_id_of(Dwfl_Module* module) {
  const unsigned char* bits = nullptr;
  GElf_Addr where = 0;
  const int length = libdw()->module_build_id(module, &bits, &where);
  return length > 0 ? hex_text(bits, static_cast<size_t>(length)) : std::string();
}

// Function (from the symbol table) and file:line (from DWARF) of `lookup_address` in `module`.
void describe_code(Dwfl_Module* module, uintptr_t lookup_address, SymbolizedFrame& frame) {
  GElf_Off offset_in_symbol = 0;
  GElf_Sym symbol{};
  const char* symbol_name =
      libdw()->module_addrinfo(module, lookup_address, &offset_in_symbol, &symbol, nullptr, nullptr, nullptr);
  if (symbol_name != nullptr) {
    std::string function = readable_function_name(symbol_name);
    if (!function.empty()) frame.function = std::move(function);
  }
  if (Dwfl_Line* line_record = libdw()->module_getsrc(module, lookup_address)) {
    int line = 0;
    const char* file = libdw()->lineinfo(line_record, nullptr, &line, nullptr, nullptr, nullptr);
    if (file != nullptr) {
      frame.file = file;
      frame.line = line > 0 ? line : 0;
    }
  } else {
    source_line_without_aranges(module, lookup_address, frame);
  }
}

// Files of unloaded libraries held open at once (one descriptor each); past this the symbolizer
// closes them all and reopens what it needs.
constexpr size_t kMaxUnloadedFilesOpen = 64;

}  // namespace

Symbolizer::Symbolizer() = default;

Symbolizer::~Symbolizer() {
  std::lock_guard<std::mutex> lock(mutex_);
  forget_module_list_locked();
  forget_unloaded_locked();
}

SymbolizedFrame Symbolizer::resolve(uintptr_t return_address, uint32_t generation) {
  std::lock_guard<std::mutex> lock(mutex_);
  alloc::UnloadedModule record;
  if (return_address != 0 && alloc::unloaded_module_for(return_address, generation, &record)) {
    UnloadedModuleSymbols& symbols = unloaded_symbols_locked(record);
    if (auto cached = symbols.cache.find(return_address); cached != symbols.cache.end()) return cached->second;
    SymbolizedFrame frame = symbolize_unloaded_locked(return_address, record);
    symbols.cache.emplace(return_address, frame);
    return frame;
  }
  // Named by what is mapped now. A dlclose since the last lookup may have unmapped modules that the
  // cache and the module list still name, at addresses another library may hold now.
  const uint32_t now = alloc::module_generation();
  if (now != generation_seen_) {
    generation_seen_ = now;
    cache_.clear();
    module_list_stale_ = true;
  }
  if (auto cached = cache_.find(return_address); cached != cache_.end()) return cached->second;
  SymbolizedFrame frame = symbolize_locked(return_address);
  cache_.emplace(return_address, frame);
  return frame;
}

void Symbolizer::invalidate() {
  std::lock_guard<std::mutex> lock(mutex_);
  forget_module_list_locked();
  forget_unloaded_locked();
  cache_.clear();
}

std::string Symbolizer::format(const SymbolizedFrame& frame) {
  std::string text = frame.function.empty() ? kUnknown : frame.function;
  char number[2 + 16 + 1];
  if (frame.module.empty() || frame.module == kUnknown) {
    std::snprintf(number, sizeof number, "0x%" PRIxPTR, frame.address);
    text += " ?? ";
    text += number;
  } else {
    std::snprintf(number, sizeof number, "0x%" PRIxPTR, frame.module_offset);
    text += ' ';
    text += frame.module;
    text += '+';
    text += number;
  }
  if (!frame.file.empty()) {
    text += ' ';
    text += frame.file;
    if (frame.line > 0) {
      text += ':';
      text += std::to_string(frame.line);
    }
  }
  if (frame.unloaded) {
    // Where a reader can no longer look the module up, its build-id names the exact file.
    text += frame.function == kUnknown && !frame.build_id.empty() ? " (unloaded, BuildId: " + frame.build_id + ")"
                                                                  : std::string(" (unloaded)");
  }
  return text;
}

SymbolizedFrame Symbolizer::symbolize_locked(uintptr_t return_address) {
  SymbolizedFrame frame;
  frame.address = return_address;
  frame.function = kUnknown;
  frame.module = kUnknown;
  // A return address points just past its call instruction, which may be the first byte of the
  // next line or even of the next function (a noreturn call ending a function); one byte back is
  // inside the call itself. 0 has no call before it.
  if (return_address == 0) return frame;
  const uintptr_t lookup_address = return_address - 1;

  Dwfl_Module* module = module_containing_locked(lookup_address);
  if (module == nullptr) return frame;

  Dwarf_Addr module_start = 0;
  const char* module_name =
      libdw()->module_info(module, nullptr, &module_start, nullptr, nullptr, nullptr, nullptr, nullptr);
  frame.module = module_display_name(module_name);

  // The load bias, not the lowest mapped address, is what turns a run-time address into the ELF
  // file's own numbering. Without an ELF image (file unreadable) the mapping start is the best
  // guess, and equals the bias for every ordinary PIE executable and shared library.
  Dwarf_Addr load_bias = module_start;
  if (libdw()->module_getelf(module, &load_bias) == nullptr) load_bias = module_start;
  frame.module_offset = return_address - load_bias;
  frame.build_id = build_id_of(module);

  describe_code(module, lookup_address, frame);
  if (frame.function == kUnknown) {
    std::string function = function_name_from_loader(lookup_address);
    if (!function.empty()) frame.function = std::move(function);
  }
  return frame;
}

SymbolizedFrame Symbolizer::symbolize_unloaded_locked(uintptr_t return_address, const alloc::UnloadedModule& record) {
  SymbolizedFrame frame;
  frame.address = return_address;
  frame.function = kUnknown;
  frame.module = record.path[0] != '\0' ? record.path : kUnknown;
  frame.module_offset = return_address - record.load_bias;
  frame.build_id = hex_text(record.build_id, record.build_id_length);
  frame.unloaded = true;
  // No dladdr fallback here: the loader knows only what is mapped now, which may be another library.
  if (Dwfl_Module* module = unloaded_symbols_locked(record).module) describe_code(module, return_address - 1, frame);
  return frame;
}

Symbolizer::UnloadedModuleSymbols& Symbolizer::unloaded_symbols_locked(const alloc::UnloadedModule& record) {
  if (auto known = unloaded_.find(record.index); known != unloaded_.end()) return known->second;
  if (unloaded_.size() >= kMaxUnloadedFilesOpen) forget_unloaded_locked();
  UnloadedModuleSymbols& symbols = unloaded_[record.index];
  // Without a build-id a rebuilt file cannot be told from the one that was loaded.
  if (record.build_id_length == 0 || libdw() == nullptr) return symbols;
  // Non-blocking: whatever is at that path now may be a FIFO, which only a regular file may not be.
  const int fd = ::open(record.path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return symbols;  // deleted, renamed, or no longer readable
  struct stat status {};
  if (::fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) {
    ::close(fd);
    return symbols;
  }
  symbols.session = libdw()->begin(&kProcessCallbacks);
  if (symbols.session == nullptr) {
    ::close(fd);
    return symbols;
  }
  // Placed where it was loaded, so that run-time addresses look up directly: for a shared object,
  // with add_p_vaddr, the base is the load bias.
  libdw()->report_begin(symbols.session);
  Dwfl_Module* module = libdw()->report_elf(symbols.session, record.path, record.path, fd, record.load_bias, true);
  if (module == nullptr) ::close(fd);  // consumed only on success
  libdw()->report_end(symbols.session, nullptr, nullptr);
  Dwarf_Addr bias = 0;
  if (module != nullptr && libdw()->module_getelf(module, &bias) != nullptr && bias == record.load_bias &&
      build_id_of(module) == hex_text(record.build_id, record.build_id_length)) {
    symbols.module = module;
  } else {
    libdw()->end(symbols.session);
    symbols.session = nullptr;
  }
  return symbols;
}

void Symbolizer::forget_unloaded_locked() {
  // A session exists only once libdw was loaded: asking libdw() otherwise would load it for nothing.
  for (auto& [index, symbols] : unloaded_) {
    if (symbols.session != nullptr) libdw()->end(symbols.session);
  }
  unloaded_.clear();
}

Dwfl_Module* Symbolizer::module_containing_locked(uintptr_t lookup_address) {
  if (session_ == nullptr || session_pid_ != getpid() || module_list_stale_) {
    // First use, a dlclose since the list was read, or we are a forked child still holding the
    // parent's description.
    if (session_pid_ != getpid()) forget_module_list_locked();
    module_list_stale_ = false;
    if (!read_module_list_locked()) return nullptr;
    return module_at(session_, lookup_address);
  }
  if (Dwfl_Module* module = module_at(session_, lookup_address)) return module;

  // Not in any module we know. If the loader has mapped something since we read the list, this
  // may be a dlopen'ed library: read the list again, once. Otherwise the address is garbage, heap,
  // stack or JIT code, and another pass over /proc would find nothing new.
  const LoaderCounters now = current_loader_counters();
  if (now.loads == loader_loads_seen_ && now.unloads == loader_unloads_seen_) return nullptr;
  if (!read_module_list_locked()) return nullptr;
  return module_at(session_, lookup_address);
}

bool Symbolizer::read_module_list_locked() {
  if (session_ == nullptr) {
    if (libdw() == nullptr) return false;  // symbols from dladdr only
    session_ = libdw()->begin(&kProcessCallbacks);
    if (session_ == nullptr) return false;
  }
  // Sample the counters before reading the maps: a library loaded while we read is then seen as a
  // change next time rather than being missed for good.
  const LoaderCounters counters = current_loader_counters();
  loader_loads_seen_ = counters.loads;
  loader_unloads_seen_ = counters.unloads;
  session_pid_ = getpid();

  // Re-reporting keeps modules whose name and range are unchanged, with their already loaded ELF
  // and DWARF, and drops the ones that are gone (dlclose).
  libdw()->report_begin(session_);
  // By our own thread id, not the pid: once the main thread has called pthread_exit, the process's
  // /proc/PID/maps reads empty (the zombie leader has no memory map) while /proc/TID/maps does not.
  const int status = libdw()->linux_proc_report(session_, static_cast<pid_t>(::gettid()));
  // Must close the reporting phase even on failure, or the session cannot be queried.
  const bool ended = libdw()->report_end(session_, nullptr, nullptr) == 0;
  return status == 0 && ended;
}

void Symbolizer::forget_module_list_locked() {
  if (session_ != nullptr) libdw()->end(session_);
  session_ = nullptr;
  session_pid_ = 0;
  loader_loads_seen_ = 0;
  loader_unloads_seen_ = 0;
}

}  // namespace heapkeeper::report

// ModuleSymbolizer implementation (see module_symbolizer.h): one libdwfl session per module file,
// the file reported at its own addresses (bias 0), queried for the symbol and source line of each
// file offset, with abi::__cxa_demangle for C++ symbols.
#include "analysis/module_symbolizer.h"

#include <cxxabi.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "allocator/python_frame_word.h"
#include "analysis/hex_text.h"
#include "analysis/local_debuginfo.h"

namespace heapkeeper::analysis {
namespace {

constexpr const char* kUnknown = "??";
// Module files held open at once (a descriptor and its ELF each); past this every session is
// closed and the cache starts again.
constexpr size_t kMaxModuleFiles = 512;

std::string build_id_of(Dwfl_Module* module) {
  const unsigned char* bits = nullptr;
  GElf_Addr where = 0;
  const int length = dwfl_module_build_id(module, &bits, &where);
  return length > 0 ? std::string(reinterpret_cast<const char*>(bits), static_cast<size_t>(length)) : std::string();
}

// dwfl_module_getsrc finds an address's compilation unit through .debug_aranges, which clang does
// not emit unless asked and libdw 0.188 does not rebuild: asking each unit is slower but always works.
void source_line_without_aranges(Dwfl_Module* module, uint64_t address, std::string& file, int& line) {
  Dwarf_Addr bias = 0;
  for (Dwarf_Die* unit = dwfl_module_nextcu(module, nullptr, &bias); unit != nullptr;
       unit = dwfl_module_nextcu(module, unit, &bias)) {
    if (dwarf_haspc(unit, address - bias) <= 0) continue;
    Dwarf_Line* record = dwarf_getsrc_die(unit, address - bias);
    const char* name = record != nullptr ? dwarf_linesrc(record, nullptr, nullptr) : nullptr;
    int number = 0;
    if (name != nullptr && dwarf_lineno(record, &number) == 0) {
      file = name;
      line = number > 0 ? number : 0;
    }
    return;
  }
}

}  // namespace

// Without the symbol version glibc's and libstdc++'s tables append ("__libc_start_main@@GLIBC_2.34"),
// and demangled when it is an Itanium-ABI C++ name (only those start with _Z).
std::string readable_function_name(const char* symbol) {
  std::string name(symbol, std::strcspn(symbol, "@"));
  if (name.compare(0, 2, "_Z") == 0) {
    int status = 0;
    char* demangled = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
    if (status == 0 && demangled != nullptr) name = demangled;
    std::free(demangled);
  }
  return name;
}

ModuleSymbolizer::ModuleSymbolizer() {
  const char* log = std::getenv("HEAPKEEPER_SYMBOLIZER_LOG");
  log_ = log != nullptr && std::strcmp(log, "1") == 0;
}

ModuleSymbolizer::~ModuleSymbolizer() {
  for (auto& [key, file] : files_) {
    if (file.session != nullptr) dwfl_end(file.session);
  }
  if (prepared_.session != nullptr) dwfl_end(prepared_.session);
}

bool ModuleSymbolizer::open_file(const std::string& path, ModuleFile& file) {
  ++modules_read_;
  if (log_) std::fprintf(stderr, "heapkeeper: symbolizer: reading %s\n", path.c_str());
  // Non-blocking: whatever is at that path now may be a FIFO, which only a regular file may not be.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;
  struct stat status {};
  if (::fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) {
    ::close(fd);
    return false;
  }
  file.session = dwfl_begin(local_file_callbacks());
  if (file.session == nullptr) {
    ::close(fd);
    return false;
  }
  // At the file's own addresses (bias 0): lookups are by file offset, the same in every process.
  dwfl_report_begin(file.session);
  Dwfl_Module* reported = dwfl_report_elf(file.session, path.c_str(), path.c_str(), fd, 0, true);
  if (reported == nullptr) ::close(fd);  // consumed only on success
  dwfl_report_end(file.session, nullptr, nullptr);
  Dwarf_Addr bias = 0;
  if (reported != nullptr && dwfl_module_getelf(reported, &bias) != nullptr && bias == 0) {
    file.module = reported;
    return true;
  }
  dwfl_end(file.session);
  file.session = nullptr;
  return false;
}

bool ModuleSymbolizer::start_preparing(const std::string& key) {
  if (key.empty() || files_.count(key) != 0) return false;
  std::lock_guard<std::mutex> lock(prepared_mutex_);
  if (preparing_ || prepared_ready_) return false;
  preparing_ = true;
  prepared_key_ = key;
  return true;
}

void ModuleSymbolizer::prepare(const std::string& path) {
  std::string key;
  {
    std::lock_guard<std::mutex> lock(prepared_mutex_);
    if (!preparing_) return;
    key = prepared_key_;
  }
  ModuleFile file;
  bool ready = open_file(path, file) && hex_text(build_id_of(file.module)) == key;
  if (ready) {
    // What the first lookups would do: the symbol table, the DWARF (found by build-id, inflated)
    // and its address ranges.
    dwfl_module_getsymtab(file.module);
    Dwarf_Addr bias = 0;
    if (Dwarf* dwarf = dwfl_module_getdwarf(file.module, &bias)) {
      Dwarf_Aranges* ranges = nullptr;
      size_t count = 0;
      dwarf_getaranges(dwarf, &ranges, &count);
    }
  } else if (file.session != nullptr) {
    dwfl_end(file.session);
    file = ModuleFile{};
  }
  {
    std::lock_guard<std::mutex> lock(prepared_mutex_);
    preparing_ = false;
    prepared_ready_ = ready;
    prepared_ = std::move(file);
  }
  prepared_changed_.notify_all();
}

bool ModuleSymbolizer::take_prepared(const std::string& key, ModuleFile& file) {
  std::unique_lock<std::mutex> lock(prepared_mutex_);
  if (prepared_key_ != key) return false;
  prepared_changed_.wait(lock, [&] { return !preparing_; });
  if (!prepared_ready_) return false;
  file = std::move(prepared_);
  prepared_ = ModuleFile{};
  prepared_ready_ = false;
  return true;
}

ModuleSymbolizer::ModuleFile& ModuleSymbolizer::module_file(const report::RawModule& module, const std::string& key) {
  if (auto known = files_.find(key); known != files_.end()) return known->second;
  if (files_.size() >= kMaxModuleFiles) {
    for (auto& [k, f] : files_) {
      if (f.session != nullptr) dwfl_end(f.session);
    }
    files_.clear();
  }
  ModuleFile& file = files_[key];
  // An unloaded library without a build-id cannot be told from a rebuilt one; a name that is not an
  // absolute path ("[vdso]", "... (deleted)" still opens nothing of the right build) has no file.
  if ((module.unloaded && module.build_id.empty()) || module.path.empty() || module.path[0] != '/') return file;
  // The same build, read ahead by prepare() (the key is its build-id).
  if (!module.build_id.empty() && take_prepared(key, file)) return file;
  if (open_file(module.path, file) && !module.build_id.empty() && build_id_of(file.module) != module.build_id) {
    dwfl_end(file.session);
    file.session = nullptr;
    file.module = nullptr;
  }
  return file;
}

SymbolizedFrame ModuleSymbolizer::resolve(const report::RawModule* module, uint64_t address) {
  SymbolizedFrame frame;
  frame.address = address;
  frame.function = kUnknown;
  frame.module = kUnknown;
  if (module == nullptr || address == 0) return frame;
  frame.module = module->path.empty() ? kUnknown : module->path;
  if (frame.module.compare(0, 5, "[vdso") == 0) frame.module = "[vdso]";
  frame.module_offset = address - module->load_bias;
  frame.build_id = hex_text(module->build_id);
  frame.unloaded = module->unloaded;
  const std::string key = module->build_id.empty() ? "path:" + module->path : frame.build_id;
  ModuleFile& file = module_file(*module, key);
  if (file.module == nullptr) {
    // No file to read (the vDSO, a file deleted while mapped): the names the library found in the
    // module's dynamic symbols, when one holds the call.
    // A symbol of unknown size (0) reaches to the next one.
    const uint64_t lookup = frame.module_offset - 1;
    const report::RawModule::Symbol* holder = nullptr;
    for (const report::RawModule::Symbol& symbol : module->symbols) {
      if (lookup < symbol.start || (symbol.size != 0 && lookup >= symbol.start + symbol.size)) continue;
      if (holder == nullptr || symbol.start > holder->start) holder = &symbol;
    }
    if (holder != nullptr) frame.function = readable_function_name(holder->name.c_str());
    return frame;
  }
  auto [it, fresh] = file.names.try_emplace(frame.module_offset);
  Names& names = it->second;
  if (fresh) {
    // A return address points just past its call; the call itself is one byte back.
    const uint64_t lookup = frame.module_offset - 1;
    GElf_Off offset_in_symbol = 0;
    GElf_Sym symbol{};
    const char* symbol_name =
        dwfl_module_addrinfo(file.module, lookup, &offset_in_symbol, &symbol, nullptr, nullptr, nullptr);
    if (symbol_name != nullptr) names.function = readable_function_name(symbol_name);
    if (Dwfl_Line* record = dwfl_module_getsrc(file.module, lookup)) {
      int line = 0;
      const char* source = dwfl_lineinfo(record, nullptr, &line, nullptr, nullptr, nullptr);
      if (source != nullptr) {
        names.file = source;
        names.line = line > 0 ? line : 0;
      }
    } else {
      source_line_without_aranges(file.module, lookup, names.file, names.line);
    }
  }
  if (!names.function.empty()) frame.function = names.function;
  frame.file = names.file;
  frame.line = names.line;
  return frame;
}

SymbolizedFrame ModuleSymbolizer::resolve(const report::RawModule* module, uint64_t address,
                                          const PythonCodes& python) {
  // A dump without Python codes recorded no Python frame: a word with bit 63 set is then what an
  // unwinder returned from a frame record without unwind information (the double -3.0), shown
  // as the address it is, not as an unknown Python frame.
  if (!python_word::is_python(address) || python.empty()) return resolve(module, address);
  SymbolizedFrame frame;
  frame.address = address;
  frame.python = true;
  frame.function = kUnknown;
  const uint32_t unit = python_word::code_unit(address);
  frame.module_offset = uint64_t{unit} * 2;  // CPython 3.11's code units are two bytes
  if (const report::RawPythonCode* code = python.find(python_word::code_key(address))) {
    if (!code->qualname.empty()) frame.function = code->qualname;
    frame.file = code->filename;
    frame.line = python_line(code->linetable, code->first_line, unit);
  }
  return frame;
}

std::string ModuleSymbolizer::format(const SymbolizedFrame& frame) {
  if (frame.python) {
    std::string text = frame.file.empty() ? kUnknown : frame.file;
    if (frame.line > 0) text += ':' + std::to_string(frame.line);
    return text + " in " + (frame.function.empty() ? kUnknown : frame.function) + " [py]";
  }
  std::string text = frame.function.empty() ? kUnknown : frame.function;
  char number[2 + 16 + 1];
  if (frame.module.empty() || frame.module == kUnknown) {
    std::snprintf(number, sizeof number, "0x%" PRIx64, frame.address);
    text += " ?? ";
    text += number;
  } else {
    std::snprintf(number, sizeof number, "0x%" PRIx64, frame.module_offset);
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

}  // namespace heapkeeper::analysis

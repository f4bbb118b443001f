// ModuleSymbolizer: names the frames of raw dumps (report/raw_dump.h) in the `heapkeeper` binary,
// out of the traced process. A frame arrives already attributed to a module (path, build-id, load
// bias); its name comes from that module's file, opened by path and used only when its build-id
// is the one that was loaded (a rebuilt, replaced or deleted file gives module and offset only; so
// does an unloaded library without a build-id, which cannot be told from a rebuilt one).
//
// Everything is cached by build-id and file offset, never by run-time address: one module of one
// build is read once however many processes (with however many load addresses) name it, which is
// what lets one symbolizer serve every process of a `heapkeeper run` (analysis/symbolizer_service.h).
// Modules without a build-id are cached by path. Not thread-safe: the service serialises callers.
//
// HEAPKEEPER_SYMBOLIZER_LOG=1 prints one line to stderr for each module file read, so tests can
// count them ("heapkeeper: symbolizer: reading PATH").
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "analysis/python_names.h"
#include "report/raw_dump.h"

struct Dwfl;
struct Dwfl_Module;

namespace heapkeeper::analysis {

struct SymbolizedFrame {
  uint64_t address = 0;  // the return address as recorded
  std::string function;  // demangled; "??" when unknown
  // The module as /proc/<pid>/maps named it ("[vdso]" for the kernel's vDSO, "... (deleted)" for
  // a file replaced on disk); "??" if the address is in no mapped object.
  std::string module;
  // address - load bias: the address as the ELF file itself numbers it (`addr2line -e module
  // module_offset` works). 0 when module is "??".
  uint64_t module_offset = 0;
  std::string file;       // source file when debug info exists, else empty
  int line = 0;           // 0 when unknown
  std::string build_id;   // the module's GNU build-id in lower-case hex; empty when unknown
  bool unloaded = false;  // the module had been unloaded (dlclose) when the report was made
  // A Python frame (allocator/python_frame_word.h): function is the code's qualified name, file and
  // line the Python source's, module empty and module_offset the instruction's byte offset in the
  // code object's bytecode.
  bool python = false;
};

// A symbol as reports name functions: without the symbol version glibc's tables append
// ("__libc_start_main@@GLIBC_2.34"), and demangled when it is an Itanium-ABI C++ name.
std::string readable_function_name(const char* symbol);

class ModuleSymbolizer {
 public:
  ModuleSymbolizer();
  ~ModuleSymbolizer();
  ModuleSymbolizer(const ModuleSymbolizer&) = delete;
  ModuleSymbolizer& operator=(const ModuleSymbolizer&) = delete;

  // Names a return address held by `module` (null: in no module). Looks up address-1 (the call
  // instruction) but reports `address` as given. Never fails: unknown parts are "??", empty or 0.
  SymbolizedFrame resolve(const report::RawModule* module, uint64_t address);
  // The same, and a Python frame named from `python` (the dump's code names; "??" when absent).
  SymbolizedFrame resolve(const report::RawModule* module, uint64_t address, const PythonCodes& python);

  // Module files read so far (each at most once per build-id).
  uint64_t modules_read() const { return modules_read_.load(); }

  // Reading a module file before any dump names it: its symbol table and its DWARF, which for a
  // library whose debug file is compressed (libc6-dbg) means inflating every debug section, the
  // longest part of a service's first report. start_preparing(key), under the lock that
  // serialises resolve(), claims the file of build-id `key` (hex): false when it is read already
  // or another is being prepared. prepare(path) then reads it on a thread of its own, without that
  // lock, while others are answered; a resolve() that needs the file meanwhile waits for it and
  // takes it, so the file is still read once. A file at `path` of another build is dropped.
  bool start_preparing(const std::string& key);
  void prepare(const std::string& path);

  // "function module+0xoffset file:line" one-liner used in human reports, e.g.
  // "make_list /tmp/prog+0x11a9 prog.c:12". The file:line part is omitted when unknown; an address
  // in no module prints as "?? 0x<address>"; a frame of an unloaded library ends in " (unloaded)",
  // or " (unloaded, BuildId: <hex>)" when its function is unknown. A Python frame is
  // "app.py:12 in make_list [py]".
  static std::string format(const SymbolizedFrame& frame);

 private:
  struct Names {
    std::string function, file;
    int line = 0;
  };
  struct ModuleFile {
    Dwfl* session = nullptr;
    Dwfl_Module* module = nullptr;              // null: the file could not be used
    std::unordered_map<uint64_t, Names> names;  // by file offset of the return address
  };
  ModuleFile& module_file(const report::RawModule& module, const std::string& key);
  // Opens `path` into `file` (a session at the file's own addresses), counting the read; false
  // when the file cannot be used.
  bool open_file(const std::string& path, ModuleFile& file);
  // The prepared file for `key`, when prepare() made or is making it (waiting for it then).
  bool take_prepared(const std::string& key, ModuleFile& file);

  std::unordered_map<std::string, ModuleFile> files_;  // by build-id (hex), or "path:" + path
  std::atomic<uint64_t> modules_read_{0};
  bool log_ = false;
  // prepare()'s file, from its start until resolve() takes it.
  std::mutex prepared_mutex_;
  std::condition_variable prepared_changed_;
  bool preparing_ = false;    // claimed, and prepare() not done yet
  std::string prepared_key_;  // the build-id (hex) claimed
  bool prepared_ready_ = false;
  ModuleFile prepared_;
};

}  // namespace heapkeeper::analysis

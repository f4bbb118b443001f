// Implementation of function_code_ranges (see function_ranges.h).
#include "analysis/function_ranges.h"

#include <elfutils/libdwfl.h>
#include <gelf.h>

#include <algorithm>
#include <cstring>

#include "analysis/local_debuginfo.h"
#include "analysis/module_symbolizer.h"

namespace heapkeeper::analysis {
namespace {

struct Search {
  const std::string* name;
  std::vector<std::pair<uint64_t, uint64_t>>* ranges;
};

int search_module(Dwfl_Module* module, void**, const char*, Dwarf_Addr, void* argument) {
  auto* search = static_cast<Search*>(argument);
  const int count = dwfl_module_getsymtab(module);
  for (int i = 1; i < count; ++i) {
    GElf_Sym symbol{};
    GElf_Addr address = 0;
    const char* symbol_name = dwfl_module_getsym_info(module, i, &symbol, &address, nullptr, nullptr, nullptr);
    if (symbol_name == nullptr || GELF_ST_TYPE(symbol.st_info) != STT_FUNC || symbol.st_shndx == SHN_UNDEF) continue;
    // The raw name first: most symbols are C names, and demangling every one would be slow.
    if (std::strcmp(symbol_name, search->name->c_str()) != 0 && readable_function_name(symbol_name) != *search->name)
      continue;
    search->ranges->emplace_back(address, address + std::max<GElf_Xword>(symbol.st_size, 1));
  }
  return DWARF_CB_OK;
}

}  // namespace

std::vector<std::pair<uint64_t, uint64_t>> function_code_ranges(pid_t pid, const std::string& name,
                                                                std::string& error) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  Dwfl* session = dwfl_begin(local_process_callbacks());
  if (session == nullptr) {
    error = "libdwfl could not start";
    return ranges;
  }
  dwfl_report_begin(session);
  const int failed = dwfl_linux_proc_report(session, pid);
  dwfl_report_end(session, nullptr, nullptr);
  if (failed != 0) {
    error = "the modules of pid " + std::to_string(pid) + " could not be read (/proc/" + std::to_string(pid) +
            "/maps: " + (failed > 0 ? std::strerror(failed) : dwfl_errmsg(-1)) + ")";
    dwfl_end(session);
    return ranges;
  }
  Search search{&name, &ranges};
  dwfl_getmodules(session, search_module, &search, 0);
  dwfl_end(session);
  std::sort(ranges.begin(), ranges.end());
  ranges.erase(std::unique(ranges.begin(), ranges.end()), ranges.end());
  return ranges;
}

}  // namespace heapkeeper::analysis

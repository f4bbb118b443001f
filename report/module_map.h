// The module map of a raw dump (raw_dump.h): which module held each recorded return address, named
// as /proc/self/maps names it, with the load bias, range and GNU build-id a symbolizer in another
// process needs to find the same code in the file. Built at report time inside the traced process,
// without libdw: the dynamic loader's list (dl_iterate_phdr: bias, segments, build-id from the
// mapped notes) and one read of /proc/self/maps (the names). Frames of libraries unloaded since
// their stack was captured are attributed by allocator/unloaded_modules.h's generation rule.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "report/raw_dump.h"

namespace heapkeeper::report {

class ModuleMap {
 public:
  // Reads what is mapped now. Guard held (it allocates).
  void load();
  // The index in `modules` of the module that held `return_address` in a stack captured in module
  // generation `generation` (adding it on first use), or kNoModule when no module holds it.
  uint32_t attribute(uint64_t return_address, uint32_t generation, std::vector<RawModule>& modules);
  // The index of the loaded module whose segments hold the data at `address` (a global: its .bss
  // may lie past the file's last page, in memory no file maps), or kNoModule.
  uint32_t attribute_data(uint64_t address, std::vector<RawModule>& modules);
  // Whether `address` lies in code a file maps (a module's executable segment, or the vDSO).
  bool executable(uint64_t address) const;

 private:
  struct Mapping {
    uint64_t start, end, offset;
    std::string path;
    bool executable;
  };
  struct LoadedObject {
    uint64_t load_bias;
    std::vector<std::pair<uint64_t, uint64_t>> segments;  // PT_LOAD [start, end)
    uint64_t low, high;
    std::string build_id;
  };
  const Mapping* mapping_at(uint64_t address) const;
  uint32_t add(const std::string& key, RawModule module, std::vector<RawModule>& modules);
  RawModule loaded_module(size_t object, const std::string& path) const;

  std::vector<Mapping> mappings_;  // file-backed (and [vdso]), by address
  std::vector<LoadedObject> objects_;
  std::unordered_map<std::string, uint32_t> index_;  // "l<object>", "u<unloaded record>", "f<mapping>"
};

}  // namespace heapkeeper::report

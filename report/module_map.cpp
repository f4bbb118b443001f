// Implementation of the raw dump's module map (see module_map.h).
#include "report/module_map.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "allocator/unloaded_modules.h"
#include "allocator/unwinder_masks.h"

namespace heapkeeper::report {
namespace {

// Whether a reader in another process will find no file to read for a module of this name: not an
// absolute path ("[vdso]"), or a file deleted (or replaced by a new one) while mapped.
bool without_file(const std::string& path) {
  constexpr std::string_view kDeleted = " (deleted)";
  return path.empty() || path[0] != '/' ||
         (path.size() > kDeleted.size() && path.compare(path.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0);
}

// Adds the dynamic symbol holding `lookup` (a call, one byte before its return address) to a module
// without a file, which only this process can still name (its dynamic symbols are mapped).
void add_symbol_for(RawModule& module, uint64_t lookup) {
  Dl_info info{};
  void* entry = nullptr;  // the ElfW(Sym) of the symbol found
  if (dladdr1(reinterpret_cast<void*>(lookup), &info, &entry, RTLD_DL_SYMENT) == 0 || info.dli_sname == nullptr ||
      info.dli_saddr == nullptr)
    return;
  const auto* symbol = static_cast<const ElfW(Sym)*>(entry);
  const uint64_t start = reinterpret_cast<uint64_t>(info.dli_saddr) - module.load_bias;
  for (const RawModule::Symbol& known : module.symbols) {
    if (known.start == start) return;
  }
  module.symbols.push_back({start, symbol != nullptr ? symbol->st_size : 0, info.dli_sname});
}

// /proc/self/maps, whole: by our own thread id, not the pid (once the main thread has called
// pthread_exit, /proc/PID/maps reads empty while /proc/TID/maps does not).
std::string read_maps() {
  std::string text;
  const int fd = ::open("/proc/thread-self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buffer[16384];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buffer, static_cast<size_t>(got));
  }
  ::close(fd);
  return text;
}

// Reads a hexadecimal number at `p` (advanced past it); false when there is no digit.
bool read_hex(const char*& p, const char* end, uint64_t& value) {
  value = 0;
  const char* start = p;
  for (; p < end; ++p) {
    const char c = *p;
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) break;
    value = value << 4 | static_cast<uint64_t>(digit);
  }
  return p != start;
}

const char* skip_field(const char* p, const char* end) {
  while (p < end && *p != ' ') ++p;
  return p;
}

const char* skip_spaces(const char* p, const char* end) {
  while (p < end && (*p == ' ' || *p == '\t')) ++p;
  return p;
}

}  // namespace

void ModuleMap::load() {
  mappings_.clear();
  objects_.clear();
  index_.clear();
  const std::string maps = read_maps();
  // "start-end perms offset dev inode   path", one mapping a line, as the kernel writes it (no
  // sscanf: a report parses every line of every process's map, and most lines are skipped).
  const char* at = maps.data();
  const char* const text_end = maps.data() + maps.size();
  while (at < text_end) {
    const char* end = static_cast<const char*>(std::memchr(at, '\n', static_cast<size_t>(text_end - at)));
    if (end == nullptr) end = text_end;
    const char* p = at;
    at = end + 1;
    uint64_t start = 0, stop = 0, offset = 0;
    if (!read_hex(p, end, start) || p >= end || *p++ != '-' || !read_hex(p, end, stop)) continue;
    p = skip_spaces(p, end);
    const char* perms = p;
    p = skip_field(p, end);
    const bool executable = p - perms >= 3 && perms[2] == 'x';
    p = skip_spaces(p, end);
    if (!read_hex(p, end, offset)) continue;
    p = skip_field(skip_spaces(p, end), end);  // dev
    p = skip_field(skip_spaces(p, end), end);  // inode
    p = skip_spaces(p, end);
    if (p >= end) continue;                                                                    // anonymous
    if (*p != '/' && std::string_view(p, static_cast<size_t>(end - p)) != "[vdso]") continue;  // heap, stack
    mappings_.push_back({start, stop, offset, std::string(p, static_cast<size_t>(end - p)), executable});
  }
  // Under the loader's lock, on the publisher thread too: not across a fork (unwinder_masks.h).
  const alloc::LoaderLockSection no_fork_meanwhile;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) -> int {
        auto* objects = static_cast<std::vector<LoadedObject>*>(data);
        LoadedObject object{info->dlpi_addr, {}, UINT64_MAX, 0, {}};
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD) continue;
          const uint64_t low = info->dlpi_addr + ph.p_vaddr;
          object.segments.emplace_back(low, low + ph.p_memsz);
          object.low = std::min(object.low, low);
          object.high = std::max(object.high, low + ph.p_memsz);
        }
        if (object.segments.empty()) return 0;
        uint8_t id[alloc::kMaxBuildIdBytes];
        const size_t length = alloc::loaded_build_id(info, id);
        object.build_id.assign(reinterpret_cast<const char*>(id), length);
        objects->push_back(std::move(object));
        return 0;
      },
      &objects_);
}

const ModuleMap::Mapping* ModuleMap::mapping_at(uint64_t address) const {
  for (const Mapping& m : mappings_) {
    if (address >= m.start && address < m.end) return &m;
  }
  return nullptr;
}

uint32_t ModuleMap::add(const std::string& key, RawModule module, std::vector<RawModule>& modules) {
  auto [it, fresh] = index_.emplace(key, static_cast<uint32_t>(modules.size()));
  if (fresh) modules.push_back(std::move(module));
  return it->second;
}

RawModule ModuleMap::loaded_module(size_t object, const std::string& path) const {
  RawModule module;
  module.load_bias = objects_[object].load_bias;
  module.low = objects_[object].low;
  module.high = objects_[object].high;
  module.build_id = objects_[object].build_id;
  module.path = path;
  return module;
}

bool ModuleMap::executable(uint64_t address) const {
  const Mapping* mapping = mapping_at(address);
  return mapping != nullptr && mapping->executable;
}

uint32_t ModuleMap::attribute_data(uint64_t address, std::vector<RawModule>& modules) {
  for (size_t i = 0; i < objects_.size(); ++i) {
    const LoadedObject& object = objects_[i];
    const bool inside = std::any_of(object.segments.begin(), object.segments.end(),
                                    [&](const auto& s) { return address >= s.first && address < s.second; });
    if (!inside) continue;
    // Named by the file its first segment maps.
    const Mapping* mapping = mapping_at(address);
    if (mapping == nullptr) mapping = mapping_at(object.low);
    if (mapping == nullptr) return kNoModule;
    return add("l" + std::to_string(i), loaded_module(i, mapping->path), modules);
  }
  return kNoModule;
}

uint32_t ModuleMap::attribute(uint64_t return_address, uint32_t generation, std::vector<RawModule>& modules) {
  // A return address points just past its call; the call itself is one byte back. 0 has no call.
  if (return_address == 0) return kNoModule;
  alloc::UnloadedModule record;
  if (alloc::unloaded_module_for(return_address, generation, &record)) {
    RawModule module;
    module.unloaded = true;
    module.load_bias = record.load_bias;
    module.low = record.low;
    module.high = record.high;
    module.build_id.assign(reinterpret_cast<const char*>(record.build_id), record.build_id_length);
    module.path = record.path != nullptr ? record.path : "";
    return add("u" + std::to_string(record.index), std::move(module), modules);
  }
  const uint64_t lookup = return_address - 1;
  const Mapping* mapping = mapping_at(lookup);
  for (size_t i = 0; i < objects_.size(); ++i) {
    const LoadedObject& object = objects_[i];
    if (lookup < object.low || lookup >= object.high) continue;
    const bool inside = std::any_of(object.segments.begin(), object.segments.end(),
                                    [&](const auto& s) { return lookup >= s.first && lookup < s.second; });
    if (!inside || mapping == nullptr) continue;
    const uint32_t index = add("l" + std::to_string(i), loaded_module(i, mapping->path), modules);
    if (without_file(modules[index].path)) add_symbol_for(modules[index], lookup);
    return index;
  }
  // Mapped from a file, but not by the dynamic loader (an ELF file mapped by hand): named by the
  // file, numbered from where its first page would lie.
  if (mapping == nullptr) return kNoModule;
  RawModule module;
  module.load_bias = mapping->start - mapping->offset;
  module.low = mapping->start;
  module.high = mapping->end;
  module.path = mapping->path;
  return add("f" + std::to_string(mapping - mappings_.data()), std::move(module), modules);
}

}  // namespace heapkeeper::report

// Implementation of the loaded-object helpers (see loaded_objects.h).
//
// The dynamic section's pointers are relocated in place by glibc for every object it loaded
// (elf_get_dynamic_info); the vDSO's are not, so a pointer below the object's base is taken as an
// offset from it.
#include "allocator/loaded_objects.h"

#include <link.h>

#include <cstring>

namespace heapkeeper::alloc {
namespace {

bool contains(const dl_phdr_info* info, uintptr_t address) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    const uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && address >= start && address - start < ph.p_memsz) return true;
  }
  return false;
}

bool is_heapkeeper(const dl_phdr_info* info) { return contains(info, reinterpret_cast<uintptr_t>(&position_of)); }

// One object's dynamic symbol table.
struct SymbolTable {
  uintptr_t base = 0;
  const ElfW(Sym) * symbols = nullptr;
  const char* strings = nullptr;
  const uint32_t* gnu_hash = nullptr;
  const uint32_t* sysv_hash = nullptr;
  const ElfW(Half) * versions = nullptr;

  bool read(const dl_phdr_info* info) {
    base = info->dlpi_addr;
    const ElfW(Dyn)* dynamic = nullptr;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
      if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) {
        dynamic = reinterpret_cast<const ElfW(Dyn)*>(base + info->dlpi_phdr[i].p_vaddr);
      }
    }
    if (dynamic == nullptr) return false;
    for (const ElfW(Dyn)* d = dynamic; d->d_tag != DT_NULL; ++d) {
      const uintptr_t value = d->d_un.d_ptr < base ? base + d->d_un.d_ptr : d->d_un.d_ptr;
      switch (d->d_tag) {
        case DT_SYMTAB:
          symbols = reinterpret_cast<const ElfW(Sym)*>(value);
          break;
        case DT_STRTAB:
          strings = reinterpret_cast<const char*>(value);
          break;
        case DT_GNU_HASH:
          gnu_hash = reinterpret_cast<const uint32_t*>(value);
          break;
        case DT_HASH:
          sysv_hash = reinterpret_cast<const uint32_t*>(value);
          break;
        case DT_VERSYM:
          versions = reinterpret_cast<const ElfW(Half)*>(value);
          break;
        default:
          break;
      }
    }
    return symbols != nullptr && strings != nullptr && (gnu_hash != nullptr || sysv_hash != nullptr);
  }

  // A defined function or object named `name`, in its default (or only) version.
  bool matches(uint32_t index, const char* name) const {
    const ElfW(Sym)& s = symbols[index];
    if (s.st_shndx == SHN_UNDEF || s.st_value == 0) return false;
    const unsigned type = ELF64_ST_TYPE(s.st_info);
    if (type != STT_FUNC && type != STT_OBJECT && type != STT_NOTYPE) return false;
    if (versions != nullptr && (versions[index] & 0x8000) != 0) return false;  // a hidden (old) version
    return std::strcmp(strings + s.st_name, name) == 0;
  }

  void* find(const char* name) const {
    if (gnu_hash != nullptr) {
      uint32_t hash = 5381;
      for (const char* c = name; *c != '\0'; ++c) hash = hash * 33 + static_cast<unsigned char>(*c);
      const uint32_t bucket_count = gnu_hash[0], first_symbol = gnu_hash[1], bloom_words = gnu_hash[2];
      if (bucket_count == 0) return nullptr;
      const auto* buckets =
          reinterpret_cast<const uint32_t*>(reinterpret_cast<const ElfW(Addr)*>(gnu_hash + 4) + bloom_words);
      const uint32_t* chain = buckets + bucket_count;
      uint32_t index = buckets[hash % bucket_count];
      if (index < first_symbol) return nullptr;
      for (;; ++index) {
        const uint32_t entry = chain[index - first_symbol];
        if ((entry | 1) == (hash | 1) && matches(index, name)) return address_of(index);
        if ((entry & 1) != 0) return nullptr;
      }
    }
    uint32_t hash = 0;
    for (const char* c = name; *c != '\0'; ++c) {
      hash = (hash << 4) + static_cast<unsigned char>(*c);
      const uint32_t high = hash & 0xf0000000;
      if (high != 0) hash ^= high >> 24;
      hash &= ~high;
    }
    const uint32_t bucket_count = sysv_hash[0];
    if (bucket_count == 0) return nullptr;
    const uint32_t* buckets = sysv_hash + 2;
    const uint32_t* chain = buckets + bucket_count;
    for (uint32_t index = buckets[hash % bucket_count]; index != STN_UNDEF; index = chain[index]) {
      if (matches(index, name)) return address_of(index);
    }
    return nullptr;
  }

  void* address_of(uint32_t index) const { return reinterpret_cast<void*>(base + symbols[index].st_value); }
};

struct PositionSearch {
  uintptr_t address;
  bool passed_heapkeeper = false;
  ObjectPosition result = ObjectPosition::kNone;
};

int find_position(dl_phdr_info* info, size_t, void* data) {
  auto* search = static_cast<PositionSearch*>(data);
  const bool heapkeeper = is_heapkeeper(info);
  if (contains(info, search->address)) {
    search->result = heapkeeper                  ? ObjectPosition::kHeapkeeper
                     : search->passed_heapkeeper ? ObjectPosition::kAfter
                                                 : ObjectPosition::kBefore;
    return 1;
  }
  if (heapkeeper) search->passed_heapkeeper = true;
  return 0;
}

// Which objects a definition is looked for in.
enum class Searched { kHeapkeeper, kAfterHeapkeeper, kAllButHeapkeeper };

struct DefinitionSearch {
  const char* name;
  Searched searched;
  bool passed_heapkeeper = false;
  void* result = nullptr;
};

int find_definition(dl_phdr_info* info, size_t, void* data) {
  auto* search = static_cast<DefinitionSearch*>(data);
  if (is_heapkeeper(info)) {
    search->passed_heapkeeper = true;
    if (search->searched != Searched::kHeapkeeper) return 0;
  } else if (search->searched == Searched::kHeapkeeper ||
             (search->searched == Searched::kAfterHeapkeeper && !search->passed_heapkeeper)) {
    return 0;
  }
  // Unnamed objects are looked in too: the program itself (a copy-relocated definition, as
  // dlsym(RTLD_DEFAULT) finds first) and the vDSO.
  SymbolTable table;
  if (table.read(info)) search->result = table.find(search->name);
  return search->result != nullptr || search->searched == Searched::kHeapkeeper ? 1 : 0;
}

void* find(const char* name, Searched searched) {
  DefinitionSearch search{name, searched};
  dl_iterate_phdr(find_definition, &search);
  return search.result;
}

}  // namespace

ObjectPosition position_of(uintptr_t address) noexcept {
  PositionSearch search{address};
  dl_iterate_phdr(find_position, &search);
  return search.result;
}

void* own_definition(const char* name) noexcept { return find(name, Searched::kHeapkeeper); }

void* next_definition(const char* name) noexcept { return find(name, Searched::kAfterHeapkeeper); }

void* program_definition(const char* name) noexcept { return find(name, Searched::kAllButHeapkeeper); }

}  // namespace heapkeeper::alloc

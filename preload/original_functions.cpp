// Looking up the originals of forwarded functions, and checking that interposition took effect.
#include "preload/original_functions.h"

#include <dlfcn.h>
#include <link.h>
#include <sys/auxv.h>

#include <atomic>

#include "allocator/engine.h"
#include "allocator/loaded_objects.h"

extern "C" const ElfW(Ehdr) __ehdr_start;  // defined by the linker at this object's first byte

namespace heapkeeper::preload {

void* lookup_original(const char* name) noexcept {
  if (!alloc::in_forked_child()) {
    if (void* found = alloc::next_definition(name)) return found;
  }
  return alloc::lookup_next_symbol(name);
}

#define HEAPKEEPER_DEFINE_ORIGINAL(name, return_type, parameters) \
  name##_function original_##name() {                             \
    static std::atomic<name##_function> cached{nullptr};          \
    return cached_next_symbol(cached, #name);                     \
  }
HEAPKEEPER_FORWARDED_FUNCTIONS(HEAPKEEPER_DEFINE_ORIGINAL)
HEAPKEEPER_KERNEL_ROOT_FUNCTIONS(HEAPKEEPER_DEFINE_ORIGINAL)
HEAPKEEPER_LOADER_FUNCTIONS(HEAPKEEPER_DEFINE_ORIGINAL)
HEAPKEEPER_PIPE_FUNCTIONS(HEAPKEEPER_DEFINE_ORIGINAL)
HEAPKEEPER_CREDENTIAL_FUNCTIONS(HEAPKEEPER_DEFINE_ORIGINAL)
HEAPKEEPER_EXEC_FUNCTIONS(HEAPKEEPER_DEFINE_ORIGINAL)
HEAPKEEPER_DESCRIPTOR_FUNCTIONS(HEAPKEEPER_DEFINE_ORIGINAL)
HEAPKEEPER_JUMP_FUNCTIONS(HEAPKEEPER_DEFINE_ORIGINAL)
#undef HEAPKEEPER_DEFINE_ORIGINAL

namespace {

// A non-PIE executable that calls malloc has a canonical PLT entry named "malloc", and dlsym finds
// that first; it still jumps to whatever the dynamic linker bound, so it counts as routed here.
int find_in_main_program(dl_phdr_info* info, size_t, void* data) {
  auto address = *static_cast<uintptr_t*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && address >= start && address < start + ph.p_memsz) return 1;
  }
  return -1;  // the main program is listed first: stop after it
}

bool is_in_main_program(void* address) {
  auto value = reinterpret_cast<uintptr_t>(address);
  return dl_iterate_phdr(find_in_main_program, &value) == 1;
}

// The loaded segments of the object that holds `inside` (libheapkeeper.so itself): a range check
// per symbol instead of a dladdr, which scans the object's whole symbol table each time.
struct ObjectRanges {
  uintptr_t inside = 0;
  int count = 0;
  uintptr_t start[8] = {}, end[8] = {};
  bool contains(uintptr_t address) const {
    for (int i = 0; i < count; ++i)
      if (address >= start[i] && address < end[i]) return true;
    return false;
  }
};

int find_object_ranges(dl_phdr_info* info, size_t, void* data) {
  auto& ranges = *static_cast<ObjectRanges*>(data);
  ranges.count = 0;
  for (int i = 0; i < info->dlpi_phnum && ranges.count < 8; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    ranges.start[ranges.count] = info->dlpi_addr + ph.p_vaddr;
    ranges.end[ranges.count] = info->dlpi_addr + ph.p_vaddr + ph.p_memsz;
    ++ranges.count;
  }
  return ranges.contains(ranges.inside) ? 1 : 0;
}

// Whether this library is the first object after the program in the global lookup scope: the
// first LD_PRELOAD. The vDSO, listed between them, is no part of that scope.
struct FirstAfterProgram {
  uintptr_t own_base = 0;  // this library's load address: where the linker put its ELF header
  uintptr_t vdso = 0;
  int seen = 0;
};

int find_first_after_program(dl_phdr_info* info, size_t, void* data) {
  auto& search = *static_cast<FirstAfterProgram*>(data);
  if (search.seen++ == 0 || info->dlpi_addr == search.vdso) return 0;  // the program, the vDSO
  return info->dlpi_addr == search.own_base ? 1 : -1;                  // or another object first
}

}  // namespace

// Asks glibc's dlsym directly: its answer is the binding itself, and the routed dlsym would walk
// every loaded object twice per interposed name, a sizeable part of a short process's start.
void check_interposition() {
  // Each lookup finds a name's first definition in the global scope: the program's, then the
  // preloaded libraries' in order, then the others'. The program's counts as routed here, and this
  // library defines every name checked: when it comes right after the program (the first
  // LD_PRELOAD, the usual case) no lookup can find anything else, and none is made (some 60 dlsym
  // calls, 80,000 instructions of every traced process's start, issue #12).
  FirstAfterProgram first;
  first.own_base = reinterpret_cast<uintptr_t>(&__ehdr_start);
  first.vdso = static_cast<uintptr_t>(getauxval(AT_SYSINFO_EHDR));
  if (dl_iterate_phdr(find_first_after_program, &first) == 1) return;
  ObjectRanges ours;
  ours.inside = reinterpret_cast<uintptr_t>(&check_interposition);
  if (dl_iterate_phdr(find_object_ranges, &ours) != 1) return;
  const char* missing[64];
  int count = 0;
#define HEAPKEEPER_CHECK_SYMBOL(name)                                                             \
  {                                                                                               \
    void* address = unrouted_dlsym(RTLD_DEFAULT, #name);                                          \
    if (address == nullptr ||                                                                     \
        (!ours.contains(reinterpret_cast<uintptr_t>(address)) && !is_in_main_program(address))) { \
      if (count < 64) missing[count++] = #name;                                                   \
    }                                                                                             \
  }
  HEAPKEEPER_INTERPOSED_SYMBOLS(HEAPKEEPER_CHECK_SYMBOL)
  HEAPKEEPER_SYMBOL_LOOKUP_FUNCTIONS(HEAPKEEPER_CHECK_SYMBOL)
  HEAPKEEPER_KERNEL_ROOT_SYMBOLS(HEAPKEEPER_CHECK_SYMBOL)
  HEAPKEEPER_LOADER_SYMBOLS(HEAPKEEPER_CHECK_SYMBOL)
  HEAPKEEPER_PIPE_SYMBOLS(HEAPKEEPER_CHECK_SYMBOL)
  HEAPKEEPER_CREDENTIAL_SYMBOLS(HEAPKEEPER_CHECK_SYMBOL)
  HEAPKEEPER_EXIT_SYMBOLS(HEAPKEEPER_CHECK_SYMBOL)
#undef HEAPKEEPER_CHECK_SYMBOL
  if (count > 0) alloc::warn_not_interposed(missing, count);
}

}  // namespace heapkeeper::preload

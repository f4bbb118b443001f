// See program_cxx_runtime.h. The Itanium C++ ABI names everything used here, so one lookup table
// serves libstdc++ and libc++abi alike.
#include "allocator/program_cxx_runtime.h"

#include <dlfcn.h>
#include <link.h>
#include <stdlib.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "allocator/diagnostics.h"
#include "allocator/engine.h"

namespace heapkeeper::alloc {
namespace {

// A C++ runtime loaded with RTLD_LOCAL (a C program's plugin written in C++, a Python extension)
// is not in the global scope. Each loaded object's own dynamic symbol table is then searched
// through its GNU hash table, as the loader does, without dlopen: a handle and its dlclose would
// touch the objects' reference counts and the loader's lists. libheapkeeper.so itself is skipped.
struct LocalSearch {
  const char* name;
  uint32_t hash;
  uintptr_t our_base;
  void* found;
};

uint32_t gnu_hash(const char* name) {
  uint32_t h = 5381;
  for (auto c = reinterpret_cast<const unsigned char*>(name); *c != 0; ++c) h = h * 33 + *c;
  return h;
}

// The loader relocates most of .dynamic's addresses in place, but not in every object (the vDSO).
uintptr_t dynamic_address(uintptr_t base, ElfW(Addr) value) { return value < base ? base + value : value; }

int search_object(dl_phdr_info* info, size_t, void* data) {
  auto& search = *static_cast<LocalSearch*>(data);
  if (info->dlpi_name == nullptr || info->dlpi_name[0] == '\0' || info->dlpi_addr == search.our_base) return 0;
  const ElfW(Dyn)* dynamic = nullptr;
  for (int i = 0; i < info->dlpi_phnum; ++i)
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
      dynamic = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
  if (dynamic == nullptr) return 0;
  const uint32_t* table = nullptr;
  const ElfW(Sym)* symbols = nullptr;
  const char* strings = nullptr;
  for (const ElfW(Dyn)* d = dynamic; d->d_tag != DT_NULL; ++d) {
    if (d->d_tag == DT_GNU_HASH)
      table = reinterpret_cast<const uint32_t*>(dynamic_address(info->dlpi_addr, d->d_un.d_ptr));
    if (d->d_tag == DT_SYMTAB)
      symbols = reinterpret_cast<const ElfW(Sym)*>(dynamic_address(info->dlpi_addr, d->d_un.d_ptr));
    if (d->d_tag == DT_STRTAB) strings = reinterpret_cast<const char*>(dynamic_address(info->dlpi_addr, d->d_un.d_ptr));
  }
  if (table == nullptr || symbols == nullptr || strings == nullptr) return 0;
  const uint32_t bucket_count = table[0], first_symbol = table[1], bloom_words = table[2];
  if (bucket_count == 0) return 0;
  const uint32_t* buckets = table + 4 + bloom_words * (sizeof(ElfW(Addr)) / 4);
  const uint32_t* chain = buckets + bucket_count;
  uint32_t index = buckets[search.hash % bucket_count];
  if (index < first_symbol) return 0;
  for (;; ++index) {
    const uint32_t entry = chain[index - first_symbol];
    const ElfW(Sym)& symbol = symbols[index];
    if ((entry | 1) == (search.hash | 1) && symbol.st_shndx != SHN_UNDEF && symbol.st_value != 0 &&
        std::strcmp(strings + symbol.st_name, search.name) == 0) {
      search.found = reinterpret_cast<void*>(info->dlpi_addr + symbol.st_value);
      return 1;
    }
    if ((entry & 1) != 0) return 0;
  }
}

void* search_loaded_objects(const char* name) {
  Dl_info self{};
  if (dladdr(reinterpret_cast<void*>(&search_object), &self) == 0) return nullptr;
  // dladdr gives the ELF header's address, dl_iterate_phdr the load bias: the same for a shared
  // library linked at address 0, as libheapkeeper.so is.
  LocalSearch search{name, gnu_hash(name), reinterpret_cast<uintptr_t>(self.dli_fbase), nullptr};
  dl_iterate_phdr(search_object, &search);
  return search.found;
}

// Looks `name` up in the program's global scope (`next`: in the objects loaded after
// libheapkeeper.so, for the functions it exports itself), then in every loaded object. heapkeeper's
// own copy of libstdc++ is hidden, so it is never the answer. Anything dlsym allocates is internal.
void* program_symbol(const char* name, bool next) noexcept {
  if (next) {
    if (void* address = lookup_next_symbol(name)) return address;
  }
  enter_internal();
  void* address = next ? nullptr : dlsym(RTLD_DEFAULT, name);
  if (address == nullptr) address = search_loaded_objects(name);
  leave_internal();
  return address;
}

template <typename Function>
Function cached_symbol(std::atomic<void*>& cache, const char* name, bool next = false) noexcept {
  void* address = cache.load(std::memory_order_acquire);
  if (address == nullptr) {
    address = program_symbol(name, next);
    cache.store(address, std::memory_order_release);
  }
  return reinterpret_cast<Function>(address);
}

std::atomic<void*> g_get_new_handler{nullptr};
std::atomic<void*> g_allocate_exception{nullptr};
std::atomic<void*> g_throw{nullptr};
std::atomic<void*> g_bad_alloc_typeinfo{nullptr};
std::atomic<void*> g_bad_alloc_vtable{nullptr};
std::atomic<void*> g_bad_alloc_destructor{nullptr};
std::atomic<void*> g_nothrow_new{nullptr};
std::atomic<void*> g_nothrow_new_aligned{nullptr};

}  // namespace

std::new_handler program_new_handler() noexcept {
  using GetNewHandler = std::new_handler (*)();
  const auto get = cached_symbol<GetNewHandler>(g_get_new_handler, "_ZSt15get_new_handlerv");
  return get != nullptr ? get() : nullptr;
}

void throw_program_bad_alloc() {
  using AllocateException = void* (*)(size_t);
  using Throw = void (*)(void*, void*, void (*)(void*));
  const auto allocate_exception = cached_symbol<AllocateException>(g_allocate_exception, "__cxa_allocate_exception");
  const auto raise = cached_symbol<Throw>(g_throw, "__cxa_throw");
  void* const typeinfo = cached_symbol<void*>(g_bad_alloc_typeinfo, "_ZTISt9bad_alloc");
  const auto vtable = cached_symbol<char*>(g_bad_alloc_vtable, "_ZTVSt9bad_alloc");
  const auto destructor = cached_symbol<void (*)(void*)>(g_bad_alloc_destructor, "_ZNSt9bad_allocD1Ev");
  if (allocate_exception == nullptr || raise == nullptr || typeinfo == nullptr || vtable == nullptr) {
    DiagnosticLine()
        .text("operator new failed and the program has no C++ runtime to throw std::bad_alloc through; aborting")
        .emit();
    abort();
  }
  // `throw std::bad_alloc()` spelled out: the object is its vtable pointer alone, and a class's
  // vtable symbol names the table, whose address point is two words in (offset-to-top, typeinfo).
  void* exception = allocate_exception(sizeof(void*));
  *static_cast<void**>(exception) = vtable + 2 * sizeof(void*);
  raise(exception, typeinfo, destructor);
  abort();  // __cxa_throw does not return
}

void* program_nothrow_new(size_t size, size_t alignment) noexcept {
  if (alignment == 0) {
    using NothrowNew = void* (*)(size_t, const std::nothrow_t&) noexcept;
    const auto call = cached_symbol<NothrowNew>(g_nothrow_new, "_ZnwmRKSt9nothrow_t", true);
    return call != nullptr ? call(size, std::nothrow) : nullptr;
  }
  using NothrowNewAligned = void* (*)(size_t, std::align_val_t, const std::nothrow_t&) noexcept;
  const auto call = cached_symbol<NothrowNewAligned>(g_nothrow_new_aligned, "_ZnwmSt11align_val_tRKSt9nothrow_t", true);
  return call != nullptr ? call(size, static_cast<std::align_val_t>(alignment), std::nothrow) : nullptr;
}

}  // namespace heapkeeper::alloc

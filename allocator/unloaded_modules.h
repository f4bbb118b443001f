// UnloadedModules: what each module the program unloaded was — path, build-id, load bias and
// address range — kept after dlclose, and the module generation that says which one a recorded
// return address belongs to.
//
// A stack is a list of bare return addresses. Once dlclose unmaps a library, /proc/self/maps and
// the dynamic loader no longer know what was there, and a later dlopen may map another library on
// the same addresses. So the interposed dlclose notes every object it is about to unmap (by
// diffing the loader's list before and after the original call; it reads the loader's own
// records in memory, no file) and appends one unload event per object, all stamped with the next
// *generation*: the count of dlcloses that unmapped something. Each interned stack carries the
// generation it was captured in (allocator/stack_table.h), and the rule that names a frame is:
//
//   the module of return address `a` in a stack of generation `g` is the first module unloaded
//   after `g` (smallest event generation > g) whose range holds a - 1; if none, whatever is mapped
//   there now.
//
// It is exact because two modules that hold the same address were mapped one after the other: the
// one mapped when the stack was captured is unloaded before any later one is, so its event comes
// first. Events are appended in generation order, so readers binary-search the first event after
// `g`. No load hook is needed: loads never change what an older stack meant, and dlopen cannot be
// wrapped without changing its caller (which picks the RUNPATH, $ORIGIN and namespace it searches).
//
// Loads are not recorded, and a library is recorded when it is unloaded, not when it is loaded;
// both describe the same mapping, and its build-id is read from the mapped notes, so a file
// replaced on disk meanwhile is recognised at report time by its different build-id.
//
// Costs: malloc reads the generation (one load of a line written only by dlclose) to keep its
// per-thread stack cache from serving a stack of a library that is gone. dlclose itself walks the
// loader's list three times (a few microseconds per hundred objects). Readers take no lock: records
// are written before the counts that publish them. A library reloaded at the same place is one
// record, but each unload is an event, and the stacks through it are interned anew after each (the
// allocation path cannot tell that the same file is back). Limits: 4,096 distinct modules, 65,536
// unloads, 1 MiB of paths; past them unloads go unrecorded and their frames are named as before
// this registry existed (by what is mapped at report time). Not seen: objects glibc unloads without
// the exported dlclose (a dlopen that fails after mapping dependencies) — their frames get "??".
// A stack captured in the instant between another thread's dlclose unmapping a library and its
// event being published, through a library just loaded at the same addresses, is named after the
// closed one; that needs a dlclose and a dlopen racing on two threads.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

struct dl_phdr_info;  // <link.h>

namespace heapkeeper::alloc {

// Stacks are attributed to what is mapped at report time when given this generation (a single
// address caught just now, such as a bad free's caller).
constexpr uint32_t kMappedNow = UINT32_MAX;

extern std::atomic<uint32_t> g_module_generation;

// The number of dlcloses that have unmapped an object so far. Read on the allocation path.
inline uint32_t module_generation() noexcept { return g_module_generation.load(std::memory_order_acquire); }

struct UnloadedModule {
  uint32_t index = 0;              // stable number of this record (same file, same place: same index)
  uint32_t unload_generation = 0;  // the first generation in which it was no longer mapped
  const char* path = nullptr;      // absolute when the loader or /proc/self/maps knew it; NUL-terminated
  const uint8_t* build_id = nullptr;
  uint32_t build_id_length = 0;  // 0: the object had no GNU build-id note
  uintptr_t load_bias = 0;       // run-time address minus the ELF file's own (dlpi_addr)
  uintptr_t low = 0, high = 0;   // [low, high): its PT_LOAD segments as mapped
};

// The interposed dlclose (preload/): calls `original` and records what it unmapped. Same result,
// errno and dlerror state as the original. Never throws, allocates nothing from the tracked heap.
using DlcloseFunction = int (*)(void*);
int dlclose_recording_unloads(DlcloseFunction original, void* handle) noexcept;

// The module that held `return_address` for a stack captured in `generation`, if it has been
// unloaded since (see the rule above); false when the address is to be named by what is mapped now.
bool unloaded_module_for(uintptr_t return_address, uint32_t generation, UnloadedModule* out) noexcept;

// Whether a module holding one of these return addresses was unloaded at a generation in
// (after, up_to]: if not, the stack means the same code in both generations.
bool unloaded_between(const uintptr_t* return_addresses, uint32_t depth, uint32_t after, uint32_t up_to) noexcept;

// The earliest unload after `generation` of a module holding one of these return addresses, or 0 if
// none: two stacks with the same addresses name the same code exactly when this agrees.
uint32_t first_unload_after(const uintptr_t* return_addresses, uint32_t depth, uint32_t generation) noexcept;

// Which unloaded modules these return addresses were in, for a stack captured in `generation`: a
// hash of each frame's module record (see the rule above), 0 when none has been unloaded since.
// A library reloaded at the same place is one record, so the stacks through it captured between
// any two of its unloads agree; a library mapped later at the same addresses is another record,
// and stacks through what is mapped now get 0.
uint64_t unloaded_identity(const uintptr_t* return_addresses, uint32_t depth, uint32_t generation) noexcept;

// The GNU build-id of a loaded object, read from its mapped notes, into `out` (kMaxBuildIdBytes
// bytes of room); its length, or 0 when it has none.
constexpr size_t kMaxBuildIdBytes = 64;
size_t loaded_build_id(const ::dl_phdr_info* info, uint8_t* out) noexcept;

// Records and events so far (tests, diagnostics).
size_t unloaded_module_count() noexcept;
size_t unload_event_count() noexcept;

// In a forked child: the thread that held the writers' lock in the parent is not there.
void unloaded_modules_after_fork() noexcept;

}  // namespace heapkeeper::alloc

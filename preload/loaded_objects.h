// The loaded ELF objects as the dynamic linker lists them, read without calling dlsym.
//
// heapkeeper interposes dlsym and dlvsym, so it cannot ask them for its own originals, nor for
// what it exports itself: these helpers walk dl_iterate_phdr and look names up in each object's
// dynamic symbol table (GNU or SysV hash) directly. They neither allocate nor call back into
// heapkeeper, so they work before the engine is up and from inside the lookup hooks.
#pragma once

#include <cstdint>

namespace heapkeeper::preload {

// Where an address lies relative to libheapkeeper.so in the dynamic linker's list of objects
// (load order, which for the program, its preloads and their dependencies is the global search
// order): in an object listed before heapkeeper (the program, earlier preloads), in heapkeeper,
// in one listed after it (libc, libstdc++, anything dlopened), or in no object at all.
enum class ObjectPosition { kBefore, kHeapkeeper, kAfter, kNone };
ObjectPosition position_of(uintptr_t address) noexcept;

// The address of `name` as defined by libheapkeeper.so itself; nullptr if it does not define it.
void* own_definition(const char* name) noexcept;

// The first definition of `name` in an object listed after libheapkeeper.so (what
// dlsym(RTLD_NEXT, name) would answer heapkeeper); nullptr if none.
void* next_definition(const char* name) noexcept;

}  // namespace heapkeeper::preload

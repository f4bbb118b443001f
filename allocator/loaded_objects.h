// The loaded ELF objects as the dynamic linker lists them, read without calling dlsym.
//
// heapkeeper interposes dlsym and dlvsym, so it cannot ask them for its own originals, nor for
// what it exports itself; and any dlsym that succeeds replaces the program's pending dlerror()
// text with its own success, so a lookup heapkeeper makes at one of the program's calls (its first
// fork, a failed operator new) between the program's failed dlopen and the dlerror() that asks why
// must not use it. These helpers walk dl_iterate_phdr and look names up in each object's dynamic
// symbol table (GNU or SysV hash) directly. They neither allocate nor call back into heapkeeper, so
// they work before the engine is up and from inside the lookup hooks. They take the loader's lock
// of dl_iterate_phdr, which glibc 2.36 leaves in a fork child as the fork found it (held, if
// another thread was walking then): a fork child asks dlsym instead (engine.h, in_forked_child).
#pragma once

#include <cstdint>

namespace heapkeeper::alloc {

// Where an address lies relative to libheapkeeper.so in the dynamic linker's list of objects
// (load order, which for the program, its preloads and their dependencies is the global search
// order): in an object listed before heapkeeper (the program, earlier preloads), in heapkeeper,
// in one listed after it (libc, libstdc++, anything dlopened), or in no object at all.
enum class ObjectPosition { kBefore, kHeapkeeper, kAfter, kNone };
ObjectPosition position_of(uintptr_t address) noexcept;

// The address of `name` as defined by libheapkeeper.so itself; nullptr if it does not define it.
void* own_definition(const char* name) noexcept;

// The first definition of `name` in an object listed after libheapkeeper.so (what
// dlsym(RTLD_NEXT, name) would answer heapkeeper, and also in objects loaded with RTLD_LOCAL);
// nullptr if none.
void* next_definition(const char* name) noexcept;

// The first definition of `name` in any object but libheapkeeper.so, in the list's order (what
// dlsym(RTLD_DEFAULT, name) answers for a name heapkeeper does not export, and also in objects
// loaded with RTLD_LOCAL: a C program's plugin written in C++ brings its C++ runtime that way);
// nullptr if none.
void* program_definition(const char* name) noexcept;

}  // namespace heapkeeper::alloc

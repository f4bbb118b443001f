// heapkeeper's own thread-local storage is no root (but for the frees it defers).
//
// Every thread's static TLS holds libheapkeeper.so's TLS block: jemalloc's per-thread state and
// heapkeeper's ThreadLocal. jemalloc's state refers to no program block, yet holds words that look
// like references: its rtree lookup cache keeps "leaf keys", addresses rounded down to 1 GiB. A
// block that starts on a 1 GiB boundary (the first block of an arena's first extent) was thereby
// "referenced" from every thread that had freed or looked up anything in that gigabyte, and when
// leaked was reported reachable: 39 of 40 leaks, about one run in a hundred of exact_leak_count
// with 8 arenas (which arena's extent starts on the boundary depends on scheduling).
// The ThreadLocal stays a root: its deferred frees are blocks the program freed inside a signal
// handler while jemalloc ran on that thread; until freed they are not leaks.
#pragma once

#include <cstddef>
#include <cstdint>

#include "collector/os_primitives.h"

namespace heapkeeper::collect {

// Finds libheapkeeper.so's TLS block relative to the thread pointer, once. Call before the world
// is stopped (dl_iterate_phdr takes the loader's lock). `own_base`: the module's load address.
void look_up_own_tls(uintptr_t own_base);

// The parts of heapkeeper's TLS block in the thread whose thread pointer (glibc: pthread_t, the
// thread control block) is `thread_pointer` that are no roots: appended to `out` (at most
// `capacity`); returns how many. None when the layout is unknown or no thread control block is
// at `thread_pointer` (checked by its self-pointers, as the x86-64 TLS ABI lays it out).
size_t own_tls_exclusions(uintptr_t thread_pointer, MemoryRange* out, size_t capacity);

}  // namespace heapkeeper::collect

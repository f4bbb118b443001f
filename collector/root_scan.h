// One scan: stop the world, scan every root range, mark, classify leaks, resume.
//
// Roots are what the program can reach without the heap: every stopped thread's registers and
// its stack from its stack pointer up (the red zone included), which for glibc threads also holds
// their static TLS and thread control block (and through it the DTV and dynamic TLS blocks); the
// writable segments (data, bss, relro) of every loaded module; and every other anonymous writable
// private mapping (custom pools, CPython's obmalloc arenas, the main thread's TLS). Excluded:
// heapkeeper's own module, reservations and side tables, the stacks of heapkeeper's threads, the
// stacks glibc keeps after their threads exited (below their TLS; see exited_stack_exclusion.h),
// and the part of the scanning thread's stack below the point where heapkeeper was entered.
#pragma once

#include <cstddef>
#include <cstdint>

#include "collector/marker.h"

namespace heapkeeper::collect {

struct ScanRequest {
  // When the scan runs on a program thread (at exit), its stack above this address is a root.
  uintptr_t caller_stack_pointer = 0;
  const uint64_t* caller_registers = nullptr;
  size_t caller_register_count = 0;
  // Where marking records the references it follows, for retained sizes; none when null.
  ReferenceGraph* graph = nullptr;
};

struct ScanResult {
  bool ok = false;
  char failure[192] = {};
  bool stop_timed_out = false;  // the failure: ptrace's deadline to stop the threads passed (WorldStop::timed_out)
  char stop_method[16] = {};    // "ptrace" or "signals"
  uint64_t pause_ns = 0;
  uint64_t mark_ns = 0;
  uint64_t threads_stopped = 0;
  uint64_t root_ranges = 0;
  MarkFigures figures;
  ReferenceSummary references;
  const LeakedBlock* leaks = nullptr;  // owned by the marker passed in
  size_t leak_count = 0;
};

// Runs a whole scan into `marker` (which owns the leak list afterwards). Thread-safe callers must
// serialise scans; the caller must hold heapkeeper's reentrancy guard.
ScanResult scan_heap(const ScanRequest& request, Marker& marker);

}  // namespace heapkeeper::collect

// The composition root: the library constructor brings the engine up (if the first allocation
// has not already) and connects the layers above it — the symbolizing stack printer and the exit
// report — then checks that the dynamic linker really routes the allocation API here.
#include "allocator/engine.h"
#include "preload/original_functions.h"
#include "report/exit_report.h"

namespace {

__attribute__((constructor(101))) void heapkeeper_library_start() {
  if (!heapkeeper::alloc::ensure_initialized()) return;
  heapkeeper::alloc::run_guarded([] {
    heapkeeper::report::install();
    heapkeeper::preload::check_interposition();
  });
}

}  // namespace

// The composition root: the library constructor brings the engine up (if the first allocation
// has not already) and connects the layers above it — the collector, the symbolizing stack printer
// and the exit report — then checks that the dynamic linker really routes the allocation API here.
#include "allocator/engine.h"
#include "allocator/python_frames.h"
#include "collector/collector.h"
#include "preload/original_functions.h"
#include "report/exit_report.h"
#include "stats/publisher.h"

namespace {

__attribute__((constructor(101))) void heapkeeper_library_start() {
  if (!heapkeeper::alloc::ensure_initialized()) return;
  heapkeeper::alloc::run_guarded([] {
    // Exit handlers run in this order: the leak scan, the JSON report, the final live snapshot
    // (and removal of the segment), the exit status.
    heapkeeper::alloc::initialize_python_frames();
    heapkeeper::collect::install();
    heapkeeper::report::install();
    heapkeeper::stats::install();
    heapkeeper::collect::install_exit_status();
    heapkeeper::preload::check_interposition();
  });
}

}  // namespace

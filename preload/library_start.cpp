// The composition root: the library constructor brings the engine up (if the first allocation
// has not already) and connects the layers above it — the collector, the symbolizing stack printer
// and the exit report — then checks that the dynamic linker really routes the allocation API here.
#include "allocator/engine.h"
#include "allocator/errno_kept.h"
#include "allocator/python_frames.h"
#include "collector/collector.h"
#include "preload/original_functions.h"
#include "report/exit_report.h"
#include "stats/publisher.h"

namespace {

__attribute__((constructor(101))) void heapkeeper_library_start() {
  const heapkeeper::alloc::ErrnoKept errno_kept;  // main starts with the errno it would have had
  if (!heapkeeper::alloc::ensure_initialized()) return;
  heapkeeper::alloc::run_guarded([] {
    // Exit handlers run in this order: the leak scan, the JSON report, the final live snapshot
    // (and removal of the segment), the exit status.
    heapkeeper::alloc::initialize_python_frames();
    heapkeeper::collect::install();
    heapkeeper::report::install();
    heapkeeper::stats::install();
    heapkeeper::collect::install_exit_status();
    heapkeeper::preload::resolve_child_originals();
    heapkeeper::preload::check_interposition();
  });
}

}  // namespace

// The library's DT_FINI (-fini, preload/CMakeLists.txt). The C runtime's _fini does nothing on
// x86-64 (destructors run from .fini_array), but it sits alone at the end of the text, where
// calling it at exit cost every traced process a 64 KiB code window of its own (issue #12); this
// one is placed with the rest of the exit path (start_path.ld).
extern "C" __attribute__((visibility("hidden"), used)) void heapkeeper_library_fini() {}

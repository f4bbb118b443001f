// Where the program's own frames begin when heapkeeper's code runs on a program thread: the exit
// scan runs inside the program's exit(), under heapkeeper's exit handlers.
//
// Those handlers' frames are heapkeeper's, and large (diagnostic buffers, the scan's locals): most
// of their bytes are never written, so they still hold whatever the program's earlier deep calls
// left there — and, read as roots, such stale words keep leaked blocks alive (a leak missed only
// because heapkeeper's frames happen to cover it; which one depends on the build's frame layout).
// The exit scan therefore takes as roots the program's stack from its caller's frame up, and the
// registers the caller had when it called in: the callee-saved ones that heapkeeper's frames saved
// on the way down (and may have reused since) are restored from their unwind information, so a
// pointer the program kept only in a register is still seen. The other registers are dead across
// a call.
#pragma once

#include <cstddef>
#include <cstdint>

namespace heapkeeper::collect {

struct ProgramCaller {
  static constexpr size_t kRegisters = 6;  // rbx, rbp, r12, r13, r14, r15
  uintptr_t stack_pointer = 0;             // 0: not found (no caller outside heapkeeper's code)
  uint64_t registers[kRegisters] = {};
};

// Unwinds the calling thread through heapkeeper's own frames to the first frame that is not
// heapkeeper's code. Runs on a program thread (libunwind, no allocation).
ProgramCaller find_program_caller() noexcept;

}  // namespace heapkeeper::collect

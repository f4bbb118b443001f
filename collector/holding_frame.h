// Which function's frame holds a root word on a thread's stack, for `heapkeeper why`: the return
// addresses that lie between the thread's stack pointer and the word, nearest the word first.
//
// Why that names the frame: a function's locals lie below the return address its own caller
// pushed, and above the return addresses of the calls it makes. So the nearest return address
// below the word (at a lower address) was pushed by the call the holding function is making now,
// and points into that function; the binary symbolizes it (analysis/why_renderer.h). A word in
// the innermost frame has none below it: the function is then unknown.
//
// A stack word is taken for a return address when it points into code a file maps and the bytes
// before it are a call instruction (x86-64: call rel32, call through a register or memory).
// A stale return address left in an uninitialised slot of the holding frame can pass both tests;
// nearest-first keeps the real one first whenever the frame's live call slot lies above it.
// The stack is read after the world resumed, with process_vm_readv (a thread that exited
// meanwhile makes the read fail, never a fault): a thread still asleep where the scan found it —
// the common case for a thread holding memory — has the same frames.
#pragma once

#include <cstdint>
#include <vector>

#include "report/module_map.h"

namespace heapkeeper::collect {

// Up to `limit` return addresses found in [stack_pointer, word), nearest `word` first.
std::vector<uint64_t> return_addresses_below(uint64_t word, uint64_t stack_pointer, const report::ModuleMap& modules,
                                             size_t limit);

}  // namespace heapkeeper::collect

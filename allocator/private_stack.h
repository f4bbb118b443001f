// Running a piece of heapkeeper's own work on a stack of its own.
//
// Unwinding in full (libunwind's DWARF path) needs about 9 KiB of stack below the allocation. On
// the thread's own stack and on its alternate signal stack heapkeeper knows the room left and
// records the caller alone when it is short (stack_capture.cpp); on a coroutine's stack (ucontext,
// boost.context, a green-thread library's) it cannot know it, and a small one overflowed. There,
// the unwind runs on a 64 KiB stack of heapkeeper's: the context is taken on the program's stack
// (about 1 KiB), and the steps that read it run on the private one.
//
// The trampoline pushes the callee-saved registers on the program's stack before switching, so a
// pointer the program held only in one of them stays in memory a scan reads as a root (the private
// stack is in the internal heap, which is none), should the thread be stopped mid-unwind.
#pragma once

namespace heapkeeper::alloc {

struct ThreadState;

inline constexpr unsigned long kPrivateStackBytes = 64ul * 1024ul;

// Runs function(argument) on `state`'s private stack (made from the internal arena at first need)
// and returns true; false, without running it, when there is none to be had: already in use (a
// signal handler interrupted the unwind), inside jemalloc, or out of memory.
bool run_on_private_stack(ThreadState& state, void (*function)(void*), void* argument) noexcept;

// Whether `address` is on `state`'s private stack.
bool on_private_stack(const ThreadState& state, unsigned long address) noexcept;

}  // namespace heapkeeper::alloc

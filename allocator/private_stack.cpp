// A stack of heapkeeper's own for unwinds off stacks of unknown room (see private_stack.h).
#include "allocator/private_stack.h"

#include <cstdint>

#include "allocator/jemalloc_calls.h"
#include "allocator/private_heap.h"
#include "allocator/thread_registry.h"

// void heapkeeper_call_on_stack(void (*function)(void*), void* argument, void* stack_top):
// function(argument) with the stack pointer at stack_top (16-byte aligned), then back. The frame
// pointer chain and CFI keep the program's frames reachable from the private stack (debuggers).
extern "C" void heapkeeper_call_on_stack(void (*function)(void*), void* argument, void* stack_top);
asm(R"(
    .text
    .p2align 4
    .globl heapkeeper_call_on_stack
    .hidden heapkeeper_call_on_stack
    .type heapkeeper_call_on_stack, @function
heapkeeper_call_on_stack:
    .cfi_startproc
    pushq %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset %rbp, -16
    movq %rsp, %rbp
    .cfi_def_cfa_register %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rdx, %rsp
    movq %rdi, %rax
    movq %rsi, %rdi
    callq *%rax
    leaq -40(%rbp), %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    .cfi_def_cfa %rsp, 8
    ret
    .cfi_endproc
    .size heapkeeper_call_on_stack, .-heapkeeper_call_on_stack
)");

namespace heapkeeper::alloc {

bool run_on_private_stack(ThreadState& state, void (*function)(void*), void* argument) noexcept {
  if (state.private_stack_busy || tls_thread.in_jemalloc != 0) return false;
  if (state.private_stack == nullptr) {
    state.private_stack = je::mallocx(kPrivateStackBytes, MALLOCX_ARENA(private_heap().internal_arena()) |
                                                              MALLOCX_TCACHE_NONE | MALLOCX_LG_ALIGN(12));
    if (state.private_stack == nullptr) return false;
  }
  state.private_stack_busy = true;
  heapkeeper_call_on_stack(function, argument, static_cast<char*>(state.private_stack) + kPrivateStackBytes);
  state.private_stack_busy = false;
  return true;
}

bool on_private_stack(const ThreadState& state, unsigned long address) noexcept {
  const auto low = reinterpret_cast<uintptr_t>(state.private_stack);
  return low != 0 && address >= low && address < low + kPrivateStackBytes;
}

}  // namespace heapkeeper::alloc

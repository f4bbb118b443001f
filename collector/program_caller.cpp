// Implementation of find_program_caller (see program_caller.h), with libunwind's local unwinder,
// which follows the DWARF CFI of every frame and so knows where each saved register went.
#define UNW_LOCAL_ONLY
#include "collector/program_caller.h"

#include <libunwind.h>

#include "allocator/stack_capture.h"

namespace heapkeeper::collect {

ProgramCaller find_program_caller() noexcept {
  ProgramCaller caller;
  alloc::prepare_unwinder();
  unw_context_t context;
  unw_cursor_t cursor;
  if (unw_getcontext(&context) != 0 || unw_init_local(&cursor, &context) != 0) return caller;
  constexpr int kMaxOwnFrames = 64;
  for (int frame = 0; frame < kMaxOwnFrames; ++frame) {
    unw_word_t ip = 0;
    if (unw_get_reg(&cursor, UNW_REG_IP, &ip) != 0) return caller;
    if (!alloc::is_heapkeeper_code(ip)) {
      unw_word_t sp = 0;
      if (unw_get_reg(&cursor, UNW_REG_SP, &sp) != 0) return caller;
      const unw_regnum_t saved[ProgramCaller::kRegisters] = {UNW_X86_64_RBX, UNW_X86_64_RBP, UNW_X86_64_R12,
                                                             UNW_X86_64_R13, UNW_X86_64_R14, UNW_X86_64_R15};
      for (size_t i = 0; i < ProgramCaller::kRegisters; ++i) {
        unw_word_t value = 0;
        if (unw_get_reg(&cursor, saved[i], &value) != 0) return caller;
        caller.registers[i] = value;
      }
      caller.stack_pointer = sp;
      return caller;
    }
    if (unw_step(&cursor) <= 0) return caller;
  }
  return caller;
}

}  // namespace heapkeeper::collect

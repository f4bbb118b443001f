/* A block allocated through a function without unwind information whose frame pointer points at
 * a "frame record" of data: libunwind, finding no unwind information, steps by the frame pointer
 * and returns the record's second word as the caller's return address. The record holds the
 * double 3.0 there (0x4008000000000000: bits 63..62 are 01, the value of no return address), and a
 * null frame pointer before it, which ends the stack. The block is leaked; the program prints the
 * word, which the leak's stack must show as its second frame (programs.sh garbage_frame). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No CFI directives: the assembler makes no unwind information for it. */
void* allocate_under_record(const uint64_t* record, size_t size);
__asm__(
    ".text\n"
    ".globl allocate_under_record\n"
    ".type allocate_under_record,@function\n"
    "allocate_under_record:\n"
    "  push %rbp\n"
    "  mov %rdi, %rbp\n"
    "  mov %rsi, %rdi\n"
    "  call malloc@PLT\n"
    "  pop %rbp\n"
    "  ret\n"
    ".size allocate_under_record, .-allocate_under_record\n");

int main(void) {
  const double three = 3.0;
  uint64_t record[2] = {0, 0};
  memcpy(&record[1], &three, sizeof three);
  char* volatile block = allocate_under_record(record, 123);
  if (block == NULL) return 1;
  memset(block, 0, 123);
  block = NULL;
  printf("%llu\n", (unsigned long long)record[1]);
  return 0;
}

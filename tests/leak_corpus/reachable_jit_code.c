/* reachable_jit_code: blocks whose only pointers are immediates in machine code a JIT wrote, at
 * offsets no multiple of 8 (x86-64's `movabs rax, imm64` puts its operand two bytes in): code in
 * an anonymous mapping that stays writable and executable, code sealed read-and-execute once
 * written (W^X), and code written through one view of a memfd and run through another (as JITs
 * that keep W^X map it twice). The JVM's inline caches name the CompiledICHolder blocks they
 * malloc only so: heapkeeper read words at multiples of 8, called such blocks leaked, and collect
 * mode freed them under the JVM, which crashed in about one `mvn -v` in three. Each block is then
 * found by running the code that names it, and its bytes checked, after periodic scans.
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 * corpus: env HEAPKEEPER_SCAN_INTERVAL=50ms
 * corpus: stdout-contains kept: 3 of 3
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "corpus.h"

enum { kBlocks = 3, kCodeOffset = 3 };
typedef void* (*Thunk)(void);
static Thunk volatile g_thunks[kBlocks];

/* `movabs rax, block; ret` at kCodeOffset, so the immediate lies at offset 5: unaligned. */
static void write_thunk(unsigned char* code, void* block) {
  const uintptr_t value = (uintptr_t)block;
  code[kCodeOffset] = 0x48;
  code[kCodeOffset + 1] = 0xb8;
  memcpy(code + kCodeOffset + 2, &value, sizeof value);
  code[kCodeOffset + 10] = 0xc3;
}

static void* new_block(int i) {
  void* block = malloc(48 + 16 * (size_t)i);
  if (block != NULL) memset(block, 'a' + i, 48 + 16 * (size_t)i);
  return block;
}

static CORPUS_NOINLINE int keep_in_code(void) {
  /* Writable and executable, as the JVM's code cache. */
  unsigned char* rwx = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  /* Written, then sealed. */
  unsigned char* sealed = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  /* Two views of one memfd: written through one, run through the other. */
  const int fd = memfd_create("reachable_jit_code", 0);
  if (rwx == MAP_FAILED || sealed == MAP_FAILED || fd < 0 || ftruncate(fd, 4096) != 0) return 0;
  unsigned char* writer = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  unsigned char* runner = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
  close(fd);
  if (writer == MAP_FAILED || runner == MAP_FAILED) return 0;
  write_thunk(rwx, new_block(0));
  write_thunk(sealed, new_block(1));
  if (mprotect(sealed, 4096, PROT_READ | PROT_EXEC) != 0) return 0;
  write_thunk(writer, new_block(2));
  if (munmap(writer, 4096) != 0) return 0;
  g_thunks[0] = (Thunk)(void*)(rwx + kCodeOffset);
  g_thunks[1] = (Thunk)(void*)(sealed + kCodeOffset);
  g_thunks[2] = (Thunk)(void*)(runner + kCodeOffset);
  return 1;
}

int main(void) {
  if (!keep_in_code()) {
    printf("no executable mappings here\n");
    return 2;
  }
  corpus_clobber_stack();
  /* Periodic scans meanwhile; blocks freed under the program would be handed out again here. */
  for (int round = 0; round < 6; ++round) {
    const struct timespec pause = {0, 60 * 1000 * 1000};
    nanosleep(&pause, NULL);
    for (int i = 0; i < 200; ++i) free(memset(malloc(48 + 16 * (size_t)(i % 3)), 'X', 48));
  }
  int kept = 0;
  for (int i = 0; i < kBlocks; ++i) {
    const unsigned char* block = g_thunks[i]();
    int same = 1;
    for (size_t k = 0; k < 48 + 16 * (size_t)i; ++k) same &= block[k] == 'a' + i;
    kept += same;
  }
  printf("kept: %d of %d\n", kept, kBlocks);
  return 0;
}

// A child made with clone(CLONE_VM) and no CLONE_THREAD: a process that shares its parent's memory
// without being one of its threads (never_invented.sh clone_vm). For about a second the child holds
// the only pointer to a block in a callee-saved register while the parent waits; then the parent
// takes the pointer back and checks that no allocation is handed the block.
//
// A scan can neither stop such a child nor read its registers (it is not in /proc/self/task): before
// heapkeeper noted these children, every scan called the block leaked and collect mode freed it
// while the child held it. Now scans are skipped, with one line saying why, while the child shares
// the memory.
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kOthers = 100000 };
static char* volatile shared_pointer;
static char* others[kOthers];
static volatile int child_done;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

// Moves the pointer into rbx, clears the shared copy, spins `iterations` times, puts it back.
// Raw instructions only: the child shares the parent's thread pointer, so no libc call is safe.
static int child(void* argument) {
  uint64_t iterations = *(uint64_t*)argument;
  char* back;
  __asm__ volatile(
      "movq %[g], %%rbx\n\t"
      "movq $0, %[g]\n\t"
      "1: decq %[n]\n\t"
      "jnz 1b\n\t"
      "movq %%rbx, %[b]\n\t"
      : [b] "=r"(back), [g] "+m"(shared_pointer), [n] "+r"(iterations)
      :
      : "rbx", "cc", "memory");
  shared_pointer = back;
  child_done = 1;
  return 0;
}

static uint64_t spin(uint64_t iterations) {
  __asm__ volatile("1: decq %[n]\n\tjnz 1b\n\t" : [n] "+r"(iterations) : : "cc");
  return iterations;
}

int main(void) {
  // How many spins take about 1.2 s here (the fastest of three probes of 10 million).
  uint64_t per_ten_million = UINT64_MAX;
  for (int i = 0; i < 3; ++i) {
    const uint64_t start = now_ns();
    spin(10000000);
    const uint64_t took = now_ns() - start;
    if (took < per_ten_million) per_ten_million = took;
  }
  if (per_ten_million == 0) per_ten_million = 1;
  uint64_t iterations = (uint64_t)(1.0e7 * 1.2e9 / (double)per_ten_million);

  shared_pointer = malloc(64);
  strcpy(shared_pointer, "still here");
  const size_t stack_bytes = 1 << 20;
  char* stack = mmap(NULL, stack_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (stack == MAP_FAILED) return 1;
  const pid_t pid = clone(child, stack + stack_bytes, CLONE_VM | SIGCHLD, &iterations);
  if (pid < 0) {
    perror("clone");
    return 1;
  }
  while (!child_done) usleep(1000);
  waitpid(pid, NULL, 0);
  char* block = shared_pointer;
  int handed_out = 0, made = 0;
  for (; made < kOthers && !handed_out; ++made) {
    others[made] = malloc(64);
    if (others[made] == block)
      handed_out = 1;
    else
      memset(others[made], 'X', 64);
  }
  printf("block %s, holding \"%s\"\n", handed_out ? "HANDED OUT AGAIN" : "kept", block);
  for (int i = 0; i < made; ++i)
    if (others[i] != block) free(others[i]);
  free(block);
  munmap(stack, stack_bytes);
  return handed_out;
}

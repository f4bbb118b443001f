// A timer's signal handler allocates, fills, checks and frees a 256 KiB block (with `aligned`, a
// 64 KiB block aligned to 4 KiB with aligned_alloc; with `large`, a 3 MiB block), every 100 us for
// ALARMS alarms, while the main thread churns through malloc and free of many sizes, so that
// thousands of the handler's calls land inside the allocator.
//
// Under heapkeeper a handler that interrupts jemalloc itself is served from the signal-safe pool,
// which never reused a block: a handler like this one used its 256 MiB up within a second or two
// and malloc returned NULL from then on (an adversarial round, helper-62). Freed pool blocks are
// now reused, aligned and large ones too (those were never reused even after the first fix: an
// adversarial round, helper-63), so every one of the handler's allocations succeeds.
//
// glibc's malloc may not be called from a handler that interrupted it, so without heapkeeper (no
// heapkeeper_heap_stats to find) the churn blocks the signal around its own calls: the output is
// the same either way. Output: how many alarms were handled, and how many allocations failed or
// came back with wrong bytes (0 and 0).
//
// Usage: handler_pool_reuse [ALARMS [aligned|large]]
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static size_t block_bytes = 256 * 1024;
static size_t block_alignment = 0;  // 0: malloc

static volatile sig_atomic_t alarms;
static volatile sig_atomic_t failed_allocations;
static volatile sig_atomic_t bad_blocks;

static void on_alarm(int signal_number) {
  (void)signal_number;
  alarms = alarms + 1;
  unsigned char* block = block_alignment != 0 ? aligned_alloc(block_alignment, block_bytes) : malloc(block_bytes);
  if (block == NULL) {
    failed_allocations = failed_allocations + 1;
    return;
  }
  const unsigned char mark = (unsigned char)(alarms & 0xff);
  // A large block's three checked bytes alone: filling 3 MiB at every alarm would take the run's
  // time in page faults.
  if (block_bytes > 1024 * 1024) {
    block[0] = block[block_bytes / 2] = block[block_bytes - 1] = mark;
  } else {
    memset(block, mark, block_bytes);
  }
  if (block[0] != mark || block[block_bytes / 2] != mark || block[block_bytes - 1] != mark ||
      (block_alignment != 0 && (uintptr_t)block % block_alignment != 0))
    bad_blocks = bad_blocks + 1;
  free(block);
}

int main(int argc, char** argv) {
  const long wanted = argc > 1 ? atol(argv[1]) : 20000;
  const char* variant = argc > 2 ? argv[2] : "";
  if (strcmp(variant, "aligned") == 0) {
    block_bytes = 64 * 1024;
    block_alignment = 4096;
  } else if (strcmp(variant, "large") == 0) {
    block_bytes = 3 * 1024 * 1024;
  }
  const int traced = dlsym(RTLD_DEFAULT, "heapkeeper_heap_stats") != NULL;
  sigset_t alarm_only, previous;
  sigemptyset(&alarm_only);
  sigaddset(&alarm_only, SIGALRM);
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_alarm;
  action.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &action, NULL);
  const struct itimerval every_100us = {{0, 100}, {0, 100}};
  setitimer(ITIMER_REAL, &every_100us, NULL);
  // At most 60 s, however slow the machine: the timer's pace is the kernel's.
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  void* held[64] = {0};
  for (long i = 0; alarms < wanted; ++i) {
    if ((i & 1023) == 0) {
      clock_gettime(CLOCK_MONOTONIC, &now);
      if (now.tv_sec - start.tv_sec > 60) break;
    }
    if (!traced) sigprocmask(SIG_BLOCK, &alarm_only, &previous);
    const int slot = (int)(i & 63);
    free(held[slot]);
    // Sizes from 16 bytes to 64 KiB: small classes, page classes and large extents.
    held[slot] = malloc((size_t)16 << (i % 13));
    if (!traced) sigprocmask(SIG_SETMASK, &previous, NULL);
  }
  const struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  for (int slot = 0; slot < 64; ++slot) free(held[slot]);
  printf("alarms handled: %s\n", alarms >= wanted ? "all" : "too few");
  printf("handler allocations failed: %d\n", (int)failed_allocations);
  printf("handler blocks with wrong bytes: %d\n", (int)bad_blocks);
  return failed_allocations == 0 && bad_blocks == 0 ? 0 : 1;
}

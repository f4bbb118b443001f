// A timer's signal handler that, now and then, when it has interrupted heapkeeper's own code, takes
// its time (sleeps 150 ms) while the main thread was allocating and freeing small blocks of sizes
// that fill their regions exactly (16, 32 and 64 bytes: with heapkeeper's 16-byte header, 32, 48
// and 80). Run for SECONDS seconds; every block is freed by the program itself.
//
// Under heapkeeper a thread stopped between a block turning live and its pointer being formed held
// only the region's address, which the scanner took for one past the end of the block before: a
// slow handler there for three scans, and collect mode freed the new block and handed it out again
// ("reclaimed this block too early" when the program freed it), and detect mode's periodic scans
// called it leaked (an adversarial round, helper-63). Output: "done".
//
// glibc's malloc has no such window; without heapkeeper (no heapkeeper_heap_stats to find) the
// handler never finds itself in heapkeeper's code and does nothing but count.
//
// Usage: slow_handler_in_allocator SECONDS
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>

enum { kHeld = 4096 };

static unsigned char* held[kHeld];
static volatile long ticks;
static uintptr_t library_low, library_high;  // heapkeeper's code, found once before the timer starts

static int in_library(uintptr_t address) { return address >= library_low && address < library_high; }

static void on_alarm(int signal_number, siginfo_t* info, void* context) {
  (void)signal_number;
  (void)info;
  static long last = -100;
  ticks = ticks + 1;
  if (ticks - last < 20) return;
  const ucontext_t* interrupted = context;
  if (in_library((uintptr_t)interrupted->uc_mcontext.gregs[REG_RIP])) {
    last = ticks;
    const struct timespec slow = {0, 150000000};
    nanosleep(&slow, NULL);
  }
}

// The executable segments of the object holding `symbol`, from its program headers.
static int note_code(struct dl_phdr_info* object, size_t size, void* base) {
  (void)size;
  if (object->dlpi_addr != (ElfW(Addr))base) return 0;
  for (int i = 0; i < object->dlpi_phnum; ++i) {
    const ElfW(Phdr)* segment = &object->dlpi_phdr[i];
    if (segment->p_type != PT_LOAD || (segment->p_flags & PF_X) == 0) continue;
    const uintptr_t low = object->dlpi_addr + segment->p_vaddr, high = low + segment->p_memsz;
    if (library_low == 0 || low < library_low) library_low = low;
    if (high > library_high) library_high = high;
  }
  return 1;
}

static void find_library(void* symbol) {
  Dl_info where;
  if (symbol == NULL || dladdr(symbol, &where) == 0) return;
  dl_iterate_phdr(note_code, where.dli_fbase);
}

int main(int argc, char** argv) {
  const int seconds = argc > 1 ? atoi(argv[1]) : 10;
  find_library(dlsym(RTLD_DEFAULT, "heapkeeper_heap_stats"));
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_sigaction = on_alarm;
  action.sa_flags = SA_RESTART | SA_SIGINFO;
  sigaction(SIGALRM, &action, NULL);
  const struct itimerval every_3ms = {{0, 3000}, {0, 3000}};
  setitimer(ITIMER_REAL, &every_3ms, NULL);
  const time_t end = time(NULL) + seconds;
  for (long i = 0; time(NULL) < end; ++i) {
    const int slot = (int)(i % kHeld);
    free(held[slot]);
    const size_t size = (size_t)16 << (i % 3);
    held[slot] = malloc(size);
    memset(held[slot], slot & 0xff, size);
  }
  const struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  int damaged = 0;
  for (int slot = 0; slot < kHeld; ++slot) {
    if (held[slot] != NULL && held[slot][0] != (slot & 0xff)) ++damaged;
    free(held[slot]);
  }
  printf("%s\n", damaged == 0 ? "done" : "blocks damaged");
  return damaged == 0 ? 0 : 1;
}

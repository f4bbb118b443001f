/* Allocation on small stacks: a thread on a 32 KiB stack that allocates with 14 KiB of its own on
 * it, and a signal handler on a 16 KiB alternate stack that allocates. Plain, these work with
 * room to spare; a version of heapkeeper whose malloc took 5 KB more stack crashed both (its
 * stack cache kept its scratch on the stack). Prints one line per part.
 *
 * `small_stacks minimum`: instead, a helper thread on the smallest stack POSIX allows
 * (PTHREAD_STACK_MIN, 16 KiB on x86-64) writes a line to a stream of its own (fprintf allocates the
 * stream's buffer from inside vfprintf's large frame), duplicates a string, and allocates from a
 * few distinct call paths, as a small worker does. Plainly it has about 12 KiB of room and needs
 * well under that; heapkeeper's static TLS takes about 3 KiB of it.
 *
 * `small_stacks altstack`: a SIGUSR1 handler on an 8 KiB alternate signal stack (the historical
 * SIGSTKSZ, which crash handlers still use) that logs a line to a file it opens, as a crash handler
 * writing its report does. Plainly it has about 3 KiB to spare.
 * `small_stacks coroutine`: a ucontext coroutine on a 16 KiB stack (coroutine libraries' small
 * stacks) with 6 KiB of locals of its own that logs a line to a file it opens, three times. Plainly
 * it has more than 6 KiB to spare, and keeps one 777-byte block it allocated there. Both stacks
 * have a guard page below them. */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

static void* volatile sink;

/* Distinct call paths, so that the allocations miss the stack cache and take its slow path. */
__attribute__((noinline)) static void allocate_at(int depth) {
  if (depth > 0) {
    allocate_at(depth - 1);
    __asm__ volatile("" ::: "memory");
    return;
  }
  sink = malloc(64);
  free(sink);
}

/* 14 KiB: plain, such a thread can use about 26 KiB before a malloc; under heapkeeper about 17
 * (12 with the 5 KB larger malloc). */
static void* thread_body(void* argument) {
  volatile char own[14 * 1024];
  memset((char*)own, 1, sizeof own);
  for (int round = 0; round < 200; ++round) allocate_at(round % 8);
  __asm__ volatile("" : : "r"(own) : "memory"); /* the 8 KiB stay on the stack until here */
  return argument;
}

static volatile sig_atomic_t handled;
static void on_signal(int number) {
  (void)number;
  for (int round = 0; round < 8; ++round) allocate_at(round);
  handled = 1;
}

static void* minimum_helper(void* argument) {
  (void)argument;
  char line[128];
  snprintf(line, sizeof(line), "helper %d of %s", 1, "minimum_stack");
  FILE* log = fopen("/dev/null", "w");
  if (log != NULL) {
    fprintf(log, "%s: %d %s\n", line, 42, "started");
    fclose(log);
  }
  char* copy = strdup(line);
  for (int depth = 0; depth < 8; ++depth) allocate_at(depth);
  const size_t length = copy == NULL ? 0 : strlen(copy);
  free(copy);
  return (void*)length;
}

static int minimum_stack(void) {
  long minimum = sysconf(_SC_THREAD_STACK_MIN);
  if (minimum < PTHREAD_STACK_MIN) minimum = PTHREAD_STACK_MIN;
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  if (pthread_attr_setstacksize(&attributes, (size_t)minimum) != 0) return 2;
  pthread_t thread;
  if (pthread_create(&thread, &attributes, minimum_helper, NULL) != 0) return 2;
  void* result = NULL;
  pthread_join(thread, &result);
  printf("helper on a PTHREAD_STACK_MIN stack: formatted %zu bytes and allocated\n", (size_t)result);
  return 0;
}

/* `size` bytes of stack with a guard page below them, or NULL. */
static char* guarded_stack(size_t size) {
  char* mapping = mmap(NULL, size + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED || mprotect(mapping, 4096, PROT_NONE) != 0) return NULL;
  return mapping + 4096;
}

/* Opens a file, writes a line to it and closes it: fopen and fprintf allocate the stream and its
 * buffer, the buffer from inside vfprintf's large frame. */
static int log_a_line(const char* who) {
  FILE* log = fopen("/dev/null", "w");
  if (log == NULL) return 0;
  const int written = fprintf(log, "%s: %d %s\n", who, 42, "logged");
  fclose(log);
  return written;
}

static volatile int logged_in_handler;
static void log_from_handler(int number) {
  (void)number;
  logged_in_handler = log_a_line("handler");
}

static int alternate_stack_handler(void) {
  stack_t alternate = {0};
  alternate.ss_size = 8192;
  alternate.ss_sp = guarded_stack(alternate.ss_size);
  if (alternate.ss_sp == NULL || sigaltstack(&alternate, NULL) != 0) return 2;
  struct sigaction action = {0};
  action.sa_handler = log_from_handler;
  action.sa_flags = SA_ONSTACK;
  sigaction(SIGUSR1, &action, NULL);
  raise(SIGUSR1);
  printf("handler on an 8 KiB alternate stack: logged %d bytes\n", logged_in_handler);
  return 0;
}

static ucontext_t g_main_context, g_coroutine_context;
static int g_coroutine_logged;
static void* volatile g_coroutine_kept; /* 777 bytes, live at exit: its stack names the coroutine */
__attribute__((noinline)) static void coroutine_step(void) {
  volatile char own[6 * 1024];
  memset((char*)own, 1, sizeof own);
  if (g_coroutine_kept == NULL) g_coroutine_kept = malloc(777);
  g_coroutine_logged += log_a_line("coroutine");
  __asm__ volatile("" : : "r"(own) : "memory");
}
static void coroutine_body(void) {
  for (int round = 0; round < 3; ++round) {
    coroutine_step();
    swapcontext(&g_coroutine_context, &g_main_context);
  }
}

static int coroutine(void) {
  const size_t size = 16 * 1024;
  char* stack = guarded_stack(size);
  if (stack == NULL || getcontext(&g_coroutine_context) != 0) return 2;
  g_coroutine_context.uc_stack.ss_sp = stack;
  g_coroutine_context.uc_stack.ss_size = size;
  g_coroutine_context.uc_link = &g_main_context;
  makecontext(&g_coroutine_context, coroutine_body, 0);
  for (int round = 0; round < 3; ++round) swapcontext(&g_main_context, &g_coroutine_context);
  printf("coroutine on a 16 KiB stack: logged %d bytes\n", g_coroutine_logged);
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "minimum") == 0) return minimum_stack();
  if (argc > 1 && strcmp(argv[1], "altstack") == 0) return alternate_stack_handler();
  if (argc > 1 && strcmp(argv[1], "coroutine") == 0) return coroutine();
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setstacksize(&attributes, 32 * 1024);
  pthread_t thread;
  if (pthread_create(&thread, &attributes, thread_body, NULL) != 0) return 2;
  pthread_join(thread, NULL);
  printf("thread on a 32 KiB stack: allocated\n");

  /* With a guard page below it, so that overflowing it faults rather than writes elsewhere. */
  stack_t alternate = {0};
  alternate.ss_size = 16 * 1024;
  char* mapping = mmap(NULL, alternate.ss_size + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED || mprotect(mapping, 4096, PROT_NONE) != 0) return 2;
  alternate.ss_sp = mapping + 4096;
  if (sigaltstack(&alternate, NULL) != 0) return 2;
  struct sigaction action = {0};
  action.sa_handler = on_signal;
  action.sa_flags = SA_ONSTACK;
  sigaction(SIGUSR1, &action, NULL);
  raise(SIGUSR1);
  printf("handler on a 16 KiB alternate stack: %s\n", handled ? "allocated" : "not run");
  return 0;
}

/* A helper thread on the smallest stack POSIX allows (PTHREAD_STACK_MIN, 16 KiB on x86-64):
 * it writes a line to a stream of its own (fprintf allocates the stream's buffer from inside
 * vfprintf's large frame), duplicates a string, and allocates from a few distinct call paths, as a
 * small worker does. Plainly it has about 12 KiB of room and needs well under that. Prints one
 * line from main once the thread is done. */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void* volatile sink;

/* Distinct call paths, so that the allocations miss heapkeeper's stack cache. */
__attribute__((noinline)) static void allocate_at(int depth) {
  if (depth > 0) {
    allocate_at(depth - 1);
    __asm__ volatile("" ::: "memory");
    return;
  }
  sink = malloc(48);
  free(sink);
}

static void* helper(void* argument) {
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

int main(void) {
  long minimum = sysconf(_SC_THREAD_STACK_MIN);
  if (minimum < PTHREAD_STACK_MIN) minimum = PTHREAD_STACK_MIN;
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  if (pthread_attr_setstacksize(&attributes, (size_t)minimum) != 0) return 2;
  pthread_t thread;
  if (pthread_create(&thread, &attributes, helper, NULL) != 0) return 2;
  void* result = NULL;
  pthread_join(thread, &result);
  printf("helper on a PTHREAD_STACK_MIN stack: formatted %zu bytes and allocated\n", (size_t)result);
  return 0;
}

/* log, exp and round for the private jemalloc, whose heap-profiling code alone calls them, and which
 * is never enabled (allocator/private_heap.cpp forces prof:false after MALLOC_CONF). Defined here,
 * hidden, so that libheapkeeper.so does not load libm into every traced process for code that
 * cannot run: libm cost each process about 0.1 ms and 17 page faults to load (issue #12). If a
 * future jemalloc reached them anyway, heapkeeper says so and stops rather than sample wrongly.
 * C, and without <math.h>: C++'s headers declare these with default visibility. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Noreturn void unreachable_math(const char* name) {
  static const char kMessage[] = "heapkeeper: internal error: jemalloc's profiling called ";
  static const char kEnd[] = " although profiling is off\n";
  (void)!write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
  (void)!write(STDERR_FILENO, name, strlen(name));
  (void)!write(STDERR_FILENO, kEnd, sizeof(kEnd) - 1);
  abort();
}

__attribute__((visibility("hidden"))) double log(double x) {
  (void)x;
  unreachable_math("log");
}
__attribute__((visibility("hidden"))) double exp(double x) {
  (void)x;
  unreachable_math("exp");
}
__attribute__((visibility("hidden"))) double round(double x) {
  (void)x;
  unreachable_math("round");
}

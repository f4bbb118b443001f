/* unwinder_user: a program that could unwind with the libunwind heapkeeper loads, and allocates
 * nothing, for integration/stack_cache_reach.sh. libunwind cannot switch its caching policy under
 * a thread that is unwinding with the global one, so heapkeeper sets it up before such a program
 * can unwind rather than at its own first unwind (allocator/stack_capture.cpp).
 *
 * Usage: unwinder_user linked    links libunwind (needed at start), exits
 *        unwinder_user lookup    looks unw_backtrace up with dlsym, calls it once, exits
 */
#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <libunwind.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  if (strcmp(argv[1], "linked") == 0) {
    /* Taken, not called: the reference keeps libunwind needed, and nothing here allocates. */
    int (*volatile backtrace_function)(void**, int) = unw_backtrace;
    return backtrace_function != NULL ? 0 : 1;
  }
  if (strcmp(argv[1], "lookup") == 0) {
    int (*found)(void**, int) = (int (*)(void**, int))dlsym(RTLD_DEFAULT, "unw_backtrace");
    if (found == NULL) return 1;
    void* frames[8];
    return found(frames, 8) > 0 ? 0 : 1;
  }
  return 2;
}

// signal() for LeakSanitizer's configurations (scripts/harness/bench.toml), preloaded in front of
// liblsan.so.0. Debian 12's liblsan0 (GCC 12) exports a signal() interceptor whose pointer to the
// real function is never set when the runtime is preloaded: every program that calls signal()
// jumps to address 0, the assembler `as` among them, so no C build finishes under it. This is
// glibc's own signal() (BSD semantics: the signal blocked in its handler, SA_RESTART) on top of
// sigaction(), which LeakSanitizer intercepts correctly; nothing of the leak checking changes.
#define _GNU_SOURCE
#include <signal.h>

sighandler_t signal(int number, sighandler_t handler) {
  struct sigaction action, previous;
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  sigaddset(&action.sa_mask, number);
  action.sa_flags = SA_RESTART;
  if (sigaction(number, &action, &previous) < 0) return SIG_ERR;
  return previous.sa_handler;
}

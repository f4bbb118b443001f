/* A signal handler's write() landing at the end of the program's own write().
 *
 * Usage: nested_blocking_call [WRITES]
 * heapkeeper wraps blocking calls (collector/blocking_call.h); a handler that interrupts the
 * wrapper after its depth went back to 0 makes a wrapped call of its own, as the outermost, and
 * ends it. The interrupted wrapper then found its record already kRunning and waited for ever for
 * kInCall (a spin at 100 % CPU). A 20 us timer on the main thread runs a handler that writes one
 * byte to /dev/null while the main thread writes WRITES bytes there one at a time; alarm() ends a
 * hung run. Output is deterministic: the bytes written by the main thread.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "thread_timer.h"

static int null_fd;
static volatile long handled;

static void on_timer(int signo) {
  (void)signo;
  const char byte = 'h';
  if (write(null_fd, &byte, 1) == 1) handled++;
}

int main(int argc, char** argv) {
  const long writes = argc > 1 ? atol(argv[1]) : 300000;
  null_fd = open("/dev/null", O_WRONLY);
  if (null_fd < 0) return 2;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_timer;
  action.sa_flags = SA_RESTART;
  sigaction(SIGPROF, &action, NULL);
  timer_t timer;
  if (start_thread_timer(SIGPROF, 20000, &timer) != 0) return 2;
  alarm(20);
  long written = 0;
  const char byte = 'm';
  for (long i = 0; i < writes; i++) written += write(null_fd, &byte, 1);
  stop_thread_timer(timer);
  alarm(0);
  printf("bytes written: %ld\n", written);
  fprintf(stderr, "%ld handler writes\n", handled);
  return 0;
}

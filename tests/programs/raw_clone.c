/* raw_clone: children made without fork(), as Chromium's zygote makes its children
 * (syscall(SYS_clone, SIGCHLD, ...), ForkWithFlags) and sandboxes make theirs: glibc runs no fork
 * handlers for them. Each child allocates (unwinding: the dynamic loader's lock) and ends; the
 * parent waits for it, with a 5 s limit. Under heapkeeper's periodic scans a child made while a
 * scan held the loader's lock inherited it held and hung at its first allocation (40 children in
 * 300), and a child of glibc's clone() whose function returned stayed alive beside a heapkeeper
 * thread (the parent's wait hung for ever).
 *
 * Usage: raw_clone ROUNDS. Prints how many children of each kind ended as they should.
 */
#define _GNU_SOURCE
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kKinds = 4, kChildStatus = 7 };
static const char* const kKindNames[kKinds] = {"syscall(SYS_clone)", "syscall(SYS_clone3)", "syscall(SYS_fork)",
                                               "clone(function)"};
static char g_child_stack[1 << 16];

static int child_work(void* unused) {
  (void)unused;
  for (int i = 0; i < 500; ++i) free(memset(malloc(64 + (size_t)i), 1, 64));
  return kChildStatus;
}

static pid_t make_child(int kind) {
  pid_t pid = -1;
  if (kind == 0) {
    pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  } else if (kind == 1) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
  } else if (kind == 2) {
    pid = (pid_t)syscall(SYS_fork);
  } else {
    return clone(child_work, g_child_stack + sizeof g_child_stack, SIGCHLD, NULL);
  }
  if (pid == 0) _exit(child_work(NULL));
  return pid;
}

/* The child's status, or -1 when it did not end within 5 s (then killed). */
static int wait_at_most_5s(pid_t pid) {
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec >= 5) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    const struct timespec pause = {0, 200 * 1000};
    nanosleep(&pause, NULL);
  }
}

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 100;
  int ended[kKinds] = {0}, started[kKinds] = {0};
  for (int round = 0; round < rounds; ++round) {
    const int kind = round % kKinds;
    const pid_t pid = make_child(kind);
    if (pid < 0) continue; /* clone3 refused (an old kernel, a filter): not counted */
    ++started[kind];
    if (wait_at_most_5s(pid) == kChildStatus) ++ended[kind];
    for (int i = 0; i < 100; ++i) free(malloc(100));
  }
  for (int kind = 0; kind < kKinds; ++kind) {
    printf("%s: %s\n", kKindNames[kind], ended[kind] == started[kind] ? "every child ended" : "children hung");
  }
  return 0;
}

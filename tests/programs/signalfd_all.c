/* An event loop in the style of many daemons: at start, before anything else, main blocks every
 * signal and takes them all through a signalfd; a child sends it one SIGUSR1. It allocates and
 * polls busily for one to two seconds (a thread a scan must stop,
 * not one asleep in a call it can leave asleep), then prints which signals it read and which are still pending.
 * Plainly: SIGUSR1 once, nothing else. A scan under the signal fallback must neither hand the program its suspend
 * signal (SIGPWR) nor fail to stop this thread. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void* volatile g_kept;

int main(void) {
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, NULL);
  const int signals = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signals < 0) {
    perror("signalfd");
    return 1;
  }
  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child == 0) {
    usleep(100 * 1000);
    kill(parent, SIGUSR1);
    _exit(0);
  }
  int counts[NSIG] = {0};
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (size_t round = 0;; ++round) {
    free(g_kept);
    g_kept = malloc(64 + round % 512);
    struct signalfd_siginfo info;
    while (read(signals, &info, sizeof(info)) == (ssize_t)sizeof(info))
      if (info.ssi_signo < NSIG) ++counts[info.ssi_signo];
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec >= 2) break;
  }
  waitpid(child, NULL, 0);
  for (int number = 1; number < NSIG; ++number)
    if (counts[number] > 0) printf("read signal %d (%s) %d time(s)\n", number, sigabbrev_np(number), counts[number]);
  sigset_t pending;
  sigpending(&pending);
  for (int number = 1; number < NSIG; ++number)
    if (sigismember(&pending, number) == 1) printf("pending: signal %d (%s)\n", number, sigabbrev_np(number));
  return 0;
}

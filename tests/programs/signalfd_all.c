/* An event loop in the style of many daemons: at start, before anything else, main blocks every
 * signal and takes them all through a signalfd; a child sends it one SIGUSR1. It allocates and
 * polls busily for one to two seconds (a thread a scan must stop,
 * not one asleep in a call it can leave asleep), then prints which signals it read and which are still pending.
 * Plainly: SIGUSR1 once, nothing else. A scan under the signal fallback must neither hand the program its suspend
 * signal (SIGPWR) nor fail to stop this thread.
 * With "seccomp", main then installs a seccomp filter that allows everything (as a sandboxed service
 * would, after its masks): heapkeeper's scans then use the signal fallback, chosen after the masks.
 * With HK_STOP_FILE naming a FIFO, it polls until a byte arrives there instead of for two seconds
 * (transparent_scans.sh's until_scans sends it once enough scans have run, however slowly a loaded
 * machine scans); either way the child's signal is read before the program says what it read. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void* volatile g_kept;

static void allow_everything_filter(void) {
  struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  struct sock_fprog program = {.len = 1, .filter = &allow};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    perror("seccomp");
    exit(1);
  }
}

int main(int argc, char** argv) {
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, NULL);
  const int signals = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signals < 0) {
    perror("signalfd");
    return 1;
  }
  const char* stop_path = getenv("HK_STOP_FILE");
  int stop_file = -1;
  if (stop_path != NULL && (stop_file = open(stop_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
    perror(stop_path);
    return 2;
  }
  if (argc > 1 && strcmp(argv[1], "seccomp") == 0) allow_everything_filter();
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
  struct signalfd_siginfo info;
  for (size_t round = 0;; ++round) {
    free(g_kept);
    g_kept = malloc(64 + round % 512);
    while (read(signals, &info, sizeof(info)) == (ssize_t)sizeof(info))
      if (info.ssi_signo < NSIG) ++counts[info.ssi_signo];
    char byte;
    if (stop_file >= 0) {
      if (read(stop_file, &byte, 1) == 1) break;
      continue;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec >= 2) break;
  }
  waitpid(child, NULL, 0);
  // The child signalled before it exited: what it sent is pending now, if not read yet.
  while (read(signals, &info, sizeof(info)) == (ssize_t)sizeof(info))
    if (info.ssi_signo < NSIG) ++counts[info.ssi_signo];
  for (int number = 1; number < NSIG; ++number)
    if (counts[number] > 0) printf("read signal %d (%s) %d time(s)\n", number, sigabbrev_np(number), counts[number]);
  sigset_t pending;
  sigpending(&pending);
  for (int number = 1; number < NSIG; ++number)
    if (sigismember(&pending, number) == 1) printf("pending: signal %d (%s)\n", number, sigabbrev_np(number));
  return 0;
}

/* hk-measure: the measuring helper of scripts/bench.sh. Runs one command in its own process group,
 * with its stdout and stderr sent to files, and writes one line "WALL_SECONDS MAXRSS_KIB HOW CPU_SECONDS"
 * to a result file, HOW being exit:N, signal:N, timeout or interrupted.
 *
 * Wall time comes from CLOCK_MONOTONIC around fork and wait4; CPU time (user + system, all threads,
 * children it waited for included) and peak RSS from wait4()'s rusage. On a shared machine CPU time
 * is the steadier of the two: it does not count the time the command waited for a core. Peak RSS
 * is the maximum over the child and the children it waited for, not their sum: what we want for
 * wrappers such as heaptrack's shell script. A run past TIMEOUT seconds is killed with
 * its whole process group, and so is the group when the benchmark itself is interrupted, so no
 * stray workload keeps loading the machine. scripts/bench.sh compiles this file into its output
 * directory (build/bench/hk-measure).
 *
 * Usage: hk-measure TIMEOUT_S RESULT_FILE STDOUT_FILE STDERR_FILE COMMAND [ARG]...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t child_pid, timed_out, interrupted;

static void on_alarm(int sig) {
  (void)sig;
  timed_out = 1;
  if (child_pid > 0) kill(-child_pid, SIGKILL);
}

static void on_interrupt(int sig) {
  interrupted = sig;
  if (child_pid > 0) kill(-child_pid, SIGKILL);
}

static void install_handlers(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action); /* no SA_RESTART: wait4 must return on the alarm */
  action.sa_handler = on_alarm;
  sigaction(SIGALRM, &action, NULL);
  action.sa_handler = on_interrupt;
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGHUP, &action, NULL);
}

/* In the child: its own process group, default signal handling, output to the files, exec. */
static void run_child(int out, int err, char** command) {
  setpgid(0, 0);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGHUP, SIG_DFL);
  dup2(out, STDOUT_FILENO);
  dup2(err, STDERR_FILENO);
  execvp(command[0], command);
  fprintf(stderr, "hk-measure: cannot run %s: %s\n", command[0], strerror(errno));
  _exit(127);
}

static void describe_end(int status, char* how, size_t size) {
  if (interrupted)
    snprintf(how, size, "interrupted");
  else if (timed_out)
    snprintf(how, size, "timeout");
  else if (WIFSIGNALED(status))
    snprintf(how, size, "signal:%d", WTERMSIG(status));
  else
    snprintf(how, size, "exit:%d", WEXITSTATUS(status));
}

int main(int argc, char** argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s TIMEOUT_S RESULT_FILE STDOUT_FILE STDERR_FILE COMMAND [ARG]...\n", argv[0]);
    return 2;
  }
  unsigned timeout = (unsigned)strtoul(argv[1], NULL, 10);
  int out = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FILE* result = fopen(argv[2], "w");
  if (out < 0 || err < 0 || result == NULL) {
    fprintf(stderr, "hk-measure: cannot open output files: %s\n", strerror(errno));
    return 2;
  }
  install_handlers();

  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "hk-measure: fork: %s\n", strerror(errno));
    return 2;
  }
  if (pid == 0) run_child(out, err, argv + 5);
  setpgid(pid, pid); /* also here, so the group exists before any kill(-pid) */
  child_pid = pid;
  alarm(timeout);
  int status = 0;
  struct rusage usage;
  memset(&usage, 0, sizeof usage);
  while (wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "hk-measure: wait4: %s\n", strerror(errno));
      return 2;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  alarm(0);
  kill(-pid, SIGKILL); /* stragglers the command left in its group */

  double wall = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
  char how[32];
  describe_end(status, how, sizeof how);
  double cpu = (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
               (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  fprintf(result, "%.3f %ld %s %.3f\n", wall, usage.ru_maxrss, how, cpu);
  fclose(result);
  return interrupted ? 130 : 0;
}

/* rusage_exec: the exec trampoline of scripts/harness/timed_run.py, for exact peak RSS.
 *
 * Linux records a process's peak RSS across exec: a child forked by the harness's Python (20 MiB
 * resident) would report at least those 20 MiB, whatever it ran. So the harness starts this small
 * program, which forks the command from its own tiny image, waits for it and writes one line
 * "WALL_SECONDS MAXRSS_KIB HOW CPU_SECONDS" to file descriptor RESULT_FD, HOW being exit:N or
 * signal:N. Wall time is CLOCK_MONOTONIC around fork and wait4; CPU time (user + system, all
 * threads, children it waited for included) and peak RSS come from wait4()'s rusage. Everything
 * else (the time limit, killing the process group, output files, environment) is timed_run.py's:
 * the command stays in this program's process group, which the harness kills as a whole.
 *
 * Usage: rusage_exec RESULT_FD COMMAND [ARG]...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s RESULT_FD COMMAND [ARG]...\n", argv[0]);
    return 2;
  }
  int result = atoi(argv[1]);
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "rusage_exec: fork: %s\n", strerror(errno));
    return 2;
  }
  if (pid == 0) {
    close(result);
    execvp(argv[2], argv + 2);
    fprintf(stderr, "cannot run %s: %s\n", argv[2], strerror(errno));
    _exit(127);
  }
  int status = 0;
  struct rusage usage;
  memset(&usage, 0, sizeof usage);
  while (wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "rusage_exec: wait4: %s\n", strerror(errno));
      return 2;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  double wall = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
  double cpu = (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
               (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  char line[128];
  int length =
      WIFSIGNALED(status)
          ? snprintf(line, sizeof line, "%.6f %ld signal:%d %.6f\n", wall, usage.ru_maxrss, WTERMSIG(status), cpu)
          : snprintf(line, sizeof line, "%.6f %ld exit:%d %.6f\n", wall, usage.ru_maxrss, WEXITSTATUS(status), cpu);
  if (write(result, line, (size_t)length) != length) return 2;
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

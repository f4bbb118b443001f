/* spawn_loop: runs a command N times, one after the other, and prints "N runs" (scripts/bench.sh).
 *
 * The fixed-cost goal of issue #12 is per process: a tracker's start-up and exit over a plain
 * run. One process takes about a millisecond, too little to time alone on a shared machine, so the
 * benchmark times N of them and divides. A small C driver rather than a shell loop: the driver is
 * traced as well (LD_PRELOAD is inherited), and a shell would add its own start-up and peak RSS to
 * every figure. Peak RSS is the largest of the driver and its children (wait4's rusage), which for
 * a tiny driver is one child's.
 *
 * Usage: spawn_loop N COMMAND [ARG]...
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s N COMMAND [ARG]...\n", argv[0]);
    return 2;
  }
  const long count = strtol(argv[1], NULL, 10);
  for (long i = 0; i < count; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      perror("spawn_loop: fork");
      return 2;
    }
    if (pid == 0) {
      execvp(argv[2], argv + 2);
      perror("spawn_loop: exec");
      _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "spawn_loop: run %ld of %s failed\n", i + 1, argv[2]);
      return 1;
    }
  }
  printf("%ld runs\n", count);
  return 0;
}

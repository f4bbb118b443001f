/* spawn_loop: runs a command N times, one after the other, and prints "N runs" (scripts/bench.sh).
 *
 * The fixed-cost goal of issue #12 is per process: a tracker's start-up and exit over a plain
 * run. One process takes about a millisecond, too little to time alone on a shared machine, so the
 * benchmark times N of them and divides. A small C driver rather than a shell loop: a shell would
 * add its own start-up and peak RSS to every figure. Peak RSS is the largest of the driver and its
 * children (wait4's rusage), which must be one child's.
 *
 * So the driver itself runs untraced. The harness sets LD_PRELOAD for the whole command; the driver
 * moves it aside and executes itself again without it, then gives it back to each child. Traced,
 * the driver grew to a traced long-lived process (live stats start after 200 ms, its heap, its
 * stack-trace caches), and every child inherited that memory between fork and exec, where Linux
 * counts it in the child's peak RSS: the benchmark measured the driver (4.5 MiB) rather than the
 * command (3.5 MiB). The first image of the driver is traced, but does nothing before its exec
 * (no allocation: the new environment is built on the stack), like a traced /bin/true.
 *
 * Usage: spawn_loop N COMMAND [ARG]...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#define PRELOAD_NAME "LD_PRELOAD="
#define SAVED_NAME "SPAWN_LOOP_PRELOAD="

/* Copies `from` into `to` (room for `capacity` pointers), replacing the variable `old_name`
 * (with its '=') by `replacement`, or dropping it when `replacement` is NULL. */
static void rename_variable(char** from, char** to, size_t capacity, const char* old_name, char* replacement) {
  size_t n = 0;
  for (char** e = from; *e != NULL && n + 2 < capacity; ++e) {
    if (strncmp(*e, old_name, strlen(old_name)) == 0) {
      if (replacement != NULL) to[n++] = replacement;
    } else {
      to[n++] = *e;
    }
  }
  to[n] = NULL;
}

static size_t environment_size(void) {
  size_t n = 0;
  while (environ[n] != NULL) ++n;
  return n + 2;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s N COMMAND [ARG]...\n", argv[0]);
    return 2;
  }
  const char* preload = getenv("LD_PRELOAD");
  if (preload != NULL && *preload != '\0') {
    /* Still traced: run again untraced, LD_PRELOAD kept as SPAWN_LOOP_PRELOAD. */
    char saved[4096];
    if (strlen(SAVED_NAME) + strlen(preload) >= sizeof(saved)) {
      fprintf(stderr, "spawn_loop: LD_PRELOAD too long\n");
      return 2;
    }
    strcpy(saved, SAVED_NAME);
    strcat(saved, preload);
    const size_t capacity = environment_size();
    char* untraced[capacity];
    rename_variable(environ, untraced, capacity, PRELOAD_NAME, saved);
    char self[4096];
    const ssize_t length = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (length <= 0) {
      perror("spawn_loop: /proc/self/exe");
      return 2;
    }
    self[length] = '\0';
    execve(self, argv, untraced);
    perror("spawn_loop: exec");
    return 2;
  }
  const char* saved = getenv("SPAWN_LOOP_PRELOAD");
  char restored[4096] = "";
  if (saved != NULL) {
    if (strlen(PRELOAD_NAME) + strlen(saved) >= sizeof(restored)) return 2;
    strcpy(restored, PRELOAD_NAME);
    strcat(restored, saved);
  }
  const size_t capacity = environment_size();
  char* child_environment[capacity];
  rename_variable(environ, child_environment, capacity, SAVED_NAME, saved != NULL ? restored : NULL);

  const long count = strtol(argv[1], NULL, 10);
  for (long i = 0; i < count; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      perror("spawn_loop: fork");
      return 2;
    }
    if (pid == 0) {
      environ = child_environment;
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

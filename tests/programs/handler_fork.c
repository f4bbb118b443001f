/* handler_fork: a SIGALRM handler forks (a crash reporter's pattern: fork, and the child _exits at
 * once) every 20 ms while the main thread allocates and frees, and in the dlclose variant also
 * dlopens and dlcloses a plugin. fork is async-signal-safe, and the handler lands inside malloc,
 * free and dlclose.
 *
 * Under heapkeeper this hung: jemalloc's fork handler locked every one of its mutexes, among them
 * the one the interrupted call held (6 runs in 6 of the malloc variant; the dlclose variant in 1
 * of 4, inside heapkeeper's own bookkeeping of the dlclose). And a block heapkeeper itself made
 * in its fork handlers (the collector's state, at the first fork) was taken for the handler's, and
 * reported as leaked at exit (7 runs in 10). The program frees everything it allocates.
 *
 * Usage: handler_fork malloc|dlclose ITERATIONS [PLUGIN] */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t g_forks = 0;

static void on_alarm(int signo) {
  (void)signo;
  const pid_t child = fork();
  if (child == 0) _exit(0);
  if (child > 0) {
    int status;
    while (waitpid(child, &status, 0) < 0) {
    }
    ++g_forks;
  }
}

int main(int argc, char** argv) {
  const int with_plugin = argc == 4 && strcmp(argv[1], "dlclose") == 0;
  if (argc < 3 || (!with_plugin && strcmp(argv[1], "malloc") != 0)) {
    fprintf(stderr, "usage: handler_fork malloc|dlclose ITERATIONS [PLUGIN]\n");
    return 2;
  }
  const long iterations = atol(argv[2]);
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_alarm;
  action.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &action, NULL);
  const struct itimerval every = {{0, 20000}, {0, 20000}};
  setitimer(ITIMER_REAL, &every, NULL);
  for (long i = 0; i < iterations; ++i) {
    void* handle = NULL;
    if (with_plugin && (handle = dlopen(argv[3], RTLD_NOW)) == NULL) {
      fprintf(stderr, "dlopen: %s\n", dlerror());
      return 1;
    }
    void* blocks[64];
    for (int k = 0; k < 64; ++k) blocks[k] = malloc((size_t)(16 + (k * 37 + i) % 9000));
    for (int k = 0; k < 64; ++k) free(blocks[k]);
    if (handle != NULL) dlclose(handle);
  }
  const struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  /* Whether any fork happened depends on the machine's speed: not printed. */
  printf("%s: %ld iterations done\n", argv[1], iterations);
  return 0;
}

/* dlerror_kept: a failed dlopen's message must survive the calls heapkeeper wraps (exec_originals.sh).
 *
 * heapkeeper looks the originals of the functions it wraps up at their first use (the program's
 * first fork, wait, sleep, poll, exec): with dlsym, that lookup replaced the program's pending
 * dlerror() text with its own success, and a program asking why its dlopen failed read NULL. Each
 * phase fails a dlopen, makes first calls of wrapped functions, then prints what dlerror() says.
 *
 * Usage: dlerror_kept
 */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void report(const char* phase) {
  const char* message = dlerror();
  printf("%s: %s\n", phase, message != NULL ? message : "(no error)");
}

int main(void) {
  if (dlopen("/nonexistent/heapkeeper-test/libnope.so", RTLD_NOW) != NULL) return 2;
  const pid_t child = fork();
  if (child == 0) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  report("after the first fork and wait");

  if (dlopen("/nonexistent/heapkeeper-test/libnope2.so", RTLD_LAZY) != NULL) return 2;
  const struct timespec nap = {0, 1000000};
  nanosleep(&nap, NULL);
  struct pollfd none = {-1, 0, 0};
  poll(&none, 1, 1);
  report("after the first sleep and poll");

  if (dlopen("/nonexistent/heapkeeper-test/libnope3.so", RTLD_NOW) != NULL) return 2;
  char* const argv[] = {"/nonexistent/heapkeeper-test/prog", NULL};
  char* const envp[] = {NULL};
  const int result = execve(argv[0], argv, envp);
  const int saved = errno;
  printf("execve of a missing file: %d, %s\n", result, strerror(saved));
  report("after a failed execve");
  return 0;
}

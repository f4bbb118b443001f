/* The classic read timeout: alarm (here setitimer) and a SIGALRM handler that siglongjmps out of a
 * blocking read, as old Unix programs and bash's `read -t` do. The read never returns, so a wrapper
 * around it never sees its own end. Afterwards the program goes on normally: each of a chain of
 * frames holds one heap block through a local pointer only, and the deepest sleeps in a second read
 * until a helper thread writes to the pipe (1.5 s later). Each frame then checks its block and
 * frees it. Plainly: "timed out", then every block intact. A scan while the thread sleeps must see
 * every frame's pointer: no leak is reported, in collect mode nothing is freed.
 * Built at -O0 so that each pointer really lives in its frame. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

enum { kLevels = 12, kBlockBytes = 1000 };

static sigjmp_buf g_timeout;
static int g_pipe[2];

static void on_alarm(int signal) {
  (void)signal;
  siglongjmp(g_timeout, 1);
}

/* A small frame calling read, as a program's read_with_timeout would. */
__attribute__((noinline)) static ssize_t timed_read(char* byte) { return read(g_pipe[0], byte, 1); }

static void* late_writer(void* unused) {
  (void)unused;
  usleep(1500 * 1000);
  const char byte = 'x';
  if (write(g_pipe[1], &byte, 1) != 1) perror("write");
  return NULL;
}

/* Level `level` holds one block only through `held`, and the deepest level waits in read. */
__attribute__((noinline)) static int hold(int level) {
  char* volatile held = malloc(kBlockBytes);
  memset(held, 'a' + level, kBlockBytes);
  int intact;
  if (level == 0) {
    char byte;
    intact = read(g_pipe[0], &byte, 1) == 1;
  } else {
    intact = hold(level - 1);
  }
  for (int i = 0; i < kBlockBytes; ++i) intact &= held[i] == 'a' + level;
  free(held);
  return intact;
}

int main(void) {
  if (pipe(g_pipe) != 0) return 1;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_alarm;
  sigaction(SIGALRM, &action, NULL);
  char byte;
  if (sigsetjmp(g_timeout, 1) == 0) {
    const struct itimerval once = {{0, 0}, {0, 200 * 1000}};
    setitimer(ITIMER_REAL, &once, NULL);
    printf("read returned %zd\n", timed_read(&byte));
  } else {
    printf("timed out\n");
  }
  fflush(stdout);
  pthread_t writer;
  pthread_create(&writer, NULL, late_writer, NULL);
  printf("%d levels: blocks %s\n", kLevels, hold(kLevels - 1) ? "intact" : "CHANGED");
  pthread_join(writer, NULL);
  return 0;
}

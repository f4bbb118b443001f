// A traced parent whose forked children do not exec, for tests/stats/forked_children.sh: a forked
// child makes its live-stats thread only when it is due (a second after the fork) or when it first
// waits, so that the children a shell or make forks and that exec at once never make one.
//
//   forked_children SECONDS
// forks two children, each of which prints "child KIND PID threads=N" (N: its threads right
// after the fork, from /proc/self/task) and lives SECONDS: "sleeper" in nanosleep, "computer"
// allocating and freeing without ever making a blocking call. The parent waits for both.
//
//   forked_children handler-fork
// forks one child that forks and reaps 200 grandchildren while a 20 kHz SIGALRM handler calls
// poll(): a handler interrupting fork() while jemalloc's fork handler holds its locks must not
// start the deferred thread there (its creation allocates: the child deadlocked). Prints "done".
#define _GNU_SOURCE
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int count_threads(void) {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == NULL) return -1;
  int count = 0;
  for (struct dirent* entry = readdir(tasks); entry != NULL; entry = readdir(tasks))
    if (entry->d_name[0] != '.') ++count;
  closedir(tasks);
  return count;
}

static double now_seconds(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void compute(double seconds) {
  const double end = now_seconds() + seconds;
  void* kept[64] = {0};
  unsigned long round = 0;
  while (now_seconds() < end) {
    unsigned slot = (unsigned)(round % 64);
    free(kept[slot]);
    kept[slot] = malloc(32 + round % 200);
    ++round;
  }
  for (int i = 0; i < 64; ++i) free(kept[i]);
}

static pid_t start_child(const char* kind, double seconds) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  // Counted before anything else the child does: nothing may have started a thread yet.
  const int threads = count_threads();
  printf("child %s %d threads=%d\n", kind, (int)getpid(), threads);
  fflush(stdout);
  if (strcmp(kind, "sleeper") == 0) {
    struct timespec pause = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&pause, &pause) != 0) {
    }
  } else {
    compute(seconds);
  }
  _exit(0);
}

static void poll_in_handler(int signal_number) {
  (void)signal_number;
  poll(NULL, 0, 0);  // a wrapped call that may wait long: it would start the deferred thread at once
}

static int fork_under_handler(void) {
  pid_t child = fork();
  if (child == 0) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = poll_in_handler;
    action.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &action, NULL);
    struct itimerval every = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &every, NULL);
    for (int i = 0; i < 200; ++i) {
      pid_t grandchild = fork();
      if (grandchild == 0) _exit(0);
      while (waitpid(grandchild, NULL, 0) < 0) {
      }
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  puts(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "done" : "child failed");
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "handler-fork") == 0) return fork_under_handler();
  const double seconds = argc > 1 ? atof(argv[1]) : 3.0;
  setvbuf(stdout, NULL, _IOLBF, 0);
  pid_t sleeper = start_child("sleeper", seconds);
  pid_t computer = start_child("computer", seconds);
  int status = 0;
  waitpid(sleeper, &status, 0);
  waitpid(computer, &status, 0);
  puts("parent done");
  return 0;
}

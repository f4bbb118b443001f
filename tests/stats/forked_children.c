// A traced parent whose forked children do not exec, for tests/stats/forked_children.sh: a forked
// child makes its live-stats thread only when it is due (a second after the fork) or when it first
// waits, so that the children a shell or make forks and that exec at once never make one.
//
//   forked_children SECONDS
// forks five children, each of which prints "child KIND PID threads=N" (N: its threads right
// after the fork, from /proc/self/task) and lives SECONDS: "sleeper" in nanosleep, "computer"
// allocating and freeing without ever making a blocking call, and three that wait where no read
// or poll is seen, as a shell's subshell, a multiprocessing pool's worker and a child that runs
// threads do: "reaper" in waitpid for a grandchild (which sleeps SECONDS), "semaphore" in
// sem_wait on a semaphore the parent posts after SECONDS, "joiner" in pthread_join of a thread
// of its own waiting SECONDS on a condition variable. The parent waits for all of them.
//
//   forked_children signals ATTEMPTS
// forks a child ATTEMPTS times, each of which forks 30 grandchildren in a row while a timer's
// handler reads a pipe: the handler's first read, the first wait of a child whose thread is still
// deferred, may interrupt fork() while the heap's fork handlers hold its locks, where starting the
// thread would wait for them for ever. Prints "hung N of ATTEMPTS" (a child not done in 2 s hung);
// stops at the first hang.
//
//   forked_children strict syscall|prctl
// forks a child that enters seccomp strict mode at once (through syscall(SYS_seccomp) or prctl),
// reads a line from a pipe, writes it back and ends with the exit system call, as strict-mode
// programs do (exit_group is not allowed). Prints "strict: echoed 'LINE', exit N" or "strict:
// killed by signal N", or "strict: still running" if the child is not gone after 3 s.
//
//   forked_children reader SECONDS FILE
// forks a child that prints "child reader PID threads=N" and reads FILE (a regular file) 16 bytes
// at a time, over and over, for SECONDS: it never waits, and allocates nothing.
//   forked_children handler-fork
// forks one child that forks and reaps 200 grandchildren while a 20 kHz SIGALRM handler calls
// poll(): a handler interrupting fork() while jemalloc's fork handler holds its locks must not
// start the deferred thread there (its creation allocates: the child deadlocked). Prints "done".
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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

static struct timespec duration(double seconds) {
  struct timespec span = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  return span;
}

static void sleep_for(double seconds) {
  struct timespec pause = duration(seconds);
  while (nanosleep(&pause, &pause) != 0) {
  }
}

static double g_seconds;
static sem_t* g_semaphore;  // shared with the parent, which posts it once the children have lived

static void* wait_on_condition(void* unused) {
  (void)unused;
  static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
  struct timespec end;
  clock_gettime(CLOCK_REALTIME, &end);
  const struct timespec span = duration(g_seconds);
  end.tv_sec += span.tv_sec + (end.tv_nsec + span.tv_nsec) / 1000000000L;
  end.tv_nsec = (end.tv_nsec + span.tv_nsec) % 1000000000L;
  pthread_mutex_lock(&mutex);
  while (pthread_cond_timedwait(&never, &mutex, &end) == 0) {
  }
  pthread_mutex_unlock(&mutex);
  return NULL;
}

static pid_t start_child(const char* kind, double seconds) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  // Counted before anything else the child does: nothing may have started a thread yet.
  const int threads = count_threads();
  printf("child %s %d threads=%d\n", kind, (int)getpid(), threads);
  fflush(stdout);
  if (strcmp(kind, "sleeper") == 0) {
    sleep_for(seconds);
  } else if (strcmp(kind, "reaper") == 0) {
    const pid_t grandchild = fork();
    if (grandchild == 0) {
      sleep_for(seconds);
      _exit(0);
    }
    int status = 0;
    waitpid(grandchild, &status, 0);
  } else if (strcmp(kind, "semaphore") == 0) {
    while (sem_wait(g_semaphore) != 0) {
    }
  } else if (strcmp(kind, "joiner") == 0) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, wait_on_condition, NULL) == 0) pthread_join(thread, NULL);
  } else {
    compute(seconds);
  }
  _exit(0);
}

static int g_pipe[2];

static void read_the_pipe(int signal_number) {
  (void)signal_number;
  char byte;
  (void)!read(g_pipe[0], &byte, 0);
}

static int fork_under_signals(int attempts) {
  int hung = 0;
  for (int attempt = 0; attempt < attempts && hung == 0; ++attempt) {
    const pid_t child = fork();
    if (child == 0) {
      if (pipe(g_pipe) != 0) _exit(2);
      signal(SIGALRM, read_the_pipe);
      // Some hundred microseconds in: while the child forks (a fork takes that long too).
      struct itimerval timer = {{0, 0}, {0, 200 + (attempt * 37) % 400}};
      setitimer(ITIMER_REAL, &timer, NULL);
      for (int i = 0; i < 30; ++i) {
        if (fork() == 0) _exit(0);
      }
      _exit(0);
    }
    int status = 0, waited = 0;
    const struct timespec step = {0, 10000000};
    while (waitpid(child, &status, WNOHANG) == 0 && waited < 200) {
      nanosleep(&step, NULL);
      ++waited;
    }
    if (waited >= 200) {
      ++hung;
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
    }
  }
  printf("hung %d of %d\n", hung, attempts);
  return hung == 0 ? 0 : 1;
}

static int reader_child(double seconds, const char* path) {
  const pid_t child = fork();
  if (child == 0) {
    printf("child reader %d threads=%d\n", (int)getpid(), count_threads());
    fflush(stdout);
    const int file = open(path, O_RDONLY);
    if (file < 0) _exit(2);
    const double end = now_seconds() + seconds;
    char chunk[16];
    while (now_seconds() < end) {
      if (read(file, chunk, sizeof(chunk)) <= 0) lseek(file, 0, SEEK_SET);
    }
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  return 0;
}

static int strict_child(const char* how) {
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) return 2;
  const pid_t child = fork();
  if (child == 0) {
    if (strcmp(how, "syscall") == 0) {
      syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, NULL);
    } else {
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT);
    }
    char line[16];
    const ssize_t got = read(to_child[0], line, sizeof(line));
    if (got > 0) (void)!write(from_child[1], line, (size_t)got);
    syscall(SYS_exit, 0);
  }
  close(from_child[1]);
  (void)!write(to_child[1], "hello", 5);
  char echo[16] = {0};
  (void)!read(from_child[0], echo, sizeof(echo) - 1);
  int status = 0, waited = 0;
  const struct timespec step = {0, 10000000};
  while (waitpid(child, &status, WNOHANG) == 0 && waited < 300) {
    nanosleep(&step, NULL);
    ++waited;
  }
  if (waited >= 300) {
    printf("strict: still running\n");
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
  } else if (WIFSIGNALED(status)) {
    printf("strict: killed by signal %d\n", WTERMSIG(status));
  } else {
    printf("strict: echoed '%s', exit %d\n", echo, WEXITSTATUS(status));
  }
  return 0;
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
  if (argc > 2 && strcmp(argv[1], "strict") == 0) return strict_child(argv[2]);
  if (argc > 3 && strcmp(argv[1], "reader") == 0) return reader_child(atof(argv[2]), argv[3]);
  if (argc > 2 && strcmp(argv[1], "signals") == 0) return fork_under_signals(atoi(argv[2]));
  if (argc > 1 && strcmp(argv[1], "handler-fork") == 0) return fork_under_handler();
  const double seconds = argc > 1 ? atof(argv[1]) : 3.0;
  g_seconds = seconds;
  setvbuf(stdout, NULL, _IOLBF, 0);
  g_semaphore = mmap(NULL, sizeof(sem_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (g_semaphore == MAP_FAILED || sem_init(g_semaphore, 1, 0) != 0) {
    perror("semaphore");
    return 1;
  }
  static const char* const kinds[] = {"sleeper", "computer", "reaper", "semaphore", "joiner"};
  enum { kChildren = sizeof(kinds) / sizeof(kinds[0]) };
  pid_t children[kChildren];
  for (int i = 0; i < kChildren; ++i) children[i] = start_child(kinds[i], seconds);
  sleep_for(seconds);
  sem_post(g_semaphore);
  int status = 0;
  for (int i = 0; i < kChildren; ++i) waitpid(children[i], &status, 0);
  puts("parent done");
  return 0;
}

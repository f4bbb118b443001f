/* A fork and exec storm: several threads fork at the same time while two others keep the heap
 * busy, so fork() lands in the middle of malloc, free and realloc on other threads (heapkeeper's
 * atfork handlers must leave the child a usable heap every time).
 *
 * Usage: fork_storm [FORKS_PER_THREAD] [FORKING_THREADS] [--pid-log FILE]   (defaults 40 3)
 *        fork_storm --exec-child N        (what the re-exec'd children run)
 *
 * Each fork's child does one of five things, chosen by its number: allocates and exit()s with a
 * known status; frees blocks the parent allocated before the fork and exit()s; execs this program
 * again (--exec-child: it allocates, forks a grandchild of its own, and exits with a status from
 * its argument); execs /bin/true; or allocates and _exit()s (no exit handlers, so no heapkeeper
 * report). The parent waits for each child with a time limit, so a child deadlocked by a lock held
 * at fork time shows up as "hung" instead of hanging the run. The printed counts do not depend on
 * scheduling. With --pid-log, every process that should write a heapkeeper report at exit appends
 * "PID report ROLE" and every one that should not "PID none ROLE" (write(2), O_APPEND: several
 * processes log at once).
 * Hold point: the parent's list of 2000 blocks of 48 bytes (see stress_common.h).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stress_common.h"

enum { kListBlocks = 2000, kListBlockSize = 48, kChildSeconds = 20, kKinds = 5 };

static int g_pid_log = -1;
static void** g_list;
static char g_self[4096];

static void log_pid(pid_t pid, int writes_report, const char* role) {
  if (g_pid_log < 0) return;
  char line[96];
  int length = snprintf(line, sizeof line, "%d %s %s\n", (int)pid, writes_report ? "report" : "none", role);
  if (write(g_pid_log, line, (size_t)length) != length) _exit(90);
}

/* Deterministic allocation work: the result does not depend on addresses. */
static uint64_t allocation_work(uint32_t seed, int rounds) {
  enum { kSlots = 64 };
  unsigned char* slots[kSlots] = {0};
  size_t sizes[kSlots] = {0};
  uint64_t sum = 0;
  uint32_t state = seed * 2246822519u + 1;
  for (int r = 0; r < rounds; ++r) {
    state = state * 1664525u + 1013904223u;
    const int slot = (int)((state >> 8) % kSlots);
    const size_t size = 1 + (state >> 16) % 5000;
    if (slots[slot] == NULL) {
      slots[slot] = malloc(size);
      if (slots[slot] == NULL) abort();
      memset(slots[slot], (int)(size & 0xff), size);
      sizes[slot] = size;
    } else if (state & 1) {
      unsigned char* moved = realloc(slots[slot], size);
      if (moved == NULL) abort();
      sum += moved[0] + sizes[slot];
      memset(moved, (int)(size & 0xff), size);
      slots[slot] = moved;
      sizes[slot] = size;
    } else {
      sum += slots[slot][sizes[slot] - 1] + sizes[slot];
      free(slots[slot]);
      slots[slot] = NULL;
    }
  }
  for (int i = 0; i < kSlots; ++i) free(slots[i]);
  return sum;
}

static int exec_child_main(int number) {
  log_pid(getpid(), 1, "exec-child");
  uint64_t sum = allocation_work((uint32_t)number, 3000);
  pid_t grandchild = fork();
  if (grandchild == 0) {
    log_pid(getpid(), 1, "grandchild");
    exit(allocation_work((uint32_t)number + 7, 1000) == 0 ? 1 : 0);
  }
  int status = 0;
  if (grandchild < 0 || waitpid(grandchild, &status, 0) != grandchild || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return 1;
  return sum == 0 ? 1 : 40 + number % 10;
}

/* Runs in the child of fork number `n`; never returns. */
static void child(int n) {
  switch (n % kKinds) {
    case 0:
      log_pid(getpid(), 1, "alloc-exit");
      exit(allocation_work((uint32_t)n, 2000) == 0 ? 1 : 10);
    case 1: {
      log_pid(getpid(), 1, "free-parent-list");
      size_t corrupt = stress_release_blocks(g_list, kListBlocks, kListBlockSize, 77);
      exit(corrupt == 0 ? 11 : 1);
    }
    case 2: {
      char argument[16];
      snprintf(argument, sizeof argument, "%d", n);
      execl(g_self, g_self, "--exec-child", argument, (char*)NULL);
      _exit(127);
    }
    case 3:
      log_pid(getpid(), 1, "true");
      execl("/bin/true", "true", (char*)NULL);
      _exit(127);
    default:
      log_pid(getpid(), 0, "alloc-_exit");
      _exit(allocation_work((uint32_t)n, 500) == 0 ? 1 : 14);
  }
}

static int expected_status(int n) {
  switch (n % kKinds) {
    case 0:
      return 10;
    case 1:
      return 11;
    case 2:
      return 40 + n % 10;
    case 3:
      return 0;
    default:
      return 14;
  }
}

/* Waits for `pid` for at most kChildSeconds; 0 and the status, or -1 if it had to be killed. */
static int wait_limited(pid_t pid, int* status) {
  for (int waited = 0; waited < kChildSeconds * 200; ++waited) {
    pid_t done = waitpid(pid, status, WNOHANG);
    if (done == pid) return 0;
    if (done < 0 && errno != EINTR) return -1;
    stress_sleep_ms(5);
  }
  kill(pid, SIGKILL);
  waitpid(pid, status, 0);
  return -1;
}

struct forker {
  int index, forks;
  int ok[kKinds], wrong[kKinds], hung;
};

static volatile int g_stop_churn;

static void* churn(void* argument) {
  uint32_t seed = (uint32_t)(uintptr_t)argument;
  while (!__atomic_load_n(&g_stop_churn, __ATOMIC_RELAXED)) allocation_work(seed++, 300);
  return NULL;
}

static void* fork_loop(void* argument) {
  struct forker* f = argument;
  for (int i = 0; i < f->forks; ++i) {
    const int n = f->index * f->forks + i;
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      exit(3);
    }
    if (pid == 0) child(n);
    int status = 0;
    if (wait_limited(pid, &status) != 0)
      ++f->hung;
    else if (WIFEXITED(status) && WEXITSTATUS(status) == expected_status(n))
      ++f->ok[n % kKinds];
    else
      ++f->wrong[n % kKinds];
  }
  return NULL;
}

int main(int argc, char** argv) {
  ssize_t length = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
  if (length <= 0) return 2;
  g_self[length] = '\0';
  int forks = 40, threads = 3, positional = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--pid-log") == 0 && i + 1 < argc) {
      g_pid_log = open(argv[++i], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (g_pid_log < 0) return 2;
      setenv("HK_STRESS_PID_LOG", argv[i], 1); /* for the re-exec'd children (before any thread) */
    } else if (strcmp(argv[i], "--exec-child") == 0 && i + 1 < argc) {
      /* The log descriptor is close-on-exec: a re-exec'd child reopens the file named in its environment. */
      const char* log = getenv("HK_STRESS_PID_LOG");
      if (log != NULL) g_pid_log = open(log, O_WRONLY | O_APPEND | O_CLOEXEC);
      return exec_child_main(atoi(argv[i + 1]));
    } else if (positional == 0) {
      forks = atoi(argv[i]);
      ++positional;
    } else {
      threads = atoi(argv[i]);
    }
  }
  if (forks <= 0 || threads <= 0 || threads > 16) {
    fprintf(stderr, "usage: fork_storm [FORKS_PER_THREAD] [FORKING_THREADS 1..16] [--pid-log FILE]\n");
    return 2;
  }
  log_pid(getpid(), 1, "parent");

  g_list = calloc(kListBlocks, sizeof(void*));
  if (g_list == NULL) return 2;
  stress_hold_blocks(g_list, kListBlocks, kListBlockSize, 77);
  stress_hold(kListBlocks, (unsigned long long)kListBlocks * kListBlockSize);

  /* Nothing may sit in stdio's buffer at a fork (the child would print it again). */
  fflush(NULL);
  pthread_t churners[2];
  for (int t = 0; t < 2; ++t) {
    if (pthread_create(&churners[t], NULL, churn, (void*)(uintptr_t)(1000u * (unsigned)(t + 1))) != 0) return 3;
  }
  struct forker forkers[16];
  pthread_t forker_threads[16];
  memset(forkers, 0, sizeof forkers);
  for (int t = 0; t < threads; ++t) {
    forkers[t].index = t;
    forkers[t].forks = forks;
    if (pthread_create(&forker_threads[t], NULL, fork_loop, &forkers[t]) != 0) return 3;
  }
  for (int t = 0; t < threads; ++t) pthread_join(forker_threads[t], NULL);
  __atomic_store_n(&g_stop_churn, 1, __ATOMIC_RELAXED);
  for (int t = 0; t < 2; ++t) pthread_join(churners[t], NULL);

  static const char* const kNames[kKinds] = {"alloc+exit", "free parent's list+exit", "re-exec self (+grandchild)",
                                             "exec /bin/true", "alloc+_exit"};
  int ok_total = 0, wrong_total = 0, hung = 0;
  for (int k = 0; k < kKinds; ++k) {
    int ok = 0, wrong = 0;
    for (int t = 0; t < threads; ++t) {
      ok += forkers[t].ok[k];
      wrong += forkers[t].wrong[k];
    }
    printf("%-28s %4d as expected, %d not\n", kNames[k], ok, wrong);
    ok_total += ok;
    wrong_total += wrong;
  }
  for (int t = 0; t < threads; ++t) hung += forkers[t].hung;
  printf("forks: %d from %d threads, %d as expected, %d unexpected, %d hung\n", forks * threads, threads, ok_total,
         wrong_total, hung);
  size_t corrupt = stress_release_blocks(g_list, kListBlocks, kListBlockSize, 77);
  free(g_list);
  printf("parent's list intact: %s\n", corrupt == 0 ? "yes" : "no");
  return wrong_total == 0 && hung == 0 && corrupt == 0 ? 0 : 1;
}

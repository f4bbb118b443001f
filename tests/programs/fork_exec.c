/* Processes under heapkeeper: fork, exec, and fork while another thread is allocating.
 *
 * Usage: fork_exec [--pid-log FILE]      (the test's entry point)
 *        fork_exec --exec-child           (what the self-exec'ing child runs)
 *
 * The parent builds a linked list, then forks children that allocate, free (including blocks the
 * parent allocated before the fork), and exit with known statuses; one child is killed by a
 * signal, one execs /bin/echo, one execs this program again. Then two threads churn the heap while
 * the main thread forks repeatedly; each child allocates and exits, and a child that does not
 * finish within the time limit is reported as hung (a deadlock inherited from a lock held at fork
 * time). Output is deterministic. With --pid-log, every process is listed as "PID report ROLE"
 * when it should write a heapkeeper report (it ends through exit()), else "PID none ROLE"; ROLE is
 * parent, child, echo, self-exec or fork-under-load.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct node {
  struct node* next;
  uint64_t value;
  char label[24];
};

static FILE* pid_log;

static void log_pid(pid_t pid, int writes_report, const char* role) {
  if (pid_log == NULL) return;
  fprintf(pid_log, "%d %s %s\n", (int)pid, writes_report ? "report" : "none", role);
  fflush(pid_log);
}

static struct node* build_list(int count) {
  struct node* head = NULL;
  for (int i = 0; i < count; ++i) {
    struct node* n = malloc(sizeof *n);
    if (n == NULL) abort();
    n->next = head;
    n->value = (uint64_t)i * 2654435761u;
    snprintf(n->label, sizeof n->label, "node-%d", i);
    head = n;
  }
  return head;
}

static uint64_t list_checksum(const struct node* head) {
  uint64_t sum = 0;
  for (const struct node* n = head; n != NULL; n = n->next) sum = sum * 31 + n->value + (uint64_t)strlen(n->label);
  return sum;
}

static void free_list(struct node* head) {
  while (head != NULL) {
    struct node* next = head->next;
    free(head);
    head = next;
  }
}

/* Deterministic allocation work: its result does not depend on addresses. */
static uint64_t allocation_work(int seed, int rounds) {
  enum { kSlots = 128 };
  char* slots[kSlots] = {0};
  size_t sizes[kSlots] = {0};
  uint64_t sum = 0;
  uint32_t state = (uint32_t)seed * 2246822519u + 1;
  for (int r = 0; r < rounds; ++r) {
    state = state * 1664525u + 1013904223u;
    int slot = (int)(state >> 8) % kSlots;
    size_t size = 1 + (state >> 16) % 3000;
    if (slots[slot] == NULL) {
      slots[slot] = malloc(size);
      if (slots[slot] == NULL) abort();
      memset(slots[slot], (int)(size & 0xff), size);
      sizes[slot] = size;
    } else if (state & 1) {
      char* moved = realloc(slots[slot], size);
      if (moved == NULL) abort();
      size_t kept = size < sizes[slot] ? size : sizes[slot];
      for (size_t i = 0; i < kept; ++i) sum += (unsigned char)moved[i];
      memset(moved, (int)(size & 0xff), size);
      slots[slot] = moved;
      sizes[slot] = size;
    } else {
      sum += (unsigned char)slots[slot][sizes[slot] - 1] + sizes[slot];
      free(slots[slot]);
      slots[slot] = NULL;
    }
  }
  for (int i = 0; i < kSlots; ++i) free(slots[i]);
  return sum;
}

/* A child normally ends within a fraction of a second, its heapkeeper report included; one that
 * takes this long is stuck (the whole test must stay within a minute, even if several are). */
enum { kChildSeconds = 8 };

/* Waits for `child` for at most `seconds`; returns 1 and its status, or 0 if it had to be killed. */
static int wait_with_limit(pid_t child, int seconds, int* status) {
  struct timespec pause = {0, 2 * 1000 * 1000};
  for (long waited = 0; waited < (long)seconds * 500; ++waited) {
    pid_t done = waitpid(child, status, WNOHANG);
    if (done == child) return 1;
    if (done < 0 && errno != EINTR) {
      perror("waitpid");
      exit(3);
    }
    nanosleep(&pause, NULL);
  }
  kill(child, SIGKILL);
  waitpid(child, status, 0);
  return 0;
}

static void describe(const char* who, int status) {
  if (WIFEXITED(status))
    printf("%s: exited %d\n", who, WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    printf("%s: killed by signal %d\n", who, WTERMSIG(status));
  else
    printf("%s: status 0x%x\n", who, status);
}

static volatile int stop_churn;

static void* churn_thread(void* argument) {
  uint64_t sum = 0;
  int seed = (int)(intptr_t)argument;
  while (!__atomic_load_n(&stop_churn, __ATOMIC_RELAXED)) sum += allocation_work(seed++, 200);
  return (void*)(uintptr_t)(sum & 1);
}

static int exec_child_main(void) {
  struct node* list = build_list(500);
  printf("self-exec child: list checksum %llu, work %llu\n", (unsigned long long)list_checksum(list),
         (unsigned long long)allocation_work(99, 5000));
  free_list(list);
  return 21;
}

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "--exec-child") == 0) return exec_child_main();
  if (argc > 2 && strcmp(argv[1], "--pid-log") == 0) {
    pid_log = fopen(argv[2], "w");
    if (pid_log == NULL) {
      perror(argv[2]);
      return 2;
    }
  }
  log_pid(getpid(), 1, "parent");

  struct node* list = build_list(2000);
  const uint64_t parent_sum = list_checksum(list);
  printf("parent: list checksum %llu\n", (unsigned long long)parent_sum);

  /* Children that allocate, free the parent's (copied) list, and exit with known statuses. */
  enum { kChildren = 4 };
  for (int i = 0; i < kChildren; ++i) {
    const uint64_t expected = allocation_work(i, 20000);
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
      perror("fork");
      return 3;
    }
    if (child == 0) {
      int ok = allocation_work(i, 20000) == expected && list_checksum(list) == parent_sum;
      free_list(list);
      if (i == kChildren - 1) raise(SIGTERM);
      exit(ok ? 10 + i : 1);
    }
    log_pid(child, i != kChildren - 1, "child");
    int status = 0;
    char who[32];
    snprintf(who, sizeof who, "child %d", i);
    if (!wait_with_limit(child, kChildSeconds, &status))
      printf("%s: hung\n", who);
    else
      describe(who, status);
  }

  /* A child that execs /bin/echo (it runs under the preload library too). */
  fflush(stdout);
  pid_t echo_child = fork();
  if (echo_child == 0) {
    char* p = malloc(100);
    strcpy(p, "exec-echo-child");
    execl("/bin/echo", "echo", p, (char*)NULL);
    _exit(127);
  }
  log_pid(echo_child, 1, "echo");
  int status = 0;
  if (!wait_with_limit(echo_child, kChildSeconds, &status))
    printf("echo child: hung\n");
  else
    describe("echo child", status);

  /* A child that execs this program again. */
  fflush(stdout);
  pid_t self_child = fork();
  if (self_child == 0) {
    execl("/proc/self/exe", argv[0], "--exec-child", (char*)NULL);
    _exit(127);
  }
  log_pid(self_child, 1, "self-exec");
  if (!wait_with_limit(self_child, kChildSeconds, &status))
    printf("self-exec child: hung\n");
  else
    describe("self-exec child", status);

  /* fork() while other threads are inside malloc/free/realloc. */
  pthread_t churners[2];
  for (int t = 0; t < 2; ++t) {
    if (pthread_create(&churners[t], NULL, churn_thread, (void*)(intptr_t)(1000 * (t + 1))) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      return 3;
    }
  }
  enum { kLoadedForks = 24 };
  int exited_ok = 0, hung = 0, other = 0;
  for (int i = 0; i < kLoadedForks; ++i) {
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
      perror("fork");
      return 3;
    }
    if (child == 0) {
      uint64_t sum = allocation_work(500 + i, 3000);
      char* text = malloc(64);
      snprintf(text, 64, "%llu", (unsigned long long)sum);
      free(text);
      exit(30);
    }
    log_pid(child, 1, "fork-under-load");
    if (!wait_with_limit(child, kChildSeconds, &status))
      ++hung;
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 30)
      ++exited_ok;
    else
      ++other;
  }
  __atomic_store_n(&stop_churn, 1, __ATOMIC_RELAXED);
  for (int t = 0; t < 2; ++t) pthread_join(churners[t], NULL);
  printf("forks under load: %d children, %d exited 30, %d hung, %d other\n", kLoadedForks, exited_ok, hung, other);

  printf("parent: list checksum after children %llu\n", (unsigned long long)list_checksum(list));
  free_list(list);
  if (pid_log != NULL) fclose(pid_log);
  return hung == 0 && other == 0 ? 0 : 1;
}

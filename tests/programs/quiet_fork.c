/* Forks of a single-threaded program, and of the same program once it has a second thread
 * (allocator/quiet_fork.h: the first may leave jemalloc's fork handlers out, the second may not).
 *
 * Usage: quiet_fork ROUNDS [FAULTS_FILE]
 *
 * In each phase ("alone", then "with a thread": a thread blocked in read() on a pipe) the program
 * forks ROUNDS busy children, ROUNDS vfork children that each fork a busy grandchild, and ROUNDS
 * bare children, one at a time:
 *  - a busy child allocates and frees blocks of many sizes, frees blocks its parent allocated,
 *    makes two threads that allocate and free (they may reuse the stack, and so the TLS, of one
 *    of the parent's threads: glibc keeps those for a child's new threads), joins them, checks the parent's list and
 * exits with a status that says what it found; it forks a grandchild of its own once, which does the same on a smaller
 * scale. A child still running after 20 s is killed by its own alarm (a lock inherited held).
 *  - a bare child calls _exit(0) at once; its page faults (wait4's rusage) go to FAULTS_FILE as
 *    "PHASE FAULTS" lines: the copy-on-write faults its fork handlers took.
 * Meanwhile the parent allocates between forks. Output is deterministic: one line per phase.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

struct node {
  struct node* next;
  uint64_t value;
};

static struct node* list;
static uint64_t list_sum;

static uint64_t checksum(const struct node* head) {
  uint64_t sum = 0;
  for (const struct node* n = head; n != NULL; n = n->next) sum = sum * 31 + n->value;
  return sum;
}

static void build_list(int count) {
  for (int i = 0; i < count; ++i) {
    struct node* n = malloc(sizeof *n);
    if (n == NULL) abort();
    n->value = (uint64_t)i * 2654435761u;
    n->next = list;
    list = n;
  }
  list_sum = checksum(list);
}

/* Allocates and frees `count` blocks of sizes from 8 bytes to 64 KiB; 0 when every block held
 * what was written to it. */
static int churn(int count, unsigned seed) {
  void* held[64] = {0};
  int bad = 0;
  for (int i = 0; i < count; ++i) {
    seed = seed * 1103515245u + 12345u;
    const size_t size = (size_t)8 << (seed >> 16) % 14;
    const unsigned slot = (seed >> 8) % 64;
    if (held[slot] != NULL) {
      if (*(unsigned char*)held[slot] != (unsigned char)slot) bad = 1;
      free(held[slot]);
    }
    held[slot] = malloc(size);
    if (held[slot] == NULL) return 1;
    memset(held[slot], (int)slot, size < 64 ? size : 64);
  }
  for (unsigned slot = 0; slot < 64; ++slot) free(held[slot]);
  return bad;
}

static void* churn_thread(void* seed) { return (void*)(intptr_t)churn(3000, (unsigned)(uintptr_t)seed); }

/* What a busy child does; returns its exit status (0: all well). */
static int busy_child(int depth) {
  alarm(20);
  int status = 0;
  if (churn(5000, 7u + (unsigned)depth) != 0) status |= 1;
  if (checksum(list) != list_sum) status |= 2;
  /* Blocks the parent allocated before the fork: the child's copies are its own to free. */
  for (int i = 0; i < 100 && list != NULL; ++i) {
    struct node* next = list->next;
    free(list);
    list = next;
  }
  /* Stacks of 512 KiB: glibc hands a new thread a cached stack up to 4 times its size, so these
   * may reuse heapkeeper's threads' (1 MiB), which the child inherited with nothing on them. */
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setstacksize(&attributes, 512 * 1024);
  pthread_t threads[2];
  for (uintptr_t i = 0; i < 2; ++i) {
    if (pthread_create(&threads[i], &attributes, churn_thread, (void*)(i + 1)) != 0) return status | 4;
  }
  pthread_attr_destroy(&attributes);
  for (int i = 0; i < 2; ++i) {
    void* result = NULL;
    pthread_join(threads[i], &result);
    if (result != NULL) status |= 8;
  }
  if (depth == 0) {
    const pid_t grandchild = fork();
    if (grandchild == 0) _exit(churn(2000, 99) == 0 && checksum(list) != 0 ? 0 : 16);
    int grandchild_status = 0;
    if (grandchild < 0 || waitpid(grandchild, &grandchild_status, 0) != grandchild || grandchild_status != 0)
      status |= 16;
  }
  return status;
}

static FILE* faults_file;

/* A fork inside a vfork child (undefined by POSIX, fine on Linux): the vfork child runs on its
 * parent's thread and memory, where heapkeeper's threads may hold jemalloc's locks; the grandchild
 * allocates, makes threads and exits. Returns the vfork child's wait status (0: all well). */
static __attribute__((noinline)) int fork_inside_vfork(void) {
  const pid_t pid = vfork();
  if (pid < 0) return -1;
  if (pid == 0) {
    const pid_t grandchild = fork();
    if (grandchild == 0) _exit(busy_child(1) == 0 ? 0 : 1);
    int grandchild_status = 0;
    _exit(grandchild > 0 && waitpid(grandchild, &grandchild_status, 0) == grandchild && grandchild_status == 0 ? 0 : 1);
  }
  int status = 0;
  return waitpid(pid, &status, 0) == pid ? status : -1;
}

/* One phase: `rounds` busy children, `rounds` forks inside vfork children, then `rounds` bare
 * children. Returns how many did what they should. */
static int phase(const char* name, int rounds) {
  int ok = 0;
  fflush(NULL);  // nothing buffered for the children to write again
  for (int i = 0; i < rounds; ++i) {
    const pid_t pid = fork();
    if (pid < 0) continue;
    if (pid == 0) exit(busy_child(0));
    if (churn(200, (unsigned)i) != 0) continue;  // the parent goes on allocating meanwhile
    int status = 0;
    if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++ok;
    } else {
      fprintf(stderr, "quiet_fork: %s: busy child %d ended with status 0x%x\n", name, i, status);
    }
  }
  for (int i = 0; i < rounds; ++i) {
    const int status = fork_inside_vfork();
    if (status == 0) {
      ++ok;
    } else {
      fprintf(stderr, "quiet_fork: %s: the fork inside vfork child %d ended with status 0x%x\n", name, i, status);
    }
  }
  fflush(NULL);
  for (int i = 0; i < rounds; ++i) {
    const pid_t pid = fork();
    if (pid < 0) continue;
    if (pid == 0) _exit(0);
    int status = 0;
    struct rusage usage;
    if (wait4(pid, &status, 0, &usage) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++ok;
      if (faults_file != NULL) fprintf(faults_file, "%s %ld\n", name, usage.ru_minflt);
      if (faults_file != NULL) fflush(faults_file);
    }
  }
  return ok;
}

static int blocker_pipe[2];

static void* blocked_thread(void* unused) {
  (void)unused;
  char byte;
  return read(blocker_pipe[0], &byte, 1) == 1 ? NULL : (void*)1;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: quiet_fork ROUNDS [FAULTS_FILE]\n");
    return 2;
  }
  const int rounds = atoi(argv[1]);
  if (argc > 2 && (faults_file = fopen(argv[2], "w")) == NULL) {
    perror(argv[2]);
    return 2;
  }
  build_list(2000);
  printf("alone: %d of %d children did what they should\n", phase("alone", rounds), 3 * rounds);
  pthread_t thread;
  if (pipe(blocker_pipe) != 0 || pthread_create(&thread, NULL, blocked_thread, NULL) != 0) return 1;
  printf("with a thread: %d of %d children did what they should\n", phase("threaded", rounds), 3 * rounds);
  if (write(blocker_pipe[1], "x", 1) != 1) return 1;
  pthread_join(thread, NULL);
  if (faults_file != NULL) fclose(faults_file);
  return checksum(list) == list_sum ? 0 : 1;
}

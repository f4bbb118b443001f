/* What a program may do around heapkeeper's live-stats segment, which must never cost it anything
 * (tests/integration/segment_neighbours.sh).
 *
 * Usage: segment_neighbours replace|raw-clone [PIDFILE]
 *   replace    unmaps every mapping without access of 4 to 8 MiB it finds at start (as a sandbox or
 *              a checkpointing tool that closes what it does not know would: heapkeeper's reserved
 *              range for its segment among them), maps its own memory of that size (the kernel puts
 *              it in the hole), fills it, and checks it 1.5 s later, after the segment was made
 *              (200 ms in). Prints "replace: intact" or how many bytes changed.
 *   raw-clone  allocates, runs 300 ms (so that the segment exists), makes a child with the raw clone
 *              system call (no fork handler runs in it), which allocates and exits, then writes its
 *              pid to PIDFILE and waits for SIGUSR1 (the test looks at its segment meanwhile).
 * Without heapkeeper both print the same and exit 0. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "release_signal.h"

static void pause_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0) {
  }
}

static int replace(void) {
  FILE* maps = fopen("/proc/self/maps", "r");
  if (maps == NULL) return 2;
  char line[512];
  size_t size = (size_t)4 << 20;
  while (fgets(line, sizeof line, maps) != NULL) {
    unsigned long low, high;
    char permissions[8];
    if (sscanf(line, "%lx-%lx %7s", &low, &high, permissions) != 3) continue;
    const int nameless = strchr(line, '/') == NULL && (strchr(line, '[') == NULL || strstr(line, "[anon:") != NULL);
    if (strcmp(permissions, "---p") == 0 && nameless && high - low >= ((size_t)4 << 20) &&
        high - low < ((size_t)8 << 20)) {
      munmap((void*)low, high - low);
      size = high - low;
    }
  }
  fclose(maps);
  unsigned char* mine = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mine == MAP_FAILED) return 2;
  memset(mine, 0xAB, size);
  pause_ms(1500);
  size_t changed = 0;
  for (size_t i = 0; i < size; ++i) changed += mine[i] != 0xAB;
  if (changed != 0) {
    printf("replace: %zu bytes changed\n", changed);
    return 1;
  }
  printf("replace: intact\n");
  return 0;
}

static int raw_clone(const char* pid_file) {
  sigset_t waiting_mask;
  block_release_signal(&waiting_mask);
  char* volatile kept = malloc(5000);
  memset(kept, 1, 5000);
  pause_ms(300);
  const long child = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (child == 0) {
    char* volatile block = malloc(100);
    free(block);
    exit(7);
  }
  int status = 0;
  waitpid((pid_t)child, &status, 0);
  printf("raw-clone: child exited with %d\n", WEXITSTATUS(status));
  fflush(stdout);
  if (pid_file != NULL) {
    FILE* out = fopen(pid_file, "w");
    if (out == NULL) return 2;
    fprintf(out, "%d\n", (int)getpid());
    fclose(out);
    wait_for_release_signal(&waiting_mask);
  }
  free(kept);
  return 0;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "replace") == 0) return replace();
  if (strcmp(mode, "raw-clone") == 0) return raw_clone(argc > 2 ? argv[2] : NULL);
  fprintf(stderr, "usage: segment_neighbours replace|raw-clone [PIDFILE]\n");
  return 2;
}

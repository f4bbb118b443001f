/* reachable_file_mapping: blocks whose only pointers are stored in mappings of files: a file mapped
 * private (as the JVM maps its class-data archive, which holds the only pointers to blocks it
 * mallocs), one mapped private and made read-only once written (as the JVM seals the archive after
 * patching it), a file mapped shared, and a memfd mapped shared; the first file mapping is twice
 * as long as its file, so its second page reads as SIGBUS in place (the scan must read it as a
 * debugger does, or skip it). heapkeeper read anonymous mappings only and called all four
 * leaked; collect mode freed them under the program (the JVM crashed every run). The periodic
 * scans in collect mode must leave every block as it was, which the program checks.
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 * corpus: env HEAPKEEPER_SCAN_INTERVAL=50ms
 * corpus: stdout-contains kept: 4 of 4
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "corpus.h"

enum { kBlocks = 4 };
static void** volatile g_slots[kBlocks];

/* A mapping of a fresh file of one page, `pages` pages long, or of a memfd. */
static void** map_file(int shared, int memfd, size_t pages) {
  char path[] = "/tmp/reachable_file_mapping.XXXXXX";
  const int fd = memfd ? memfd_create("reachable_file_mapping", 0) : mkstemp(path);
  if (fd < 0) return NULL;
  if (!memfd) unlink(path);
  if (ftruncate(fd, 4096) != 0) return NULL;
  void* p = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
  close(fd);
  return p == MAP_FAILED ? NULL : (void**)p;
}

static CORPUS_NOINLINE int keep_in_files(void) {
  g_slots[0] = map_file(0, 0, 2);
  g_slots[1] = map_file(1, 0, 1);
  g_slots[2] = map_file(1, 1, 1);
  g_slots[3] = map_file(0, 0, 1);
  for (int i = 0; i < kBlocks; ++i) {
    if (g_slots[i] == NULL) return 0;
    g_slots[i][5] = malloc(64 + 16 * (size_t)i);
    memset(g_slots[i][5], 'a' + i, 64 + 16 * (size_t)i);
  }
  return mprotect(g_slots[3], 4096, PROT_READ) == 0;
}

int main(void) {
  if (!keep_in_files()) return 2;
  corpus_clobber_stack();
  /* Periodic scans meanwhile; blocks freed under the program would be handed out again here. */
  for (int round = 0; round < 6; ++round) {
    const struct timespec pause = {0, 60 * 1000 * 1000};
    nanosleep(&pause, NULL);
    for (int i = 0; i < 200; ++i) free(memset(malloc(64 + 16 * (size_t)(i % 3)), 'X', 64));
  }
  int kept = 0;
  for (int i = 0; i < kBlocks; ++i) {
    const unsigned char* block = g_slots[i][5];
    int same = 1;
    for (size_t k = 0; k < 64 + 16 * (size_t)i; ++k) same &= block[k] == 'a' + i;
    kept += same;
  }
  printf("kept: %d of %d\n", kept, kBlocks);
  return 0;
}

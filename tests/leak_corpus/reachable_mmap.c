/* reachable_mmap: a block whose only pointer is stored in an anonymous private mapping (a custom
 * pool or arena, as interpreters keep). heapkeeper and valgrind scan such mappings: not a leak.
 * (LeakSanitizer does not scan mmap'd memory and reports it; the expectation is the truth.)
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "corpus.h"

void** volatile g_pool;

static CORPUS_NOINLINE int keep_in_mapping(void) {
  void* pool = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pool == MAP_FAILED) return 0;
  g_pool = pool;
  g_pool[17] = malloc(444);
  corpus_fill(g_pool[17], 444);
  return 1;
}

int main(void) {
  if (!keep_in_mapping()) return 2;
  corpus_clobber_stack();
  return 0;
}

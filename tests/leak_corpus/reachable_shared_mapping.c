/* reachable_shared_mapping: blocks whose only pointers are stored in shared anonymous memory: a
 * MAP_SHARED|MAP_ANONYMOUS mapping (a table a server shares with the workers it forks) and a
 * System V segment. The pointers are the program's as much as those in private memory; valgrind
 * scans such mappings and calls the blocks reachable. heapkeeper called both leaked (it read
 * private mappings only), and collect mode would have freed them while in use.
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 */
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

#include "corpus.h"

void** volatile g_shared;
void** volatile g_segment;

static CORPUS_NOINLINE int keep_in_shared_memory(void) {
  void* shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return 0;
  g_shared = shared;
  g_shared[9] = malloc(555);
  corpus_fill(g_shared[9], 555);
  const int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
  if (id < 0) return 0;
  void* segment = shmat(id, NULL, 0);
  shmctl(id, IPC_RMID, NULL);  // gone once detached: nothing is left behind
  if (segment == (void*)-1) return 0;
  g_segment = segment;
  g_segment[3] = malloc(333);
  corpus_fill(g_segment[3], 333);
  return 1;
}

int main(void) {
  if (!keep_in_shared_memory()) return 2;
  corpus_clobber_stack();
  return 0;
}

/* Two runs of one program for `heapkeeper diff` (tests/integration/diff.sh):
 *   diff_workload CACHE LEAKS GONE
 * keeps CACHE 1 KiB blocks from make_cache_entry in a global array, leaks LEAKS 100-byte blocks
 * from leak_record, and keeps GONE 512-byte blocks from make_old_entry (0 in the later run: a
 * site that is gone). Exits normally. */
#include <stdio.h>
#include <stdlib.h>

void* cache[100000]; /* not static: the stores must stay */
void* old_entries[1000];

__attribute__((noinline)) void* make_cache_entry(void) { return calloc(1, 1024); }
__attribute__((noinline)) void* make_old_entry(void) { return calloc(1, 512); }
__attribute__((noinline)) void leak_record(void) {
  void* volatile p = malloc(100);
  (void)p;
}

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  const int entries = atoi(argv[1]), leaks = atoi(argv[2]), gone = atoi(argv[3]);
  for (int i = 0; i < entries && i < 100000; i++) cache[i] = make_cache_entry();
  for (int i = 0; i < gone && i < 1000; i++) old_entries[i] = make_old_entry();
  for (int i = 0; i < leaks; i++) leak_record();
  printf("cache %d leaks %d gone %d\n", entries, leaks, gone);
  return 0;
}

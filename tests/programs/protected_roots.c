/* protected_roots: blocks whose only pointer lies in memory the program protected or mapped
 * unusually, for a while, then uses again.
 *
 * Each mode allocates a 4000-byte block filled with a pattern, keeps its only pointer in the memory
 * under test, drops every other copy (the stack area below is zeroed), waits 0.8 s, takes the
 * pointer back, checks the pattern and frees the block:
 *   guard-page  the first page of a 64 KiB block from posix_memalign (a coroutine's stack with a
 *               guard page), reachable from a global, made PROT_NONE while it holds the pointer:
 *               a scan that reads the heap in place faults on it
 *   read-only   an anonymous page sealed with mprotect(PROT_READ) after the pointer was written
 *   write-only  an anonymous page made mprotect(PROT_WRITE) after the pointer was written ("-w-p"
 *               in /proc/self/maps: process_vm_readv cannot read it, though on x86-64 the program
 *               still can), made readable again before the pointer is taken back
 *   dev-zero    a MAP_PRIVATE mapping of /dev/zero (named "/dev/zero" in /proc/self/maps, not
 *               anonymous-looking)
 *   data-none, data-write-only
 *               a page of the program's own initialised data (a file-backed mapping in
 *               /proc/self/maps, scanned as the module's data segment) made PROT_NONE or
 *               PROT_WRITE while it holds the pointer: process_vm_readv cannot read it
 *   pkey        a heap block tagged with a memory protection key, which the program's threads
 *               may access and heapkeeper's scanning thread, by default, may not (reading it in
 *               place faulted); where the CPU has no protection keys it says so, as a plain run does
 * Without heapkeeper every mode prints "<mode>: block intact" and exits 0. Under heapkeeper in
 * collect mode with scans every 100 ms, a scan that missed the pointer would free the block after
 * two scans: the pattern would be gone, or the final free a double free.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "held_block.h"

#define PAGE 4096

/* Stores a new pattern-filled block's only pointer at `slot`. */
static __attribute__((noinline)) void park_block(void* volatile* slot) {
  unsigned char* block = malloc(BLOCK_BYTES);
  if (block == NULL) exit(2);
  fill(block);
  *slot = block;
}

static int finish(const char* mode, unsigned char* block) {
  const int ok = intact(block, 0);
  free(block);
  printf("%s: %s\n", mode, ok ? "block intact" : "BLOCK DAMAGED");
  return ok ? 0 : 1;
}

static char* volatile g_guarded; /* the block with the guard page: reachable, as a stack would be */

static int guard_page(void) {
  void* memory = NULL;
  if (posix_memalign(&memory, PAGE, 64 * 1024) != 0) return 2;
  memset(memory, 0, 64 * 1024);
  g_guarded = memory;
  park_block((void* volatile*)g_guarded);
  clobber_stack();
  if (mprotect(g_guarded, PAGE, PROT_NONE) != 0) return 2;
  pause_ms(WAIT_MS);
  if (mprotect(g_guarded, PAGE, PROT_READ | PROT_WRITE) != 0) return 2;
  unsigned char* block = *(unsigned char* volatile*)g_guarded;
  const int status = finish("guard-page", block);
  free(g_guarded);
  return status;
}

static int mapped_root(const char* mode, int dev_zero, int sealed_protection) {
  int fd = -1;
  if (dev_zero && (fd = open("/dev/zero", O_RDWR | O_CLOEXEC)) < 0) return 2;
  void* page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, dev_zero ? MAP_PRIVATE : MAP_PRIVATE | MAP_ANONYMOUS, fd, 0);
  if (page == MAP_FAILED) return 2;
  if (fd >= 0) close(fd);
  park_block((void* volatile*)page);
  clobber_stack();
  if (!dev_zero && mprotect(page, PAGE, sealed_protection) != 0) return 2;
  pause_ms(WAIT_MS);
  if (sealed_protection == PROT_WRITE && mprotect(page, PAGE, PROT_READ | PROT_WRITE) != 0) return 2;
  const int status = finish(mode, *(unsigned char* volatile*)page);
  munmap(page, PAGE);
  return status;
}

/* Page-aligned initialised data, a page of it alone: mprotect applies to the whole page. */
static void* volatile g_data_page[PAGE / sizeof(void*)] __attribute__((aligned(PAGE))) = {(void*)1};

static int data_root(const char* mode, int protection) {
  park_block(&g_data_page[8]);
  clobber_stack();
  if (mprotect((void*)g_data_page, PAGE, protection) != 0) return 2;
  pause_ms(WAIT_MS);
  if (mprotect((void*)g_data_page, PAGE, PROT_READ | PROT_WRITE) != 0) return 2;
  return finish(mode, (unsigned char*)g_data_page[8]);
}

static int keyed_block(void) {
  const int key = pkey_alloc(0, 0);
  if (key < 0) {
    printf("pkey: no protection keys here\n");
    return 0;
  }
  void* memory = NULL;
  if (posix_memalign(&memory, PAGE, 2 * PAGE) != 0) return 2;
  memset(memory, 0, 2 * PAGE);
  g_guarded = memory;
  park_block((void* volatile*)g_guarded);
  clobber_stack();
  if (pkey_mprotect(memory, 2 * PAGE, PROT_READ | PROT_WRITE, key) != 0) return 2;
  pause_ms(WAIT_MS);
  const int status = finish("pkey", *(unsigned char* volatile*)g_guarded);
  pkey_mprotect(memory, 2 * PAGE, PROT_READ | PROT_WRITE, 0);
  pkey_free(key);
  free(memory);
  return status;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "guard-page") == 0) return guard_page();
  if (strcmp(mode, "read-only") == 0) return mapped_root(mode, 0, PROT_READ);
  if (strcmp(mode, "write-only") == 0) return mapped_root(mode, 0, PROT_WRITE);
  if (strcmp(mode, "dev-zero") == 0) return mapped_root(mode, 1, PROT_READ);
  if (strcmp(mode, "data-none") == 0) return data_root(mode, PROT_NONE);
  if (strcmp(mode, "data-write-only") == 0) return data_root(mode, PROT_WRITE);
  if (strcmp(mode, "pkey") == 0) return keyed_block();
  fprintf(stderr, "usage: protected_roots guard-page|read-only|write-only|dev-zero|data-none|data-write-only|pkey\n");
  return 2;
}

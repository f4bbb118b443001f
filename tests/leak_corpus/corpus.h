/* Helpers shared by the leak-corpus programs: making a pointer really lost, or really kept.
 *
 * A conservative scanner (heapkeeper's, valgrind's, LeakSanitizer's) treats every word of the
 * stack above the stack pointer, every register and every global as a possible pointer. So a
 * program that wants a block *lost* drops its last pointer inside a noinline function (whose frame
 * is gone when it returns) and then calls corpus_clobber_stack(), which overwrites the dead frames
 * below the caller — those of the losing function and of the allocator it called — so no stale
 * copy survives where a later frame (the exit path, a signal handler) might leave it unwritten.
 * A program that wants a block *kept* stores its only pointer in the root under test (a global, a
 * TLS variable, a thread's stack, ...) through a volatile lvalue, so the store is never elided.
 * The programs are built with -O0 -g, so no allocation is optimised away.
 *
 * Each program's opening comment states its exact expected result in `corpus:` lines, which
 * run_corpus.py reads (see its docstring for the directives).
 */
#ifndef HEAPKEEPER_LEAK_CORPUS_H
#define HEAPKEEPER_LEAK_CORPUS_H

#include <string.h>

#define CORPUS_NOINLINE __attribute__((noinline))
#define CORPUS_UNUSED __attribute__((unused))

/* Far more than malloc's deepest path (stack capture included) ever uses below its caller. */
#define CORPUS_CLOBBER_BYTES (64 * 1024)

/* Zeroes the stack below the caller's frame, where dead frames keep stale pointers. */
static CORPUS_NOINLINE CORPUS_UNUSED void corpus_clobber_stack(void) {
  char area[CORPUS_CLOBBER_BYTES];
  memset(area, 0, sizeof area);
  /* The compiler must believe the zeroes are read, or it could drop the memset. */
  __asm__ volatile("" : : "r"(area) : "memory");
}

/* Fills a block with a byte pattern that is no valid pointer, so its contents keep nothing alive. */
static CORPUS_UNUSED void corpus_fill(void* block, size_t bytes) { memset(block, 0x5a, bytes); }

#endif /* HEAPKEEPER_LEAK_CORPUS_H */

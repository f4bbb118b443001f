/* heapkeeper's public C interface.
 *
 * A program running under libheapkeeper.so (LD_PRELOAD or `heapkeeper run`) can ask the private heap
 * about its own blocks and figures. The functions are exported by libheapkeeper.so only, so a program
 * that must also run without heapkeeper looks them up with dlsym(RTLD_DEFAULT, "heapkeeper_...")
 * instead of linking them; the tests do exactly that. Every function is safe to call from any thread.
 */
#ifndef HEAPKEEPER_HEAPKEEPER_H
#define HEAPKEEPER_HEAPKEEPER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HEAPKEEPER_MAX_STACK_DEPTH 128

/* What the private heap knows about one live block. */
struct heapkeeper_block_info {
  void* start;           /* the pointer malloc/new returned */
  size_t requested_size; /* the size the program asked for */
  size_t usable_size;    /* malloc_usable_size(start) */
  uint32_t stack_id;     /* interned allocation stack (0: none recorded) */
  uint32_t thread_index; /* heapkeeper's index of the allocating thread */
  uint64_t sequence;     /* allocation sequence number (low 32 bits kept per block) */
};

/* Figures of the whole process, summed over threads when called. */
struct heapkeeper_heap_stats {
  uint64_t live_bytes, live_blocks; /* requested bytes / blocks currently allocated */
  uint64_t peak_live_bytes;         /* within 256 KiB per thread of the true peak */
  uint64_t total_allocations, total_frees;
  uint64_t heap_mapped_bytes;   /* address space handed to the arenas */
  uint64_t heap_resident_bytes; /* of that, resident in RAM (mincore) */
  uint64_t heap_returned_bytes; /* purged back to the OS so far (cumulative) */
  uint64_t heap_active_bytes;   /* bytes in allocated jemalloc regions */
  uint64_t foreign_frees;       /* frees of pointers heapkeeper never handed out */
  uint64_t bad_frees;           /* invalid and double frees reported */
  uint64_t distinct_stacks;     /* distinct allocation stacks interned */
  uint64_t threads_seen;
};

/* Returns 1 and fills *info when `address` lies inside a live block of the private heap (any byte
 * of it: interior pointers count), else 0. */
int heapkeeper_block_info(const void* address, struct heapkeeper_block_info* info);

/* Copies the frames (return addresses) of interned stack `stack_id` into `frames` (at most
 * `capacity`) and returns how many the stack has, or -1 for an unknown id. */
int heapkeeper_stack_frames(uint32_t stack_id, uintptr_t* frames, int capacity);

/* Fills *stats. Reads every thread's counters; never blocks allocation. */
void heapkeeper_heap_stats(struct heapkeeper_heap_stats* stats);

/* Writes the JSON report (the same document as HEAPKEEPER_REPORT at exit) to `path`, as
 * HEAPKEEPER_REPORT would be written: a regular file is replaced atomically, a FIFO or device is
 * written to; returns 0 on success, -1 with errno set otherwise (what heapkeeper refused, such as
 * another user's link in /tmp, or a FIFO nobody opened, is also one diagnostic line). */
int heapkeeper_write_report(const char* path);

#ifdef __cplusplus
}
#endif

#endif /* HEAPKEEPER_HEAPKEEPER_H */

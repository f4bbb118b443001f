/* Allocates from plugins (tests/programs/unloaded_plugin.c) that it then closes with dlclose, so
 * that reports must name frames of libraries no longer mapped.
 *
 * Usage: unloaded_library [--delete] [--keep-last] [--replace-with FILE] [--hold PIDFILE] PLUGIN...
 *   Each PLUGIN is "PATH:NAME" (NAME the plugin's PLUGIN_NAME). For each in turn: dlopen it, let
 *   it lose some blocks and hand others to a global of this program, then dlclose it. The i-th plugin (from 0) leaks 3
 * + 2i blocks of 100 + 100i bytes and keeps 2 + 2i blocks of 48 + 16i bytes: alpha first leaks 3 x 100 and keeps 2 x
 * 48, bravo second leaks 5 x 200 and keeps 4 x 64, so every site's figures say whose it is. Every plugin is called from
 * the same call sites, so plugins of the same layout loaded at the same address record identical stacks. With two or
 * more plugins, each must be loaded where the first one was (exit status 4 otherwise: the test would prove nothing).
 *   --delete     unlink each plugin's file right after loading it (a library deleted from disk).
 *   --keep-last  leave the last plugin loaded.
 *   --replace-with FILE  rename FILE over the (one) plugin's path right after loading it: the file
 *                on disk is then another library than the one mapped.
 *   --hold F     once done, write the pid to F and wait for SIGUSR1 before exiting (for
 *                `heapkeeper stats/scan/report PID` while the closed plugins' blocks are around).
 * Prints one line per plugin and one at the end; the same with and without heapkeeper. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "release_signal.h"

#define MAX_KEPT 64

/* The program's only pointers to the kept blocks: a root every scan sees. */
void* volatile kept_blocks[MAX_KEPT];
static int kept_count;

typedef void (*lose_function)(int, size_t);
typedef void (*keep_function)(void**, int, size_t);

static void* lookup(void* handle, const char* name, const char* suffix) {
  char symbol[128];
  snprintf(symbol, sizeof symbol, "%s_%s", name, suffix);
  void* function = dlsym(handle, symbol);
  if (function == NULL) {
    fprintf(stderr, "dlsym %s: %s\n", symbol, dlerror());
    exit(3);
  }
  return function;
}

/* Zeroes the stack below the caller, where the plugin's dead frames may keep stale pointers to the
 * blocks it lost (a conservative scan would take them for references). */
static __attribute__((noinline)) void clobber_stack(void) {
  char area[64 * 1024];
  memset(area, 0, sizeof area);
  __asm__ volatile("" : : "r"(area) : "memory");
}

/* One plugin's work. noinline and called from one place: every plugin's blocks get the same
 * caller frames. */
static __attribute__((noinline)) void use_plugin(void* handle, const char* name, int index) {
  lose_function lose = (lose_function)lookup(handle, name, "lose_blocks");
  keep_function keep = (keep_function)lookup(handle, name, "keep_blocks");
  const int keep_count = 2 + 2 * index;
  if (kept_count + keep_count > MAX_KEPT) exit(3);
  lose(3 + 2 * index, (size_t)(100 + 100 * index));
  keep((void**)&kept_blocks[kept_count], keep_count, (size_t)(48 + 16 * index));
  kept_count += keep_count;
}

int main(int argc, char** argv) {
  int delete_files = 0, keep_last = 0;
  const char* replacement = NULL;
  const char* hold_file = NULL;
  int first = 1;
  for (; first < argc && strncmp(argv[first], "--", 2) == 0; ++first) {
    if (strcmp(argv[first], "--delete") == 0) {
      delete_files = 1;
    } else if (strcmp(argv[first], "--keep-last") == 0) {
      keep_last = 1;
    } else if (strcmp(argv[first], "--replace-with") == 0 && first + 1 < argc) {
      replacement = argv[++first];
    } else if (strcmp(argv[first], "--hold") == 0 && first + 1 < argc) {
      hold_file = argv[++first];
    } else {
      fprintf(stderr, "unknown option %s\n", argv[first]);
      return 2;
    }
  }
  if (first == argc) {
    fprintf(stderr,
            "usage: unloaded_library [--delete] [--keep-last] [--replace-with FILE] [--hold PIDFILE] PATH:NAME...\n");
    return 2;
  }
  sigset_t waiting_mask;
  block_release_signal(&waiting_mask);
  uintptr_t first_base = 0;
  for (int i = first; i < argc; ++i) {
    char path[4096];
    snprintf(path, sizeof path, "%s", argv[i]);
    char* name = strrchr(path, ':');
    if (name == NULL) {
      fprintf(stderr, "%s: expected PATH:NAME\n", argv[i]);
      return 2;
    }
    *name++ = '\0';
    void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
      fprintf(stderr, "dlopen: %s\n", dlerror());
      return 3;
    }
    struct link_map* map = NULL;
    if (dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0) return 3;
    if (i == first) first_base = map->l_addr;
    if (map->l_addr != first_base) {
      fprintf(stderr, "%s was loaded at %#lx, not where the first plugin was (%#lx)\n", path,
              (unsigned long)map->l_addr, (unsigned long)first_base);
      return 4;
    }
    if (delete_files && unlink(path) != 0) {
      perror("unlink");
      return 3;
    }
    if (replacement != NULL && rename(replacement, path) != 0) {
      perror("rename");
      return 3;
    }
    use_plugin(handle, name, i - first);
    clobber_stack();
    const int stays = keep_last && i + 1 == argc;
    if (!stays && dlclose(handle) != 0) {
      fprintf(stderr, "dlclose: %s\n", dlerror());
      return 3;
    }
    printf("plugin %s: used, %s\n", name, stays ? "kept loaded" : "closed");
  }
  if (hold_file != NULL) {
    char temporary[4096];
    snprintf(temporary, sizeof temporary, "%s.tmp", hold_file);
    FILE* out = fopen(temporary, "w");
    if (out == NULL || fprintf(out, "%d\n", (int)getpid()) < 0 || fclose(out) != 0 ||
        rename(temporary, hold_file) != 0) {
      perror(hold_file);
      return 3;
    }
    wait_for_release_signal(&waiting_mask);
  }
  printf("%d blocks kept\n", kept_count);
  return 0;
}

// A thread that loads and unloads a library in a loop while the main thread allocates: a scan
// that stopped it inside dlopen and then took the loader's lock itself would hang. Run under
// 100 ms periodic scans; prints how the run ended.
// Usage: dlopen_during_scans [LIBRARY [SECONDS]]: runs SECONDS (default 2), and with HK_STOP_FILE
// naming a FIFO also until a byte can be read from it, so that a test can let it run until enough
// scans have stopped it, however slowly a loaded machine scans.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_stop;
static const char* g_library;

static void* load_loop(void* unused) {
  (void)unused;
  long loads = 0;
  while (!atomic_load(&g_stop)) {
    void* handle = dlopen(g_library, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
      fprintf(stderr, "dlopen %s: %s\n", g_library, dlerror());
      exit(2);
    }
    dlclose(handle);
    ++loads;
  }
  return (void*)loads;
}

int main(int argc, char** argv) {
  g_library = argc > 1 ? argv[1] : "libm.so.6";
  const double seconds = argc > 2 ? atof(argv[2]) : 2.0;
  // Non-blocking: a FIFO with no writer yet opens at once and reads as empty.
  const char* stop_path = getenv("HK_STOP_FILE");
  const int stop_file = stop_path != NULL ? open(stop_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC) : -1;
  if (stop_path != NULL && stop_file < 0) {
    perror(stop_path);
    return 2;
  }
  pthread_t threads[2];
  for (int i = 0; i < 2; ++i) pthread_create(&threads[i], NULL, load_loop, NULL);
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  void* volatile keep = NULL;
  int stopped = stop_file < 0;
  for (unsigned long round = 0;; ++round) {
    free(keep);
    keep = malloc(256);
    clock_gettime(CLOCK_MONOTONIC, &now);
    char byte;
    if (!stopped && round % 1024 == 0 && read(stop_file, &byte, 1) == 1) stopped = 1;
    if (stopped && (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 >= seconds) break;
  }
  free(keep);
  atomic_store(&g_stop, 1);
  long loads = 0;
  for (int i = 0; i < 2; ++i) {
    void* result;
    pthread_join(threads[i], &result);
    loads += (long)result;
  }
  printf("loaded and unloaded %s: %s\n", g_library, loads > 0 ? "yes" : "no");
  return 0;
}

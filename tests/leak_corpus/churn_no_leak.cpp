// churn_no_leak: five threads (the main one included) make at least 20,000 allocations each —
// malloc, calloc, realloc, new, new[], std::string and std::vector growth — keeping a window of 64
// live blocks and freeing everything in the end; they go on for at least 2 s, so that periodic
// scans (every 150 ms; at least 4 of about 13 are required, slack for a loaded machine) run during
// the churn. Those must find nothing: a block in flight (just allocated, about to be freed, held in
// a register of a stopped thread) is never a leak. Nothing leaks at exit either. Every thread makes
// its first allocation before any starts to churn, long before the first scan
// (thread_start_during_scan covers threads that start while a scan runs).
//
// Usage: churn_no_leak [ALLOCATIONS_PER_THREAD [MILLISECONDS]]   (default 20000 2000)
//
// corpus: expect direct=0 indirect=0 bytes=0
// corpus: env HEAPKEEPER_SCAN_INTERVAL=150ms
// corpus: stderr-absent heapkeeper\[\d+\]: scan \d+:
// corpus: json scans >= 4
// corpus: valgrind-args 2000 0
#include <pthread.h>
#include <time.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "corpus.h"

namespace {

constexpr int kThreads = 4;
pthread_barrier_t g_registered;  // every thread has allocated once: heapkeeper knows it
constexpr int kWindow = 64;
long g_per_thread = 20000;
long g_milliseconds = 2000;

long elapsed_ms(const timespec& since) {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - since.tv_sec) * 1000 + (now.tv_nsec - since.tv_nsec) / 1000000;
}

// One slot of the window: what was allocated and how, so it is released the matching way.
struct Slot {
  enum Kind { kNone, kMalloc, kNew, kNewArray, kString, kVector } kind = kNone;
  void* pointer = nullptr;
};

void release(Slot& slot) {
  switch (slot.kind) {
    case Slot::kNone:
      break;
    case Slot::kMalloc:
      free(slot.pointer);
      break;
    case Slot::kNew:
      delete static_cast<long*>(slot.pointer);
      break;
    case Slot::kNewArray:
      delete[] static_cast<char*>(slot.pointer);
      break;
    case Slot::kString:
      delete static_cast<std::string*>(slot.pointer);
      break;
    case Slot::kVector:
      delete static_cast<std::vector<void*>*>(slot.pointer);
      break;
  }
  slot = Slot{};
}

void* churn(void* seed_pointer) {
  unsigned seed = static_cast<unsigned>(reinterpret_cast<uintptr_t>(seed_pointer));
  free(malloc(1));
  pthread_barrier_wait(&g_registered);
  Slot window[kWindow];
  timespec started;
  clock_gettime(CLOCK_MONOTONIC, &started);
  for (long i = 0; i < g_per_thread || elapsed_ms(started) < g_milliseconds; ++i) {
    Slot& slot = window[rand_r(&seed) % kWindow];
    release(slot);
    const size_t size = 1 + rand_r(&seed) % 2048;
    switch (i % 6) {
      case 0: {
        slot = {Slot::kMalloc, malloc(size)};
        memset(slot.pointer, 1, size);
        break;
      }
      case 1: {
        slot = {Slot::kMalloc, calloc(1, size)};
        break;
      }
      case 2: {
        void* p = malloc(size);
        slot = {Slot::kMalloc, realloc(p, size * 2)};
        break;
      }
      case 3: {
        slot = {Slot::kNew, new long(i)};
        break;
      }
      case 4: {
        auto* text = new std::string(size % 200, 'c');
        text->append(size % 300, 'd');
        slot = {Slot::kString, text};
        break;
      }
      default: {
        auto* pointers = new std::vector<void*>();
        for (size_t k = 0; k < size % 40; ++k) pointers->push_back(new char[8]);
        for (void* p : *pointers) delete[] static_cast<char*>(p);
        pointers->clear();
        pointers->push_back(nullptr);
        slot = {Slot::kVector, pointers};
        break;
      }
    }
  }
  for (Slot& slot : window) release(slot);
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) g_per_thread = std::strtol(argv[1], nullptr, 10);
  if (argc > 2) g_milliseconds = std::strtol(argv[2], nullptr, 10);
  pthread_barrier_init(&g_registered, nullptr, kThreads + 1);
  pthread_t threads[kThreads];
  for (int t = 0; t < kThreads; ++t) {
    if (pthread_create(&threads[t], nullptr, churn, reinterpret_cast<void*>(uintptr_t(t + 1))) != 0) return 2;
  }
  churn(reinterpret_cast<void*>(uintptr_t{99}));
  for (pthread_t thread : threads) pthread_join(thread, nullptr);
  return 0;
}

// Many threads passing heap blocks to each other: a block is allocated on one thread, travels
// through several others (each checks its contents, some grow or shrink it with realloc, all
// append to a std::vector inside it) and is freed by a thread other than the one that made it.
//
// Usage: thread_relay [THREADS] [MESSAGES_PER_THREAD] [HOPS]      (defaults 48 4000 6)
//
// Phase 1 (hold point): every thread allocates 256 blocks of 1000 bytes from stress_hold_blocks;
// the main thread stops at stress_hold() so scripts/stress.sh can compare the live stats with
// THREADS * 256 blocks; then each thread checks and frees its neighbour's blocks.
// Phase 2 (relay): each thread sends MESSAGES_PER_THREAD messages; a message's route (the next
// thread at each hop, whether it is reallocated) is a function of its identity only, so which
// thread handles what — and so every printed checksum — does not depend on scheduling. Checksums
// are sums, so arrival order does not matter either. The last hop never lands on the sender.
//
// Prints per-thread and total counts and checksums, and how many allocation calls the program
// made itself (heapkeeper's report must count at least that many). Exits 1 on any corruption.
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "stress_common.h"

namespace {

constexpr size_t kHeldBlocks = 256;
constexpr size_t kHeldSize = 1000;
constexpr int64_t kMaxInFlight = 64;

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

// One message in flight. The payload is a separate malloc'd block (grown and shrunk on the way),
// the trail a std::vector (operator new/delete on whichever thread appends).
struct Message {
  uint64_t id;
  unsigned origin;
  unsigned hops_left;
  size_t size;
  unsigned char* payload;
  std::vector<uint32_t> trail;
};

struct Mailbox {
  std::mutex mutex;
  std::condition_variable arrived;
  std::deque<Message*> queue;
};

struct Totals {
  uint64_t sent = 0, handled = 0, freed = 0, reallocated = 0, checksum = 0, corrupt = 0, allocation_calls = 0;
};

class Relay {
 public:
  Relay(unsigned threads, unsigned messages, unsigned hops)
      : threads_(threads), messages_(messages), hops_(hops), boxes_(threads), totals_(threads), in_flight_(threads) {
    pthread_barrier_init(&barrier_, nullptr, threads + 1);
  }
  ~Relay() { pthread_barrier_destroy(&barrier_); }

  void run() {
    std::vector<void**> held(threads_, nullptr);
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads_; ++t) workers.emplace_back([this, t, &held] { work(t, held); });
    pthread_barrier_wait(&barrier_);  // every thread holds its blocks
    stress_hold(uint64_t{threads_} * kHeldBlocks, uint64_t{threads_} * kHeldBlocks * kHeldSize);
    pthread_barrier_wait(&barrier_);  // go: free the neighbour's blocks, then relay
    for (auto& worker : workers) worker.join();
  }

  int report() const {
    Totals all;
    for (unsigned t = 0; t < threads_; ++t) {
      const Totals& r = totals_[t];
      std::printf("thread %2u: sent %llu handled %llu freed %llu reallocated %llu checksum %016llx\n", t,
                  static_cast<unsigned long long>(r.sent), static_cast<unsigned long long>(r.handled),
                  static_cast<unsigned long long>(r.freed), static_cast<unsigned long long>(r.reallocated),
                  static_cast<unsigned long long>(r.checksum));
      all.sent += r.sent;
      all.handled += r.handled;
      all.freed += r.freed;
      all.reallocated += r.reallocated;
      all.checksum += r.checksum;
      all.corrupt += r.corrupt;
      all.allocation_calls += r.allocation_calls;
    }
    std::printf("threads=%u messages=%llu handled=%llu freed=%llu reallocated=%llu checksum=%016llx corrupt=%llu\n",
                threads_, static_cast<unsigned long long>(all.sent), static_cast<unsigned long long>(all.handled),
                static_cast<unsigned long long>(all.freed), static_cast<unsigned long long>(all.reallocated),
                static_cast<unsigned long long>(all.checksum), static_cast<unsigned long long>(all.corrupt));
    std::printf("allocation calls made by the program: %llu\n", static_cast<unsigned long long>(all.allocation_calls));
    return all.corrupt == 0 && all.freed == all.sent ? 0 : 1;
  }

 private:
  void send(unsigned to, Message* message) {
    Mailbox& box = boxes_[to];
    {
      std::lock_guard<std::mutex> lock(box.mutex);
      box.queue.push_back(message);
    }
    box.arrived.notify_one();
  }

  // The route: a function of the message and its hop only, never the self, and never the
  // origin for the last hop (so the final free is always cross-thread).
  unsigned next_thread(const Message& m, unsigned self) const {
    unsigned candidate = static_cast<unsigned>(mix(m.id * 31 + m.hops_left) % threads_);
    while (candidate == self || (m.hops_left == 1 && candidate == m.origin)) candidate = (candidate + 1) % threads_;
    return candidate;
  }

  void handle(unsigned self, Message* m, Totals& totals) {
    ++totals.handled;
    const uint64_t seed = m->id * 1000 + m->hops_left;
    if (stress_mismatches(m->payload, m->size, seed) != 0) ++totals.corrupt;
    totals.checksum += mix(seed ^ m->size);
    m->trail.push_back(self);
    --m->hops_left;
    if (m->hops_left == 0) {
      uint64_t route = 0;
      for (uint32_t t : m->trail) route = route * 131 + t;
      totals.checksum += route;
      const unsigned origin = m->origin;
      std::free(m->payload);
      delete m;
      ++totals.freed;
      in_flight_[origin].fetch_sub(1, std::memory_order_acq_rel);
      outstanding_.fetch_sub(1, std::memory_order_acq_rel);
      return;
    }
    if (mix(seed) % 3 == 0) {  // grow or shrink on the way
      const size_t size = 16 + mix(seed + 1) % 6000;
      auto* moved = static_cast<unsigned char*>(std::realloc(m->payload, size));
      if (moved == nullptr) std::abort();
      m->payload = moved;
      m->size = size;
      ++totals.reallocated;
    }
    stress_fill(m->payload, m->size, m->id * 1000 + m->hops_left);
    send(next_thread(*m, self), m);
  }

  // Handles what is queued; waits up to a millisecond for more when `wait` is set.
  void drain(unsigned self, Totals& totals, bool wait) {
    Mailbox& box = boxes_[self];
    std::deque<Message*> taken;
    {
      std::unique_lock<std::mutex> lock(box.mutex);
      if (wait && box.queue.empty()) box.arrived.wait_for(lock, std::chrono::milliseconds(1));
      taken.swap(box.queue);
    }
    for (Message* m : taken) handle(self, m, totals);
  }

  void work(unsigned self, std::vector<void**>& held) {
    Totals& totals = totals_[self];
    // Phase 1: hold blocks, then free the neighbour's (allocated on another thread).
    held[self] = static_cast<void**>(std::calloc(kHeldBlocks, sizeof(void*)));
    if (held[self] == nullptr) std::abort();
    stress_hold_blocks(held[self], kHeldBlocks, kHeldSize, self * 100000ull);
    totals.allocation_calls += kHeldBlocks + 1;
    pthread_barrier_wait(&barrier_);
    pthread_barrier_wait(&barrier_);
    const unsigned neighbour = (self + 1) % threads_;
    totals.corrupt += stress_release_blocks(held[neighbour], kHeldBlocks, kHeldSize, neighbour * 100000ull);
    std::free(held[neighbour]);
    finished_holding_.fetch_add(1);
    while (finished_holding_.load() < threads_) std::this_thread::yield();  // nobody reuses `held` early

    // Phase 2: send this thread's messages, handling arrivals in between.
    for (unsigned i = 0; i < messages_; ++i) {
      auto* m = new Message;
      m->id = uint64_t{self} * messages_ + i;
      m->origin = self;
      m->hops_left = hops_;
      m->size = 1 + mix(m->id) % 3000;
      m->payload = static_cast<unsigned char*>(mix(m->id) & 1 ? std::malloc(m->size) : std::calloc(m->size, 1));
      if (m->payload == nullptr) std::abort();
      totals.allocation_calls += 2;
      stress_fill(m->payload, m->size, m->id * 1000 + m->hops_left);
      outstanding_.fetch_add(1, std::memory_order_acq_rel);
      in_flight_[self].fetch_add(1, std::memory_order_acq_rel);
      ++totals.sent;
      send(next_thread(*m, self), m);
      if (i % 16 == 0) drain(self, totals, false);
      // Back-pressure: a bounded number of this thread's messages in flight, as in a real
      // pipeline (and a heap of a few tens of MiB rather than everything at once).
      while (in_flight_[self].load(std::memory_order_acquire) > kMaxInFlight) drain(self, totals, true);
    }
    producers_done_.fetch_add(1, std::memory_order_acq_rel);
    // Keep relaying until every message of every thread has been freed.
    while (producers_done_.load(std::memory_order_acquire) < threads_ ||
           outstanding_.load(std::memory_order_acquire) > 0) {
      drain(self, totals, true);
    }
  }

  const unsigned threads_, messages_, hops_;
  std::vector<Mailbox> boxes_;
  std::vector<Totals> totals_;
  pthread_barrier_t barrier_;
  std::atomic<unsigned> finished_holding_{0};
  std::atomic<unsigned> producers_done_{0};
  std::atomic<int64_t> outstanding_{0};
  std::vector<std::atomic<int64_t>> in_flight_;  // per sending thread: sent, not yet freed
};

}  // namespace

int main(int argc, char** argv) {
  const unsigned threads = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : 48;
  const unsigned messages = argc > 2 ? static_cast<unsigned>(std::strtoul(argv[2], nullptr, 10)) : 4000;
  const unsigned hops = argc > 3 ? static_cast<unsigned>(std::strtoul(argv[3], nullptr, 10)) : 6;
  if (threads < 3 || threads > 1024 || messages == 0 || hops == 0 || hops > 1000) {
    std::fprintf(stderr, "usage: thread_relay [THREADS 3..1024] [MESSAGES_PER_THREAD] [HOPS 1..1000]\n");
    return 2;
  }
  Relay relay(threads, messages, hops);
  relay.run();
  return relay.report();
}

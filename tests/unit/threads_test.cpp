// Sixteen threads allocating, passing blocks to other threads and freeing what they receive,
// checked the same way on glibc and under libheapkeeper.so (see heapkeeper_probe.h).
//
// Each thread produces blocks into two single-producer/single-consumer rings read by two other
// threads, so almost every block is freed (or resized, then freed) by a thread other than the one
// that allocated it. The rings are static arrays: the workload's only heap traffic is the blocks.
// Every block carries a tag written by its producer, which the consumer verifies. Under heapkeeper
// the heap statistics must balance: every block allocated during the workload is freed by its end,
// so the live-block and live-byte counts come back to where they were.
#include <pthread.h>
#include <sched.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "tests/unit/heapkeeper_probe.h"

namespace {

using heapkeeper_test::BlockInfo;
using heapkeeper_test::heap_stats;
using heapkeeper_test::heapkeeper;
using heapkeeper_test::HeapStats;
using heapkeeper_test::IsTrackedBlock;

constexpr int kThreads = 16;
constexpr int kRingsPerProducer = 2;
constexpr uint64_t kRingCapacity = 1024;

// One producer, one consumer. Positions only grow; the slot is position % capacity.
struct alignas(64) Ring {
  std::atomic<uint64_t> head{0};              // next slot the consumer reads
  alignas(64) std::atomic<uint64_t> tail{0};  // next slot the producer writes
  alignas(64) void* slots[kRingCapacity];

  bool push(void* p) {
    const uint64_t t = tail.load(std::memory_order_relaxed);
    if (t - head.load(std::memory_order_acquire) == kRingCapacity) return false;
    slots[t % kRingCapacity] = p;
    tail.store(t + 1, std::memory_order_release);
    return true;
  }
  void* pop() {
    const uint64_t h = head.load(std::memory_order_relaxed);
    if (h == tail.load(std::memory_order_acquire)) return nullptr;
    void* p = slots[h % kRingCapacity];
    head.store(h + 1, std::memory_order_release);
    return p;
  }
  bool empty() const { return head.load(std::memory_order_acquire) == tail.load(std::memory_order_acquire); }
};

enum class Kind : uint32_t { kMalloc, kCalloc, kAligned, kNewArray };

struct Tag {  // at the start of every block
  uint32_t producer;
  Kind kind;
  uint64_t size;
  uint64_t serial;
  uint64_t check;  // a function of the fields above
};
constexpr size_t kMinimumSize = sizeof(Tag) + 1;

uint64_t check_of(const Tag& t) {
  return (t.serial * 0x9e3779b97f4a7c15ull) ^ (t.size << 17) ^ t.producer ^ (static_cast<uint64_t>(t.kind) << 60);
}

struct Xorshift {
  uint64_t state;
  uint64_t next() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  }
};

// Mostly small blocks, some up to 32 KiB, a few large ones.
size_t pick_size(Xorshift& random) {
  const uint64_t r = random.next();
  const uint64_t bucket = r % 1000;
  if (bucket < 700) return kMinimumSize + (r >> 10) % 256;
  if (bucket < 950) return 256 + (r >> 10) % 3840;
  if (bucket < 999) return 4096 + (r >> 10) % (28 * 1024);
  return 64 * 1024 + (r >> 10) % (960 * 1024);
}

class Workload {
 public:
  explicit Workload(uint64_t blocks_per_thread) : blocks_per_thread_(blocks_per_thread) {}

  // Runs the workload on kThreads fresh threads (small stacks, so that glibc's stack cache keeps
  // all of them and a second run reuses them) and waits for it.
  void run() {
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, 256 * 1024);
    pthread_t threads[kThreads];
    for (int t = 0; t < kThreads; ++t) {
      arguments_[t] = {this, t};
      ASSERT_EQ(pthread_create(&threads[t], &attributes, &Workload::thread_main, &arguments_[t]), 0);
    }
    for (pthread_t thread : threads) pthread_join(thread, nullptr);
    pthread_attr_destroy(&attributes);
  }

  uint64_t allocations() const { return allocations_.load(); }
  uint64_t frees() const { return frees_.load(); }
  uint64_t blocks_received() const { return received_.load(); }
  std::vector<std::string> errors() const {
    std::lock_guard<std::mutex> lock(errors_mutex_);
    return errors_;
  }

 private:
  struct Argument {
    Workload* workload;
    int index;
  };

  static void* thread_main(void* raw) {
    auto* argument = static_cast<Argument*>(raw);
    argument->workload->work(argument->index);
    return nullptr;
  }

  Ring& outgoing(int producer, int which) { return rings_[producer * kRingsPerProducer + which]; }
  // Thread t consumes from producer t-1's first ring and producer t-5's second.
  static int producer_of(int consumer, int which) { return (consumer + kThreads - (which == 0 ? 1 : 5)) % kThreads; }

  void error(const std::string& message) {
    if (error_count_.fetch_add(1) >= 10) return;  // the first few are enough
    std::lock_guard<std::mutex> lock(errors_mutex_);
    errors_.push_back(message);
  }

  void* allocate(int self, uint64_t serial, Xorshift& random, uint64_t& allocation_calls) {
    size_t size = pick_size(random);
    const auto kind = static_cast<Kind>(random.next() % 4);
    void* p = nullptr;
    switch (kind) {
      case Kind::kMalloc:
        p = malloc(size);
        break;
      case Kind::kCalloc: {
        p = calloc(1, size);
        if (p != nullptr) {
          const auto* bytes = static_cast<const unsigned char*>(p);
          if (bytes[sizeof(Tag)] != 0 || bytes[size - 1] != 0) error("calloc returned dirty memory");
        }
        break;
      }
      case Kind::kAligned:
        if (posix_memalign(&p, 64, size) != 0) p = nullptr;
        if (reinterpret_cast<uintptr_t>(p) % 64 != 0) error("posix_memalign result not aligned");
        break;
      case Kind::kNewArray:
        p = new char[size];
        break;
    }
    ++allocation_calls;
    if (p == nullptr) {
      error("allocation of " + std::to_string(size) + " bytes failed");
      return nullptr;
    }
    Tag tag{static_cast<uint32_t>(self), kind, size, serial, 0};
    tag.check = check_of(tag);
    std::memcpy(p, &tag, sizeof(tag));
    static_cast<unsigned char*>(p)[size - 1] = static_cast<unsigned char>(serial);
    return p;
  }

  void verify(int self, int producer, void* p) {
    Tag tag;
    std::memcpy(&tag, p, sizeof(tag));
    if (tag.check != check_of(tag) || tag.producer != static_cast<uint32_t>(producer)) {
      error("thread " + std::to_string(self) + " received a corrupt block from " + std::to_string(producer));
      return;
    }
    if (static_cast<unsigned char*>(p)[tag.size - 1] != static_cast<unsigned char>(tag.serial)) {
      error("last byte of a block changed");
    }
    const heapkeeper_test::Heapkeeper& hk = heapkeeper();
    if (hk.present() && tag.serial % 64 == 0) {
      BlockInfo info{};
      if (hk.block_info(static_cast<char*>(p) + tag.size - 1, &info) != 1 || info.start != p ||
          info.requested_size != tag.size) {
        error("block of " + std::to_string(tag.size) + " bytes from thread " + std::to_string(producer) +
              " is not tracked with its size");
      } else if (info.thread_index != producer_index_[producer].load(std::memory_order_relaxed)) {
        error("block from thread " + std::to_string(producer) + " recorded as allocated by heapkeeper thread " +
              std::to_string(info.thread_index) + ", expected " +
              std::to_string(producer_index_[producer].load(std::memory_order_relaxed)));
      }
    }
  }

  // Verifies, sometimes resizes, and frees a received block.
  void consume(int self, int producer, void* p, uint64_t& allocation_calls, uint64_t& free_calls) {
    verify(self, producer, p);
    Tag tag;
    std::memcpy(&tag, p, sizeof(tag));
    ++free_calls;
    received_.fetch_add(1, std::memory_order_relaxed);
    if (tag.kind == Kind::kNewArray) {
      delete[] static_cast<char*>(heapkeeper_test::opaque(p));  // (hides the realloc below from GCC)
      return;
    }
    if (tag.kind == Kind::kMalloc && tag.serial % 8 == 3) {
      const size_t new_size = tag.serial % 16 == 3 ? tag.size * 3 : kMinimumSize + tag.size / 3;
      void* q = realloc(p, new_size);
      ++allocation_calls;  // a realloc counts as one allocation and one free, moved or not
      ++free_calls;
      if (q == nullptr) {
        error("realloc failed");
        free(p);
        return;
      }
      Tag moved;
      std::memcpy(&moved, q, sizeof(moved));
      if (moved.check != tag.check) error("realloc lost the contents");
      free(q);
      return;
    }
    free(p);
  }

  void work(int self) {
    Xorshift random{0x1234567ull * static_cast<uint64_t>(self + 1) + 1};
    uint64_t allocation_calls = 0, free_calls = 0;
    // Learn heapkeeper's number for this thread before handing anything out.
    if (heapkeeper().present()) {
      void* probe = malloc(32);
      BlockInfo info{};
      if (heapkeeper().block_info(probe, &info) == 1) producer_index_[self].store(info.thread_index);
      free(probe);
      allocation_calls += 1;
      free_calls += 1;
    }
    started_.fetch_add(1);
    while (started_.load() < kThreads) sched_yield();

    bool producers_done[kRingsPerProducer] = {false, false};
    for (uint64_t serial = 0;;) {
      bool progress = false;
      if (serial < blocks_per_thread_) {
        void* p = allocate(self, serial, random, allocation_calls);
        if (p != nullptr) {
          Ring& ring = outgoing(self, static_cast<int>(serial % kRingsPerProducer));
          while (!ring.push(p)) {
            drain(self, producers_done, allocation_calls, free_calls);
            sched_yield();
          }
        }
        if (++serial == blocks_per_thread_) done_[self].store(true, std::memory_order_release);
        progress = true;
      }
      if (serial % 32 == 0 || serial >= blocks_per_thread_) {
        progress |= drain(self, producers_done, allocation_calls, free_calls);
      }
      if (serial >= blocks_per_thread_ && producers_done[0] && producers_done[1]) break;
      if (!progress) sched_yield();
    }
    allocations_.fetch_add(allocation_calls);
    frees_.fetch_add(free_calls);
  }

  // Consumes what has arrived; notes which producers have finished and been drained.
  bool drain(int self, bool* producers_done, uint64_t& allocation_calls, uint64_t& free_calls) {
    bool progress = false;
    for (int which = 0; which < kRingsPerProducer; ++which) {
      if (producers_done[which]) continue;
      const int producer = producer_of(self, which);
      Ring& ring = outgoing(producer, which);
      // Read "done" before looking at the ring: if it was done and the ring is then empty, nothing
      // more can arrive.
      const bool finished = done_[producer].load(std::memory_order_acquire);
      for (int i = 0; i < 64; ++i) {
        void* p = ring.pop();
        if (p == nullptr) break;
        consume(self, producer, p, allocation_calls, free_calls);
        progress = true;
      }
      if (finished && ring.empty()) producers_done[which] = true;
    }
    return progress;
  }

  const uint64_t blocks_per_thread_;
  Ring rings_[kThreads * kRingsPerProducer];
  Argument arguments_[kThreads];
  std::atomic<bool> done_[kThreads] = {};
  std::atomic<uint32_t> producer_index_[kThreads] = {};
  std::atomic<int> started_{0};
  std::atomic<uint64_t> allocations_{0}, frees_{0}, received_{0};
  std::atomic<int> error_count_{0};
  mutable std::mutex errors_mutex_;
  std::vector<std::string> errors_;
};

uint64_t blocks_per_thread() {
  if (const char* text = getenv("THREADS_TEST_BLOCKS_PER_THREAD")) return std::strtoull(text, nullptr, 10);
  return 150'000;
}

TEST(Threads, HeapkeeperIsLoadedExactlyWhenPreloaded) {
  EXPECT_EQ(heapkeeper().present(), heapkeeper_test::heapkeeper_expected());
}

TEST(Threads, CrossThreadFreesBalanceTheHeap) {
  // A first, small round creates the threads' stacks once: glibc keeps them (and the blocks it
  // allocated for their TLS) in its stack cache, where the measured round finds them again.
  auto warm_up = std::make_unique<Workload>(1000);
  warm_up->run();
  ASSERT_TRUE(warm_up->errors().empty()) << warm_up->errors().front();
  warm_up.reset();

  auto workload = std::make_unique<Workload>(blocks_per_thread());
  const HeapStats before = heap_stats();
  const auto started = std::chrono::steady_clock::now();
  workload->run();
  const auto elapsed = std::chrono::steady_clock::now() - started;
  const HeapStats after = heap_stats();

  for (const std::string& error : workload->errors()) ADD_FAILURE() << error;
  EXPECT_EQ(workload->blocks_received(), blocks_per_thread() * kThreads);
  EXPECT_EQ(workload->frees(), workload->allocations());
  std::cout << "[ info     ] " << workload->allocations() + workload->frees() << " allocation calls and frees in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms"
            << (heapkeeper().present() ? " under heapkeeper" : " on glibc") << std::endl;

  if (!heapkeeper().present()) return;
  for (const HeapStats* s : {&before, &after}) {
    EXPECT_EQ(s->total_allocations - s->total_frees, s->live_blocks);
    EXPECT_GE(s->peak_live_bytes, s->live_bytes);
  }
  EXPECT_EQ(after.live_blocks, before.live_blocks) << "blocks allocated during the workload are still live";
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_GE(after.total_allocations - before.total_allocations, workload->allocations());
  EXPECT_GE(after.total_frees - before.total_frees, workload->frees());
  EXPECT_GE(after.threads_seen - before.threads_seen, static_cast<uint64_t>(kThreads));
  EXPECT_EQ(after.bad_frees, before.bad_frees);
}

// Allocation and free while a thread exits: in C++ thread_local destructors (run first) and in
// pthread-key destructors (the program's key is created after heapkeeper's and jemalloc's, so each
// round runs its destructor after theirs). Both must be tracked like any other allocation: with
// the thread's own state (its thread number), a stack, counted, and freeable from another thread.
pthread_key_t g_late_key;
std::atomic<void*> g_left_by_destructor[kThreads];
std::atomic<void*> g_left_by_thread_local[kThreads];

constexpr size_t key_block_size(size_t index) { return 300 + index; }
constexpr size_t thread_local_block_size(size_t index) { return 100 + index; }

void late_destructor(void* value) {
  const auto index = reinterpret_cast<uintptr_t>(value) - 1;
  void* scratch = malloc(200);
  std::memset(scratch, 1, 200);
  free(scratch);
  char* copy = strdup("allocated while the thread is exiting");
  free(copy);
  void* kept = calloc(1, key_block_size(index));
  g_left_by_destructor[index].store(kept);
}

struct KeepsABlockAtExit {
  uintptr_t index = 0;  // 1 + the thread's number; 0: nothing to do
  ~KeepsABlockAtExit() {
    if (index != 0) g_left_by_thread_local[index - 1].store(malloc(thread_local_block_size(index - 1)));
  }
};
thread_local KeepsABlockAtExit t_keeps_a_block;

void* set_late_key(void* argument) {
  pthread_setspecific(g_late_key, argument);
  t_keeps_a_block.index = reinterpret_cast<uintptr_t>(argument);
  void* block = malloc(64);
  heapkeeper_test::escape(block);
  free(block);
  return nullptr;
}

// With heapkeeper: `p` is tracked, of `size` bytes, and was allocated with its thread's own state.
testing::AssertionResult IsTrackedOnItsThread(const void* p, size_t size) {
  testing::AssertionResult tracked = IsTrackedBlock(p, size);
  if (!tracked || !heapkeeper().present()) return tracked;
  BlockInfo info{};
  heapkeeper().block_info(p, &info);
  if (info.thread_index == 0) return testing::AssertionFailure() << p << " was allocated after its thread was retired";
  return testing::AssertionSuccess();
}

TEST(Threads, AllocationsInKeyAndThreadLocalDestructorsAreTracked) {
  ASSERT_EQ(pthread_key_create(&g_late_key, late_destructor), 0);
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setstacksize(&attributes, 256 * 1024);
  auto run_threads = [&attributes] {
    pthread_t threads[kThreads];
    for (uintptr_t t = 0; t < kThreads; ++t) {
      ASSERT_EQ(pthread_create(&threads[t], &attributes, set_late_key, reinterpret_cast<void*>(t + 1)), 0);
    }
    for (pthread_t thread : threads) pthread_join(thread, nullptr);
  };
  run_threads();  // warm glibc's stack cache, as above
  for (auto& slot : g_left_by_destructor) free(slot.exchange(nullptr));
  for (auto& slot : g_left_by_thread_local) free(slot.exchange(nullptr));

  const HeapStats before = heap_stats();
  run_threads();
  const HeapStats during = heap_stats();
  for (size_t t = 0; t < kThreads; ++t) {
    void* kept = g_left_by_destructor[t].exchange(nullptr);
    ASSERT_NE(kept, nullptr) << "the key destructor of thread " << t << " did not run";
    const auto* bytes = static_cast<const unsigned char*>(kept);
    for (size_t i = 0; i < key_block_size(t); ++i) ASSERT_EQ(bytes[i], 0) << "calloc in a key destructor";
    EXPECT_TRUE(IsTrackedOnItsThread(kept, key_block_size(t))) << "calloc in the key destructor of thread " << t;
    free(kept);
    void* kept_by_thread_local = g_left_by_thread_local[t].exchange(nullptr);
    ASSERT_NE(kept_by_thread_local, nullptr) << "the thread_local destructor of thread " << t << " did not run";
    EXPECT_TRUE(IsTrackedOnItsThread(kept_by_thread_local, thread_local_block_size(t)))
        << "malloc in the thread_local destructor of thread " << t;
    free(kept_by_thread_local);
  }
  const HeapStats after = heap_stats();
  pthread_attr_destroy(&attributes);
  pthread_key_delete(g_late_key);
  if (!heapkeeper().present()) return;
  EXPECT_EQ(during.live_blocks - before.live_blocks, 2u * kThreads) << "the blocks kept by the destructors";
  EXPECT_EQ(after.live_blocks, before.live_blocks);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  // Per thread: malloc in the thread, then malloc, strdup and calloc in the key destructor and
  // malloc in the thread_local destructor.
  EXPECT_GE(during.total_allocations - before.total_allocations, 5u * kThreads);
  EXPECT_EQ(after.bad_frees, before.bad_frees);
  EXPECT_EQ(after.total_allocations - after.total_frees, after.live_blocks);
}

}  // namespace

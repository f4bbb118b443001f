// Allocation churn from many threads, with blocks freed by a thread other than the one that
// allocated them.
//
// Usage: churn_threads [THREADS] [ROUNDS]
// Each thread runs a deterministic sequence (its own xorshift generator) of malloc, calloc,
// realloc (growing and shrinking), free, new/delete of objects, new[]/delete[], and STL containers.
// Every block is filled with a pattern derived from its identity; whoever frees it checks the
// pattern first. Every few steps a thread hands a block to its neighbour's queue, and the neighbour
// verifies and frees it, so most frees of those blocks run on another thread than the allocation.
// The output (per-thread and total checksums, the corruption count) does not depend on scheduling:
// the checksums of handed-over blocks are summed, and the neighbour drains its queue after every
// producer has finished.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Handover {
  unsigned char* data;
  size_t size;
  uint64_t seed;
};

struct Mailbox {
  std::mutex mutex;
  std::deque<Handover> queue;
};

struct ThreadResult {
  uint64_t own_checksum = 0;
  uint64_t received_checksum = 0;
  uint64_t received_blocks = 0;
  uint64_t sent_blocks = 0;
  uint64_t corrupt = 0;
};

class Xorshift {
 public:
  explicit Xorshift(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  size_t below(size_t limit) { return static_cast<size_t>(next() % limit); }

 private:
  uint64_t state_;
};

unsigned char pattern_byte(uint64_t seed, size_t index) {
  return static_cast<unsigned char>((seed * 31 + index * 7) ^ (seed >> 3));
}

void fill(unsigned char* data, size_t size, uint64_t seed) {
  for (size_t i = 0; i < size; ++i) data[i] = pattern_byte(seed, i);
}

// Checks the pattern and returns a checksum of the block, counting mismatches in `corrupt`.
uint64_t verify(const unsigned char* data, size_t size, uint64_t seed, uint64_t& corrupt) {
  uint64_t sum = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] != pattern_byte(seed, i)) ++corrupt;
    sum = (sum ^ data[i]) * 1099511628211ull;
  }
  return sum;
}

struct Node {
  uint64_t value;
  std::string label;
  std::vector<uint32_t> items;
  virtual ~Node() = default;
  virtual uint64_t weight() const { return value + label.size() + items.size(); }
};

struct HeavyNode : Node {
  std::map<uint32_t, std::string> table;
  uint64_t weight() const override { return Node::weight() * 3 + table.size(); }
};

void drain(Mailbox& box, ThreadResult& result) {
  std::deque<Handover> taken;
  {
    std::lock_guard<std::mutex> lock(box.mutex);
    taken.swap(box.queue);
  }
  for (const Handover& h : taken) {
    result.received_checksum += verify(h.data, h.size, h.seed, result.corrupt);
    ++result.received_blocks;
    std::free(h.data);
  }
}

void churn(unsigned index, unsigned rounds, Mailbox& own_box, Mailbox& neighbour_box, ThreadResult& result) {
  Xorshift random(index + 1);
  constexpr size_t kSlots = 64;
  unsigned char* slots[kSlots] = {};
  size_t sizes[kSlots] = {};
  uint64_t seeds[kSlots] = {};
  std::vector<std::unique_ptr<Node>> nodes;
  uint64_t serial = static_cast<uint64_t>(index) << 40;

  for (unsigned round = 0; round < rounds; ++round) {
    const size_t slot = random.below(kSlots);
    const unsigned action = static_cast<unsigned>(random.below(10));
    if (slots[slot] == nullptr) {
      size_t size = 1 + random.below(action < 8 ? 512 : 70000);
      uint64_t seed = ++serial;
      auto* data = static_cast<unsigned char*>(action % 2 == 0 ? std::malloc(size) : std::calloc(size, 1));
      if (data == nullptr) std::abort();
      if (action % 2 == 1) {
        for (size_t i = 0; i < size; ++i) {
          if (data[i] != 0) ++result.corrupt;
        }
      }
      fill(data, size, seed);
      slots[slot] = data;
      sizes[slot] = size;
      seeds[slot] = seed;
    } else if (action < 3) {
      // Grow or shrink, then check that the common prefix survived.
      size_t new_size = 1 + random.below(action == 0 ? 200000 : 600);
      auto* moved = static_cast<unsigned char*>(std::realloc(slots[slot], new_size));
      if (moved == nullptr) std::abort();
      size_t kept = new_size < sizes[slot] ? new_size : sizes[slot];
      result.own_checksum += verify(moved, kept, seeds[slot], result.corrupt);
      uint64_t seed = ++serial;
      fill(moved, new_size, seed);
      slots[slot] = moved;
      sizes[slot] = new_size;
      seeds[slot] = seed;
    } else if (action < 5) {
      // Hand the block to the neighbour, which checks and frees it.
      {
        std::lock_guard<std::mutex> lock(neighbour_box.mutex);
        neighbour_box.queue.push_back(Handover{slots[slot], sizes[slot], seeds[slot]});
      }
      ++result.sent_blocks;
      slots[slot] = nullptr;
    } else {
      result.own_checksum += verify(slots[slot], sizes[slot], seeds[slot], result.corrupt);
      std::free(slots[slot]);
      slots[slot] = nullptr;
    }

    // C++ objects: new/delete through virtual destructors, containers, arrays.
    if (round % 7 == 0) {
      std::unique_ptr<Node> node;
      if (random.below(3) == 0) {
        auto heavy = std::make_unique<HeavyNode>();
        for (uint32_t k = 0; k < 8; ++k)
          heavy->table[k * 13 + round % 5] = std::string(k + 20, static_cast<char>('a' + k));
        node = std::move(heavy);
      } else {
        node = std::make_unique<Node>();
      }
      node->value = random.next() % 1000;
      node->label = "node-" + std::to_string(round) + "-" + std::to_string(index);
      for (uint32_t k = 0; k < round % 40; ++k) node->items.push_back(k * k);
      nodes.push_back(std::move(node));
      if (nodes.size() > 50) {
        size_t victim = random.below(nodes.size());
        result.own_checksum += nodes[victim]->weight();
        nodes.erase(nodes.begin() + static_cast<std::ptrdiff_t>(victim));
      }
    }
    if (round % 11 == 0) {
      size_t count = 1 + random.below(300);
      auto* numbers = new uint64_t[count];
      for (size_t k = 0; k < count; ++k) numbers[k] = k * round;
      for (size_t k = 0; k < count; ++k) result.own_checksum += numbers[k] & 0xff;
      delete[] numbers;
    }
    if (round % 64 == 0) drain(own_box, result);
  }

  for (auto& node : nodes) result.own_checksum += node->weight();
  for (size_t slot = 0; slot < kSlots; ++slot) {
    if (slots[slot] == nullptr) continue;
    result.own_checksum += verify(slots[slot], sizes[slot], seeds[slot], result.corrupt);
    std::free(slots[slot]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned threads = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : 4;
  const unsigned rounds = argc > 2 ? static_cast<unsigned>(std::strtoul(argv[2], nullptr, 10)) : 20000;
  if (threads == 0 || threads > 256) {
    std::fprintf(stderr, "usage: churn_threads [THREADS 1..256] [ROUNDS]\n");
    return 2;
  }
  std::vector<Mailbox> boxes(threads);
  std::vector<ThreadResult> results(threads);
  std::vector<std::thread> workers;
  std::atomic<unsigned> finished{0};
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      churn(t, rounds, boxes[t], boxes[(t + 1) % threads], results[t]);
      finished.fetch_add(1);
    });
  }
  for (auto& worker : workers) worker.join();
  // Every producer is done: drain what is left, each box on its own thread again (the frees stay
  // cross-thread with respect to the allocating neighbour).
  std::vector<std::thread> drainers;
  for (unsigned t = 0; t < threads; ++t) drainers.emplace_back([&, t] { drain(boxes[t], results[t]); });
  for (auto& drainer : drainers) drainer.join();

  uint64_t total = 0, corrupt = 0, sent = 0, received = 0;
  for (unsigned t = 0; t < threads; ++t) {
    const ThreadResult& r = results[t];
    std::printf("thread %u: own=%016llx received=%016llx blocks_in=%llu blocks_out=%llu\n", t,
                static_cast<unsigned long long>(r.own_checksum), static_cast<unsigned long long>(r.received_checksum),
                static_cast<unsigned long long>(r.received_blocks), static_cast<unsigned long long>(r.sent_blocks));
    total += r.own_checksum + r.received_checksum;
    corrupt += r.corrupt;
    sent += r.sent_blocks;
    received += r.received_blocks;
  }
  std::printf("threads=%u rounds=%u finished=%u total=%016llx handed_over=%llu/%llu corrupt=%llu\n", threads, rounds,
              finished.load(), static_cast<unsigned long long>(total), static_cast<unsigned long long>(received),
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(corrupt));
  return corrupt == 0 && sent == received ? 0 : 1;
}

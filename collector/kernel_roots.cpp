// Implementation of the kernel roots (see kernel_roots.h): an open-addressing table in internal
// memory, keyed by what names a registration (epoll fd and watched fd, timer id, aiocb address,
// libaio context and iocb address, thread), holding the pointers handed over with it.
//
// The table only grows: a full one is copied into one twice its size and left mapped, so the
// scanner, which reads whichever table was current without a lock, never reads unmapped memory.
// Removed entries become tombstones with their pointers and handle zeroed, so they keep nothing
// alive.
#include "collector/kernel_roots.h"

#include <linux/aio_abi.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "allocator/internal_mappings.h"
#include "allocator/thread_registry.h"

namespace heapkeeper::collect {
namespace {

enum Kind : uint64_t {
  kEmpty = 0,
  kEpoll = 1,
  kTimer = 2,
  kAio = 3,
  kAltStack = 4,
  kKernelAio = 5,  // libaio's io_submit: the owner is the context (an address below 2^56)
  kTombstone = ~uint64_t{0},
};

struct Entry {
  uint64_t key;      // kind in the top byte, an owner (epoll fd, libaio context) below; or kEmpty, kTombstone
  uint64_t handle;   // the watched fd, timer id, aiocb or iocb address, or thread
  uint64_t held[3];  // the pointers the kernel holds for this registration
};

struct Table {
  size_t capacity;  // a power of two
  size_t used;      // live entries and tombstones
  Entry entries[1];
};

constexpr size_t kInitialCapacity = 64;

std::atomic<Table*> g_table{nullptr};
std::atomic<size_t> g_live{0};
// The lock's holder, named by the address of a thread-local byte. A signal handler that interrupts
// its own thread inside the lock does not wait for itself: its update is skipped (see below).
std::atomic<const void*> g_owner{nullptr};
thread_local char t_identity;

uint64_t key_of(Kind kind, int owner) { return (uint64_t{kind} << 56) | static_cast<uint32_t>(owner); }
uint64_t key_of(const io_context* context) {
  return (uint64_t{kKernelAio} << 56) | (reinterpret_cast<uintptr_t>(context) & ((uint64_t{1} << 56) - 1));
}
Kind kind_of(uint64_t key) { return static_cast<Kind>(key >> 56); }

size_t slot_of(uint64_t key, uint64_t handle, size_t capacity) {
  uint64_t h = (key * 0x9e3779b97f4a7c15ull) ^ handle;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return static_cast<size_t>(h) & (capacity - 1);
}

Table* map_table(size_t capacity) {
  const size_t bytes = (offsetof(Table, entries) + capacity * sizeof(Entry) + 4095) & ~size_t{4095};
  auto* table = static_cast<Table*>(alloc::map_internal(bytes, false));
  if (table == nullptr) return nullptr;
  table->capacity = capacity;
  table->used = 0;
  return table;  // mmap's zeroes are empty entries
}

class TableLock {
 public:
  TableLock() {
    const void* self = &t_identity;
    if (g_owner.load(std::memory_order_relaxed) == self) return;  // a handler inside its own thread's update
    for (unsigned spins = 0;; ++spins) {
      const void* expected = nullptr;
      if (g_owner.compare_exchange_weak(expected, self, std::memory_order_acquire, std::memory_order_relaxed)) break;
      if (spins > 64) sched_yield();
    }
    held_ = true;
  }
  ~TableLock() {
    if (held_) g_owner.store(nullptr, std::memory_order_release);
  }
  TableLock(const TableLock&) = delete;
  TableLock& operator=(const TableLock&) = delete;
  bool held() const { return held_; }

 private:
  bool held_ = false;
};

// The stores a scanner may see half-done are single aligned words: the pointers are written before
// the key that makes the entry count, and zeroed after it stops counting.
void store(uint64_t& word, uint64_t value) { __atomic_store_n(&word, value, __ATOMIC_RELEASE); }

Entry* find(Table* table, uint64_t key, uint64_t handle) {
  if (table == nullptr) return nullptr;
  const size_t mask = table->capacity - 1;
  for (size_t i = slot_of(key, handle, table->capacity), probes = 0; probes < table->capacity;
       i = (i + 1) & mask, ++probes) {
    Entry& e = table->entries[i];
    if (e.key == kEmpty) return nullptr;
    if (e.key == key && e.handle == handle) return &e;
  }
  return nullptr;
}

void insert_fresh(Table* table, uint64_t key, uint64_t handle, const uint64_t held[3]) {
  const size_t mask = table->capacity - 1;
  for (size_t i = slot_of(key, handle, table->capacity);; i = (i + 1) & mask) {
    Entry& e = table->entries[i];
    if (e.key != kEmpty && e.key != kTombstone) continue;
    if (e.key == kEmpty) ++table->used;
    store(e.handle, handle);
    for (int k = 0; k < 3; ++k) store(e.held[k], held[k]);
    store(e.key, key);
    return;
  }
}

// A table with room for one more entry (at most half full, tombstones included), or nullptr.
Table* table_with_room() {
  Table* table = g_table.load(std::memory_order_relaxed);
  if (table != nullptr && (table->used + 1) * 2 <= table->capacity) return table;
  const size_t live = g_live.load(std::memory_order_relaxed);
  size_t capacity = table == nullptr ? kInitialCapacity : table->capacity;
  while ((live + 1) * 4 > capacity) capacity *= 2;  // rehashed to at most a quarter full
  Table* bigger = map_table(capacity);
  if (bigger == nullptr) return nullptr;
  if (table != nullptr) {
    for (size_t i = 0; i < table->capacity; ++i) {
      const Entry& e = table->entries[i];
      if (e.key != kEmpty && e.key != kTombstone) insert_fresh(bigger, e.key, e.handle, e.held);
    }
  }
  // The old table stays mapped (a scan may be reading it); as an internal mapping it is no root.
  g_table.store(bigger, std::memory_order_release);
  return bigger;
}

void put_keyed(uint64_t key, uint64_t handle, uint64_t a, uint64_t b, uint64_t c) {
  TableLock lock;
  if (!lock.held()) return;
  const uint64_t held[3] = {a, b, c};
  if (Entry* e = find(g_table.load(std::memory_order_relaxed), key, handle)) {
    for (int k = 0; k < 3; ++k) store(e->held[k], held[k]);
    return;
  }
  Table* table = table_with_room();
  if (table == nullptr) return;  // out of memory: the registration goes unrecorded
  insert_fresh(table, key, handle, held);
  g_live.fetch_add(1, std::memory_order_relaxed);
}

void put(Kind kind, int owner, uint64_t handle, uint64_t a, uint64_t b, uint64_t c) {
  put_keyed(key_of(kind, owner), handle, a, b, c);
}

void erase_entry(Entry& e) {
  store(e.key, kTombstone);
  store(e.handle, 0);  // an aiocb or iocb address: a root too until here
  for (uint64_t& word : e.held) store(word, 0);
  g_live.fetch_sub(1, std::memory_order_relaxed);
}

// Removes the entry; returns whether there was one, and its pointers in `previous`.
bool take_keyed(uint64_t key, uint64_t handle, uint64_t previous[3] = nullptr) {
  TableLock lock;
  if (!lock.held()) return false;
  Entry* e = find(g_table.load(std::memory_order_relaxed), key, handle);
  if (e == nullptr) return false;
  if (previous != nullptr) std::memcpy(previous, e->held, sizeof(e->held));
  erase_entry(*e);
  return true;
}

bool take(Kind kind, int owner, uint64_t handle, uint64_t previous[3] = nullptr) {
  return take_keyed(key_of(kind, owner), handle, previous);
}

bool lookup(Kind kind, int owner, uint64_t handle, uint64_t previous[3]) {
  TableLock lock;
  if (!lock.held()) return false;
  Entry* e = find(g_table.load(std::memory_order_relaxed), key_of(kind, owner), handle);
  if (e == nullptr) return false;
  std::memcpy(previous, e->held, sizeof(e->held));
  return true;
}

template <typename Predicate>
void erase_if(Predicate&& predicate) {
  TableLock lock;
  if (!lock.held()) return;
  Table* table = g_table.load(std::memory_order_relaxed);
  if (table == nullptr) return;
  for (size_t i = 0; i < table->capacity; ++i) {
    Entry& e = table->entries[i];
    if (e.key != kEmpty && e.key != kTombstone && predicate(e)) erase_entry(e);
  }
}

uint64_t as_word(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer); }

uint64_t thread_handle() { return static_cast<uint64_t>(pthread_self()); }

// Runs `work` with errno as the original call left it.
template <typename Work>
void keeping_errno(Work&& work) {
  const int saved = errno;
  work();
  errno = saved;
}

// The sigevent's value matters only when something is delivered with it.
uint64_t notified_value(const sigevent* event) {
  if (event == nullptr || event->sigev_notify == SIGEV_NONE) return 0;
  return as_word(event->sigev_value.sival_ptr);
}

}  // namespace

int epoll_create_with_roots(EpollCreateFunction original, int size) noexcept {
  const int fd = original(size);
  // A new epoll instance with this number means the old one is closed, registrations and all.
  if (fd >= 0) keeping_errno([&] { erase_if([&](const Entry& e) { return e.key == key_of(kEpoll, fd); }); });
  return fd;
}

int epoll_create1_with_roots(EpollCreate1Function original, int flags) noexcept {
  const int fd = original(flags);
  if (fd >= 0) keeping_errno([&] { erase_if([&](const Entry& e) { return e.key == key_of(kEpoll, fd); }); });
  return fd;
}

int epoll_ctl_with_roots(EpollCtlFunction original, int epfd, int op, int fd, epoll_event* event) noexcept {
  if (op == EPOLL_CTL_DEL) {
    const int result = original(epfd, op, fd, event);
    if (result == 0) keeping_errno([&] { take(kEpoll, epfd, static_cast<uint64_t>(fd)); });
    return result;
  }
  if ((op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD) || event == nullptr) return original(epfd, op, fd, event);
  // Recorded before the kernel holds it (an event may be delivered, and the program's own copy
  // dropped, before the call returns); the previous value comes back if the call fails.
  uint64_t data;
  std::memcpy(&data, &event->data, sizeof(data));  // epoll_event is packed on x86-64
  uint64_t previous[3];
  const bool had = lookup(kEpoll, epfd, static_cast<uint64_t>(fd), previous);
  put(kEpoll, epfd, static_cast<uint64_t>(fd), data, 0, 0);
  const int result = original(epfd, op, fd, event);
  if (result != 0) {
    keeping_errno([&] {
      if (had)
        put(kEpoll, epfd, static_cast<uint64_t>(fd), previous[0], previous[1], previous[2]);
      else
        take(kEpoll, epfd, static_cast<uint64_t>(fd));
    });
  }
  return result;
}

int timer_create_with_roots(TimerCreateFunction original, clockid_t clock, sigevent* event, timer_t* timer) noexcept {
  const int result = original(clock, event, timer);
  // Recorded once the timer exists: it cannot fire before timer_settime, which needs its id.
  if (result == 0 && timer != nullptr && notified_value(event) != 0) {
    keeping_errno(
        [&] { put(kTimer, 0, as_word(*timer), notified_value(event), as_word(event->sigev_notify_attributes), 0); });
  }
  return result;
}

int timer_delete_with_roots(TimerDeleteFunction original, timer_t timer) noexcept {
  const int result = original(timer);
  if (result == 0) keeping_errno([&] { take(kTimer, 0, as_word(timer)); });
  return result;
}

namespace {

// The aiocb itself (the key, scanned like the pointers), its notification value and its buffer.
void put_request(const aiocb* request, uint64_t list_value) {
  put(kAio, 0, as_word(request), notified_value(&request->aio_sigevent), as_word(const_cast<void*>(request->aio_buf)),
      list_value);
}

}  // namespace

int aio_request_with_roots(AioRequestFunction original, aiocb* request) noexcept {
  if (request == nullptr) return original(request);
  put_request(request, 0);  // before: the request may complete and notify before the call returns
  const int result = original(request);
  if (result != 0) keeping_errno([&] { take(kAio, 0, as_word(request)); });
  return result;
}

int aio_fsync_with_roots(AioFsyncFunction original, int operation, aiocb* request) noexcept {
  if (request == nullptr) return original(operation, request);
  put_request(request, 0);
  const int result = original(operation, request);
  if (result != 0) keeping_errno([&] { take(kAio, 0, as_word(request)); });
  return result;
}

ssize_t aio_return_with_roots(AioReturnFunction original, aiocb* request) noexcept {
  const ssize_t result = original(request);
  // The request is over: its aiocb, buffer and notification value are the program's alone again.
  keeping_errno([&] { take(kAio, 0, as_word(request)); });
  return result;
}

int lio_listio_with_roots(LioListioFunction original, int mode, aiocb* const list[], int count,
                          sigevent* event) noexcept {
  // The list's own notification value is kept with each of its requests, until the last is returned.
  const uint64_t list_value = mode == LIO_NOWAIT ? notified_value(event) : 0;
  for (int i = 0; list != nullptr && i < count; ++i) {
    if (list[i] != nullptr && list[i]->aio_lio_opcode != LIO_NOP) put_request(list[i], list_value);
  }
  const int result = original(mode, list, count, event);
  // On failure some requests may still have been queued (EIO): those stay until aio_return.
  if (result != 0 && errno != EIO) {
    keeping_errno([&] {
      for (int i = 0; list != nullptr && i < count; ++i) {
        if (list[i] != nullptr) take(kAio, 0, as_word(list[i]));
      }
    });
  }
  return result;
}

int sigaltstack_with_roots(SigaltstackFunction original, const stack_t* stack, stack_t* old) noexcept {
  const int result = original(stack, old);
  if (result == 0 && stack != nullptr) {
    // Where stack capture looks for its room when a handler runs there (no system call then).
    const bool disabled = (stack->ss_flags & SS_DISABLE) != 0;
    alloc::tls_thread.alt_stack_low = disabled ? 0 : reinterpret_cast<uintptr_t>(stack->ss_sp);
    alloc::tls_thread.alt_stack_high = disabled ? 0 : reinterpret_cast<uintptr_t>(stack->ss_sp) + stack->ss_size;
    keeping_errno([&] {
      if ((stack->ss_flags & SS_DISABLE) != 0)
        take(kAltStack, 0, thread_handle());
      else
        put(kAltStack, 0, thread_handle(), as_word(stack->ss_sp), 0, 0);
    });
  }
  return result;
}

// libaio's kernel AIO. Each iocb is recorded before io_submit hands it over: another thread's
// io_getevents may return its completion, and the program drop its last pointer, before io_submit
// returns. The iocb itself (the handle), its data and its buffer are roots until its event comes
// back. The buffer word is the kernel's aio_buf: the data buffer, a vectored request's iovec array,
// a poll request's event mask (a small number, no pointer).
int io_submit_with_roots(IoSubmitFunction original, io_context* context, long count, iocb** requests) noexcept {
  if (requests == nullptr || count <= 0) return original(context, count, requests);
  const uint64_t key = key_of(context);
  keeping_errno([&] {
    for (long i = 0; i < count; ++i) {
      const iocb* request = requests[i];
      if (request != nullptr) put_keyed(key, as_word(request), request->aio_data, request->aio_buf, 0);
    }
  });
  const int result = original(context, count, requests);
  // The kernel took the first `result` (a negative result: none); the others are not its.
  keeping_errno([&] {
    for (long i = result < 0 ? 0 : result; i < count; ++i) {
      if (requests[i] != nullptr) take_keyed(key, as_word(requests[i]));
    }
  });
  return result;
}

int io_cancel_with_roots(IoCancelFunction original, io_context* context, iocb* request, io_event* event) noexcept {
  const int result = original(context, request, event);
  // Success hands the completion back here (older kernels; newer ones say -EINPROGRESS and deliver
  // it through io_getevents, where it is removed).
  if (result == 0) keeping_errno([&] { take_keyed(key_of(context), as_word(request)); });
  return result;
}

int io_destroy_with_roots(IoDestroyFunction original, io_context* context) noexcept {
  const int result = original(context);
  // The kernel cancelled and waited for every request of the context: none comes back.
  if (result == 0) {
    const uint64_t key = key_of(context);
    keeping_errno([&] { erase_if([&](const Entry& e) { return e.key == key; }); });
  }
  return result;
}

void io_events_returned(const io_context* context, const io_event* events, long count) noexcept {
  if (events == nullptr || count <= 0) return;
  const uint64_t key = key_of(context);
  keeping_errno([&] {
    for (long i = 0; i < count; ++i) take_keyed(key, events[i].obj);
  });
}

void kernel_root_ranges(void (*visit)(uintptr_t start, uintptr_t end, void* context), void* context) noexcept {
  const Table* table = g_table.load(std::memory_order_acquire);
  if (table == nullptr) return;
  const auto start = reinterpret_cast<uintptr_t>(&table->entries[0]);
  visit(start, start + table->capacity * sizeof(Entry), context);
}

size_t kernel_root_count() noexcept { return g_live.load(std::memory_order_relaxed); }

void kernel_roots_after_fork() noexcept {
  // The child has one thread: whoever held the lock in the parent is not there to release it.
  g_owner.store(nullptr, std::memory_order_relaxed);
  // Timers, AIO requests and kernel AIO contexts are not inherited; the forking thread's alternate
  // stack is.
  const uint64_t self = thread_handle();
  erase_if([&](const Entry& e) {
    const Kind kind = kind_of(e.key);
    return kind == kTimer || kind == kAio || kind == kKernelAio || (kind == kAltStack && e.handle != self);
  });
}

}  // namespace heapkeeper::collect

// heapkeeper's threads follow the program's per-thread security state (see thread_credentials.h).
//
// Everything here is raw system calls: the sharing runs inside the program's own capset, prctl or
// syscall call (through libc's wrappers it would come back into those of heapkeeper's, and set the
// program's errno), and the following runs in heapkeeper's threads, whose waits must not be the
// program's wrapped blocking calls either.
#include "allocator/thread_credentials.h"

#include <linux/capability.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <ctime>

#include "allocator/engine.h"
#include "allocator/monotonic_clock.h"
#include "allocator/quiet_fork.h"
#include "allocator/raw_syscall.h"
#include "allocator/thread_registry.h"

namespace heapkeeper::alloc {
namespace {

// A thread's shareable state. A program with more than kMaxGroups supplementary groups has them
// shared only once it holds at most that many (dropping them all, the usual step, is shared).
constexpr uint32_t kMaxGroups = 256;
struct Credentials {
  uint32_t ids[6] = {};  // real, effective, saved uid; real, effective, saved gid
  uint32_t group_count = 0;
  uint32_t groups_shared = 0;  // 1: groups[] holds them all; 0: group_count of them, not held
  uint32_t groups[kMaxGroups] = {};
  uint32_t capabilities[6] = {};  // effective, permitted, inheritable: low words, then high
  uint32_t ambient[2] = {}, bounding[2] = {};
  uint32_t keep_capabilities = 0, securebits = 0, no_new_privileges = 0;
};
constexpr size_t kWords = sizeof(Credentials) / sizeof(uint32_t);
static_assert(sizeof(Credentials) % sizeof(uint32_t) == 0);

// The last shared state, as words under a sequence count (odd while written): a thread of
// heapkeeper's that follows late (after the sharer stopped waiting for it) may read it while the
// next sharer writes it.
std::atomic<uint32_t> g_sequence{0};
std::atomic<uint32_t> g_words[kWords];
std::atomic<uint32_t> g_epoch{0};    // states shared so far
std::atomic<uint32_t> g_wake{0};     // the futex heapkeeper's threads wait on
std::atomic<uint32_t> g_follows{0};  // the futex a sharer waits on: bumped by each follow
std::atomic<bool> g_sharing{false};  // one sharer at a time
std::atomic<int> g_starting{0};      // threads of heapkeeper's made but not yet registered

constexpr int kMaxWakes = 4;
void (*g_wakes[kMaxWakes])() = {};
std::atomic<int> g_wake_count{0};

constexpr int kMaxHandovers = 2;
void (*g_handovers[kMaxHandovers])(uint32_t, uint32_t) = {};
std::atomic<int> g_handover_count{0};

// glibc's SIGSETXID: the kernel's second real-time signal (glibc keeps 32 and 33 for itself).
constexpr int kSetxidSignal = 33;

bool bit(const uint32_t* words, unsigned index) { return (words[index / 32] >> (index % 32)) & 1; }

// Capabilities this kernel knows: PR_CAPBSET_READ fails (EINVAL) past the last. Counted once (the
// kernel's last capability does not change while it runs): a sharing read it anew every time,
// some 40 system calls of a program's every credential prctl.
unsigned known_capabilities() {
  static std::atomic<unsigned> known{0};  // count + 1; 0: not counted yet
  const unsigned cached = known.load(std::memory_order_relaxed);
  if (cached != 0) return cached - 1;
  unsigned count = 0;
  while (count < 64 && raw_syscall(SYS_prctl, PR_CAPBSET_READ, count) >= 0) ++count;
  known.store(count + 1, std::memory_order_relaxed);
  return count;
}

// The calling thread's bounding set as read_own last read it, and the thread's id then. Only the
// thread's own PR_CAPBSET_DROP changes it (a program thread's through the wrappers,
// forget_bounding_set; one of heapkeeper's in take) and a new user namespace, which fills it
// (unshare and setns, whose wrappers forget it too; a clone with CLONE_NEWUSER makes a child with
// another id, whose copy of this memory is read afresh, as a vfork child's and a fork child's
// are); execve starts afresh. Reading it is a system call a capability, 40 of a sharing's 90, and
// as many in each thread of heapkeeper's that takes the state shared. `forgotten` counts the
// forgettings: a signal handler's drop while read_own reads the set leaves what it read
// unremembered.
struct BoundingSet {
  uint32_t words[2];
  long tid;  // 0: not known
  uint32_t forgotten;
};
constinit thread_local BoundingSet tls_bounding __attribute__((tls_model("initial-exec"))) = {{0, 0}, 0, 0};

}  // namespace

void forget_bounding_set() noexcept {
  tls_bounding.tid = 0;
  ++tls_bounding.forgotten;
}

namespace {

// The calling thread's state; false when the kernel would not say (then nothing is shared).
bool read_own(Credentials& c) {
  if (raw_syscall(SYS_getresuid, reinterpret_cast<long>(&c.ids[0]), reinterpret_cast<long>(&c.ids[1]),
                  reinterpret_cast<long>(&c.ids[2])) != 0 ||
      raw_syscall(SYS_getresgid, reinterpret_cast<long>(&c.ids[3]), reinterpret_cast<long>(&c.ids[4]),
                  reinterpret_cast<long>(&c.ids[5])) != 0)
    return false;
  const long groups = raw_syscall(SYS_getgroups, kMaxGroups, reinterpret_cast<long>(c.groups));
  c.groups_shared = groups >= 0 ? 1 : 0;
  // More than kMaxGroups (EINVAL): how many, so that they count as different from any list held.
  const long count = groups >= 0 ? groups : raw_syscall(SYS_getgroups, 0, 0);
  c.group_count = count >= 0 ? static_cast<uint32_t>(count) : 0;
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (raw_syscall(SYS_capget, reinterpret_cast<long>(&header), reinterpret_cast<long>(data)) != 0) return false;
  for (int i = 0; i < 2; ++i) {
    c.capabilities[i] = data[i].effective;
    c.capabilities[2 + i] = data[i].permitted;
    c.capabilities[4 + i] = data[i].inheritable;
  }
  const unsigned known = known_capabilities();
  const long tid = raw_syscall(SYS_gettid);
  if (tls_bounding.tid == tid) {
    c.bounding[0] = tls_bounding.words[0];
    c.bounding[1] = tls_bounding.words[1];
  } else {
    const uint32_t forgotten = tls_bounding.forgotten;
    for (unsigned cap = 0; cap < known; ++cap)
      if (raw_syscall(SYS_prctl, PR_CAPBSET_READ, cap) == 1) c.bounding[cap / 32] |= 1u << (cap % 32);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (tls_bounding.forgotten == forgotten) tls_bounding = {{c.bounding[0], c.bounding[1]}, tid, forgotten};
  }
  // Only a capability both permitted and inheritable can be ambient (capabilities(7): the kernel
  // lowers an ambient one with either), so only those are asked about: none, in most programs.
  for (unsigned cap = 0; cap < known; ++cap) {
    const uint32_t mask = 1u << (cap % 32);
    const unsigned word = cap / 32;
    if ((c.capabilities[2 + word] & c.capabilities[4 + word] & mask) == 0) continue;
    if (raw_syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1) c.ambient[word] |= mask;
  }
  c.keep_capabilities = raw_syscall(SYS_prctl, PR_GET_KEEPCAPS) == 1 ? 1 : 0;
  const long securebits = raw_syscall(SYS_prctl, PR_GET_SECUREBITS);
  c.securebits = securebits >= 0 ? static_cast<uint32_t>(securebits) : 0;
  c.no_new_privileges = raw_syscall(SYS_prctl, PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? 1 : 0;
  return true;
}

void store_shared(const Credentials& c) {
  const auto* words = reinterpret_cast<const uint32_t*>(&c);
  g_sequence.fetch_add(1, std::memory_order_acq_rel);
  for (size_t i = 0; i < kWords; ++i) g_words[i].store(words[i], std::memory_order_relaxed);
  g_sequence.fetch_add(1, std::memory_order_release);
}

void load_shared(Credentials& c) {
  auto* words = reinterpret_cast<uint32_t*>(&c);
  for (;;) {
    const uint32_t before = g_sequence.load(std::memory_order_acquire);
    if ((before & 1) == 0) {
      for (size_t i = 0; i < kWords; ++i) words[i] = g_words[i].load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (g_sequence.load(std::memory_order_relaxed) == before) return;
    }
    timespec pause{0, 100'000};
    raw_syscall(SYS_nanosleep, reinterpret_cast<long>(&pause), 0);
  }
}

bool same_groups(const Credentials& a, const Credentials& b) {
  if (a.group_count != b.group_count || a.groups_shared != b.groups_shared) return false;
  for (uint32_t i = 0; i < a.group_count; ++i)
    if (a.groups[i] != b.groups[i]) return false;
  return true;
}

// Takes `target` in the calling thread, from `now`: first what needs the capabilities it still
// has (the bounding set, securebits, ids and groups, keeping the permitted set across the id
// change as the program's thread did when it kept it), then the capabilities themselves, then
// the ambient set, which only those allow. Each step is what the program's thread did, from the
// same state, so the kernel allows it here too; one it refuses is left as it is.
void take_unblocked(const Credentials& target, const Credentials& now) {
  for (unsigned cap = 0; cap < 64; ++cap) {
    if (bit(now.bounding, cap) && !bit(target.bounding, cap)) {
      raw_syscall(SYS_prctl, PR_CAPBSET_DROP, cap);
      forget_bounding_set();
    }
  }
  if (now.securebits != target.securebits) raw_syscall(SYS_prctl, PR_SET_SECUREBITS, target.securebits);
  // The target's groups when it holds them all; a list this thread cannot read whole (more than
  // kMaxGroups) differs from any it can.
  bool ids_differ = target.groups_shared != 0 && !same_groups(target, now);
  for (int i = 0; i < 6; ++i) ids_differ = ids_differ || target.ids[i] != now.ids[i];
  if (ids_differ) {
    raw_syscall(SYS_prctl, PR_SET_KEEPCAPS, 1);
    if (target.groups_shared != 0 && !same_groups(target, now))
      raw_syscall(SYS_setgroups, target.group_count, reinterpret_cast<long>(target.groups));
    if (target.ids[3] != now.ids[3] || target.ids[4] != now.ids[4] || target.ids[5] != now.ids[5])
      raw_syscall(SYS_setresgid, target.ids[3], target.ids[4], target.ids[5]);
    if (target.ids[0] != now.ids[0] || target.ids[1] != now.ids[1] || target.ids[2] != now.ids[2])
      raw_syscall(SYS_setresuid, target.ids[0], target.ids[1], target.ids[2]);
  }
  if (ids_differ || now.keep_capabilities != target.keep_capabilities)
    raw_syscall(SYS_prctl, PR_SET_KEEPCAPS, target.keep_capabilities);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  for (int i = 0; i < 2; ++i) {
    data[i].effective = target.capabilities[i];
    data[i].permitted = target.capabilities[2 + i];
    data[i].inheritable = target.capabilities[4 + i];
  }
  raw_syscall(SYS_capset, reinterpret_cast<long>(&header), reinterpret_cast<long>(data));
  if (now.ambient[0] != target.ambient[0] || now.ambient[1] != target.ambient[1]) {
    raw_syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    for (unsigned cap = 0; cap < 64; ++cap)
      if (bit(target.ambient, cap)) raw_syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
  }
  if (target.no_new_privileges != 0 && now.no_new_privileges == 0)
    raw_syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

void take(const Credentials& target, const Credentials& now) {
  // glibc's all-thread id change (its SIGSETXID, which pthread_sigmask will not block) waits
  // while this thread takes a state: arriving between the temporary
  // keep-capabilities below and its restore, the program's setresuid kept this thread's permitted
  // capabilities, and the capset after it then gave them back in full to a thread of uid 65534.
  const uint64_t setxid = uint64_t{1} << (kSetxidSignal - 1);
  uint64_t previous = 0;
  raw_syscall(SYS_rt_sigprocmask, SIG_BLOCK, reinterpret_cast<long>(&setxid), reinterpret_cast<long>(&previous),
              sizeof(uint64_t));
  take_unblocked(target, now);
  raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&previous), 0, sizeof(uint64_t));
}

void wake_all(std::atomic<uint32_t>& word) {
  raw_syscall(SYS_futex, reinterpret_cast<long>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, 0, 0, 0);
}

void wait_on(std::atomic<uint32_t>& word, uint32_t seen, uint64_t deadline_ns) {
  const timespec deadline{static_cast<time_t>(deadline_ns / 1000000000ull),
                          static_cast<long>(deadline_ns % 1000000000ull)};
  raw_syscall(SYS_futex, reinterpret_cast<long>(&word), FUTEX_WAIT_BITSET_PRIVATE, seen,
              reinterpret_cast<long>(&deadline), 0, FUTEX_BITSET_MATCH_ANY);
}

// Whether a thread of heapkeeper's has yet to take state `epoch`, and whether one of those is
// busy with a long task (a scan of a large heap), after which it takes it.
enum class Behind { kNobody, kWaiting, kBusy };
Behind someone_behind(uint32_t epoch) {
  Behind behind = Behind::kNobody;
  thread_registry().for_each_active([&](const ThreadState& s) {
    if (behind == Behind::kBusy || !s.heapkeeper_thread || s.tid == 0) return;
    if (s.credentials_followed.load(std::memory_order_acquire) == epoch) return;
    if (thread_has_exited(getpid(), s.tid)) return;
    behind = s.busy.load(std::memory_order_acquire) ? Behind::kBusy : Behind::kWaiting;
  });
  return behind;
}

// Whether every thread of heapkeeper's holds `c` already: shared last, and taken. A program that
// sets the same flag in a loop (a prctl per request) then pays for reading its state only. Called
// with g_sharing held: the shared words do not change meanwhile.
bool already_shared(const Credentials& c) {
  const uint32_t epoch = g_epoch.load(std::memory_order_acquire);
  if (epoch == 0 || g_starting.load(std::memory_order_acquire) > 0) return false;
  const auto* words = reinterpret_cast<const uint32_t*>(&c);
  for (size_t i = 0; i < kWords; ++i)
    if (g_words[i].load(std::memory_order_relaxed) != words[i]) return false;
  return someone_behind(epoch) == Behind::kNobody;
}

bool any_heapkeeper_thread() {
  bool any = g_starting.load(std::memory_order_acquire) > 0;
  thread_registry().for_each_active([&](const ThreadState& s) { any = any || s.heapkeeper_thread; });
  return any;
}

// Publishes `own` and waits until heapkeeper's threads have taken it: a second at most, or while one
// that has not is busy with a scan (whose end it waits for), at most a minute.
void publish_and_wait(const Credentials& own) {
  store_shared(own);
  const uint32_t epoch = g_epoch.fetch_add(1, std::memory_order_acq_rel) + 1;
  const uint64_t start = monotonic_ns();
  uint64_t patience = start + 1'000'000'000ull;
  const uint64_t longest = start + 60'000'000'000ull;
  for (;;) {
    const uint32_t follows = g_follows.load(std::memory_order_acquire);
    // Woken again each round: a thread between its check and its wait missed the last wake.
    wake_internal_threads();
    const Behind behind = g_starting.load(std::memory_order_acquire) > 0 ? Behind::kWaiting : someone_behind(epoch);
    if (behind == Behind::kNobody) return;
    const uint64_t now = monotonic_ns();
    // A second more once the busy thread is done (a scan that outlasted the first second).
    if (behind == Behind::kBusy && now + 1'000'000'000ull > patience) patience = now + 1'000'000'000ull;
    const uint64_t deadline = behind == Behind::kBusy ? longest : patience;
    if (now >= deadline) return;
    wait_on(g_follows, follows, now + 2'000'000 < deadline ? now + 2'000'000 : deadline);
  }
}

// Set while this thread shares: a signal handler that changes credentials meanwhile (and so shares
// again) only asks the sharing it interrupted to read them once more. (It waited for the lock that
// sharing held, and never returned.)
constinit thread_local bool tls_sharing __attribute__((tls_model("initial-exec"))) = false;
std::atomic<bool> g_read_again{false};

}  // namespace

uint32_t shared_credentials_epoch() noexcept { return g_epoch.load(std::memory_order_acquire); }

void thread_credentials_after_fork_in_child() noexcept {
  g_starting.store(0, std::memory_order_relaxed);
  g_sharing.store(false, std::memory_order_relaxed);
  // Forked by a signal handler that interrupted a sharing: the child's one thread shares anew.
  tls_sharing = false;
  g_read_again.store(false, std::memory_order_relaxed);
}

void internal_thread_starting() noexcept { g_starting.fetch_add(1, std::memory_order_acq_rel); }

void internal_thread_started() noexcept {
  g_starting.fetch_sub(1, std::memory_order_acq_rel);
  g_follows.fetch_add(1, std::memory_order_release);
  wake_all(g_follows);
}

void add_internal_wake(void (*wake)()) noexcept {
  const int index = g_wake_count.load(std::memory_order_relaxed);
  if (index >= kMaxWakes) return;
  g_wakes[index] = wake;
  g_wake_count.store(index + 1, std::memory_order_release);
}

void hand_over_to(uint32_t effective_uid, uint32_t effective_gid) noexcept {
  const int handovers = g_handover_count.load(std::memory_order_acquire);
  for (int i = 0; i < handovers; ++i) g_handovers[i](effective_uid, effective_gid);
}

void add_credentials_handover(void (*hand_over)(uint32_t, uint32_t)) noexcept {
  const int index = g_handover_count.load(std::memory_order_relaxed);
  if (index >= kMaxHandovers) return;
  g_handovers[index] = hand_over;
  g_handover_count.store(index + 1, std::memory_order_release);
}

void share_thread_credentials() noexcept {
  // A program thread's own call (not heapkeeper's code, nor a thread of it), with threads to follow.
  const ThreadState* self = tls_thread.state;
  if (tls_thread.guard != 0 || self == nullptr || self->heapkeeper_thread || !any_heapkeeper_thread()) return;
  // A vfork child (or another CLONE_VM child) runs on its parent's thread state and memory: its
  // credentials are its own, not for the parent's threads to take.
  if (raw_syscall(SYS_gettid) != self->tid) return;
  if (tls_sharing) {
    g_read_again.store(true, std::memory_order_release);
    return;
  }
  tls_sharing = true;
  bool idle = false;
  while (!g_sharing.compare_exchange_weak(idle, true, std::memory_order_acquire)) {
    idle = false;
    timespec pause{0, 1'000'000};
    raw_syscall(SYS_nanosleep, reinterpret_cast<long>(&pause), 0);
  }
  do {
    g_read_again.store(false, std::memory_order_release);
    Credentials own;
    if (read_own(own) && !already_shared(own)) publish_and_wait(own);
  } while (g_read_again.load(std::memory_order_acquire));
  g_sharing.store(false, std::memory_order_release);
  tls_sharing = false;
}

void follow_thread_credentials() noexcept {
  ThreadState* self = tls_thread.state;
  if (self == nullptr) return;
  const uint32_t epoch = g_epoch.load(std::memory_order_acquire);
  if (self->credentials_followed.load(std::memory_order_relaxed) == epoch) return;
  Credentials target, now;
  load_shared(target);
  if (read_own(now)) {
    const bool owner_changes = target.ids[1] != now.ids[1] || target.ids[4] != now.ids[4];
    if (owner_changes) hand_over_to(target.ids[1], target.ids[4]);
    take(target, now);
    if (owner_changes) hand_over_to(target.ids[1], target.ids[4]);
  }
  self->credentials_followed.store(epoch, std::memory_order_release);
  g_follows.fetch_add(1, std::memory_order_release);
  wake_all(g_follows);
}

void set_internal_thread_busy(bool busy) noexcept {
  ThreadState* self = tls_thread.state;
  if (self == nullptr) return;
  self->busy.store(busy, std::memory_order_release);
  if (!busy) follow_thread_credentials();
}

bool internal_sleep_until(uint64_t deadline_ns) noexcept {
  for (;;) {
    const uint32_t seen = g_wake.load(std::memory_order_acquire);
    follow_thread_credentials();
    if (internal_threads_pausing()) return false;
    if (monotonic_ns() >= deadline_ns) return true;
    ParkedWait parked;
    wait_on(g_wake, seen, deadline_ns);
  }
}

bool internal_sleep_ms(uint64_t milliseconds) noexcept {
  return internal_sleep_until(monotonic_ns() + milliseconds * 1'000'000ull);
}

void wake_internal_threads() noexcept {
  g_wake.fetch_add(1, std::memory_order_release);
  wake_all(g_wake);
  const int wakes = g_wake_count.load(std::memory_order_acquire);
  for (int i = 0; i < wakes; ++i) g_wakes[i]();
}

}  // namespace heapkeeper::alloc

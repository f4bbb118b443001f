// The exported capset, and which prctl options and system calls change a thread's credentials:
// after one succeeds in a program thread, heapkeeper's threads take the same state
// (allocator/thread_credentials.h), so that glibc's all-thread setuid finds them agreeing with
// the program's. Same result and errno as the original.
#include "preload/credential_calls.h"

#include <errno.h>
#include <grp.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "allocator/engine.h"
#include "allocator/thread_credentials.h"
#include "preload/original_functions.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

namespace heapkeeper::preload {

bool prctl_changes_credentials(long option, unsigned long argument) noexcept {
  switch (option) {
    case PR_SET_KEEPCAPS:
    case PR_SET_SECUREBITS:
    case PR_CAPBSET_DROP:
    case PR_SET_NO_NEW_PRIVS:
      return true;
    case PR_CAP_AMBIENT:
      return argument != PR_CAP_AMBIENT_IS_SET;
    default:
      return false;
  }
}

bool syscall_changes_credentials(long number, long first, long second) noexcept {
  switch (number) {
    case SYS_capset:
    case SYS_setuid:
    case SYS_setgid:
    case SYS_setreuid:
    case SYS_setregid:
    case SYS_setresuid:
    case SYS_setresgid:
    case SYS_setgroups:
      return true;
    case SYS_prctl:
      return prctl_changes_credentials(first, static_cast<unsigned long>(second));
    default:
      return false;
  }
}

void share_changed_credentials(long prctl_option) noexcept {
  if (prctl_option == PR_CAPBSET_DROP) heapkeeper::alloc::forget_bounding_set();
  heapkeeper::alloc::share_thread_credentials();
}

}  // namespace heapkeeper::preload

// glibc's capset takes the kernel's header and data structures (linux/capability.h); no header
// of glibc's declares it.
HK_EXPORT int capset(void* header, void* data) {
  auto* function = heapkeeper::preload::original_capset();
  if (function == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int result = function(header, data);
  if (result == 0) heapkeeper::alloc::share_thread_credentials();  // raw system calls: errno stays
  return result;
}

// glibc's setuid family changes every thread's ids itself (heapkeeper's too: its threads then hold
// what the program's do, having taken every earlier change); shared again after it all the same,
// which costs a comparison when nothing differs, and brings back into line a thread of heapkeeper's
// that took an older state meanwhile (a raw change another program thread made at the same time).
// What the process owns goes to the effective user and group the call sets (`owner`: -1 for one it
// leaves), before the call and after it (hand_over_to), or back when it fails.
#define HEAPKEEPER_SHARE_AFTER(name, parameters, arguments, owner)           \
  HK_EXPORT int name parameters {                                            \
    auto* function = heapkeeper::preload::original_##name();                 \
    if (function == nullptr) {                                               \
      errno = ENOSYS;                                                        \
      return -1;                                                             \
    }                                                                        \
    const Owner next = owner;                                                \
    if (next.changes()) heapkeeper::alloc::hand_over_to(next.uid, next.gid); \
    const int result = function arguments;                                   \
    if (next.changes()) {                                                    \
      const int saved_errno = errno;                                         \
      if (result == 0)                                                       \
        heapkeeper::alloc::hand_over_to(next.uid, next.gid);                 \
      else                                                                   \
        heapkeeper::alloc::hand_over_to(geteuid(), getegid());               \
      errno = saved_errno;                                                   \
    }                                                                        \
    if (result == 0) heapkeeper::alloc::share_thread_credentials();          \
    return result;                                                           \
  }
namespace {
// The effective user and group a call of the setuid family sets; kKeep for one it leaves.
struct Owner {
  static constexpr auto kKeep = static_cast<uint32_t>(-1);
  uint32_t uid = kKeep, gid = kKeep;
  bool changes() const { return uid != kKeep || gid != kKeep; }
};
Owner effective_user(uid_t uid) { return {static_cast<uint32_t>(uid), Owner::kKeep}; }
Owner effective_group(gid_t gid) { return {Owner::kKeep, static_cast<uint32_t>(gid)}; }
}  // namespace
HEAPKEEPER_SHARE_AFTER(setuid, (uid_t uid), (uid), effective_user(uid))
HEAPKEEPER_SHARE_AFTER(setgid, (gid_t gid), (gid), effective_group(gid))
HEAPKEEPER_SHARE_AFTER(seteuid, (uid_t uid), (uid), effective_user(uid))
HEAPKEEPER_SHARE_AFTER(setegid, (gid_t gid), (gid), effective_group(gid))
HEAPKEEPER_SHARE_AFTER(setreuid, (uid_t real, uid_t effective), (real, effective), effective_user(effective))
HEAPKEEPER_SHARE_AFTER(setregid, (gid_t real, gid_t effective), (real, effective), effective_group(effective))
HEAPKEEPER_SHARE_AFTER(setresuid, (uid_t real, uid_t effective, uid_t saved), (real, effective, saved),
                       effective_user(effective))
HEAPKEEPER_SHARE_AFTER(setresgid, (gid_t real, gid_t effective, gid_t saved), (real, effective, saved),
                       effective_group(effective))
HEAPKEEPER_SHARE_AFTER(setgroups, (size_t count, const gid_t* groups), (count, groups), Owner{})
HEAPKEEPER_SHARE_AFTER(initgroups, (const char* user, gid_t group), (user, group), Owner{})
#undef HEAPKEEPER_SHARE_AFTER

namespace {

// Whether a call with these flags (unshare's, or setns's type) needs a single-threaded caller:
// a new or joined user namespace (and what only a lone thread may unshare).
bool needs_a_lone_thread(int flags) { return (flags & (CLONE_NEWUSER | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM)) != 0; }

// Runs `call` with heapkeeper's threads ended for the moment when they alone stand in its way
// (allocator/engine.h's pause_internal_threads), and started again after; errno is the call's.
template <typename Call>
int alone(Call call) {
  const bool paused = heapkeeper::alloc::pause_internal_threads();
  const int result = call();
  const int saved_errno = errno;
  // A new user namespace fills the bounding set (user_namespaces(7)).
  if (result == 0) heapkeeper::alloc::forget_bounding_set();
  if (paused) heapkeeper::alloc::resume_internal_threads();
  errno = saved_errno;
  return result;
}

}  // namespace

// A process with a thread of heapkeeper's is multi-threaded, and the kernel refuses it a new user
// namespace: `unshare -r` failed with EINVAL under heapkeeper.
HK_EXPORT int unshare(int flags) {
  auto* function = heapkeeper::preload::original_unshare();
  if (function == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  if (!needs_a_lone_thread(flags)) return function(flags);
  return alone([&] { return function(flags); });
}

// setns into a user namespace, named by its type or (type 0) by what the descriptor is.
HK_EXPORT int setns(int fd, int type) {
  auto* function = heapkeeper::preload::original_setns();
  if (function == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int saved_errno = errno;
  const bool user = needs_a_lone_thread(type) || (type == 0 && ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWUSER);
  errno = saved_errno;
  if (!user) return function(fd, type);
  return alone([&] { return function(fd, type); });
}

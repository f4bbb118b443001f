// heapkeeper's own threads follow the per-thread security state a program thread changes.
//
// Linux keeps a thread's ids, capabilities, keep-capabilities flag, securebits, ambient and
// bounding sets per thread, and glibc's setuid family changes the ids of every thread of the
// process at once: it has each thread make the system call and aborts the process when their
// results differ. A program that believes itself single-threaded sets the per-thread parts in its
// one thread and then changes ids: `setpriv --reuid=nobody --regid=nogroup` sets PR_SET_KEEPCAPS
// and calls capset, setresuid, capset again and setresgid. heapkeeper's threads, holding the
// state they were made with, lost every capability at the setresuid, failed the setresgid the
// program's thread made with CAP_SETGID, and setpriv aborted. A program that changes its ids with
// the raw system call (per thread) left heapkeeper's threads as root inside a process that had
// given root up.
//
// So after a program thread's successful capset, security prctl or raw id change (the exported
// wrappers in preload/ call share_thread_credentials), every thread of heapkeeper's takes the
// same state before the call returns to the program: each copies it in its own waits
// (internal_sleep_until and the wake hooks), where it is woken for it. The sharing waits at most
// a second for a thread busy elsewhere (a scan), and makes no system call once the program may run
// under a seccomp filter.
#pragma once

#include <cstdint>

namespace heapkeeper::alloc {

// A program thread changed its credentials: heapkeeper's threads copy them (see above).
void share_thread_credentials() noexcept;
// The calling thread's bounding set may have changed: it dropped a capability (PR_CAPBSET_DROP,
// before its sharing) or entered a user namespace. The set a sharing remembers for the thread is
// read again.
void forget_bounding_set() noexcept;

// A thread of heapkeeper's: copies the program's last shared state if it has not yet. Called by
// internal_sleep_until, and by any other wait of such a thread after it wakes.
void follow_thread_credentials() noexcept;

// The state shared so far (how many times): a thread of heapkeeper's made now holds it already.
uint32_t shared_credentials_epoch() noexcept;
// A thread of heapkeeper's is being made (before pthread_create), and it has registered (or was
// not made after all): a sharing meanwhile waits for it, which would otherwise keep the state its
// maker had, unseen by the sharer.
void internal_thread_starting() noexcept;
void internal_thread_started() noexcept;
// In a forked child, which has none of its parent's threads of heapkeeper's, being made or sharing.
void thread_credentials_after_fork_in_child() noexcept;

// A thread of heapkeeper's starts (true) or ends a long task (a scan of a large heap), during which
// it does not take shared credentials: a sharer waits for its end, at most a minute, rather than
// give up after a second. Ending it takes what was shared meanwhile.
void set_internal_thread_busy(bool busy) noexcept;

// A thread of heapkeeper's waits until CLOCK_MONOTONIC reaches `deadline_ns`, following the
// program's credentials whenever they are shared meanwhile. False when it is to end instead
// (engine.h's pause_internal_threads: its routine returns, to be started again after).
[[nodiscard]] bool internal_sleep_until(uint64_t deadline_ns) noexcept;
[[nodiscard]] bool internal_sleep_ms(uint64_t milliseconds) noexcept;
// Ends every such wait now (they look again at what woke them), and the others' (add_internal_wake).
void wake_internal_threads() noexcept;

// A wait of heapkeeper's that internal_sleep_until does not cover (the live-stats thread's futex,
// which a reader wakes): `wake` ends it, and the woken thread calls follow_thread_credentials.
// At most a few; set once at start-up.
void add_internal_wake(void (*wake)()) noexcept;
// What must change hands when the process's effective user or group changes, while someone still
// has the right to give it: the live-stats segment's file goes to the new owner
// (stats/publisher.cpp), who could not remove it at exit otherwise (a root process that dropped to
// another user left its 4.4 MiB file in /dev/shm). hand_over_to runs the hooks: from the setuid
// family's wrappers before the call (the caller still holds its old credentials) and after it
// (they may have gained the right: seteuid(0) back), and from a thread of heapkeeper's before and
// after it takes a raw change. (uint32_t)-1 leaves that id as it is. The hooks must be idempotent,
// make raw system calls only, and fail quietly without the right. At most a few; set at start-up.
void add_credentials_handover(void (*hand_over)(uint32_t effective_uid, uint32_t effective_gid)) noexcept;
void hand_over_to(uint32_t effective_uid, uint32_t effective_gid) noexcept;

}  // namespace heapkeeper::alloc

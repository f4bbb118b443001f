// Which calls change a thread's credentials (credential_calls.cpp): after one succeeds in a
// program thread, heapkeeper's threads take the same state (allocator/thread_credentials.h).
#pragma once

namespace heapkeeper::preload {

// A prctl option (and its first argument) that changes the calling thread's capabilities,
// keep-capabilities flag, securebits, ambient or bounding set, or no_new_privs.
bool prctl_changes_credentials(long option, unsigned long argument) noexcept;
// A system call number (and, for prctl, its first two arguments) that changes the calling thread's
// credentials: capset, the setuid family (which, made raw, changes one thread only), prctl's above.
bool syscall_changes_credentials(long number, long first, long second) noexcept;
// After such a call succeeded: heapkeeper's threads take the new state. `prctl_option`: the call's
// prctl option, -1 for another call.
void share_changed_credentials(long prctl_option) noexcept;

}  // namespace heapkeeper::preload

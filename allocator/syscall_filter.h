// Whether the process runs under a seccomp filter, which may kill it for a system call it never
// made before heapkeeper came: the debugging calls above all (ptrace, process_vm_readv), which
// services deny (systemd's SystemCallFilter=~@debug). Set at start-up from /proc/self/status (a
// filter inherited across exec) and by the exported prctl and syscall wrappers just before the
// program installs one (preload/own_pipes.cpp); code that would make such a call asks first.
#pragma once

namespace heapkeeper::alloc {

bool syscall_filter_installed() noexcept;
void note_syscall_filter() noexcept;
// Whether the process was found without a filter (syscall_filter_installed() was asked and said
// no), none has been noted since, and the program has not set no_new_privs (which an unprivileged
// program must before it installs a filter, and which a filter installed by the program's own
// inline assembly, unseen by the wrappers, follows); false while nobody has asked. Makes no system
// call: for code where a system call of heapkeeper's own may be the one a filter kills for.
bool syscall_filter_known_absent() noexcept;
// The program sets no_new_privs (prctl or syscall wrappers): a filter may follow unseen.
void note_no_new_privileges() noexcept;

// What a /proc status file ("/proc/self/status", "/proc/thread-self/status") says restricts
// debugging calls: a seccomp filter (or strict mode), and a tracer already attached (gdb, strace),
// which makes ptrace refuse a second one. Only open and read: async-signal-safe, no allocation.
struct DebugRestrictions {
  bool seccomp = false;
  bool traced = false;
};
DebugRestrictions read_debug_restrictions(const char* status_path) noexcept;

// Whether the process `pid` shares this one's memory (kcmp KCMP_VM), asked only where no seccomp
// filter may kill for kcmp, a debugging call: kUnknown under a filter, or where its absence is not
// known, or when kcmp is refused; kNotShared also when `pid` is gone. System calls only.
enum class MemorySharing { kShared, kNotShared, kUnknown };
MemorySharing memory_shared_with(int pid) noexcept;

}  // namespace heapkeeper::alloc

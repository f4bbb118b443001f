// Whether the process runs under a seccomp filter, which may kill it for a system call it never
// made before heapkeeper came: the debugging calls above all (ptrace, process_vm_readv), which
// services deny (systemd's SystemCallFilter=~@debug). Set at start-up from /proc/self/status (a
// filter inherited across exec) and by the exported prctl and syscall wrappers just before the
// program installs one (preload/own_pipes.cpp); code that would make such a call asks first.
#pragma once

namespace heapkeeper::alloc {

bool syscall_filter_installed() noexcept;
void note_syscall_filter() noexcept;

// What a /proc status file ("/proc/self/status", "/proc/thread-self/status") says restricts
// debugging calls: a seccomp filter (or strict mode), and a tracer already attached (gdb, strace),
// which makes ptrace refuse a second one. Only open and read: async-signal-safe, no allocation.
struct DebugRestrictions {
  bool seccomp = false;
  bool traced = false;
};
DebugRestrictions read_debug_restrictions(const char* status_path) noexcept;

}  // namespace heapkeeper::alloc

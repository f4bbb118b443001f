// System calls without libc: for code that runs on the collector's tracer task (see
// collector/ptrace_stop.h), which shares the scanning thread's address space and thread pointer, so
// that libc's wrappers would write the scanning thread's errno; and for code that must not come back
// through heapkeeper's own wrappers of libc's calls or change the program's errno (the exit paths,
// allocator/thread_credentials.cpp). Results are the kernel's: -errno on failure.
#pragma once

#include <fcntl.h>
#include <sys/syscall.h>

#include <cstdint>

namespace heapkeeper::alloc {

inline long raw_syscall(long number, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) {
  long result;
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  register long r9 asm("r9") = f;
  asm volatile("syscall"
               : "=a"(result)
               : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return result;
}

// Appends the decimal digits of a non-negative value; returns the new end.
inline char* append_decimal(char* out, long value) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0);
  while (n > 0) *out++ = digits[--n];
  return out;
}

// Calls visit(directory, name, number) for each entry of the directory at `path` whose name is a
// number (/proc/PID/task's threads, /proc/self/fd's descriptors), with raw getdents64; `directory`
// is the open directory, for *at() calls on the entry. False if it could not be opened or read to
// its end (the entries visited then are not all there are: no caller may take them for the whole).
template <typename Visit>
bool for_each_numbered_entry(const char* path, Visit&& visit) {
  const long directory =
      raw_syscall(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (directory < 0) return false;
  alignas(8) char buffer[4096];
  bool complete = true;
  for (;;) {
    const long n = raw_syscall(SYS_getdents64, directory, reinterpret_cast<long>(buffer), sizeof(buffer));
    if (n < 0) complete = false;
    if (n <= 0) break;
    for (long offset = 0; offset < n;) {
      const auto reclen = *reinterpret_cast<unsigned short*>(buffer + offset + 16);
      const char* name = buffer + offset + 19;
      offset += reclen;
      if (*name < '0' || *name > '9') continue;
      long number = 0;
      for (const char* digit = name; *digit >= '0' && *digit <= '9'; ++digit) number = number * 10 + (*digit - '0');
      visit(directory, name, number);
    }
  }
  raw_syscall(SYS_close, directory);
  return complete;
}

// "/proc/PID/task" or "/proc/PID/task/TID/NAME" into out (at least 64 bytes).
inline void proc_task_path(char* out, long pid, long tid, const char* name) {
  const char* parts[] = {"/proc/", "/task"};
  char* p = out;
  for (const char* s = parts[0]; *s != '\0'; ++s) *p++ = *s;
  p = append_decimal(p, pid);
  for (const char* s = parts[1]; *s != '\0'; ++s) *p++ = *s;
  if (tid > 0) {
    *p++ = '/';
    p = append_decimal(p, tid);
    *p++ = '/';
    for (const char* s = name; *s != '\0'; ++s) *p++ = *s;
  }
  *p = '\0';
}

// The thread's state letter from /proc/PID/task/TID/stat, as ps shows it (R, S, D, T, t, Z, X...),
// or 0 when the file cannot be read (the thread is gone, or the process hides it).
inline char thread_state_letter(long pid, long tid) {
  char path[64];
  proc_task_path(path, pid, tid, "stat");
  const long fd = raw_syscall(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[512];
  const long n = raw_syscall(SYS_read, fd, reinterpret_cast<long>(text), sizeof(text) - 1);
  raw_syscall(SYS_close, fd);
  // "TID (COMM) STATE ...": COMM may hold spaces and parentheses, so the last ") " counts.
  long state_at = -1;
  for (long i = 0; i + 2 < n; ++i) {
    if (text[i] == ')' && text[i + 1] == ' ') state_at = i + 2;
  }
  return state_at > 0 ? text[state_at] : '\0';
}

// Whether a listed thread has finished: gone, or a zombie its process has not reaped yet (the main
// thread after pthread_exit stays one until the process ends). It runs no code and cannot be
// seized or signalled to stop; its stack is no root.
inline bool thread_has_exited(long pid, long tid) {
  const char state = thread_state_letter(pid, tid);
  return state == 0 || state == 'Z' || state == 'X';
}

}  // namespace heapkeeper::alloc

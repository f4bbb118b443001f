// The exec family. Under the signal fallback a scan stops a thread with SIGPWR; one sent while the
// thread was already inside execve stayed pending across it (pending signals survive an exec, the
// handler does not), and the new image died of SIGPWR's default action before its first
// instruction: setpriv exec'ing bash, bash exec'ing its last command (status 158, under load about
// one run in five with 1 ms scans). So an exec waits for a scan in progress to end and no scan
// starts until it fails (collector.h hold_scans_for_exec). glibc's execvp, execl and the rest call
// its internal execve, which no wrapper sees: each is wrapped. Same result and errno as the
// original, which does the work (a library preloaded after heapkeeper that wraps exec still sees
// the call).
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

#include "collector/collector.h"
#include "preload/original_functions.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

class ExecScope {
 public:
  ExecScope() noexcept : held_(heapkeeper::collect::hold_scans_for_exec()) {}
  ~ExecScope() {
    const int saved_errno = errno;
    heapkeeper::collect::allow_scans_after_exec(held_);
    errno = saved_errno;
  }
  ExecScope(const ExecScope&) = delete;
  ExecScope& operator=(const ExecScope&) = delete;

 private:
  bool held_;
};

int no_original() noexcept {
  errno = ENOSYS;
  return -1;
}

}  // namespace

// Each forwards to the next definition (preload/original_functions.h) while scans are held.
#define HEAPKEEPER_WRAP_EXEC(name, parameters, arguments)    \
  HK_EXPORT int name parameters {                            \
    auto* function = heapkeeper::preload::original_##name(); \
    if (function == nullptr) return no_original();           \
    const ExecScope scope;                                   \
    return function arguments;                               \
  }
HEAPKEEPER_WRAP_EXEC(execve, (const char* path, char* const argv[], char* const envp[]), (path, argv, envp))
HEAPKEEPER_WRAP_EXEC(execv, (const char* path, char* const argv[]), (path, argv))
HEAPKEEPER_WRAP_EXEC(execvp, (const char* file, char* const argv[]), (file, argv))
HEAPKEEPER_WRAP_EXEC(execvpe, (const char* file, char* const argv[], char* const envp[]), (file, argv, envp))
HEAPKEEPER_WRAP_EXEC(execveat, (int directory, const char* path, char* const argv[], char* const envp[], int flags),
                     (directory, path, argv, envp, flags))
HEAPKEEPER_WRAP_EXEC(fexecve, (int fd, char* const argv[], char* const envp[]), (fd, argv, envp))
#undef HEAPKEEPER_WRAP_EXEC

// A forked child mostly execs at once (a shell's or make's every command), and its exec wrapper
// looked the original up at that first call: in the child, with dlsym, through libc's and the
// other objects' symbol tables in pages the child has not mapped (9 page faults a child of a
// traced bash loop, the dynamic linker's lookup code among them), for a result that died with the
// child's memory at the exec. Looked up at start-up instead (a few microseconds: the symbol tables
// were just read to bind this library), the originals are every child's inheritance. So are
// dup2's and dup3's (descriptor_calls.cpp), which a shell's child calls before its exec for each
// redirection (`cmd >file 2>&1`).
void heapkeeper::preload::resolve_child_originals() noexcept {
#define HEAPKEEPER_RESOLVE_ORIGINAL(name, return_type, parameters) original_##name();
  HEAPKEEPER_EXEC_FUNCTIONS(HEAPKEEPER_RESOLVE_ORIGINAL)
  HEAPKEEPER_DESCRIPTOR_FUNCTIONS(HEAPKEEPER_RESOLVE_ORIGINAL)
#undef HEAPKEEPER_RESOLVE_ORIGINAL
}

// execl, execle and execlp: their arguments as an array, built on the stack as glibc's do, to the
// wrappers above. execle's environment is the pointer after the terminating null.
#define HEAPKEEPER_COLLECT_ARGUMENTS(first, environment)                                    \
  size_t count = 1;                                                                         \
  {                                                                                         \
    va_list probe;                                                                          \
    va_start(probe, first);                                                                 \
    while (va_arg(probe, char*) != nullptr) ++count;                                        \
    va_end(probe);                                                                          \
  }                                                                                         \
  char* argv[count + 1]; /* NOLINT(hicpp-vla,cppcoreguidelines-avoid-c-arrays): as glibc */ \
  argv[0] = const_cast<char*>(first);                                                       \
  {                                                                                         \
    va_list list;                                                                           \
    va_start(list, first);                                                                  \
    for (size_t i = 1; i <= count; ++i) argv[i] = va_arg(list, char*);                      \
    if ((environment) != nullptr) *(environment) = va_arg(list, char* const*);              \
    va_end(list);                                                                           \
  }

HK_EXPORT int execl(const char* path, const char* first, ...) {
  char* const** environment = nullptr;
  HEAPKEEPER_COLLECT_ARGUMENTS(first, environment)
  return execv(path, argv);
}

HK_EXPORT int execle(const char* path, const char* first, ...) {
  char* const* envp = nullptr;
  char* const** environment = &envp;
  HEAPKEEPER_COLLECT_ARGUMENTS(first, environment)
  return execve(path, argv, envp);
}

HK_EXPORT int execlp(const char* file, const char* first, ...) {
  char* const** environment = nullptr;
  HEAPKEEPER_COLLECT_ARGUMENTS(first, environment)
  return execvp(file, argv);
}
#undef HEAPKEEPER_COLLECT_ARGUMENTS

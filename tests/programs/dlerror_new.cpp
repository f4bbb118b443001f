// dlerror_new: a failed dlopen's message must survive a failed operator new (exec_originals.sh).
//
// heapkeeper's operator new throws the program's own std::bad_alloc, calls the program's
// new-handler and its nothrow operator new (allocator/program_cxx_runtime.cpp), each looked up at
// its first use: with dlsym, that lookup replaced the program's pending dlerror() text with its own
// success, and a program asking why its dlopen failed read NULL. Each phase fails a dlopen, makes
// the first call of one such path, then prints what dlerror() says.
//
// Usage: dlerror_new
#include <dlfcn.h>

#include <cstddef>
#include <cstdio>
#include <new>

namespace {

void report(const char* phase) {
  const char* message = dlerror();
  std::printf("%s: %s\n", phase, message != nullptr ? message : "(no error)");
}

void fail_dlopen(const char* path) {
  if (dlopen(path, RTLD_NOW) != nullptr) std::printf("dlopen of %s succeeded\n", path);
}

// More than any heap gives: every allocator fails it at once.
constexpr std::size_t kImpossible = std::size_t{1} << 62;

int g_handler_calls = 0;
// Runs once, then takes itself out: the allocation then fails for good.
void handler_once() {
  ++g_handler_calls;
  std::set_new_handler(nullptr);
}

}  // namespace

int main() {
  // std::bad_alloc thrown through the program's runtime: an alignment that is not a power of two.
  fail_dlopen("/nonexistent/heapkeeper-test/libnope.so");
  try {
    void* block = ::operator new(16, static_cast<std::align_val_t>(3));
    ::operator delete(block, static_cast<std::align_val_t>(3));
    std::printf("aligned new with alignment 3 returned a block\n");
  } catch (const std::bad_alloc&) {
    std::printf("aligned new with alignment 3 threw std::bad_alloc\n");
  }
  report("after the first std::bad_alloc");

  // The program's new-handler asked for (there is none): a nothrow new that fails.
  fail_dlopen("/nonexistent/heapkeeper-test/libnope2.so");
  char* nothing = new (std::nothrow) char[kImpossible];
  std::printf("nothrow new of 2^62 bytes without a handler: %s\n", nothing == nullptr ? "null" : "a block");
  report("after the first failed nothrow new");

  // With a handler: the program's nothrow operator new runs the loop.
  fail_dlopen("/nonexistent/heapkeeper-test/libnope3.so");
  std::set_new_handler(handler_once);
  nothing = new (std::nothrow) char[kImpossible];
  std::printf("nothrow new of 2^62 bytes with a handler: %s, handler called %d time(s)\n",
              nothing == nullptr ? "null" : "a block", g_handler_calls);
  report("after the first nothrow new with a handler");
  return 0;
}

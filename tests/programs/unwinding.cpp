// Unwinding through heapkeeper's frames, for programs.sh unwinding.
//
// libheapkeeper.so carries its own copy of the unwinder (libgcc's, linked statically), while the
// program unwinds with the shared libgcc_s. Where an unwind passes through heapkeeper's frames
// both take part: a thread cancelled inside one of the blocking calls heapkeeper wraps, a thread
// that calls pthread_exit from under heapkeeper's thread trampoline, a new-handler throwing
// through heapkeeper's operator new, exceptions in threads heapkeeper started for the program.
// Every line printed must be what the program prints without heapkeeper.
#include <poll.h>
#include <pthread.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<int> cleanups{0};
int blocking_pipe[2];
int listening_socket = -1;

void count_cleanup(void* block) {
  std::free(block);
  cleanups.fetch_add(1);
}

// Blocks in one of the calls heapkeeper wraps (preload/blocking_functions.h) until cancelled.
void block_in(int kind) {
  switch (kind) {
    case 0:
      sleep(100);
      break;
    case 1: {
      timespec pause{100, 0};
      nanosleep(&pause, nullptr);
      break;
    }
    case 2:
      poll(nullptr, 0, 100000);
      break;
    case 3: {
      char byte;
      if (read(blocking_pipe[0], &byte, 1) < 0) std::perror("read");
      break;
    }
    case 4: {
      timeval timeout{100, 0};
      select(0, nullptr, nullptr, nullptr, &timeout);
      break;
    }
    default:
      accept(listening_socket, nullptr, nullptr);
      break;
  }
}

constexpr int kBlockingKinds = 6;
const char* const kKindNames[kBlockingKinds] = {"sleep", "nanosleep", "poll", "read", "select", "accept"};

void* cancelled_thread(void* argument) {
  void* block = std::malloc(100);
  pthread_cleanup_push(count_cleanup, block);
  block_in(static_cast<int>(reinterpret_cast<intptr_t>(argument)));
  pthread_cleanup_pop(0);
  return nullptr;
}

struct Announce {
  const char* what;
  ~Announce() { std::printf("destructor ran: %s\n", what); }
};

void* exiting_thread(void*) {
  Announce announce{"pthread_exit"};
  std::vector<std::string> held(10, std::string(100, 'x'));
  pthread_exit(reinterpret_cast<void*>(static_cast<intptr_t>(held.size())));
}

int handler_calls = 0;
void throwing_handler() {
  if (++handler_calls >= 2) throw std::bad_alloc();
}

}  // namespace

int main() {
  if (pipe(blocking_pipe) != 0) return 1;
  listening_socket = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr addr{};
  addr.sa_family = AF_UNIX;  // an unnamed socket in the abstract namespace, made by bind
  if (listening_socket < 0 || bind(listening_socket, &addr, sizeof(sa_family_t)) != 0 ||
      listen(listening_socket, 1) != 0) {
    std::perror("socket");
    return 1;
  }
  for (int kind = 0; kind < kBlockingKinds; ++kind) {
    pthread_t thread;
    pthread_create(&thread, nullptr, cancelled_thread, reinterpret_cast<void*>(static_cast<intptr_t>(kind)));
    usleep(20000);
    pthread_cancel(thread);
    void* result = nullptr;
    pthread_join(thread, &result);
    std::printf("cancelled in %s: %s, cleanups so far %d\n", kKindNames[kind],
                result == PTHREAD_CANCELED ? "yes" : "no", cleanups.load());
  }

  pthread_t thread;
  void* result = nullptr;
  pthread_create(&thread, nullptr, exiting_thread, nullptr);
  pthread_join(thread, &result);
  std::printf("pthread_exit returned %ld\n", static_cast<long>(reinterpret_cast<intptr_t>(result)));

  int caught = 0;
  for (int i = 0; i < 200; ++i) {
    try {
      std::vector<int> numbers(10);
      numbers.at(20 + i) = 1;
    } catch (const std::out_of_range&) {
      ++caught;
    }
  }
  std::printf("out_of_range caught %d times\n", caught);

  std::set_new_handler(throwing_handler);
  try {
    volatile size_t huge = size_t{1} << 62;
    char* never = new char[huge];
    std::printf("allocated %p\n", static_cast<void*>(never));
  } catch (const std::bad_alloc&) {
    std::printf("bad_alloc from the new-handler, after %d call(s)\n", handler_calls);
  }
  handler_calls = 0;
  volatile size_t huge = size_t{1} << 62;
  char* none = new (std::nothrow) char[huge];
  std::printf("nothrow new gave %s after %d handler call(s)\n", none == nullptr ? "null" : "memory", handler_calls);
  std::set_new_handler(nullptr);

  std::atomic<int> thread_catches{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&thread_catches, i] {
      try {
        throw std::runtime_error("thread " + std::to_string(i));
      } catch (const std::runtime_error&) {
        thread_catches.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::printf("exceptions caught in threads: %d\n", thread_catches.load());
  return 0;
}

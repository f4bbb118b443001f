// Unit tests for the kernel roots (collector/kernel_roots.h): what the interposed calls record,
// what they remove, that a failed call leaves the table as it was, and that the ranges the scanner
// reads hold exactly the registered pointers. The "originals" are fakes that only answer.
#include "collector/kernel_roots.h"

#include <gtest/gtest.h>
#include <linux/aio_abi.h>

#include <cerrno>
#include <cstring>
#include <set>

namespace heapkeeper::collect {
namespace {

int g_epoll_result = 0;
int g_epoll_errno = 0;
int fake_epoll_ctl(int, int, int, epoll_event*) {
  if (g_epoll_result != 0) errno = g_epoll_errno;
  return g_epoll_result;
}
int g_next_epoll_fd = 0;
int fake_epoll_create1(int) { return g_next_epoll_fd; }
int fake_timer_create(clockid_t, sigevent*, timer_t* timer) {
  *timer = reinterpret_cast<timer_t>(uintptr_t{4242});
  return 0;
}
int fake_timer_delete(timer_t) { return 0; }
int g_aio_result = 0;
int fake_aio_read(aiocb*) { return g_aio_result; }
ssize_t fake_aio_return(aiocb*) { return 1; }

// libaio: io_submit takes the first g_submitted (or fails with it), io_cancel answers g_cancel_result.
int g_submitted = 0;
int fake_io_submit(io_context*, long, iocb**) { return g_submitted; }
int g_cancel_result = 0;
int fake_io_cancel(io_context*, iocb*, io_event*) { return g_cancel_result; }
int fake_io_destroy(io_context*) { return 0; }

// Every word the scanner would read as a root.
std::multiset<uint64_t> root_words() {
  std::multiset<uint64_t> words;
  for_each_kernel_root_range([&](uintptr_t start, uintptr_t end) {
    for (uintptr_t p = start; p + 8 <= end; p += 8) {
      uint64_t word;
      std::memcpy(&word, reinterpret_cast<const void*>(p), 8);
      if (word >= 0x100000) words.insert(word);  // keys and fds are small numbers
    }
  });
  return words;
}

int add(int epfd, int fd, uint64_t data, int op = EPOLL_CTL_ADD) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = data;
  return epoll_ctl_with_roots(fake_epoll_ctl, epfd, op, fd, &event);
}

constexpr uint64_t kBase = 0x7f0000000000ull;

TEST(KernelRoots, EpollRegistrationsAreRootsUntilDeleted) {
  const size_t before = kernel_root_count();
  for (int fd = 0; fd < 1000; ++fd) ASSERT_EQ(add(900, fd, kBase + 16 * static_cast<uint64_t>(fd)), 0);
  EXPECT_EQ(kernel_root_count(), before + 1000);  // the table grew several times
  std::multiset<uint64_t> words = root_words();
  for (int fd = 0; fd < 1000; ++fd) EXPECT_EQ(words.count(kBase + 16 * static_cast<uint64_t>(fd)), 1u) << fd;
  for (int fd = 0; fd < 1000; fd += 2)
    ASSERT_EQ(epoll_ctl_with_roots(fake_epoll_ctl, 900, EPOLL_CTL_DEL, fd, nullptr), 0);
  EXPECT_EQ(kernel_root_count(), before + 500);
  words = root_words();
  for (int fd = 0; fd < 1000; ++fd)
    EXPECT_EQ(words.count(kBase + 16 * static_cast<uint64_t>(fd)), fd % 2 == 0 ? 0u : 1u) << fd;
  // MOD replaces the value.
  ASSERT_EQ(add(900, 1, kBase + 0x999990, EPOLL_CTL_MOD), 0);
  words = root_words();
  EXPECT_EQ(words.count(kBase + 16), 0u);
  EXPECT_EQ(words.count(kBase + 0x999990), 1u);
  // A new epoll instance with the same number: the old one's registrations are gone.
  g_next_epoll_fd = 900;
  EXPECT_EQ(epoll_create1_with_roots(fake_epoll_create1, 0), 900);
  EXPECT_EQ(kernel_root_count(), before);
  EXPECT_EQ(root_words().count(kBase + 0x999990), 0u);
}

TEST(KernelRoots, AFailedCallLeavesTheTableAsItWasAndErrnoAsTheOriginalSetIt) {
  const size_t before = kernel_root_count();
  ASSERT_EQ(add(901, 5, kBase + 0x500), 0);
  g_epoll_result = -1;
  g_epoll_errno = EEXIST;
  errno = 0;
  EXPECT_EQ(add(901, 5, kBase + 0x600), -1);  // ADD of a registered fd: the kernel keeps the old value
  EXPECT_EQ(errno, EEXIST);
  g_epoll_errno = EBADF;
  EXPECT_EQ(add(901, 6, kBase + 0x700), -1);  // nothing registered: nothing recorded
  EXPECT_EQ(errno, EBADF);
  g_epoll_result = 0;
  std::multiset<uint64_t> words = root_words();
  EXPECT_EQ(words.count(kBase + 0x500), 1u);
  EXPECT_EQ(words.count(kBase + 0x600), 0u);
  EXPECT_EQ(words.count(kBase + 0x700), 0u);
  EXPECT_EQ(kernel_root_count(), before + 1);
  ASSERT_EQ(epoll_ctl_with_roots(fake_epoll_ctl, 901, EPOLL_CTL_DEL, 5, nullptr), 0);
  EXPECT_EQ(kernel_root_count(), before);
}

TEST(KernelRoots, TimerValuesUntilTimerDelete) {
  const size_t before = kernel_root_count();
  sigevent event{};
  event.sigev_notify = SIGEV_SIGNAL;
  event.sigev_signo = SIGRTMIN;
  event.sigev_value.sival_ptr = reinterpret_cast<void*>(kBase + 0x1230);
  timer_t timer;
  ASSERT_EQ(timer_create_with_roots(fake_timer_create, CLOCK_MONOTONIC, &event, &timer), 0);
  EXPECT_EQ(root_words().count(kBase + 0x1230), 1u);
  ASSERT_EQ(timer_delete_with_roots(fake_timer_delete, timer), 0);
  EXPECT_EQ(root_words().count(kBase + 0x1230), 0u);
  // SIGEV_NONE delivers nothing: nothing to keep.
  event.sigev_notify = SIGEV_NONE;
  ASSERT_EQ(timer_create_with_roots(fake_timer_create, CLOCK_MONOTONIC, &event, &timer), 0);
  EXPECT_EQ(kernel_root_count(), before);
}

TEST(KernelRoots, AioRequestsUntilAioReturn) {
  const size_t before = kernel_root_count();
  aiocb request{};
  request.aio_buf = reinterpret_cast<void*>(kBase + 0x4000);
  request.aio_sigevent.sigev_notify = SIGEV_SIGNAL;
  request.aio_sigevent.sigev_value.sival_ptr = reinterpret_cast<void*>(kBase + 0x5000);
  ASSERT_EQ(aio_request_with_roots(fake_aio_read, &request), 0);
  std::multiset<uint64_t> words = root_words();
  EXPECT_EQ(words.count(reinterpret_cast<uintptr_t>(&request)), 1u) << "the aiocb itself";
  EXPECT_EQ(words.count(kBase + 0x4000), 1u) << "its buffer";
  EXPECT_EQ(words.count(kBase + 0x5000), 1u) << "its notification value";
  EXPECT_EQ(aio_return_with_roots(fake_aio_return, &request), 1);
  EXPECT_EQ(kernel_root_count(), before);
  EXPECT_EQ(root_words().count(kBase + 0x5000), 0u);
  EXPECT_EQ(root_words().count(reinterpret_cast<uintptr_t>(&request)), 0u) << "nor the aiocb";
  g_aio_result = -1;
  EXPECT_EQ(aio_request_with_roots(fake_aio_read, &request), -1);  // refused: not recorded
  g_aio_result = 0;
  EXPECT_EQ(kernel_root_count(), before);
}

TEST(KernelRoots, LibaioRequestsUntilTheirEventCancelOrDestroy) {
  const size_t before = kernel_root_count();
  auto* context = reinterpret_cast<io_context*>(kBase + 0x77000);
  auto* other_context = reinterpret_cast<io_context*>(kBase + 0x78000);
  iocb requests[4]{};
  iocb* list[4];
  for (int i = 0; i < 4; ++i) {
    requests[i].aio_data = kBase + 0x10000 + 0x100 * static_cast<uint64_t>(i);
    requests[i].aio_buf = kBase + 0x20000 + 0x100 * static_cast<uint64_t>(i);
    list[i] = &requests[i];
  }
  auto held = [](const iocb& request) {
    const std::multiset<uint64_t> words = root_words();
    return words.count(reinterpret_cast<uintptr_t>(&request)) + words.count(request.aio_data) +
           words.count(request.aio_buf);
  };
  // The kernel took three of four: the fourth is not recorded.
  g_submitted = 3;
  errno = 0;
  ASSERT_EQ(io_submit_with_roots(fake_io_submit, context, 4, list), 3);
  EXPECT_EQ(errno, 0);
  EXPECT_EQ(kernel_root_count(), before + 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(held(requests[i]), 3u) << "the iocb, its data and its buffer: " << i;
  EXPECT_EQ(held(requests[3]), 0u);
  // A failed submit records nothing.
  g_submitted = -EAGAIN;
  EXPECT_EQ(io_submit_with_roots(fake_io_submit, context, 1, &list[3]), -EAGAIN);
  EXPECT_EQ(kernel_root_count(), before + 3);
  // An event returns request 0 (an event of another context returns nothing of this one).
  io_event event{};
  event.obj = reinterpret_cast<uintptr_t>(&requests[0]);
  event.data = requests[0].aio_data;
  io_events_returned(other_context, &event, 1);
  EXPECT_EQ(held(requests[0]), 3u);
  io_events_returned(context, &event, -EINTR);
  EXPECT_EQ(held(requests[0]), 3u);
  io_events_returned(context, &event, 1);
  EXPECT_EQ(held(requests[0]), 0u);
  EXPECT_EQ(kernel_root_count(), before + 2);
  // A cancel that says -EINPROGRESS (the event comes later) keeps it; success releases it.
  g_cancel_result = -EINPROGRESS;
  EXPECT_EQ(io_cancel_with_roots(fake_io_cancel, context, &requests[1], &event), -EINPROGRESS);
  EXPECT_EQ(held(requests[1]), 3u);
  g_cancel_result = 0;
  EXPECT_EQ(io_cancel_with_roots(fake_io_cancel, context, &requests[1], &event), 0);
  EXPECT_EQ(held(requests[1]), 0u);
  // io_destroy releases what is left of its context only.
  g_submitted = 1;
  ASSERT_EQ(io_submit_with_roots(fake_io_submit, other_context, 1, &list[3]), 1);
  EXPECT_EQ(kernel_root_count(), before + 2);
  EXPECT_EQ(io_destroy_with_roots(fake_io_destroy, context), 0);
  EXPECT_EQ(held(requests[2]), 0u);
  EXPECT_EQ(held(requests[3]), 3u);
  EXPECT_EQ(io_destroy_with_roots(fake_io_destroy, other_context), 0);
  EXPECT_EQ(kernel_root_count(), before);
}

}  // namespace
}  // namespace heapkeeper::collect

/* kernel_held: blocks whose only pointer the kernel holds for a while, then hands back.
 *
 * Each mode allocates a 4000-byte block filled with a pattern, registers it with the kernel, drops
 * every pointer of its own (the registering function's frame is gone and its stack area zeroed),
 * waits 0.8 s, gets the pointer back from the kernel, checks the pattern, and frees the block:
 *   epoll         epoll_ctl(EPOLL_CTL_ADD) with data.ptr = block; back from epoll_wait
 *   timer-signal  timer_create(SIGEV_SIGNAL) with sival_ptr = block; back in sigwaitinfo's si_value
 *   timer-thread  timer_create(SIGEV_THREAD) with sival_ptr = block; back as the thread's argument
 *   aio           aio_read into a block-held aiocb (SIGEV_SIGNAL, sival_ptr = the aiocb); back in
 *                 sigwaitinfo's si_value, then aio_return
 *   libaio        libaio's io_submit of a poll request on a pipe: its iocb (a block of its own)
 *                 and the iocb's data = block; both back in io_getevents's event (obj, data). A
 *                 second request, cancelled by io_destroy, is freed through a pointer kept.
 *                 libaio is opened at run time (the calls looked up in the global scope, as a
 *                 program linked with it finds them); without it both runs say "libaio: missing"
 * Without heapkeeper every mode prints "<mode>: block intact" and exits 0. Under heapkeeper in
 * collect mode with scans every 100 ms, a scan that missed the kernel's reference would free the
 * block after two scans: the pattern would be gone, or the final free a double free.
 */
#define _GNU_SOURCE
#include <aio.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "held_block.h"

static int report(const char* mode, int ok) {
  printf("%s: %s\n", mode, ok ? "block intact" : "BLOCK DAMAGED");
  return ok ? 0 : 1;
}

/* ---- epoll */

static __attribute__((noinline)) int register_with_epoll(int epoll_fd, int fd) {
  unsigned char* block = malloc(BLOCK_BYTES);
  fill(block);
  struct epoll_event event;
  memset(&event, 0, sizeof event);
  event.events = EPOLLIN;
  event.data.ptr = block;
  return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

static int run_epoll(void) {
  int pipe_fds[2];
  const int epoll_fd = epoll_create1(0);
  if (epoll_fd < 0 || pipe(pipe_fds) != 0 || register_with_epoll(epoll_fd, pipe_fds[0]) != 0) return 2;
  clobber_stack();
  pause_ms(WAIT_MS);
  if (write(pipe_fds[1], "x", 1) != 1) return 2;
  struct epoll_event event;
  int n;
  do {
    n = epoll_wait(epoll_fd, &event, 1, 10000);
  } while (n < 0 && errno == EINTR);
  if (n != 1) return 2;
  unsigned char* block = event.data.ptr;
  const int ok = intact(block, 0);
  epoll_ctl(epoll_fd, EPOLL_CTL_DEL, pipe_fds[0], NULL);
  free(block);
  return report("epoll", ok);
}

/* ---- POSIX timer, SIGEV_SIGNAL */

static __attribute__((noinline)) int arm_signal_timer(timer_t* timer) {
  unsigned char* block = malloc(BLOCK_BYTES);
  fill(block);
  struct sigevent event;
  memset(&event, 0, sizeof event);
  event.sigev_notify = SIGEV_SIGNAL;
  event.sigev_signo = SIGRTMIN;
  event.sigev_value.sival_ptr = block;
  if (timer_create(CLOCK_MONOTONIC, &event, timer) != 0) return -1;
  struct itimerspec when = {{0, 0}, {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000000L}};
  return timer_settime(*timer, 0, &when, NULL);
}

static int wait_for_signal(int signo, siginfo_t* info) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signo);
  struct timespec limit = {10, 0};
  int got;
  do {
    got = sigtimedwait(&set, info, &limit);
  } while (got < 0 && errno == EINTR);
  return got == signo ? 0 : -1;
}

static int run_timer_signal(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGRTMIN);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  timer_t timer;
  if (arm_signal_timer(&timer) != 0) return 2;
  clobber_stack();
  siginfo_t info;
  if (wait_for_signal(SIGRTMIN, &info) != 0) return 2;
  unsigned char* block = info.si_value.sival_ptr;
  const int ok = intact(block, 0);
  timer_delete(timer);
  free(block);
  return report("timer-signal", ok);
}

/* ---- POSIX timer, SIGEV_THREAD */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_fired = PTHREAD_COND_INITIALIZER;
static int g_verdict = -1;

static void on_timer(union sigval value) {
  unsigned char* block = value.sival_ptr;
  const int ok = intact(block, 0);
  free(block);
  pthread_mutex_lock(&g_lock);
  g_verdict = ok;
  pthread_cond_broadcast(&g_fired);
  pthread_mutex_unlock(&g_lock);
}

static __attribute__((noinline)) int arm_thread_timer(timer_t* timer) {
  unsigned char* block = malloc(BLOCK_BYTES);
  fill(block);
  struct sigevent event;
  memset(&event, 0, sizeof event);
  event.sigev_notify = SIGEV_THREAD;
  event.sigev_notify_function = on_timer;
  event.sigev_value.sival_ptr = block;
  if (timer_create(CLOCK_MONOTONIC, &event, timer) != 0) return -1;
  struct itimerspec when = {{0, 0}, {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000000L}};
  return timer_settime(*timer, 0, &when, NULL);
}

static int run_timer_thread(void) {
  timer_t timer;
  if (arm_thread_timer(&timer) != 0) return 2;
  clobber_stack();
  pthread_mutex_lock(&g_lock);
  while (g_verdict < 0) pthread_cond_wait(&g_fired, &g_lock);
  const int ok = g_verdict;
  pthread_mutex_unlock(&g_lock);
  timer_delete(timer);
  return report("timer-thread", ok);
}

/* ---- AIO: the aiocb itself lives in the block, after the pattern's first bytes are overwritten */

static __attribute__((noinline)) int start_read(int fd, char* buffer) {
  unsigned char* block = malloc(BLOCK_BYTES);
  fill(block);
  struct aiocb* request = (struct aiocb*)block; /* the pattern stays intact after it */
  memset(request, 0, sizeof *request);
  request->aio_fildes = fd;
  request->aio_buf = buffer;
  request->aio_nbytes = 1;
  request->aio_sigevent.sigev_notify = SIGEV_SIGNAL;
  request->aio_sigevent.sigev_signo = SIGRTMIN + 1;
  request->aio_sigevent.sigev_value.sival_ptr = request;
  return aio_read(request);
}

static char g_buffer[8];

static int run_aio(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGRTMIN + 1);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0 || start_read(pipe_fds[0], g_buffer) != 0) return 2;
  clobber_stack();
  pause_ms(WAIT_MS);
  if (write(pipe_fds[1], "y", 1) != 1) return 2;
  siginfo_t info;
  if (wait_for_signal(SIGRTMIN + 1, &info) != 0) return 2;
  struct aiocb* request = info.si_value.sival_ptr;
  const int ok = intact((const unsigned char*)request, (int)sizeof *request) && aio_error(request) == 0 &&
                 aio_return(request) == 1 && g_buffer[0] == 'y';
  free(request);
  return report("aio", ok);
}

/* ---- libaio (kernel AIO): the kernel's struct iocb and io_event, which libaio's are */

struct KernelIocb {
  uint64_t data;
  uint32_t key, rw_flags;
  uint16_t opcode;
  int16_t priority;
  uint32_t fd;
  uint64_t buffer, bytes;
  int64_t offset;
  uint64_t reserved;
  uint32_t flags, result_fd;
};
struct KernelEvent {
  uint64_t data, object;
  int64_t result, result2;
};
enum { kIocbPoll = 5 };

typedef int (*IoSetup)(int, void**);
typedef int (*IoSubmit)(void*, long, struct KernelIocb**);
typedef int (*IoGetEvents)(void*, long, long, struct KernelEvent*, struct timespec*);
typedef int (*IoDestroy)(void*);

static __attribute__((noinline)) int submit_poll(IoSubmit io_submit_call, void* context, int fd) {
  unsigned char* block = malloc(BLOCK_BYTES);
  fill(block);
  struct KernelIocb* request = calloc(1, sizeof *request);
  request->data = (uintptr_t)block;
  request->opcode = kIocbPoll;
  request->fd = (uint32_t)fd;
  request->buffer = POLLIN;
  return io_submit_call(context, 1, &request);
}

static int run_libaio(void) {
  if (dlopen("libaio.so.1", RTLD_NOW | RTLD_GLOBAL) == NULL) {
    puts("libaio: missing");
    return 0;
  }
  IoSetup io_setup_call = (IoSetup)dlsym(RTLD_DEFAULT, "io_setup");
  IoSubmit io_submit_call = (IoSubmit)dlsym(RTLD_DEFAULT, "io_submit");
  IoGetEvents io_getevents_call = (IoGetEvents)dlsym(RTLD_DEFAULT, "io_getevents");
  IoDestroy io_destroy_call = (IoDestroy)dlsym(RTLD_DEFAULT, "io_destroy");
  void* context = NULL;
  int pipe_fds[2];
  if (io_setup_call == NULL || io_submit_call == NULL || io_getevents_call == NULL || io_destroy_call == NULL ||
      io_setup_call(8, &context) != 0 || pipe(pipe_fds) != 0 || submit_poll(io_submit_call, context, pipe_fds[0]) != 1)
    return 2;
  /* A second request on another pipe that never becomes readable: io_destroy cancels it. */
  int idle_fds[2];
  struct KernelIocb* idle = calloc(1, sizeof *idle);
  unsigned char* idle_block = malloc(BLOCK_BYTES);
  fill(idle_block);
  if (pipe(idle_fds) != 0) return 2;
  idle->data = (uintptr_t)idle_block;
  idle->opcode = kIocbPoll;
  idle->fd = (uint32_t)idle_fds[0];
  idle->buffer = POLLIN;
  if (io_submit_call(context, 1, &idle) != 1) return 2;
  clobber_stack();
  pause_ms(WAIT_MS);
  if (write(pipe_fds[1], "z", 1) != 1) return 2;
  struct KernelEvent event;
  int n;
  do {
    n = io_getevents_call(context, 1, 1, &event, NULL);
  } while (n == -EINTR);
  if (n != 1) return 2;
  struct KernelIocb* request = (struct KernelIocb*)(uintptr_t)event.object;
  unsigned char* block = (unsigned char*)(uintptr_t)event.data;
  const int ok =
      request->opcode == kIocbPoll && request->data == event.data && (event.result & POLLIN) != 0 && intact(block, 0);
  free(block);
  free(request);
  if (io_destroy_call(context) != 0) return 2;
  const int idle_ok = intact(idle_block, 0);
  free(idle_block);
  free(idle);
  return report("libaio", ok && idle_ok);
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "epoll") == 0) return run_epoll();
  if (strcmp(mode, "timer-signal") == 0) return run_timer_signal();
  if (strcmp(mode, "timer-thread") == 0) return run_timer_thread();
  if (strcmp(mode, "aio") == 0) return run_aio();
  if (strcmp(mode, "libaio") == 0) return run_libaio();
  fprintf(stderr, "usage: kernel_held epoll|timer-signal|timer-thread|aio|libaio\n");
  return 2;
}

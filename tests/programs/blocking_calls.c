// Every blocking call a scan must leave alone, each in its own thread, timing out after 1.5 s.
// A scan that cuts one short (an early return, EINTR) or makes it return something else changes
// the line printed for it; the integration test compares the output with a plain run and runs
// it under 100 ms periodic scans and on-demand scans. Only outcomes are printed, never timings.
// `blocking_calls more`: libc's other calls that a stopped thread leaves early (SysV semaphores,
// recvmmsg, sends on a socket with SO_SNDTIMEO, a large write to a pipe: a short count; a TCP connect
// with SO_SNDTIMEO to a listener whose backlog is full; libaio's io_getevents).
// With HK_STOP_FILE naming a FIFO, each thread repeats its call until a byte arrives there (the
// test sends it once enough scans have run, however slowly a loaded machine scans), and its line
// says how the worst of its calls went.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ipc.h>
#include <sys/select.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kWaitMs = 1500 };
// Generous: a loaded machine may wake a thread late, never early.
static const double kLateLimitSeconds = 4.0;

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void* volatile g_held;  // a block the program holds across its waits

struct Outcome {
  const char* name;
  long result;
  int error;
  double elapsed;
};

#define MEASURE(outcome, call)                     \
  do {                                             \
    double started_ = now_seconds();               \
    errno = 0;                                     \
    (outcome)->result = (long)(call);              \
    (outcome)->error = errno;                      \
    (outcome)->elapsed = now_seconds() - started_; \
  } while (0)

static void wait_sleep(struct Outcome* o) { MEASURE(o, sleep(2)); }  // sleep counts whole seconds
static void wait_usleep(struct Outcome* o) { MEASURE(o, usleep(kWaitMs * 1000)); }
static void wait_nanosleep(struct Outcome* o) {
  struct timespec t = {1, 500000000};
  MEASURE(o, nanosleep(&t, NULL));
}
static void wait_clock_nanosleep(struct Outcome* o) {
  struct timespec t = {1, 500000000};
  MEASURE(o, clock_nanosleep(CLOCK_MONOTONIC, 0, &t, NULL));
}
static void wait_poll(struct Outcome* o) { MEASURE(o, poll(NULL, 0, kWaitMs)); }
static void wait_ppoll(struct Outcome* o) {
  struct timespec t = {1, 500000000};
  MEASURE(o, ppoll(NULL, 0, &t, NULL));
}
static void wait_select(struct Outcome* o) {
  struct timeval t = {1, 500000};
  MEASURE(o, select(0, NULL, NULL, NULL, &t));
}
static void wait_pselect(struct Outcome* o) {
  struct timespec t = {1, 500000000};
  MEASURE(o, pselect(0, NULL, NULL, NULL, &t, NULL));
}
static void wait_epoll_wait(struct Outcome* o) {
  int epoll = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event event;
  MEASURE(o, epoll_wait(epoll, &event, 1, kWaitMs));
  close(epoll);
}
static void wait_epoll_pwait(struct Outcome* o) {
  int epoll = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event event;
  sigset_t none;
  sigemptyset(&none);
  MEASURE(o, epoll_pwait(epoll, &event, 1, kWaitMs, &none));
  close(epoll);
}
static void wait_sigtimedwait(struct Outcome* o) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);  // blocked in every thread by main, never sent
  struct timespec t = {1, 500000000};
  MEASURE(o, sigtimedwait(&set, NULL, &t));
}
static int socket_with_timeout(int domain, int fd_out[2]) {
  struct timeval t = {1, 500000};
  if (domain == AF_UNIX) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fd_out) != 0) return -1;
  } else {
    fd_out[0] = socket(AF_INET, SOCK_STREAM, 0);
    fd_out[1] = -1;
    struct sockaddr_in address;
    memset(&address, 0, sizeof(address));
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd_out[0], (struct sockaddr*)&address, sizeof(address)) != 0 || listen(fd_out[0], 1) != 0) return -1;
  }
  return setsockopt(fd_out[0], SOL_SOCKET, SO_RCVTIMEO, &t, sizeof(t));
}
static void wait_read(struct Outcome* o) {
  int fds[2];
  char byte;
  socket_with_timeout(AF_UNIX, fds);
  MEASURE(o, read(fds[0], &byte, 1));
}
static void wait_recv(struct Outcome* o) {
  int fds[2];
  char byte;
  socket_with_timeout(AF_UNIX, fds);
  MEASURE(o, recv(fds[0], &byte, 1, 0));
}
static void wait_recvfrom(struct Outcome* o) {
  int fds[2];
  char byte;
  socket_with_timeout(AF_UNIX, fds);
  MEASURE(o, recvfrom(fds[0], &byte, 1, 0, NULL, NULL));
}
static void wait_accept(struct Outcome* o) {
  int fds[2];
  socket_with_timeout(AF_INET, fds);
  MEASURE(o, accept(fds[0], NULL, NULL));
}

// The "more" cases.
// The poster's 1.5 s start when the waiter is about to call semop, not when the poster's thread
// starts: pthread_create may return well after the new thread began (heapkeeper's registration of
// it, on a slow machine 7 ms), and the semop then measured short of 1.5 s without returning early.
struct Poster {
  int semaphore;
  atomic_int go;
};
static void* post_later(void* argument) {
  struct Poster* poster = argument;
  while (!atomic_load(&poster->go)) {
    const struct timespec spin = {0, 100000};
    nanosleep(&spin, NULL);
  }
  struct timespec t = {1, 500000000};
  nanosleep(&t, NULL);
  struct sembuf up = {0, 1, 0};
  semop(poster->semaphore, &up, 1);
  return NULL;
}
static void wait_semop(struct Outcome* o) {
  struct Poster poster = {semget(IPC_PRIVATE, 1, 0600), 0};
  pthread_t thread;
  pthread_create(&thread, NULL, post_later, &poster);
  struct sembuf down = {0, -1, 0};
  atomic_store(&poster.go, 1);
  MEASURE(o, semop(poster.semaphore, &down, 1));
  pthread_join(thread, NULL);
  semctl(poster.semaphore, 0, IPC_RMID);
}
static void wait_semtimedop(struct Outcome* o) {
  int semaphore = semget(IPC_PRIVATE, 1, 0600);
  struct sembuf down = {0, -1, 0};
  struct timespec t = {1, 500000000};
  MEASURE(o, semtimedop(semaphore, &down, 1, &t));
  semctl(semaphore, 0, IPC_RMID);
}
static void wait_recvmmsg(struct Outcome* o) {
  int fds[2];
  char byte;
  socket_with_timeout(AF_UNIX, fds);
  struct iovec vector = {&byte, 1};
  struct mmsghdr message;
  memset(&message, 0, sizeof(message));
  message.msg_hdr.msg_iov = &vector;
  message.msg_hdr.msg_iovlen = 1;
  MEASURE(o, recvmmsg(fds[0], &message, 1, 0, NULL));
}
// A stream socket whose buffer is full, with a 1.5 s send timeout: the next send blocks.
static int full_socket(int fds[2], char* chunk, size_t size) {
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return -1;
  while (send(fds[0], chunk, size, MSG_DONTWAIT) > 0) {
  }
  struct timeval t = {1, 500000};
  return setsockopt(fds[0], SOL_SOCKET, SO_SNDTIMEO, &t, sizeof(t));
}
static char g_chunk[4096];
static void wait_send(struct Outcome* o) {
  int fds[2];
  full_socket(fds, g_chunk, sizeof(g_chunk));
  MEASURE(o, send(fds[0], g_chunk, sizeof(g_chunk), 0));
}
static void wait_sendto(struct Outcome* o) {
  int fds[2];
  full_socket(fds, g_chunk, sizeof(g_chunk));
  MEASURE(o, sendto(fds[0], g_chunk, sizeof(g_chunk), 0, NULL, 0));
}
static void wait_sendmsg(struct Outcome* o) {
  int fds[2];
  full_socket(fds, g_chunk, sizeof(g_chunk));
  struct iovec vector = {g_chunk, sizeof(g_chunk)};
  struct msghdr message;
  memset(&message, 0, sizeof(message));
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  MEASURE(o, sendmsg(fds[0], &message, 0));
}
static void wait_write_socket(struct Outcome* o) {
  int fds[2];
  full_socket(fds, g_chunk, sizeof(g_chunk));
  MEASURE(o, write(fds[0], g_chunk, sizeof(g_chunk)));
}
// A reader that starts draining the pipe after 1.5 s: the writer's 1 MiB write blocks until
// then, and plainly returns the whole count (a signal-free blocking write to a pipe is never short).
static void* drain_later(void* argument) {
  struct timespec t = {1, 500000000};
  nanosleep(&t, NULL);
  char buffer[65536];
  while (read(*(int*)argument, buffer, sizeof(buffer)) > 0) {
  }
  return NULL;
}
static void wait_write_pipe(struct Outcome* o) {
  enum { kBytes = 1 << 20 };
  int fds[2];
  if (pipe(fds) != 0) return;
  char* data = calloc(1, kBytes);
  pthread_t reader;
  pthread_create(&reader, NULL, drain_later, &fds[0]);
  MEASURE(o, write(fds[1], data, kBytes));
  close(fds[1]);
  pthread_join(reader, NULL);
  close(fds[0]);
  free(data);
}

// A TCP connect to a listener whose backlog is full, with a 1.5 s send timeout: the SYN goes
// unanswered and the call waits the whole timeout, then says EINPROGRESS. The kernel leaves it
// with EINTR at once after a stop, whatever the tracer does (signal(7)).
static void wait_connect(struct Outcome* o) {
  struct sockaddr_in address;
  memset(&address, 0, sizeof(address));
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(address);
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0 || bind(listener, (struct sockaddr*)&address, size) != 0 ||
      getsockname(listener, (struct sockaddr*)&address, &size) != 0 || listen(listener, 0) != 0)
    return;
  // The backlog's one place taken, and one more connection waiting on it.
  const int first = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int second = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  connect(first, (struct sockaddr*)&address, size);
  connect(second, (struct sockaddr*)&address, size);
  const int third = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct timeval t = {1, 500000};
  setsockopt(third, SOL_SOCKET, SO_SNDTIMEO, &t, sizeof(t));
  MEASURE(o, connect(third, (struct sockaddr*)&address, size));
  close(third);
  close(second);
  close(first);
  close(listener);
}

// libaio's io_getevents with a 1.5 s timeout and nothing submitted: 0 after the timeout, EINTR at
// once after a stop (signal(7)). libaio is opened at run time, into the global scope, and the
// calls looked up there, as a program linked with it finds them (heapkeeper's wrapper first);
// without libaio both runs say so alike.
struct AioEvent {
  uint64_t data, object;
  int64_t result, result2;
};
typedef int (*AioSetup)(unsigned, void**);
typedef int (*AioGetEvents)(void*, long, long, struct AioEvent*, struct timespec*);
typedef int (*AioDestroy)(void*);
static AioSetup g_aio_setup;
static AioGetEvents g_aio_get_events;
static AioDestroy g_aio_destroy;
static pthread_once_t g_aio_once = PTHREAD_ONCE_INIT;
static void open_libaio(void) {
  if (dlopen("libaio.so.1", RTLD_NOW | RTLD_GLOBAL) == NULL) return;
  g_aio_get_events = (AioGetEvents)dlsym(RTLD_DEFAULT, "io_getevents");
  g_aio_destroy = (AioDestroy)dlsym(RTLD_DEFAULT, "io_destroy");
  if (g_aio_get_events != NULL && g_aio_destroy != NULL) g_aio_setup = (AioSetup)dlsym(RTLD_DEFAULT, "io_setup");
}
static void wait_io_getevents(struct Outcome* o) {
  pthread_once(&g_aio_once, open_libaio);
  if (g_aio_setup == NULL) {
    o->result = -1;
    o->error = ENOSYS;
    o->elapsed = 1.5;
    return;
  }
  void* context = NULL;
  if (g_aio_setup(1, &context) != 0) return;
  struct AioEvent event;
  struct timespec t = {1, 500000000};
  MEASURE(o, g_aio_get_events(context, 1, 1, &event, &t));
  g_aio_destroy(context);
}

struct Case {
  const char* name;
  void (*wait)(struct Outcome*);
  double seconds;  // how long the call must take at least
};

static const struct Case kCases[] = {
    {"sleep", wait_sleep, 2.0},
    {"usleep", wait_usleep, 1.5},
    {"nanosleep", wait_nanosleep, 1.5},
    {"clock_nanosleep", wait_clock_nanosleep, 1.5},
    {"poll", wait_poll, 1.5},
    {"ppoll", wait_ppoll, 1.5},
    {"select", wait_select, 1.5},
    {"pselect", wait_pselect, 1.5},
    {"epoll_wait", wait_epoll_wait, 1.5},
    {"epoll_pwait", wait_epoll_pwait, 1.5},
    {"sigtimedwait", wait_sigtimedwait, 1.5},
    {"read (SO_RCVTIMEO)", wait_read, 1.5},
    {"recv (SO_RCVTIMEO)", wait_recv, 1.5},
    {"recvfrom (SO_RCVTIMEO)", wait_recvfrom, 1.5},
    {"accept (SO_RCVTIMEO)", wait_accept, 1.5},
};
static const struct Case kMoreCases[] = {
    {"semop", wait_semop, 1.5},
    {"semtimedop", wait_semtimedop, 1.5},
    {"recvmmsg (SO_RCVTIMEO)", wait_recvmmsg, 1.5},
    {"send (SO_SNDTIMEO)", wait_send, 1.5},
    {"sendto (SO_SNDTIMEO)", wait_sendto, 1.5},
    {"sendmsg (SO_SNDTIMEO)", wait_sendmsg, 1.5},
    {"write (SO_SNDTIMEO)", wait_write_socket, 1.5},
    {"write (1 MiB to a pipe)", wait_write_pipe, 1.5},
    {"connect (SO_SNDTIMEO)", wait_connect, 1.5},
    {"io_getevents (libaio)", wait_io_getevents, 1.5},
};
enum {
  kCaseCount = sizeof(kCases) / sizeof(kCases[0]),
  kMoreCaseCount = sizeof(kMoreCases) / sizeof(kMoreCases[0]),
  kMostCases = kCaseCount > kMoreCaseCount ? kCaseCount : kMoreCaseCount,
};
static struct Outcome g_outcomes[kMostCases];
static const struct Case* g_cases = kCases;

static atomic_int g_stop = 1;         // 0 while a stop file is waited for
static double g_longest[kMostCases];  // each case's longest call (its shortest is in g_outcomes)
static int g_changed[kMostCases];     // a repeated call returned something else

static void* run_case(void* argument) {
  const struct Case* c = argument;
  const int index = (int)(c - g_cases);
  struct Outcome* o = &g_outcomes[index];
  // The thread holds a block of its own only on its stack while it waits.
  char* volatile mine = malloc(64);
  strcpy(mine, c->name);
  c->wait(o);
  g_longest[index] = o->elapsed;
  while (!atomic_load(&g_stop)) {
    struct Outcome again = *o;
    c->wait(&again);
    if (again.result != o->result || again.error != o->error) g_changed[index] = 1;
    if (again.elapsed < o->elapsed) o->elapsed = again.elapsed;
    if (again.elapsed > g_longest[index]) g_longest[index] = again.elapsed;
  }
  o->name = mine;
  return NULL;
}

int main(int argc, char** argv) {
  int case_count = kCaseCount;
  if (argc > 1 && strcmp(argv[1], "more") == 0) {
    g_cases = kMoreCases;
    case_count = kMoreCaseCount;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  g_held = malloc(100);
  pthread_t threads[kMostCases];
  const char* stop_path = getenv("HK_STOP_FILE");
  int stop_file = -1;
  if (stop_path != NULL) {
    stop_file = open(stop_path, O_RDONLY | O_CLOEXEC);
    if (stop_file < 0) {
      perror(stop_path);
      return 2;
    }
    atomic_store(&g_stop, 0);
  }
  for (int i = 0; i < case_count; ++i) pthread_create(&threads[i], NULL, run_case, (void*)&g_cases[i]);
  if (stop_file >= 0) {
    char byte;
    while (read(stop_file, &byte, 1) < 0 && errno == EINTR) {
    }
    atomic_store(&g_stop, 1);
  }
  for (int i = 0; i < case_count; ++i) pthread_join(threads[i], NULL);
  int failures = 0;
  for (int i = 0; i < case_count; ++i) {
    const struct Outcome* o = &g_outcomes[i];
    const char* verdict = "ok";
    if (o->elapsed < g_cases[i].seconds - 0.005)
      verdict = "RETURNED EARLY";
    else if (g_longest[i] > g_cases[i].seconds + kLateLimitSeconds)
      verdict = "RETURNED LATE";
    else if (g_changed[i])
      verdict = "RETURNED SOMETHING ELSE WHEN REPEATED";
    if (strcmp(verdict, "ok") != 0) ++failures;
    printf("%-24s result %ld, errno %s: %s\n", g_cases[i].name, o->result, o->result < 0 ? strerror(o->error) : "-",
           verdict);
    if (strcmp(verdict, "ok") != 0)
      fprintf(stderr, "%s took %.3f to %.3f s, expected %.1f s\n", g_cases[i].name, o->elapsed, g_longest[i],
              g_cases[i].seconds);
    free((void*)o->name);
  }
  free(g_held);
  return failures == 0 ? 0 : 1;
}

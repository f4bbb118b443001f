/* Signal masks kept across allocations whose stacks libunwind looks up for the first time.
 *
 * Usage: unwinder_masks [ROUNDS]
 * heapkeeper does libunwind's block-every-signal-and-restore around each of its look-ups without
 * a system call (allocator/unwinder_masks.h); this checks that nothing a program sees comes of it.
 * Two threads, each with its own mask (the main thread blocks SIGUSR1 and SIGUSR2, the other
 * SIGUSR2 and SIGWINCH), allocate ROUNDS times from 64 call sites at varying depths, so that the
 * first captures of each stack go through libunwind's look-ups. After every allocation a thread
 * reads its mask back, and a SIGUSR1 raised while blocked must stay pending until the end. An
 * interval timer's SIGALRM lands meanwhile (often inside a capture): its handler changes and
 * restores its own mask with sigprocmask, which must take effect even there, and makes a call with
 * a set shaped like heapkeeper's marker (SIGKILL and SIGSTOP alone). Output is
 * deterministic: the counts and the errors, which must be 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "call_sites.h"

static volatile sig_atomic_t usr1_delivered;
static volatile sig_atomic_t alarms_handled;
static volatile sig_atomic_t handler_errors;

static void on_usr1(int signo) {
  (void)signo;
  usr1_delivered = 1;
}

/* Blocks SIGTERM with sigprocmask, checks that it took, and restores the handler's mask: a call of
 * the program's own, made while heapkeeper may be in the middle of a capture on this thread. */
static void on_alarm(int signo) {
  (void)signo;
  sigset_t term, saved, now;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &term, &saved) != 0) handler_errors++;
  if (sigprocmask(SIG_BLOCK, NULL, &now) != 0 || !sigismember(&now, SIGTERM) || !sigismember(&now, SIGALRM))
    handler_errors++;
  if (sigprocmask(SIG_SETMASK, &saved, NULL) != 0) handler_errors++;
  if (sigprocmask(SIG_BLOCK, NULL, &now) != 0 || sigismember(&now, SIGTERM)) handler_errors++;
  /* A set holding SIGKILL and SIGSTOP alone, the shape of heapkeeper's marker for an elided block:
   * still the program's own call, whose saved mask is the handler's (SIGALRM blocked in it). */
  sigset_t kill_stop;
  sigemptyset(&kill_stop);
  sigaddset(&kill_stop, SIGKILL);
  sigaddset(&kill_stop, SIGSTOP);
  if (sigprocmask(SIG_BLOCK, &kill_stop, &saved) != 0 || !sigismember(&saved, SIGALRM)) handler_errors++;
  alarms_handled++;
}

struct Worker {
  int rounds;
  int blocked[2]; /* the signals this thread keeps blocked */
  int errors;     /* allocations after which the mask was not the thread's */
  int allocations;
};

static int mask_is(const struct Worker* worker) {
  sigset_t now;
  if (sigprocmask(SIG_BLOCK, NULL, &now) != 0) return 0;
  for (int signo = 1; signo < 32; ++signo) {
    const int expected = signo == worker->blocked[0] || signo == worker->blocked[1];
    if (sigismember(&now, signo) != expected) return 0;
  }
  return 1;
}

static void* work(void* argument) {
  struct Worker* worker = argument;
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, worker->blocked[0]);
  sigaddset(&mask, worker->blocked[1]);
  if (pthread_sigmask(SIG_SETMASK, &mask, NULL) != 0) worker->errors++;
  for (int round = 0; round < worker->rounds; ++round) {
    void* block = kSites[round % kSiteCount](round / kSiteCount % 9, 16);
    if (block == NULL) continue;
    memset(block, round & 0xff, 16);
    free(block);
    worker->allocations++;
    if (!mask_is(worker)) worker->errors++;
  }
  return NULL;
}

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 20000;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_usr1;
  sigaction(SIGUSR1, &action, NULL);
  action.sa_handler = on_alarm;
  action.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &action, NULL);

  struct Worker main_worker = {rounds, {SIGUSR1, SIGUSR2}, 0, 0};
  struct Worker other_worker = {rounds, {SIGUSR2, SIGWINCH}, 0, 0};
  /* The other thread starts with SIGALRM and SIGUSR1 blocked, so both go to the main thread. */
  sigset_t startup;
  sigemptyset(&startup);
  sigaddset(&startup, SIGUSR1);
  sigaddset(&startup, SIGUSR2);
  sigaddset(&startup, SIGALRM);
  sigprocmask(SIG_SETMASK, &startup, NULL);
  pthread_t other;
  if (pthread_create(&other, NULL, work, &other_worker) != 0) return 1;
  raise(SIGUSR1); /* pending: the main thread blocks it until the end */

  struct itimerval timer = {{0, 500}, {0, 500}};
  setitimer(ITIMER_REAL, &timer, NULL);
  work(&main_worker);
  pthread_join(other, NULL);
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);

  const int pending_until_end = !usr1_delivered;
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_UNBLOCK, &usr1, NULL);

  printf("main thread: %d allocations, mask changed after %d\n", main_worker.allocations, main_worker.errors);
  printf("other thread: %d allocations, mask changed after %d\n", other_worker.allocations, other_worker.errors);
  printf("SIGUSR1 stayed pending while blocked: %s; delivered once unblocked: %s\n", pending_until_end ? "yes" : "no",
         usr1_delivered ? "yes" : "no");
  printf("SIGALRM handled: %s; handler mask errors: %d\n", alarms_handled > 0 ? "yes" : "no", (int)handler_errors);
  return main_worker.errors + other_worker.errors + handler_errors == 0 && pending_until_end && usr1_delivered ? 0 : 1;
}

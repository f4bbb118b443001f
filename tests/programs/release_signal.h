/* A test program that holds still until the test sends SIGUSR1: the signal is blocked from the
 * start, so a SIGUSR1 sent as soon as the program says it is ready (a pid file) is not lost, and
 * waited for with sigsuspend. Header-only, for the programs of tests/programs. */
#ifndef HEAPKEEPER_TESTS_RELEASE_SIGNAL_H
#define HEAPKEEPER_TESTS_RELEASE_SIGNAL_H

#include <signal.h>

static volatile sig_atomic_t release_signal_received;

static void on_release_signal(int signal_number) {
  (void)signal_number;
  release_signal_received = 1;
}

/* Blocks SIGUSR1 and installs its handler; `waiting_mask` receives the mask to wait with. */
static void block_release_signal(sigset_t* waiting_mask) {
  sigset_t release_signal;
  sigemptyset(&release_signal);
  sigaddset(&release_signal, SIGUSR1);
  sigprocmask(SIG_BLOCK, &release_signal, waiting_mask);
  sigdelset(waiting_mask, SIGUSR1);
  signal(SIGUSR1, on_release_signal);
}

/* Returns once SIGUSR1 has come (at once if it already has). */
static void wait_for_release_signal(const sigset_t* waiting_mask) {
  while (!release_signal_received) sigsuspend(waiting_mask);
}

#endif

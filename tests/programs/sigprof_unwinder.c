/* A program that unwinds with libunwind itself, in a SIGPROF handler (as a sampling profiler
 * does), while it allocates from call sites it has not used before.
 *
 * Usage: sigprof_unwinder [ROUNDS]
 * Linked with libunwind.so, the copy heapkeeper unwinds with: heapkeeper must then keep
 * libunwind's mutexes' signal blocks (a handler that unwinds while its thread holds one would wait
 * for it for ever; allocator/unwinder_masks.h). A 1 ms ITIMER_PROF's handler takes a backtrace;
 * the main thread allocates ROUNDS times from 64 call sites at varying depths, and then on until
 * five samples were taken. Output: the rounds, a checksum, and whether the samples had frames.
 */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "call_sites.h"

static volatile sig_atomic_t samples;
static volatile sig_atomic_t deepest;

static void on_sample(int signo) {
  (void)signo;
  void* frames[64];
  const int depth = unw_backtrace(frames, 64);
  if (depth > deepest) deepest = depth;
  samples++;
}

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 20000;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_sample;
  action.sa_flags = SA_RESTART;
  sigaction(SIGPROF, &action, NULL);
  struct itimerval timer = {{0, 1000}, {0, 1000}};
  setitimer(ITIMER_PROF, &timer, NULL);
  unsigned long checksum = 0;
  for (int round = 0; round < rounds; ++round) {
    char* block = kSites[round % kSiteCount](round / kSiteCount % 11, 8);
    if (block == NULL) continue;
    memset(block, round & 0xff, 8);
    checksum += (unsigned char)block[3];
    free(block);
  }
  // Then on until the profiler has sampled a few times, whatever the machine's speed.
  for (long extra = 0; samples < 5 && extra < 50000000; ++extra) {
    char* block = kSites[extra % kSiteCount](extra / kSiteCount % 11, 8);
    free(block);
  }
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_PROF, &off, NULL);
  printf("%d rounds, checksum %lu, sampled: %s\n", rounds, checksum, samples >= 5 && deepest > 1 ? "yes" : "no");
  return 0;
}

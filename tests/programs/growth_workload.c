/* One site grows, one churns (tests/integration/growth.sh). Every 50 ms: grow_cache keeps one more
 * 4 KiB block (a cache nobody trims: reachable, so no scan reports it); churn frees its pool and
 * allocates it again, 100 or 200 blocks of 1 KiB by turns, so its live bytes go up and down
 * around a level. Prints "ready" and runs until SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void* cache[100000];
void* pool[200];
static volatile sig_atomic_t stop;

static void on_term(int signal_number) {
  (void)signal_number;
  stop = 1;
}

__attribute__((noinline)) void* grow_cache(void) { return malloc(4096); }
__attribute__((noinline)) void* churn(void) { return malloc(1024); }

int main(void) {
  signal(SIGTERM, on_term);
  printf("ready\n");
  fflush(stdout);
  for (int round = 0; !stop && round < 100000; round++) {
    cache[round] = grow_cache();
    for (int i = 0; i < 200; i++) {
      free(pool[i]);
      pool[i] = NULL;
    }
    const int count = round % 2 ? 200 : 100;
    for (int i = 0; i < count; i++) pool[i] = churn();
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  return 0;
}

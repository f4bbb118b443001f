// A process one of whose threads cannot be stopped for a while: it waits in vfork() for a child
// that sleeps before it exits. A vfork parent waits in the kernel where only a fatal signal wakes
// it, so ptrace's interrupt cannot stop it until the child is gone, and a scan's deadline to stop
// the world passes (transparent_scans.sh "unstoppable": such scans are skipped silently unless
// several in a row are, and the program runs as it would without heapkeeper).
//
// Usage: unstoppable_thread SECONDS
// Prints "child slept N s" once the vfork returns, then "done".
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  const int seconds = argc > 1 ? atoi(argv[1]) : 5;
  char* kept = malloc(100);  // a block for the scans to mark once they can run
  // The child shares the parent's memory until it exits: it only sleeps and exits, through raw
  // system calls (no library state touched).
  const pid_t child = vfork();
  if (child == 0) {
    struct timespec pause = {seconds, 0};
    syscall(SYS_nanosleep, &pause, NULL);
    syscall(SYS_exit, 0);
  }
  if (child < 0) {
    perror("vfork");
    return 1;
  }
  int status = 0;
  waitpid(child, &status, 0);
  printf("child slept %d s\n", seconds);
  // Room for a scan after the child is gone.
  struct timespec pause = {1, 500000000};
  nanosleep(&pause, NULL);
  free(kept);
  printf("done\n");
  return 0;
}

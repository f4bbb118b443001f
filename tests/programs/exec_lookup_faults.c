/* exec_lookup_faults: how many page faults a fork child's first exec call takes (exec_originals.sh).
 *
 * heapkeeper's exec wrappers need the original function, looked up in the loaded objects' symbol
 * tables. A child that has to look it up itself walks pages a fresh child has not mapped (the
 * symbol tables of libc, the walk's code); one whose parent looked it up after its first fork
 * inherits the answer. Two children, one after the other, each time a failing execve (of a missing
 * file: it returns) and print the minor page faults it took: "child N: F faults".
 *
 * Usage: exec_lookup_faults
 */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static long minor_faults(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

int main(void) {
  for (int child = 1; child <= 2; ++child) {
    int channel[2];
    if (pipe(channel) != 0) return 2;
    const pid_t pid = fork();
    if (pid == 0) {
      char* const argv[] = {"/nonexistent/heapkeeper-test/prog", NULL};
      char* const envp[] = {NULL};
      const long before = minor_faults();
      execve(argv[0], argv, envp);
      const long faults = minor_faults() - before;
      (void)!write(channel[1], &faults, sizeof(faults));
      _exit(0);
    }
    close(channel[1]);
    long faults = -1;
    if (read(channel[0], &faults, sizeof(faults)) != (ssize_t)sizeof(faults)) faults = -1;
    close(channel[0]);
    waitpid(pid, NULL, 0);
    printf("child %d: %ld faults\n", child, faults);
  }
  return 0;
}

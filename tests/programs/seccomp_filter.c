/* A program that sandboxes itself the way services do (systemd's SystemCallFilter=~@debug, or an
 * allow-list without @debug): a seccomp filter, on every thread (TSYNC), that kills the process
 * on the debugging system calls — ptrace, process_vm_readv, process_vm_writev, perf_event_open —
 * or, with `errno`, makes them fail with EPERM. Then it works (allocates, frees, leaks one block,
 * sleeps a little so that periodic scans run) and prints one line. Plain, it exits 0 whatever the
 * action: it never makes those calls itself. With `exec CMD...`, it installs the killing filter
 * and execs CMD, which inherits it, as a service manager or sandbox launcher does.
 * Usage: hk_prog_seccomp_filter kill|errno|exec CMD... */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* One rule of the filter: the call numbered `number` gets `action`. */
#define DENY(number, action) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (number), 0, 1), BPF_STMT(BPF_RET | BPF_K, (action))

static void* blocks[256];
static void* volatile lost;

int main(int argc, char** argv) {
  const int exec = argc > 2 && strcmp(argv[1], "exec") == 0;
  if (!exec && (argc != 2 || (strcmp(argv[1], "kill") != 0 && strcmp(argv[1], "errno") != 0))) {
    fprintf(stderr, "usage: %s kill|errno|exec CMD...\n", argv[0]);
    return 2;
  }
  const unsigned int action =
      exec || strcmp(argv[1], "kill") == 0 ? SECCOMP_RET_KILL_PROCESS : SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  /* (A filter that does not check seccomp_data.arch is enough here: the program is x86-64 only.) */
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      DENY(__NR_ptrace, action),
      DENY(__NR_process_vm_readv, action),
      DENY(__NR_process_vm_writev, action),
      DENY(__NR_perf_event_open, action),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog program = {sizeof filter / sizeof filter[0], filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    perror("prctl(PR_SET_NO_NEW_PRIVS)");
    return 1;
  }
  if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program) != 0) {
    perror("seccomp");
    return 1;
  }
  if (exec) {
    execvp(argv[2], argv + 2);
    perror(argv[2]);
    return 127;
  }
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 256; ++i) {
      free(blocks[i]);
      blocks[i] = malloc(32 + (size_t)i);
    }
    lost = malloc(1000);
    lost = NULL; /* one block lost a round */
    struct timespec pause = {0, 40 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  printf("sandboxed (%s): done\n", argv[1]);
  return 0;
}

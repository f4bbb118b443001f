// A traced process that ends with _exit or _Exit once its live-stats segment exists (run with
// HEAPKEEPER_STATS_DELAY=0), for immediate_exit.sh. Prints "pid N" for each process whose segment
// should be gone afterwards, and, for the modes with a child, whether the parent's segment
// survived the child's _exit ("parent segment kept"). Modes:
//   _exit, _Exit   this process ends with it (status 7)
//   vfork          a vfork child _exits at once: it shares the parent's memory, publisher included
//   fork           a forked child makes its own segment, then _exits; the parent exits normally
//   filter-prctl   installs a seccomp allow-list (write and the exits only) with prctl, then
//   filter-asm     _exits (status 3): with its own inline assembly, after no_new_privs by prctl
//                  (prints "kept N": the segment cannot be removed without a system call)
#define _GNU_SOURCE
#include <dirent.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int has_segment(pid_t pid) {
  char prefix[64];
  snprintf(prefix, sizeof prefix, "heapkeeper.%d.", (int)pid);
  DIR* dir = opendir("/dev/shm");
  if (dir == NULL) return 0;
  int found = 0;
  for (struct dirent* entry; !found && (entry = readdir(dir)) != NULL;)
    found = strncmp(entry->d_name, prefix, strlen(prefix)) == 0;
  closedir(dir);
  return found;
}

static void wait_for_segment(pid_t pid) {
  for (int i = 0; i < 1000 && !has_segment(pid); ++i) usleep(10000);
  if (!has_segment(pid)) {
    fprintf(stderr, "no segment for %d after 10 s\n", (int)pid);
    exit(2);
  }
}

// Allows write, exit_group, exit and rt_sigreturn; any other system call kills the process.
static void install_allow_list(int by_assembly) {
  struct sock_filter allow[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_write, 4, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit_group, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rt_sigreturn, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog program = {sizeof allow / sizeof allow[0], allow};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) exit(2);
  long result;
  if (!by_assembly) {
    result = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program);
  } else {
    register long operation asm("rdi") = SECCOMP_SET_MODE_FILTER;
    register long flags asm("rsi") = 0;
    register long arguments asm("rdx") = (long)&program;
    asm volatile("syscall"
                 : "=a"(result)
                 : "0"((long)__NR_seccomp), "r"(operation), "r"(flags), "r"(arguments)
                 : "rcx", "r11", "memory");
  }
  if (result != 0) exit(2);
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  free(malloc(64));
  const char* mode = argv[1];
  wait_for_segment(getpid());
  if (strncmp(mode, "filter-", 7) != 0) {
    printf("pid %d\n", (int)getpid());
    fflush(stdout);
  }
  if (strcmp(mode, "_exit") == 0) _exit(7);
  if (strcmp(mode, "_Exit") == 0) _Exit(7);
  if (strncmp(mode, "filter-", 7) == 0) {
    printf("kept %d\n", (int)getpid());
    fflush(stdout);
    install_allow_list(strcmp(mode, "filter-asm") == 0);
    _exit(3);
  }
  pid_t child;
  if (strcmp(mode, "vfork") == 0) {
    child = vfork();
    if (child == 0) _exit(0);
  } else if (strcmp(mode, "fork") == 0) {
    child = fork();
    if (child == 0) {
      wait_for_segment(getpid());
      printf("pid %d\n", (int)getpid());
      fflush(stdout);
      _exit(0);
    }
  } else {
    return 2;
  }
  int status = 0;
  waitpid(child, &status, 0);
  printf("parent segment %s\n", has_segment(getpid()) ? "kept" : "lost");
  return 0;
}

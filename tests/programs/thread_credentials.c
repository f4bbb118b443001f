/* thread_credentials: a program that believes itself single-threaded and changes its credentials
 * the ways privilege-dropping programs do, for programs.sh. Linux keeps ids, capabilities, the
 * keep-capabilities flag, securebits and the ambient and bounding sets per thread, and glibc's
 * setuid family has every thread make the same change, aborting when their results differ: under
 * heapkeeper, whose own threads must hold exactly what the program's thread holds, `setpriv
 * --reuid` aborted. After each step it prints its ids and whether every task of the process
 * agrees with it on every credential in /proc/self/task/(tid)/status (under heapkeeper the tasks
 * include heapkeeper's threads; a plain run has one), and allocates and frees a little.
 *
 * Usage: thread_credentials glibc|raw|caps|handler|groups|vfork|seccomp|userns|stay-glibc|stay-raw
 *        (as root)
 *   glibc  setpriv's sequence through glibc: keep capabilities, capset, setgroups, setresgid,
 *          setresuid to 65534 (saved ids kept 0), capset again; then back to root
 *   raw    the same ids changed with raw system calls (one thread only), then back
 *   caps   staying root: bounding-set drops (after a sharing that read the set, through glibc
 *          and syscall()), capset, an ambient capability raised and lowered, securebits,
 *          no_new_privs
 *   handler  a timer's signal handler sets the keep-capabilities flag while the main thread does
 *          (the handler's sharing waited for ever for the lock the one it interrupted held)
 *   groups  100 supplementary groups, then none (with more than 64 groups, heapkeeper's threads
 *          kept them all)
 *   vfork  a vfork child drops to 65534 and exits; the parent, still root, then changes its gid
 *          (heapkeeper's threads took the child's credentials, and the parent aborted)
 *   seccomp  glibc's sequence under an allow-everything seccomp filter (Docker's default profile
 *          is one: heapkeeper's threads did not follow under any filter, and setpriv aborted)
 *   userns after 300 ms (live stats and scans running), a bounding-set drop and a new user
 *          namespace: only a single-threaded process may make one (unshare -r failed with EINVAL
 *          under heapkeeper); then a keep-capabilities change there (the namespace's full
 *          bounding set is shared, not the one before it)
 *   stay-glibc, stay-raw  once its live-stats segment exists (HEAPKEEPER_STATS_DELAY=0), drops to
 *          65534 for good, through glibc or with raw system calls, prints its pid and who owns the
 *          segment's file now, and exits as 65534: the file made as root was left in /dev/shm,
 *          which only its owner may remove from
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int capget(cap_user_header_t header, cap_user_data_t data);
int capset(cap_user_header_t header, const cap_user_data_t data);

static const char* const kFields[] = {
    "Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:", "NoNewPrivs:"};
enum { kFieldCount = sizeof(kFields) / sizeof(kFields[0]) };

/* The credential lines of one task's status, concatenated in kFields' order. */
static int read_credentials(const char* tid, char* out, size_t size) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%s/status", tid);
  FILE* f = fopen(path, "r");
  if (f == NULL) return -1;
  char line[512];
  out[0] = '\0';
  while (fgets(line, sizeof(line), f) != NULL) {
    for (int i = 0; i < kFieldCount; ++i) {
      if (strncmp(line, kFields[i], strlen(kFields[i])) == 0) strncat(out, line, size - strlen(out) - 1);
    }
  }
  fclose(f);
  return 0;
}

static void churn(void) {
  for (int i = 0; i < 2000; ++i) {
    char* p = malloc(32 + (size_t)(i % 200));
    memset(p, i, 32);
    free(p);
  }
}

/* Prints the step, the ids, and whether every task agrees with this one. */
static void check(const char* step) {
  churn();
  char self[16], mine[4096], theirs[4096];
  snprintf(self, sizeof(self), "%ld", (long)syscall(SYS_gettid));
  if (read_credentials(self, mine, sizeof(mine)) != 0) {
    printf("%s: cannot read /proc/self/task\n", step);
    return;
  }
  DIR* tasks = opendir("/proc/self/task");
  int differing = 0;
  struct dirent* entry;
  while (tasks != NULL && (entry = readdir(tasks)) != NULL) {
    if (entry->d_name[0] == '.' || strcmp(entry->d_name, self) == 0) continue;
    if (read_credentials(entry->d_name, theirs, sizeof(theirs)) != 0) continue; /* gone meanwhile */
    if (strcmp(mine, theirs) != 0) {
      ++differing;
      fprintf(stderr, "%s: task %s differs:\n--- this thread\n%s--- task %s\n%s", step, entry->d_name, mine,
              entry->d_name, theirs);
    }
  }
  if (tasks != NULL) closedir(tasks);
  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
  getresuid(&ruid, &euid, &suid);
  getresgid(&rgid, &egid, &sgid);
  printf("%s: uid %u/%u/%u gid %u/%u/%u, %s\n", step, ruid, euid, suid, rgid, egid, sgid,
         differing == 0 ? "every task agrees" : "TASKS DIFFER");
  fflush(stdout);
}

static int set_capabilities(uint32_t effective, uint32_t permitted, uint32_t inheritable) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof(data));
  data[0].effective = effective;
  data[0].permitted = permitted;
  data[0].inheritable = inheritable;
  return capset(&header, data);
}

static uint32_t permitted_now(void) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  if (capget(&header, data) != 0) return 0;
  return data[0].permitted;
}

#define CAP(c) (1u << (c))
#define MUST(call)                                       \
  do {                                                   \
    if ((call) != 0) {                                   \
      printf("%s failed: %s\n", #call, strerror(errno)); \
      return 1;                                          \
    }                                                    \
  } while (0)

static int drop_and_return(int raw) {
  const gid_t nogroup = 65534;
  const uint32_t kept = CAP(CAP_SETUID) | CAP(CAP_SETGID) | CAP(CAP_NET_BIND_SERVICE);
  MUST(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
  check("keep capabilities");
  MUST(set_capabilities(kept, kept, 0));
  check("capset");
  if (raw) {
    MUST(syscall(SYS_setgroups, 1, &nogroup));
    MUST(syscall(SYS_setresgid, 65534, 65534, 0));
    check("setresgid");
    MUST(syscall(SYS_setresuid, 65534, 65534, 0));
  } else {
    MUST(setgroups(1, &nogroup));
    MUST(setresgid(65534, 65534, 0));
    check("setresgid");
    MUST(setresuid(65534, 65534, 0));
  }
  check("setresuid");
  MUST(set_capabilities(kept, kept, 0)); /* the effective set, cleared by the uid change */
  check("capset again");
  /* Back to root (the saved ids allow it), so that the exit report can be written as before. */
  if (raw) {
    MUST(syscall(SYS_setresuid, 0, 0, 0));
    MUST(syscall(SYS_setresgid, 0, 0, 0));
    MUST(syscall(SYS_setgroups, 0, NULL));
  } else {
    MUST(setresuid(0, 0, 0));
    MUST(setresgid(0, 0, 0));
    MUST(setgroups(0, NULL));
  }
  check("root again");
  return 0;
}

static int capabilities_only(void) {
  /* Shared first without a drop (heapkeeper remembers each thread's bounding set as last read),
   * then drops through glibc and through syscall(), each to be read again. */
  MUST(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
  check("keepcaps");
  MUST(prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0));
  check("bounding set");
  MUST(syscall(SYS_prctl, PR_CAPBSET_DROP, CAP_SYS_RAWIO, 0, 0, 0));
  check("bounding set (raw)");
  const uint32_t permitted = permitted_now() & ~CAP(CAP_SYS_ADMIN);
  MUST(set_capabilities(permitted, permitted, CAP(CAP_NET_BIND_SERVICE)));
  check("capset");
  MUST(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0));
  check("ambient");
  MUST(prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0));
  check("securebits");
  MUST(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
  check("no_new_privs");
  MUST(prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0));
  check("bounding set again");
  MUST(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, CAP_NET_BIND_SERVICE, 0, 0));
  check("ambient lowered");
  return 0;
}

static volatile sig_atomic_t g_ticks = 0;
static void on_tick(int signal) {
  (void)signal;
  prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
  ++g_ticks;
}

static int from_a_handler(void) {
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = on_tick;
  action.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &action, NULL);
  // Every millisecond: each call shares the credentials with every task (some 90 system calls
  // under heapkeeper when it read every capability's bounding and ambient bits each time), which on
  // a machine with slow system calls took longer than a 100 us period, and the main thread never
  // progressed.
  const struct itimerval every = {{0, 1000}, {0, 1000}};
  setitimer(ITIMER_REAL, &every, NULL);
  for (int i = 0; i < 20000; ++i) prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
  const struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  printf("20000 calls, %s\n", g_ticks > 0 ? "some from the handler" : "none from the handler");
  check("after the handler's calls");
  return 0;
}

static int many_groups(void) {
  gid_t groups[100];
  for (int i = 0; i < 100; ++i) groups[i] = (gid_t)(2000 + i);
  MUST(setgroups(100, groups));
  check("100 groups");
  MUST(syscall(SYS_setgroups, 0, NULL));
  check("no groups (raw)");
  return 0;
}

static int vfork_child_drops(void) {
  const pid_t child = vfork();
  if (child == 0) {
    syscall(SYS_setresgid, 65534, 65534, 65534);
    syscall(SYS_setresuid, 65534, 65534, 65534);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  check("after the vfork child");
  MUST(setresgid(0, 0, 0));
  check("setresgid in the parent");
  return 0;
}

static int under_a_filter(void) {
  struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  struct sock_fprog program = {1, allow};
  MUST(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0));
  check("filter");
  return drop_and_return(0);
}

/* The owner of this process's live-stats segment file in /dev/shm, or -1 when it has none. */
static long segment_owner(void) {
  char prefix[64];
  snprintf(prefix, sizeof prefix, "heapkeeper.%d.", (int)getpid());
  DIR* dir = opendir("/dev/shm");
  long owner = -1;
  if (dir == NULL) return owner;
  for (struct dirent* entry; (entry = readdir(dir)) != NULL;) {
    if (strncmp(entry->d_name, prefix, strlen(prefix)) != 0) continue;
    char path[320];
    struct stat st;
    snprintf(path, sizeof path, "/dev/shm/%s", entry->d_name);
    if (stat(path, &st) == 0) owner = (long)st.st_uid;
  }
  closedir(dir);
  return owner;
}

static int drop_for_good(int raw) {
  for (int waited = 0; waited < 200 && segment_owner() < 0; ++waited) {
    const struct timespec pause = {0, 10 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  printf("pid %d, segment owner before: %ld\n", (int)getpid(), segment_owner());
  const gid_t nogroup = 65534;
  if (raw) {
    MUST(syscall(SYS_setgroups, 1, &nogroup));
    MUST(syscall(SYS_setresgid, 65534, 65534, 65534));
    MUST(syscall(SYS_setresuid, 65534, 65534, 65534));
  } else {
    MUST(setgroups(1, &nogroup));
    MUST(setgid(65534));
    MUST(setuid(65534));
  }
  check("dropped for good");
  printf("segment owner after: %ld\n", segment_owner());
  return 0;
}

static int new_user_namespace(void) {
  const struct timespec settle = {0, 300 * 1000 * 1000};
  nanosleep(&settle, NULL);
  /* A bounding set with a capability dropped (and shared), then the new namespace's full one: a
   * sharing after it must not give heapkeeper's threads the old one. */
  MUST(prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0));
  check("bounding set");
  MUST(unshare(CLONE_NEWUSER));
  check("new user namespace");
  nanosleep(&settle, NULL); /* heapkeeper's threads, made again, publish and scan */
  check("later");
  MUST(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
  check("keepcaps in the namespace");
  return 0;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (geteuid() != 0) {
    printf("needs root\n");
    return 77;
  }
  check("start");
  if (strcmp(mode, "glibc") == 0) return drop_and_return(0);
  if (strcmp(mode, "raw") == 0) return drop_and_return(1);
  if (strcmp(mode, "caps") == 0) return capabilities_only();
  if (strcmp(mode, "handler") == 0) return from_a_handler();
  if (strcmp(mode, "groups") == 0) return many_groups();
  if (strcmp(mode, "vfork") == 0) return vfork_child_drops();
  if (strcmp(mode, "seccomp") == 0) return under_a_filter();
  if (strcmp(mode, "userns") == 0) return new_user_namespace();
  if (strcmp(mode, "stay-glibc") == 0) return drop_for_good(0);
  if (strcmp(mode, "stay-raw") == 0) return drop_for_good(1);
  fprintf(stderr, "usage: thread_credentials glibc|raw|caps|handler|groups|vfork|seccomp|userns|stay-glibc|stay-raw\n");
  return 2;
}

/* report_handoff: a program that watches for every trace of heapkeeper handing its report to the
 * `heapkeeper` binary. It leaks one block from leak_for_handoff, and reports on stdout:
 * - "SIGCHLD" whenever it gets one (it has a handler): the hand-off must send none;
 * - "stranger N" when its waiting thread reaps a child it never made (`wait` mode: it keeps a
 *   child of its own and waits for any child): the hand-off's process must be invisible to wait();
 * - in `api PATH` mode, after heapkeeper_write_report(PATH) (found with dlsym): its result, whether
 *   its descriptors are the ones it had, whether libdw is mapped, whether it has children;
 * - in `hold PIDFILE` mode it writes its pid to PIDFILE, waits (up to 30 s) until PIDFILE.done
 *   exists — meanwhile `heapkeeper report/stats PID` look at it — then says whether libdw is mapped.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(const char* text) { (void)!write(1, text, strlen(text)); }

static void on_sigchld(int signal_number) {
  (void)signal_number;
  say("SIGCHLD\n");
}

static char* volatile g_sink;

__attribute__((noinline)) static void leak_for_handoff(void) {
  char* block = malloc(4321);
  memset(block, 7, 4321);
  g_sink = block;
  g_sink = NULL;
}

// Overwrites the stack below main's frame, where a copy of the leaked pointer may linger and keep
// the block reachable for a conservative scan.
__attribute__((noinline)) static void clobber_stack(void) {
  volatile char area[16384];
  for (size_t i = 0; i < sizeof area; ++i) area[i] = 0;
}

static void descriptors(char* out, size_t size) {
  out[0] = '\0';
  DIR* dir = opendir("/proc/self/fd");
  if (dir == NULL) return;
  int own = dirfd(dir);
  struct dirent* entry;
  while ((entry = readdir(dir)) != NULL) {
    if (entry->d_name[0] == '.' || atoi(entry->d_name) == own) continue;
    strncat(out, entry->d_name, size - strlen(out) - 2);
    strncat(out, " ", size - strlen(out) - 1);
  }
  closedir(dir);
}

static int libdw_mapped(void) {
  FILE* maps = fopen("/proc/self/maps", "r");
  char line[4096];
  int found = 0;
  while (maps != NULL && fgets(line, sizeof line, maps) != NULL) found |= strstr(line, "libdw") != NULL;
  if (maps != NULL) fclose(maps);
  return found;
}

static pid_t g_own_child;

static void* reap_any_child(void* unused) {
  (void)unused;
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) return NULL;
    if (pid != g_own_child) {
      char text[64];
      snprintf(text, sizeof text, "stranger %d\n", (int)pid);
      say(text);
    }
  }
}

int main(int argc, char** argv) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_sigchld;
  action.sa_flags = SA_RESTART;
  sigaction(SIGCHLD, &action, NULL);
  leak_for_handoff();
  clobber_stack();
  if (argc > 1 && strcmp(argv[1], "wait") == 0) {
    g_own_child = fork();
    if (g_own_child == 0) {
      int null = open("/dev/null", O_RDWR);
      dup2(null, 0), dup2(null, 1), dup2(null, 2);
      sleep(3);
      _exit(0);
    }
    pthread_t waiter;
    pthread_create(&waiter, NULL, reap_any_child, NULL);
    usleep(10000);  // the waiter is in waitpid
    return 0;
  }
  if (argc > 2 && strcmp(argv[1], "hold") == 0) {
    char done[4096];
    snprintf(done, sizeof done, "%s.done", argv[2]);
    FILE* pid_file = fopen(argv[2], "w");
    if (pid_file == NULL) return 1;
    fprintf(pid_file, "%d\n", (int)getpid());
    fclose(pid_file);
    for (int i = 0; i < 600 && access(done, F_OK) != 0; ++i) usleep(50000);
    printf("libdw: %s\n", libdw_mapped() ? "mapped" : "not mapped");
    fflush(stdout);
    return 0;
  }
  if (argc > 2 && strcmp(argv[1], "api") == 0) {
    int (*write_report)(const char*) = (int (*)(const char*))dlsym(RTLD_DEFAULT, "heapkeeper_write_report");
    if (write_report == NULL) {
      say("no heapkeeper_write_report\n");
      return 1;
    }
    char before[4096], after[4096];
    descriptors(before, sizeof before);
    const int result = write_report(argv[2]);
    descriptors(after, sizeof after);
    printf("write_report: %d\n", result);
    printf("fds: %s\n", strcmp(before, after) == 0 ? "same" : "changed");
    if (strcmp(before, after) != 0) printf("  before: %s\n  after: %s\n", before, after);
    printf("libdw: %s\n", libdw_mapped() ? "mapped" : "not mapped");
    errno = 0;
    const pid_t child = waitpid(-1, NULL, WNOHANG);
    printf("children: %s\n", child < 0 && errno == ECHILD ? "none" : "some");
    fflush(stdout);
  }
  return 0;
}

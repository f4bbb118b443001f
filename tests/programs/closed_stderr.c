/* A program whose data file ends up on descriptor 2, where heapkeeper must write nothing:
 * - started with its stderr closed (`2>&-`, or a daemon's parent that closed it), its first open()
 *   gets descriptor 2;
 * - with `close-all`, started with a stderr, it closes every descriptor below 1024 (heapkeeper's
 *   private copy of that stderr among them, as a daemon or a sandbox does) and opens its files
 *   anew: the third of them gets descriptor 2.
 * - with `redirect`, it moves its stderr to FILE itself (dup2, as a service moving its stderr to
 *   its log): that is its stderr from then on, where a leak report belongs.
 * It writes one line to its file on 2, keeps the files open to the end, and leaks one block, which
 * a leak report at exit would mention. Plainly the file holds exactly the program's line.
 * Usage: hk_prog_closed_stderr FILE [close-all|redirect] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void* volatile lost;

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) return 2;
  const int close_all = argc == 3 && strcmp(argv[2], "close-all") == 0;
  const int redirect = argc == 3 && strcmp(argv[2], "redirect") == 0;
  int fd = -1;
  if (close_all) {
    for (int i = 0; i < 1024; ++i) close(i);
    /* 0 and 1: the program's other files; 2: the data file. */
    if (open("/dev/null", O_RDONLY) != 0 || open("/dev/null", O_WRONLY) != 1) return 1;
  }
  fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || (close_all && fd != 2)) return 1;
  if (redirect) {
    if (dup2(fd, 2) != 2) return 1;
    close(fd);
    fd = 2;
  }
  lost = malloc(100);
  memset(lost, 1, 100);
  lost = NULL; /* leaked */
  dprintf(fd, "the program's data, on descriptor %d\n", fd);
  return 0; /* the files stay open until exit, as in most programs */
}

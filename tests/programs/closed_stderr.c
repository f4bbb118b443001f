/* A program started with its stderr closed (`2>&-`, or a daemon's parent that closed it) whose
 * first open() therefore gets descriptor 2: its data file. It writes one line there, keeps the
 * file open to the end, and leaks one block, which a leak report at exit would mention. Plainly the
 * file holds exactly the program's line. Usage: hk_prog_closed_stderr FILE */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void* volatile lost;

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 1;
  lost = malloc(100);
  memset(lost, 1, 100);
  lost = NULL; /* leaked */
  dprintf(fd, "the program's data, on descriptor %d\n", fd);
  return 0; /* the file stays open until exit, as in most programs */
}

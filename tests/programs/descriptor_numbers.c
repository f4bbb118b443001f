/* A program that puts its own files on descriptors 992 and 993 — the numbers heapkeeper moves
 * libunwind's validation pipe to — the way a daemon may: it closes every descriptor above 2, then
 * dup2s an input file onto 992 and an output file onto 993. Then it allocates through frames
 * without unwind information (descriptor_numbers_no_unwind.c), which libunwind steps through by
 * validating addresses with its pipe, and finally reads its input and writes its output. Plainly,
 * and under heapkeeper, it prints "input at offset 0", the first line of its input, and that its
 * output file holds exactly what it wrote. Last, the program's own read(), write() and
 * syscall(SYS_write, ...) of every descriptor from -1 to -65536 fail with EBADF, as the kernel
 * says (whatever numbers heapkeeper may give libunwind, they are not the program's).
 * Usage: hk_prog_descriptor_numbers INPUT OUTPUT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

void* allocate_without_unwind_info(size_t size); /* descriptor_numbers_no_unwind.c */

enum { kInput = 992, kOutput = 993, kBlocks = 500 };

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s INPUT OUTPUT\n", argv[0]);
    return 2;
  }
  fflush(stdout);
  for (int fd = 3; fd < 4096; ++fd) close(fd); /* a daemon's clean slate */
  const int input = open(argv[1], O_RDONLY);
  const int output = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (input < 0 || output < 0 || dup2(input, kInput) != kInput || dup2(output, kOutput) != kOutput) {
    perror("open/dup2");
    return 1;
  }
  close(input);
  close(output);
  static void* blocks[kBlocks];
  for (int i = 0; i < kBlocks; ++i) blocks[i] = allocate_without_unwind_info(16 + (size_t)i);
  for (int i = 0; i < kBlocks; ++i) free(blocks[i]);

  printf("input at offset %ld\n", (long)lseek(kInput, 0, SEEK_CUR));
  char line[64] = {0};
  const ssize_t got = read(kInput, line, sizeof(line) - 1);
  if (got > 0) line[strcspn(line, "\n")] = '\0';
  printf("first line: %s\n", got > 0 ? line : "(nothing)");
  static const char kText[] = "written by the program\n";
  const ssize_t put = write(kOutput, kText, sizeof(kText) - 1);
  struct stat st;
  const int stat_ok = fstat(kOutput, &st) == 0;
  printf("output: wrote %zd bytes, the file holds %lld\n", put, stat_ok ? (long long)st.st_size : -1LL);
  printf("992 and 993 still open: %d %d\n", fcntl(kInput, F_GETFD) >= 0, fcntl(kOutput, F_GETFD) >= 0);
  int not_ebadf = 0;
  char byte = 0;
  for (int fd = -1; fd >= -65536; --fd) {
    errno = 0;
    if (read(fd, &byte, 1) != -1 || errno != EBADF) ++not_ebadf;
    errno = 0;
    if (write(fd, &byte, 1) != -1 || errno != EBADF) ++not_ebadf;
    errno = 0;
    if (syscall(SYS_write, fd, &byte, 1) != -1 || errno != EBADF) ++not_ebadf;
  }
  printf("calls on descriptors -1..-65536 that did not fail with EBADF: %d\n", not_ebadf);
  return 0;
}

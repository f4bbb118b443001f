/* A program whose own unwind, with the libunwind heapkeeper uses, comes first and steps through a
 * frame without unwind information; then it closes every descriptor above 2, opens its input and
 * output on the lowest numbers, allocates through frames without unwind information, and reads its
 * input and writes its output (programs.sh own_unwind_descriptors).
 *
 * libunwind validates an address it reads through such a frame with a pipe it opens once and uses
 * by number ever after (preload/own_pipes.cpp). heapkeeper gives it two tokens instead, but once
 * only in its own unwinds: the program's unwind, coming first, got a real pipe on descriptors 3
 * and 4, which the program then closed and reused for its files, and heapkeeper's unwinds read its
 * input and wrote memory into its output (found by helper-60). Plainly and under heapkeeper the
 * output says how many frames the program's unwind saw, its input's first line, and that its
 * output file holds exactly what it wrote.
 * Usage: hk_prog_own_unwind_descriptors INPUT OUTPUT */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include <fcntl.h>
#include <libunwind.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void* allocate_without_unwind_info(size_t size);       /* descriptor_numbers_no_unwind.c */
void call_without_unwind_info(void (*function)(void)); /* descriptor_numbers_no_unwind.c */

static int g_frames;

static void unwind_to_the_end(void) {
  unw_context_t context;
  unw_cursor_t cursor;
  if (unw_getcontext(&context) != 0 || unw_init_local(&cursor, &context) != 0) return;
  while (unw_step(&cursor) > 0) ++g_frames;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s INPUT OUTPUT\n", argv[0]);
    return 2;
  }
  call_without_unwind_info(unwind_to_the_end);
  printf("own unwind: %s\n", g_frames >= 2 ? "through main" : "short");
  fflush(stdout);
  for (int fd = 3; fd < 4096; ++fd) close(fd); /* a daemon's clean slate */
  const int input = open(argv[1], O_RDONLY);
  const int output = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (input < 0 || output < 0) {
    perror("open");
    return 1;
  }
  static void* blocks[500];
  for (int i = 0; i < 500; ++i) blocks[i] = allocate_without_unwind_info(16 + (size_t)i);
  for (int i = 0; i < 500; ++i) free(blocks[i]);
  char line[64] = {0};
  const ssize_t got = read(input, line, sizeof(line) - 1);
  if (got > 0) line[strcspn(line, "\n")] = '\0';
  printf("first line: %s\n", got > 0 ? line : "(nothing)");
  static const char kText[] = "written by the program\n";
  const ssize_t put = write(output, kText, sizeof(kText) - 1);
  close(output);
  char back[256];
  const int again = open(argv[2], O_RDONLY);
  const ssize_t held = again >= 0 ? read(again, back, sizeof back) : -1;
  printf("output: wrote %zd bytes, the file holds %zd%s\n", put, held,
         held == put && memcmp(back, kText, sizeof(kText) - 1) == 0 ? ", as written" : ", not as written");
  return 0;
}

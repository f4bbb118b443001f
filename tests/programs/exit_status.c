/* Exits with a given status, or dies of a given signal, after some allocation.
 *
 * Usage: exit_status CODE          exit(CODE)
 *        exit_status --signal SIG  raise(SIG) with the default action (e.g. 15, 6, 9)
 * Used to check that `heapkeeper run` passes the program's fate through unchanged.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  char* note = malloc(128);
  if (note == NULL) return 99;
  if (argc == 3 && strcmp(argv[1], "--signal") == 0) {
    int number = atoi(argv[2]);
    snprintf(note, 128, "exit_status: raising signal %d", number);
    puts(note);
    fflush(stdout);
    signal(number, SIG_DFL);
    raise(number);
    return 98; /* only if the signal did not kill us */
  }
  if (argc != 2) {
    fprintf(stderr, "usage: exit_status CODE | exit_status --signal SIG\n");
    free(note);
    return 97;
  }
  int code = atoi(argv[1]);
  snprintf(note, 128, "exit_status: exiting with %d", code);
  puts(note);
  free(note);
  exit(code);
}

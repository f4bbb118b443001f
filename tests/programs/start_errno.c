/* Prints errno as main finds it. C starts main with errno 0, and a traced program must too: the
 * live-stats segment's address reservation named itself with a prctl that older kernels refuse
 * (EINVAL), and that errno reached main. Usage: hk_prog_start_errno */
#include <errno.h>
#include <stdio.h>

int main(void) {
  const int at_start = errno;
  printf("errno at main: %d\n", at_start);
  return 0;
}

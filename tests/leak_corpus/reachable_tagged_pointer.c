/* reachable_tagged_pointer: blocks whose only pointers carry a tag in their top bits, as programs
 * keep them and strip before each use: a NaN-boxed value (tag 0xfffa in the top 16 bits, as
 * interpreters box their objects in doubles), a top-byte tag (0x5a in bits 56-63), and a tagged
 * pointer to a block's middle. Not leaks: the blocks are used through them at the end.
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 */
#include <stdint.h>
#include <stdlib.h>

#include "corpus.h"

#define NAN_BOX_TAG (UINT64_C(0xfffa) << 48)
#define TOP_BYTE_TAG (UINT64_C(0x5a) << 56)
#define ADDRESS_BITS ((UINT64_C(1) << 48) - 1)

volatile uint64_t g_boxed, g_top_tagged, g_inner_tagged;

static CORPUS_NOINLINE void keep_tagged(void) {
  void* boxed = malloc(200);
  void* top = malloc(300);
  char* inner = malloc(400);
  corpus_fill(boxed, 200);
  corpus_fill(top, 300);
  corpus_fill(inner, 400);
  g_boxed = (uint64_t)(uintptr_t)boxed | NAN_BOX_TAG;
  g_top_tagged = (uint64_t)(uintptr_t)top | TOP_BYTE_TAG;
  g_inner_tagged = (uint64_t)(uintptr_t)(inner + 100) | NAN_BOX_TAG;
}

int main(void) {
  keep_tagged();
  corpus_clobber_stack();
  /* Used through the tags after the exit scan would have looked: the blocks are live to the end. */
  const char* boxed = (const char*)(uintptr_t)(g_boxed & ADDRESS_BITS);
  const char* top = (const char*)(uintptr_t)(g_top_tagged & ADDRESS_BITS);
  const char* inner = (const char*)(uintptr_t)(g_inner_tagged & ADDRESS_BITS) - 100;
  return boxed[199] == 0x5a && top[299] == 0x5a && inner[399] == 0x5a ? 0 : 1;
}

// leak_new_array: arrays lost after new[] — of int (100 bytes), and of a class with a destructor,
// for which the Itanium C++ ABI prepends an 8-byte element count (4 * 16 + 8 = 72 bytes). The
// program keeps the pointer new[] returned, 8 bytes into the block; it is lost all the same.
//
// corpus: expect direct=2 indirect=0 bytes=172
// corpus: direct-leak-in lose_arrays
#include "corpus.h"

struct Tracked {
  long a, b;
  ~Tracked() { a = b = 0; }
};
static_assert(sizeof(Tracked) == 16, "the expectation counts 16-byte elements");

static CORPUS_NOINLINE void lose_arrays() {
  int* volatile numbers = new int[25]();
  Tracked* volatile objects = new Tracked[4]();
  numbers[3] = 3;
  objects[1].a = 1;
  numbers = nullptr;
  objects = nullptr;
}

int main() {
  lose_arrays();
  corpus_clobber_stack();
  return 0;
}

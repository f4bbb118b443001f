// leak_vector: a heap-allocated std::vector<int*> that is itself lost. The vector object (24
// bytes) is the direct leak; its buffer (8 pointers, 64 bytes) and the eight ints it points to are
// reachable only through it, so indirect.
//
// corpus: expect direct=1 indirect=9 bytes=120
// corpus: direct-leak-in lose_vector
#include <vector>

#include "corpus.h"

static_assert(sizeof(std::vector<int*>) == 24, "the expectation counts a 24-byte vector");

static CORPUS_NOINLINE void lose_vector() {
  std::vector<int*>* volatile v = new std::vector<int*>();
  v->reserve(8);
  for (int i = 0; i < 8; ++i) v->push_back(new int(i));
  v = nullptr;
}

int main() {
  lose_vector();
  corpus_clobber_stack();
  return 0;
}

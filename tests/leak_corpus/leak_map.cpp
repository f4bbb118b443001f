// leak_map: a heap-allocated std::map<int, long> with three nodes that is itself lost. The map
// object (48 bytes) and its nodes (48 bytes each) point to one another — the root node's parent
// is the header inside the map object — so the four blocks form one unreachable strongly
// connected group: exactly one of them is reported as the direct leak, three as indirect.
//
// corpus: expect direct=1 indirect=3 bytes=192
#include <map>

#include "corpus.h"

static_assert(sizeof(std::map<int, long>) == 48, "the expectation counts a 48-byte map object");

static CORPUS_NOINLINE void lose_map() {
  std::map<int, long>* volatile m = new std::map<int, long>();
  (*m)[1] = 10;
  (*m)[2] = 20;
  (*m)[3] = 30;
  m = nullptr;
}

int main() {
  lose_map();
  corpus_clobber_stack();
  return 0;
}

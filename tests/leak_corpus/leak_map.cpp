// leak_map: a heap-allocated std::map<int, long> with three nodes that is itself lost. The map
// object (48 bytes) and its nodes (48 bytes each) point to one another — the root node's parent
// is the header inside the map object — so the four blocks form one unreachable strongly
// connected group that no direct leak reaches: four cycle leaks (report/leak_kind.h), as any
// container with back pointers leaks. (valgrind names one clique leader definitely lost,
// LeakSanitizer calls all four indirect.)
//
// corpus: expect direct=0 indirect=0 cycle=4 bytes=192
// corpus: cycle-leak-in lose_map
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

// leak_new: objects lost after operator new — plain (40 bytes), nothrow (40 bytes) and
// over-aligned (128 bytes, through operator new(size_t, align_val_t)).
//
// corpus: expect direct=3 indirect=0 bytes=208
// corpus: direct-leak-in lose_objects
#include <cstdint>
#include <new>

#include "corpus.h"

struct Widget {
  long fields[5];
};
struct alignas(64) CacheLine {
  char bytes[128];
};
static_assert(sizeof(Widget) == 40 && sizeof(CacheLine) == 128, "the expectation counts these sizes");

static CORPUS_NOINLINE bool lose_objects() {
  Widget* volatile plain = new Widget{};
  plain->fields[0] = 1;
  plain = new (std::nothrow) Widget{};
  plain->fields[0] = 2;
  CacheLine* volatile aligned = new CacheLine{};
  if ((reinterpret_cast<uintptr_t>(aligned) & 63) != 0) return false;
  plain = nullptr;
  aligned = nullptr;
  return true;
}

int main() {
  if (!lose_objects()) return 2;
  corpus_clobber_stack();
  return 0;
}

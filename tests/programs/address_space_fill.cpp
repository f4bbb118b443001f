// Allocates blocks of one size until the allocator gives up, and prints how many bytes it got:
// for running under `ulimit -v`, plainly and under heapkeeper. The blocks are never written (the
// address-space limit is what is measured, not memory), and never freed.
//
// Usage: address_space_fill malloc|new BLOCK_BYTES
//   malloc: until malloc returns NULL;  new: until operator new throws std::bad_alloc (caught)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

int main(int argc, char** argv) {
  if (argc < 3 || (std::strcmp(argv[1], "malloc") != 0 && std::strcmp(argv[1], "new") != 0)) {
    std::fprintf(stderr, "usage: address_space_fill malloc|new BLOCK_BYTES\n");
    return 2;
  }
  const bool use_new = std::strcmp(argv[1], "new") == 0;
  const size_t block = std::strtoull(argv[2], nullptr, 10);
  size_t blocks = 0;
  if (use_new) {
    try {
      for (;;) {
        char* volatile p = new char[block];
        (void)p;
        ++blocks;
      }
    } catch (const std::bad_alloc&) {
      std::printf("bad_alloc caught\n");
    }
  } else {
    while (void* volatile p = std::malloc(block)) {
      (void)p;
      ++blocks;
    }
    std::printf("malloc returned NULL\n");
  }
  std::printf("allocated %zu blocks, %zu bytes\n", blocks, blocks * block);
  return 0;
}

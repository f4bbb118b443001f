// main() of the tests that run on glibc and under libheapkeeper.so (api_semantics_test, threads_test).
//
// libheapkeeper.so reads its HEAPKEEPER_* settings when it is loaded, long before main, so a test
// run in a particular configuration needs them in its environment from the start. CTest can give a
// discovered test only one environment variable here (gtest_discover_tests splits lists), so the
// configuration arrives as arguments instead: each --setenv=NAME=VALUE is put into the environment
// and the binary executes itself again without those arguments. By hand:
//   LD_PRELOAD=build/lib/libheapkeeper.so bin/api_semantics_test --setenv=HEAPKEEPER_STACK_DEPTH=1
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  constexpr char kSetenv[] = "--setenv=";
  std::vector<char*> remaining;
  bool changed = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], kSetenv, sizeof(kSetenv) - 1) == 0) {
      char* assignment = argv[i] + sizeof(kSetenv) - 1;
      char* equals = std::strchr(assignment, '=');
      if (equals == nullptr) {
        std::fprintf(stderr, "%s: expected --setenv=NAME=VALUE, got %s\n", argv[0], argv[i]);
        return 2;
      }
      *equals = '\0';
      setenv(assignment, equals + 1, 1);
      changed = true;
      continue;
    }
    remaining.push_back(argv[i]);
  }
  if (changed) {
    remaining.push_back(nullptr);
    execv("/proc/self/exe", remaining.data());
    std::perror("re-executing the test with its settings");
    return 127;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

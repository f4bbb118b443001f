// Unit tests for report::Symbolizer, run against this test binary's own code, libc, the vDSO, a
// library dlopen'ed mid-test and deliberately bad addresses. Build with -g: the call-site test
// checks the source line recorded in this file's DWARF.
#include "report/symbolizer.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

// Outside any anonymous namespace so the demangled name is exactly namespace::function(params).
namespace symbolizer_fixture {
__attribute__((noinline)) int function_with_parameters(int count, const char* label) {
  // Some observable work so the function is not folded into another with the same body.
  asm volatile("" ::: "memory");
  return count + (label != nullptr ? label[0] : 0);
}
}  // namespace symbolizer_fixture

namespace heapkeeper::report {
namespace {

// Returns where it was called from: an address inside its caller, just past the call.
__attribute__((noinline)) uintptr_t return_address_of_this_call() {
  const auto address = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  asm volatile("" ::: "memory");  // keep the call a real call, not something merged away
  return address;
}

struct CallSite {
  uintptr_t return_address = 0;
  int line = 0;
};

// The function whose name, file and line the symbolizer must report. The call and __LINE__ share
// one source line, so __LINE__ is the line of the call.
__attribute__((noinline)) CallSite known_caller_for_symbolizer_test() {
  const CallSite site{return_address_of_this_call(), __LINE__};
  asm volatile("" ::: "memory");  // work after the call rules out a tail call
  return site;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string this_executable_path() {
  std::unique_ptr<char, decltype(&std::free)> resolved(realpath("/proc/self/exe", nullptr), &std::free);
  return resolved ? std::string(resolved.get()) : std::string();
}

// The main program is the first object dl_iterate_phdr reports; dlpi_addr is its load bias.
uintptr_t main_program_load_bias() {
  uintptr_t bias = 0;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) -> int {
        *static_cast<uintptr_t*>(data) = info->dlpi_addr;
        return 1;
      },
      &bias);
  return bias;
}

// A function's entry + 1 looks, to resolve(), like a return address whose call is at the entry.
template <typename Function>
uintptr_t as_return_address(Function* function) {
  return reinterpret_cast<uintptr_t>(function) + 1;
}

void expect_unknown(const SymbolizedFrame& frame, uintptr_t address) {
  EXPECT_EQ(frame.address, address);
  EXPECT_EQ(frame.function, "??");
  EXPECT_EQ(frame.module, "??");
  EXPECT_EQ(frame.module_offset, 0u);
  EXPECT_EQ(frame.file, "");
  EXPECT_EQ(frame.line, 0);
}

TEST(SymbolizerTest, ResolvesCallSiteInThisBinaryToFunctionFileAndLine) {
  const CallSite site = known_caller_for_symbolizer_test();
  Symbolizer symbolizer;
  const SymbolizedFrame frame = symbolizer.resolve(site.return_address);

  EXPECT_EQ(frame.address, site.return_address);
  EXPECT_NE(frame.function.find("known_caller_for_symbolizer_test"), std::string::npos) << frame.function;
  EXPECT_EQ(frame.module, this_executable_path());
  EXPECT_EQ(frame.module_offset, site.return_address - main_program_load_bias());
  EXPECT_TRUE(ends_with(frame.file, "symbolizer_test.cpp")) << frame.file;
  EXPECT_EQ(frame.line, site.line);

  const std::string line = Symbolizer::format(frame);
  EXPECT_EQ(line.rfind(frame.function + " " + frame.module + "+0x", 0), 0u) << line;
  EXPECT_TRUE(ends_with(line, "symbolizer_test.cpp:" + std::to_string(site.line))) << line;
}

TEST(SymbolizerTest, ResolvesLibcFunction) {
  Symbolizer symbolizer;
  const uintptr_t address = as_return_address(&getpid);
  const SymbolizedFrame frame = symbolizer.resolve(address);

  EXPECT_EQ(frame.address, address);
  // glibc defines getpid as an alias of __getpid; either name may be the one the symbol table
  // lists first.
  EXPECT_NE(frame.function.find("getpid"), std::string::npos) << frame.function;
  EXPECT_NE(frame.module.find("libc.so"), std::string::npos) << frame.module;
  EXPECT_GT(frame.module_offset, 0u);
  EXPECT_LT(frame.module_offset, address);
}

TEST(SymbolizerTest, DropsSymbolVersionsFromNames) {
  // With libc's debug symbols installed, its full symbol table names this
  // "__libc_start_main@@GLIBC_2.34"; without them, .dynsym names it plainly. Reports show the
  // plain name either way.
  void* function = dlsym(RTLD_DEFAULT, "__libc_start_main");
  ASSERT_NE(function, nullptr) << dlerror();
  Symbolizer symbolizer;
  EXPECT_EQ(symbolizer.resolve(reinterpret_cast<uintptr_t>(function) + 1).function, "__libc_start_main");
}

TEST(SymbolizerTest, DemanglesCxxNamesWithNamespaceAndParameters) {
  Symbolizer symbolizer;
  const SymbolizedFrame frame = symbolizer.resolve(as_return_address(&symbolizer_fixture::function_with_parameters));

  EXPECT_NE(frame.function.find("symbolizer_fixture::function_with_parameters(int"), std::string::npos)
      << frame.function;
  EXPECT_EQ(frame.function.find("_Z"), std::string::npos) << frame.function;
  EXPECT_TRUE(ends_with(frame.file, "symbolizer_test.cpp")) << frame.file;
  EXPECT_GT(frame.line, 0);
}

TEST(SymbolizerTest, GarbageAddressesResolveToUnknownWithoutCrashing) {
  Symbolizer symbolizer;
  // A page that was mapped and is mapped no longer.
  const long page_size = sysconf(_SC_PAGESIZE);
  void* page = mmap(nullptr, page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  ASSERT_EQ(munmap(page, page_size), 0);
  const uintptr_t unmapped = reinterpret_cast<uintptr_t>(page) + 16;
  // Heap and stack are mapped, but belong to no ELF object.
  auto heap_block = std::make_unique<int>(7);
  int on_stack = 0;

  for (const uintptr_t address :
       {uintptr_t{0}, uintptr_t{1}, uintptr_t{0xffffffff81000000}, UINTPTR_MAX, unmapped,
        reinterpret_cast<uintptr_t>(heap_block.get()), reinterpret_cast<uintptr_t>(&on_stack)}) {
    SCOPED_TRACE(address);
    expect_unknown(symbolizer.resolve(address), address);
  }
}

TEST(SymbolizerTest, NamesTheVdsoWithoutThePid) {
  const uintptr_t vdso_base = getauxval(AT_SYSINFO_EHDR);
  if (vdso_base == 0) GTEST_SKIP() << "this kernel maps no vDSO";
  Symbolizer symbolizer;
  // base + 1 looks up the first byte of the vDSO image (its ELF header).
  EXPECT_EQ(symbolizer.resolve(vdso_base + 1).module, "[vdso]");
}

TEST(SymbolizerTest, FindsLibraryDlopenedAfterTheModuleListWasRead) {
  Symbolizer symbolizer;
  // Read the module list before the library exists in this process.
  ASSERT_NE(symbolizer.resolve(as_return_address(&getpid)).module, "??");

  void* library = dlopen("libuuid.so.1", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) GTEST_SKIP() << "libuuid.so.1 is not installed: " << dlerror();
  void* function = dlsym(library, "uuid_generate");
  ASSERT_NE(function, nullptr);

  const SymbolizedFrame frame = symbolizer.resolve(reinterpret_cast<uintptr_t>(function) + 1);
  EXPECT_NE(frame.module.find("libuuid.so"), std::string::npos) << frame.module;
  EXPECT_NE(frame.function.find("uuid_generate"), std::string::npos) << frame.function;
  dlclose(library);
}

TEST(SymbolizerTest, NamesFunctionsInADeletedLibraryThroughTheLoader) {
  // libdwfl cannot open a library whose file was removed after loading; dladdr, which reads the
  // loaded image, still knows its exported names.
  char directory_template[] = "/tmp/heapkeeper_symbolizer_XXXXXX";
  ASSERT_NE(mkdtemp(directory_template), nullptr);
  const std::string directory = directory_template;
  const std::string copy = directory + "/libuuid_copy.so.1";
  if (std::system(("cp /lib/x86_64-linux-gnu/libuuid.so.1 " + copy + " 2>/dev/null").c_str()) != 0) {
    rmdir(directory.c_str());
    GTEST_SKIP() << "libuuid.so.1 is not installed where expected";
  }
  void* library = dlopen(copy.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(library, nullptr) << dlerror();
  unlink(copy.c_str());
  rmdir(directory.c_str());
  void* function = dlsym(library, "uuid_generate");
  ASSERT_NE(function, nullptr);
  Dl_info loader_view{};
  ASSERT_NE(dladdr(function, &loader_view), 0);

  Symbolizer symbolizer;
  const uintptr_t address = reinterpret_cast<uintptr_t>(function) + 1;
  const SymbolizedFrame frame = symbolizer.resolve(address);
  EXPECT_EQ(frame.module.rfind(copy, 0), 0u) << frame.module;  // kernel appends " (deleted)"
  EXPECT_EQ(frame.function, "uuid_generate");
  EXPECT_EQ(frame.module_offset, address - reinterpret_cast<uintptr_t>(loader_view.dli_fbase));
  dlclose(library);
}

// A library closed with dlclose (through the recording dlclose, as under the preload library):
// frames of stacks captured while it was loaded are named from its file, found by the recorded
// path and trusted because its build-id is the recorded one.
TEST(SymbolizerTest, NamesFramesOfAClosedLibraryFromItsFile) {
  void* alpha = dlopen(HK_UNLOADED_ALPHA, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(alpha, nullptr) << dlerror();
  const auto function = reinterpret_cast<uintptr_t>(dlsym(alpha, "alpha_make_block"));
  ASSERT_NE(function, 0u);
  Dl_info loader_view{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(function), &loader_view), 0);
  const auto load_bias = reinterpret_cast<uintptr_t>(loader_view.dli_fbase);
  const uint32_t generation = alloc::module_generation();
  ASSERT_EQ(alloc::dlclose_recording_unloads(&dlclose, alpha), 0);

  Symbolizer symbolizer;
  const SymbolizedFrame frame = symbolizer.resolve(function + 1, generation);
  std::unique_ptr<char, decltype(&std::free)> path(realpath(HK_UNLOADED_ALPHA, nullptr), &std::free);
  EXPECT_EQ(frame.function, "alpha_make_block");
  EXPECT_EQ(frame.module, path.get());
  EXPECT_EQ(frame.module_offset, function + 1 - load_bias);
  EXPECT_TRUE(ends_with(frame.file, "unloaded_plugin.c")) << frame.file;
  EXPECT_GT(frame.line, 0);
  EXPECT_EQ(frame.build_id.size(), 40u) << frame.build_id;
  EXPECT_TRUE(frame.unloaded);
  EXPECT_TRUE(ends_with(Symbolizer::format(frame), " (unloaded)")) << Symbolizer::format(frame);
  // Without the stack's generation, named by whatever is mapped there now (here, as likely as not,
  // libelf's own read-only mapping of alpha's file, opened just above).
  EXPECT_FALSE(symbolizer.resolve(function + 1).unloaded);
}

// The file of a closed library deleted, or replaced by another build, gives module and offset (and
// the recorded build-id) only: never the names of whatever file is at that path now.
TEST(SymbolizerTest, AClosedLibraryGoneOrReplacedOnDiskGivesModuleAndOffsetOnly) {
  char directory_template[] = "/tmp/heapkeeper_symbolizer_XXXXXX";
  ASSERT_NE(mkdtemp(directory_template), nullptr);
  const std::string directory = directory_template;
  const std::string copy = directory + "/libcopy.so";
  ASSERT_EQ(std::system(("cp " HK_UNLOADED_ALPHA " " + copy).c_str()), 0);
  void* library = dlopen(copy.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(library, nullptr) << dlerror();
  const auto function = reinterpret_cast<uintptr_t>(dlsym(library, "alpha_make_block"));
  Dl_info loader_view{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(function), &loader_view), 0);
  const auto load_bias = reinterpret_cast<uintptr_t>(loader_view.dli_fbase);
  const uint32_t generation = alloc::module_generation();
  ASSERT_EQ(alloc::dlclose_recording_unloads(&dlclose, library), 0);
  ASSERT_EQ(unlink(copy.c_str()), 0);

  const SymbolizedFrame gone = Symbolizer().resolve(function + 1, generation);
  EXPECT_EQ(gone.function, "??");
  EXPECT_EQ(gone.module, copy);
  EXPECT_EQ(gone.module_offset, function + 1 - load_bias);
  EXPECT_EQ(gone.file, "");
  EXPECT_EQ(gone.build_id.size(), 40u);
  EXPECT_TRUE(gone.unloaded);
  EXPECT_TRUE(ends_with(Symbolizer::format(gone), " (unloaded, BuildId: " + gone.build_id + ")"))
      << Symbolizer::format(gone);

  // bravo has the same layout, so its symbol table would give "bravo_make_block" right there.
  ASSERT_EQ(std::system(("cp " HK_UNLOADED_BRAVO " " + copy).c_str()), 0);
  const SymbolizedFrame replaced = Symbolizer().resolve(function + 1, generation);
  EXPECT_EQ(replaced.function, "??");
  EXPECT_EQ(replaced.file, "");
  EXPECT_EQ(replaced.build_id, gone.build_id);
  unlink(copy.c_str());
  rmdir(directory.c_str());
}

TEST(SymbolizerTest, CachedAndInvalidatedAnswersMatchTheFirst) {
  Symbolizer symbolizer;
  const CallSite site = known_caller_for_symbolizer_test();
  const SymbolizedFrame first = symbolizer.resolve(site.return_address);
  const SymbolizedFrame cached = symbolizer.resolve(site.return_address);
  symbolizer.invalidate();
  const SymbolizedFrame reread = symbolizer.resolve(site.return_address);

  for (const SymbolizedFrame* frame : {&cached, &reread}) {
    EXPECT_EQ(frame->function, first.function);
    EXPECT_EQ(frame->module, first.module);
    EXPECT_EQ(frame->module_offset, first.module_offset);
    EXPECT_EQ(frame->file, first.file);
    EXPECT_EQ(frame->line, first.line);
  }
}

TEST(SymbolizerTest, ForkedChildRereadsItsOwnModuleList) {
  Symbolizer symbolizer;
  ASSERT_NE(symbolizer.resolve(as_return_address(&getpid)).module, "??");  // parent's list

  const pid_t child = fork();
  ASSERT_NE(child, -1);
  if (child == 0) {
    // An address the parent never resolved, so the answer cannot come from the cache.
    const SymbolizedFrame frame = symbolizer.resolve(as_return_address(&symbolizer_fixture::function_with_parameters));
    const bool named = frame.function.find("function_with_parameters") != std::string::npos;
    _exit(named && frame.module == this_executable_path() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(SymbolizerTest, FilesItKeepsOpenAreNotInheritedByExec) {
  Symbolizer symbolizer;
  const CallSite site = known_caller_for_symbolizer_test();
  ASSERT_GT(symbolizer.resolve(site.return_address).line, 0);  // opens this binary for its DWARF
  ASSERT_NE(symbolizer.resolve(as_return_address(&getpid)).module, "??");

  const std::string executable = this_executable_path();
  DIR* descriptors = opendir("/proc/self/fd");
  ASSERT_NE(descriptors, nullptr);
  int checked = 0;
  while (const dirent* entry = readdir(descriptors)) {
    const int fd = std::atoi(entry->d_name);
    char target[PATH_MAX] = {};
    const std::string link = std::string("/proc/self/fd/") + entry->d_name;
    if (entry->d_name[0] == '.' || readlink(link.c_str(), target, sizeof target - 1) < 0) continue;
    if (executable != target) continue;
    SCOPED_TRACE(target);
    EXPECT_NE(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    ++checked;
  }
  closedir(descriptors);
  EXPECT_GT(checked, 0) << "the symbolizer should hold " << executable << " open";
}

TEST(SymbolizerTest, ConcurrentResolvesAgreeWithSerialOnes) {
  const CallSite site = known_caller_for_symbolizer_test();
  const std::vector<uintptr_t> addresses = {site.return_address, as_return_address(&getpid),
                                            as_return_address(&symbolizer_fixture::function_with_parameters), 0, 1};
  std::vector<std::string> expected;
  {
    Symbolizer serial;
    for (const uintptr_t address : addresses) {
      expected.push_back(Symbolizer::format(serial.resolve(address)));
    }
  }

  // One shared symbolizer, cold, so that the threads race on the first read of the module list.
  Symbolizer shared;
  constexpr int kThreads = 4;
  std::vector<std::vector<std::string>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int thread = 0; thread < kThreads; ++thread) {
    threads.emplace_back([&, thread] {
      for (int round = 0; round < 50; ++round) {
        for (const uintptr_t address : addresses) {
          seen[thread].push_back(Symbolizer::format(shared.resolve(address)));
        }
        if (round == 25 && thread == 0) shared.invalidate();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  for (const std::vector<std::string>& results : seen) {
    ASSERT_EQ(results.size(), 50 * addresses.size());
    for (size_t i = 0; i < results.size(); ++i) {
      EXPECT_EQ(results[i], expected[i % addresses.size()]);
    }
  }
}

TEST(SymbolizerTest, FormatsFramesForHumanReports) {
  SymbolizedFrame frame;
  frame.address = 0x5555555551a9;
  frame.function = "make_list";
  frame.module = "/tmp/prog";
  frame.module_offset = 0x11a9;
  frame.file = "prog.c";
  frame.line = 12;
  EXPECT_EQ(Symbolizer::format(frame), "make_list /tmp/prog+0x11a9 prog.c:12");

  frame.line = 0;
  EXPECT_EQ(Symbolizer::format(frame), "make_list /tmp/prog+0x11a9 prog.c");

  frame.file.clear();
  EXPECT_EQ(Symbolizer::format(frame), "make_list /tmp/prog+0x11a9");

  SymbolizedFrame unknown;
  unknown.address = 0xdeadbeef;
  unknown.function = "??";
  unknown.module = "??";
  EXPECT_EQ(Symbolizer::format(unknown), "?? ?? 0xdeadbeef");

  Symbolizer symbolizer;
  EXPECT_EQ(Symbolizer::format(symbolizer.resolve(0)), "?? ?? 0x0");
}

}  // namespace
}  // namespace heapkeeper::report

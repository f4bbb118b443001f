// Unit tests for the records of unloaded libraries (allocator/unloaded_modules.h) and for how the
// stack table keeps stacks of different libraries at the same addresses apart.
//
// The libraries are tests/programs' two plugins, alpha and bravo: one source under two names of the
// same length, so that bravo, loaded after alpha is closed, usually lands at alpha's addresses.
// dlclose goes through dlclose_recording_unloads with glibc's dlclose as the original, as the
// preload library's dlclose does. Each test runs in its own process (gtest_discover_tests), but
// every assertion is relative to the generation it starts from.
#include "allocator/unloaded_modules.h"

#include "allocator/python_frame_word.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "allocator/stack_table.h"

namespace heapkeeper::alloc {
namespace {

// Lower-case hex of the NT_GNU_BUILD_ID note of an ELF file, read from the file (not from memory,
// as the registry does): what `readelf -n` prints.
std::string build_id_in_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < sizeof(Elf64_Ehdr)) return "";
  Elf64_Ehdr header;
  std::memcpy(&header, data.data(), sizeof header);
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, data.data() + header.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type != PT_NOTE) continue;
    const size_t align = ph.p_align == 8 ? 8 : 4;
    for (size_t at = ph.p_offset; at + sizeof(Elf64_Nhdr) <= ph.p_offset + ph.p_filesz;) {
      Elf64_Nhdr note;
      std::memcpy(&note, data.data() + at, sizeof note);
      const size_t name = at + sizeof note;
      const size_t desc = name + (note.n_namesz + align - 1) / align * align;
      if (note.n_type == NT_GNU_BUILD_ID && std::memcmp(data.data() + name, "GNU", 4) == 0) {
        std::string hex;
        for (size_t k = 0; k < note.n_descsz; ++k) {
          char digits[3];
          std::snprintf(digits, sizeof digits, "%02x", static_cast<unsigned char>(data[desc + k]));
          hex += digits;
        }
        return hex;
      }
      at = desc + (note.n_descsz + align - 1) / align * align;
    }
  }
  return "";
}

std::string hex(const uint8_t* bytes, uint32_t length) {
  std::string text;
  for (uint32_t i = 0; i < length; ++i) {
    char digits[3];
    std::snprintf(digits, sizeof digits, "%02x", bytes[i]);
    text += digits;
  }
  return text;
}

std::string real_path(const char* path) {
  char resolved[PATH_MAX];
  return realpath(path, resolved) != nullptr ? resolved : path;
}

struct Plugin {
  void* handle = nullptr;
  uintptr_t load_bias = 0;
  uintptr_t make_block = 0;  // a function of the plugin
  uintptr_t lose_blocks = 0;
};

Plugin open_plugin(const std::string& path, const char* name) {
  Plugin plugin;
  plugin.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  EXPECT_NE(plugin.handle, nullptr) << dlerror();
  if (plugin.handle == nullptr) return plugin;
  link_map* map = nullptr;
  EXPECT_EQ(dlinfo(plugin.handle, RTLD_DI_LINKMAP, &map), 0);
  plugin.load_bias = map->l_addr;
  plugin.make_block = reinterpret_cast<uintptr_t>(dlsym(plugin.handle, (std::string(name) + "_make_block").c_str()));
  plugin.lose_blocks = reinterpret_cast<uintptr_t>(dlsym(plugin.handle, (std::string(name) + "_lose_blocks").c_str()));
  EXPECT_NE(plugin.make_block, 0u);
  return plugin;
}

int close_recording(void* handle) { return dlclose_recording_unloads(&dlclose, handle); }

TEST(UnloadedModules, RecordsPathBuildIdLoadBiasAndRangeOfAClosedLibrary) {
  const Plugin alpha = open_plugin(HK_UNLOADED_ALPHA, "alpha");
  ASSERT_NE(alpha.handle, nullptr);
  const uint32_t before = module_generation();
  const size_t events = unload_event_count();
  UnloadedModule record;
  EXPECT_FALSE(unloaded_module_for(alpha.make_block + 1, before, &record)) << "still loaded";

  ASSERT_EQ(close_recording(alpha.handle), 0);
  EXPECT_EQ(module_generation(), before + 1);
  EXPECT_EQ(unload_event_count(), events + 1) << "alpha has no dependency of its own to unload";
  ASSERT_TRUE(unloaded_module_for(alpha.make_block + 1, before, &record));
  EXPECT_EQ(std::string(record.path), real_path(HK_UNLOADED_ALPHA));
  EXPECT_EQ(record.load_bias, alpha.load_bias);
  EXPECT_LE(record.low, alpha.make_block);
  EXPECT_GT(record.high, alpha.make_block);
  EXPECT_EQ(record.unload_generation, before + 1);
  const std::string expected_id = build_id_in_file(HK_UNLOADED_ALPHA);
  ASSERT_FALSE(expected_id.empty()) << "the plugin was linked without a build-id";
  EXPECT_EQ(hex(record.build_id, record.build_id_length), expected_id);

  // Stacks captured after the unload (and single addresses named now) are not alpha's.
  EXPECT_FALSE(unloaded_module_for(alpha.make_block + 1, before + 1, &record));
  EXPECT_FALSE(unloaded_module_for(alpha.make_block + 1, kMappedNow, &record));
  // A return address is looked up one byte back: the first byte of the module is not in it.
  EXPECT_FALSE(unloaded_module_for(record.low, before, &record));
}

TEST(UnloadedModules, ACloseThatUnmapsNothingRecordsNothing) {
  const Plugin first = open_plugin(HK_UNLOADED_ALPHA, "alpha");
  const Plugin second = open_plugin(HK_UNLOADED_ALPHA, "alpha");  // the same object, count 2
  ASSERT_NE(second.handle, nullptr);
  const uint32_t before = module_generation();
  const size_t events = unload_event_count();
  ASSERT_EQ(close_recording(first.handle), 0);
  EXPECT_EQ(module_generation(), before) << "a stack cache would be emptied for nothing";
  EXPECT_EQ(unload_event_count(), events);
  ASSERT_EQ(close_recording(second.handle), 0);
  EXPECT_EQ(module_generation(), before + 1);
}

TEST(UnloadedModules, ARelativeLoaderPathIsRecordedAbsolute) {
  char directory_template[] = "/tmp/heapkeeper_unloaded_XXXXXX";
  ASSERT_NE(mkdtemp(directory_template), nullptr);
  const std::string directory = directory_template;
  ASSERT_EQ(
      std::system(("mkdir " + directory + "/sub && cp " HK_UNLOADED_ALPHA " " + directory + "/sub/libcopy.so").c_str()),
      0);
  char previous[PATH_MAX];
  ASSERT_NE(getcwd(previous, sizeof previous), nullptr);
  ASSERT_EQ(chdir(directory.c_str()), 0);
  const Plugin copy = open_plugin("./sub/libcopy.so", "alpha");
  // The program moves elsewhere before closing it: "./sub/libcopy.so" means nothing there.
  ASSERT_EQ(chdir("/"), 0);
  const uint32_t before = module_generation();
  ASSERT_NE(copy.handle, nullptr);
  ASSERT_EQ(close_recording(copy.handle), 0);
  UnloadedModule record;
  ASSERT_TRUE(unloaded_module_for(copy.make_block + 1, before, &record));
  EXPECT_EQ(std::string(record.path), real_path((directory + "/sub/libcopy.so").c_str()));
  ASSERT_EQ(chdir(previous), 0);
  ASSERT_EQ(std::system(("rm -rf " + directory).c_str()), 0);
}

TEST(UnloadedModules, AnAddressIsNamedByTheLibraryMappedWhenItsStackWasCaptured) {
  const Plugin alpha = open_plugin(HK_UNLOADED_ALPHA, "alpha");
  const uint32_t alpha_generation = module_generation();
  ASSERT_EQ(close_recording(alpha.handle), 0);
  const Plugin bravo = open_plugin(HK_UNLOADED_BRAVO, "bravo");
  ASSERT_NE(bravo.handle, nullptr);
  if (bravo.make_block != alpha.make_block) GTEST_SKIP() << "bravo was not loaded at alpha's addresses";
  const uint32_t bravo_generation = module_generation();
  ASSERT_EQ(close_recording(bravo.handle), 0);

  UnloadedModule record;
  ASSERT_TRUE(unloaded_module_for(alpha.make_block + 1, alpha_generation, &record));
  EXPECT_EQ(std::string(record.path), real_path(HK_UNLOADED_ALPHA));
  ASSERT_TRUE(unloaded_module_for(alpha.make_block + 1, bravo_generation, &record));
  EXPECT_EQ(std::string(record.path), real_path(HK_UNLOADED_BRAVO));
  EXPECT_FALSE(unloaded_module_for(alpha.make_block + 1, module_generation(), &record));

  const uintptr_t stack[] = {alpha.make_block + 1, 0x1234};
  EXPECT_EQ(first_unload_after(stack, 2, alpha_generation), alpha_generation + 1);
  EXPECT_EQ(first_unload_after(stack, 2, bravo_generation), bravo_generation + 1);
  EXPECT_EQ(first_unload_after(stack, 2, module_generation()), 0u);
  EXPECT_TRUE(unloaded_between(stack, 2, alpha_generation, bravo_generation));
  EXPECT_FALSE(unloaded_between(stack, 2, bravo_generation + 1, bravo_generation + 1));
  const uintptr_t elsewhere[] = {0x1234, 0x5678};
  EXPECT_FALSE(unloaded_between(elsewhere, 2, alpha_generation, module_generation()));
}

TEST(UnloadedModules, TheSameLibraryUnloadedTwiceFromTheSamePlaceIsOneRecord) {
  const Plugin first = open_plugin(HK_UNLOADED_ALPHA, "alpha");
  ASSERT_EQ(close_recording(first.handle), 0);
  const size_t records = unloaded_module_count();
  const size_t events = unload_event_count();
  const Plugin again = open_plugin(HK_UNLOADED_ALPHA, "alpha");
  ASSERT_EQ(close_recording(again.handle), 0);
  EXPECT_EQ(unload_event_count(), events + 1);
  if (again.load_bias == first.load_bias) {
    EXPECT_EQ(unloaded_module_count(), records);
  }
}

class UnloadedStacks : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    static const bool ready = stack_table().initialize();
    ASSERT_TRUE(ready) << "could not map the stack table";
  }
  static uint32_t intern(const std::vector<uintptr_t>& frames, uint32_t generation) {
    const auto depth = static_cast<uint32_t>(frames.size());
    return stack_table().intern(frames.data(), depth, generation);
  }
};

TEST_F(UnloadedStacks, AStackThroughAClosedLibraryGetsANewIdOnlyThen) {
  const Plugin alpha = open_plugin(HK_UNLOADED_ALPHA, "alpha");
  ASSERT_NE(alpha.handle, nullptr);
  const std::vector<uintptr_t> through_alpha = {alpha.make_block + 1, alpha.lose_blocks + 1, 0x7000'0000'1000};
  const std::vector<uintptr_t> elsewhere = {0x7000'0000'2000, 0x7000'0000'3000};
  const uint32_t before = module_generation();
  const uint32_t alpha_stack = intern(through_alpha, before);
  const uint32_t other_stack = intern(elsewhere, before);
  const uint32_t nodes_before = stack_table().node_count();
  EXPECT_EQ(intern(through_alpha, before), alpha_stack);
  ASSERT_EQ(close_recording(alpha.handle), 0);
  const uint32_t after = module_generation();
  ASSERT_EQ(after, before + 1);

  // The same addresses captured now are another library's (or garbage): another stack, which reports
  // do not merge with alpha's.
  const uint32_t reused = intern(through_alpha, after);
  EXPECT_NE(reused, alpha_stack);
  EXPECT_EQ(stack_table().frames(alpha_stack).generation, before);
  EXPECT_EQ(stack_table().frames(reused).generation, after);
  EXPECT_NE(stack_table().site_key(reused), stack_table().site_key(alpha_stack));
  EXPECT_EQ(intern(through_alpha, after), reused);
  EXPECT_EQ(stack_table().node_count() - nodes_before, 2u) << "the caller outside alpha keeps its node";

  // A stack none of whose modules was unloaded keeps its id, and moves to the new generation.
  EXPECT_EQ(intern(elsewhere, after), other_stack);
  EXPECT_EQ(stack_table().frames(other_stack).generation, after);
  EXPECT_EQ(stack_table().site_key(other_stack), StackTable::hash(elsewhere.data(), 2));

  // A frame outside alpha called from alpha (a callback) hangs off alpha's frame: a new node too, even
  // though its own module was not unloaded.
  const std::vector<uintptr_t> callback = {0x7000'0000'4000, alpha.make_block + 1, 0x7000'0000'1000};
  const uint32_t callback_before = intern(callback, before);
  const uint32_t nodes_between = stack_table().node_count();
  const uint32_t callback_after = intern(callback, after);
  EXPECT_NE(callback_after, callback_before);
  EXPECT_EQ(stack_table().node_count() - nodes_between, 2u);
  EXPECT_NE(stack_table().site_key(callback_after), stack_table().site_key(callback_before));
  EXPECT_EQ(stack_table().frames(callback_after).depth, 3u);
  EXPECT_EQ(stack_table().frames(callback_after).frames[0], callback[0]);

  // A capture that read the generation before the unload (a thread racing with dlclose) is alpha's.
  const uint32_t late = intern(through_alpha, before);
  EXPECT_NE(late, reused);
  EXPECT_EQ(stack_table().site_key(late), stack_table().site_key(alpha_stack));
}

// Stacks whose innermost Python frame has C calls through a plugin inside it: those calls are a
// chain of their own (stack_table.h, "Chains"), and the checks of a path across an unload hold for
// the chain as for any path. After alpha is closed, the same frames make a new chain and so a new
// stack, which reports keep apart from alpha's; the stack alpha's blocks have still reads back
// alpha's frames in alpha's generation; a chain with no frame in alpha keeps its stacks' ids.
TEST_F(UnloadedStacks, ChainsThroughAClosedLibraryAreMadeAnewAndOnlyThose) {
  const Plugin alpha = open_plugin(HK_UNLOADED_ALPHA, "alpha");
  ASSERT_NE(alpha.handle, nullptr);
  const uintptr_t python_line = python_word::make(0x5a5a, 7);
  const std::vector<uintptr_t> through_alpha = {alpha.make_block + 1, alpha.lose_blocks + 1, 0x7000'0001'1000,
                                                python_line, 0x7000'0001'2000};
  const std::vector<uintptr_t> elsewhere = {0x7000'0001'3000, 0x7000'0001'4000, python_line, 0x7000'0001'2000};
  const uint32_t before = module_generation();
  const uint32_t alpha_stack = intern(through_alpha, before);
  const uint32_t other_stack = intern(elsewhere, before);
  ASSERT_NE(alpha_stack, StackTable::kNoStack);
  ASSERT_NE(other_stack, StackTable::kNoStack);
  ASSERT_EQ(close_recording(alpha.handle), 0);
  const uint32_t after = module_generation();
  ASSERT_EQ(after, before + 1);

  const uint32_t nodes_before = stack_table().node_count();
  const uint32_t reused = intern(through_alpha, after);
  EXPECT_NE(reused, alpha_stack);
  EXPECT_EQ(intern(through_alpha, after), reused);
  EXPECT_EQ(stack_table().node_count() - nodes_before, 2u + 1u)
      << "alpha's two frames (a new chain under the call outside alpha, which keeps its node) and the new chain's word";
  const StackView old_view = stack_table().frames(alpha_stack);
  EXPECT_EQ(std::vector<uintptr_t>(old_view.frames, old_view.frames + old_view.depth), through_alpha);
  EXPECT_EQ(old_view.generation, before);
  const StackView new_view = stack_table().frames(reused);
  EXPECT_EQ(std::vector<uintptr_t>(new_view.frames, new_view.frames + new_view.depth), through_alpha);
  EXPECT_EQ(new_view.generation, after);
  EXPECT_NE(stack_table().site_key(reused), stack_table().site_key(alpha_stack));

  EXPECT_EQ(intern(elsewhere, after), other_stack);
  EXPECT_EQ(stack_table().frames(other_stack).generation, after);
  EXPECT_EQ(stack_table().site_key(other_stack), StackTable::hash(elsewhere.data(), 4));

  // A capture that read the generation before the unload is alpha's.
  EXPECT_EQ(stack_table().site_key(intern(through_alpha, before)), stack_table().site_key(alpha_stack));
}

TEST_F(UnloadedStacks, APluginReloadedInALoopCostsItsOwnFramesPerReloadNotAStackCopy) {
  uint32_t previous = StackTable::kNoStack;
  const uint32_t ids_before = stack_table().count();
  uint32_t nodes_before = 0;
  uint64_t indexed_after_first = 0;
  constexpr int kCycles = 20;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    const Plugin alpha = open_plugin(HK_UNLOADED_ALPHA, "alpha");
    ASSERT_NE(alpha.handle, nullptr);
    const std::vector<uintptr_t> frames = {alpha.make_block + 1, alpha.lose_blocks + 1, 0x7000'0000'5000};
    const uint32_t id = intern(frames, module_generation());
    EXPECT_EQ(intern(frames, module_generation()), id);
    EXPECT_NE(id, previous);
    EXPECT_EQ(stack_table().frames(id).depth, 3u);
    // Wherever the plugin lands, its two frames are new nodes and the caller outside it is shared;
    // where it lands again (the usual case), the new nodes take the old ones' slots.
    if (cycle > 0) {
      EXPECT_EQ(stack_table().node_count() - nodes_before, 2u) << "cycle " << cycle;
      // Both new nodes took their predecessors' slots (when the plugin landed where it was before,
      // as it does here): lookups probe no longer chains than after the first load.
      if (stack_table().frames(id).frames[0] == stack_table().frames(previous).frames[0]) {
        EXPECT_EQ(stack_table().indexed_nodes(), indexed_after_first) << "cycle " << cycle;
      }
    } else {
      indexed_after_first = stack_table().indexed_nodes();
    }
    nodes_before = stack_table().node_count();
    previous = id;
    ASSERT_EQ(close_recording(alpha.handle), 0);
  }
  EXPECT_EQ(stack_table().count() - ids_before, static_cast<uint32_t>(kCycles));
}

}  // namespace
}  // namespace heapkeeper::alloc

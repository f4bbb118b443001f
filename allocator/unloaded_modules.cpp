// Implementation of the unloaded-module records (see unloaded_modules.h).
//
// dlclose: snapshot the loader's list (ranges, build-ids, names copied, since the originals are
// freed with the objects), call the original, walk the list again, and record every snapshot entry
// no longer there. Recording takes a spin lock held for a few copies, never across the original:
// a library constructor running under the loader's lock may itself call dlclose, and waiting for
// it while holding ours would deadlock. Two dlcloses racing on different threads may both see an
// object go; whichever records it second skips it (it finds an event for it newer than its own
// snapshot), so no object is recorded as unloaded twice for one unload.
#include "allocator/unloaded_modules.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "allocator/engine.h"
#include "allocator/hash_mix.h"
#include "allocator/internal_mappings.h"
#include "allocator/jemalloc_calls.h"
#include "allocator/private_heap.h"
#include "allocator/thread_registry.h"

namespace heapkeeper::alloc {

std::atomic<uint32_t> g_module_generation{0};

namespace {

constexpr size_t kMaxBuildId = 40;  // SHA-1 is 20 bytes; longer build-ids are not recorded
constexpr uint32_t kMaxModules = 4096;
constexpr uint32_t kMaxEvents = 65536;
constexpr uint32_t kPathBytes = 1u << 20;

struct BuildId {
  uint8_t length = 0;
  uint8_t bytes[kMaxBuildId] = {};
  bool operator==(const BuildId& other) const {
    return length == other.length && std::memcmp(bytes, other.bytes, length) == 0;
  }
};

struct ModuleRecord {
  uintptr_t load_bias, low, high;
  uint32_t path_offset;
  BuildId build_id;
};

struct UnloadEvent {
  uint32_t module;
  uint32_t generation;
};

// One mapping for everything, made on the first dlclose that unmaps something; readers find it
// through g_registry and read only what the counts publish.
struct Registry {
  std::atomic<uint32_t> module_count;
  std::atomic<uint32_t> event_count;
  uint32_t path_used;
  ModuleRecord modules[kMaxModules];
  UnloadEvent events[kMaxEvents];
  char paths[kPathBytes];
};

std::atomic<Registry*> g_registry{nullptr};

// The writers' lock, named by its holder's thread-local byte (as collector/kernel_roots.cpp).
std::atomic<const void*> g_owner{nullptr};
thread_local char t_identity;

class WriterLock {
 public:
  WriterLock() {
    const void* self = &t_identity;
    if (g_owner.load(std::memory_order_relaxed) == self) return;  // a signal handler inside its own thread's update
    for (unsigned spins = 0;; ++spins) {
      const void* expected = nullptr;
      if (g_owner.compare_exchange_weak(expected, self, std::memory_order_acquire, std::memory_order_relaxed)) break;
      if (spins > 64) sched_yield();
    }
    held_ = true;
  }
  ~WriterLock() {
    if (held_) g_owner.store(nullptr, std::memory_order_release);
  }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;
  bool held() const { return held_; }

 private:
  bool held_ = false;
};

// ---------------------------------------------------------------------------------------------
// What the loader knows about one object, read from its program headers in memory.

struct Extent {
  uintptr_t low = UINTPTR_MAX, high = 0;
};

Extent extent_of(const dl_phdr_info* info) {
  Extent extent;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    extent.low = std::min<uintptr_t>(extent.low, info->dlpi_addr + ph.p_vaddr);
    extent.high = std::max<uintptr_t>(extent.high, info->dlpi_addr + ph.p_vaddr + ph.p_memsz);
  }
  return extent;
}

// The NT_GNU_BUILD_ID note, as the static linker wrote it into a PT_NOTE segment (which lies in a
// loaded, readable segment).
BuildId build_id_of(const dl_phdr_info* info) {
  BuildId id;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE || ph.p_memsz < sizeof(ElfW(Nhdr))) continue;
    const size_t align = ph.p_align == 8 ? 8 : 4;
    const auto* note = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
    const char* const end = note + ph.p_memsz;
    while (note + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) header;
      std::memcpy(&header, note, sizeof header);
      const char* name = note + sizeof header;
      const char* desc = name + ((header.n_namesz + align - 1) & ~(align - 1));
      const char* next = desc + ((header.n_descsz + align - 1) & ~(align - 1));
      if (next > end || next <= note) break;
      if (header.n_type == NT_GNU_BUILD_ID && header.n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
        if (header.n_descsz == 0 || header.n_descsz > kMaxBuildId) return id;
        id.length = static_cast<uint8_t>(header.n_descsz);
        std::memcpy(id.bytes, desc, header.n_descsz);
        return id;
      }
      note = next;
    }
  }
  return id;
}

uint64_t name_hash(const char* name) {
  uint64_t hash = 1469598103934665603ull;
  for (const char* c = name; c != nullptr && *c != '\0'; ++c)
    hash = (hash ^ static_cast<unsigned char>(*c)) * 1099511628211ull;
  return hash;
}

// ---------------------------------------------------------------------------------------------
// The snapshot taken before the original dlclose: everything mapped, with copies of the names.

struct LoadedObject {
  uintptr_t load_bias, low, high;
  uint64_t loader_name_hash;
  uint32_t path_offset;  // into Snapshot::paths
  bool relative;         // the loader's name is relative to some directory: ask /proc/self/maps
  bool still_loaded;
  BuildId build_id;
};

struct Snapshot {
  void* memory = nullptr;
  size_t bytes = 0;
  bool from_heap = false;  // the internal arena's, else mmap'd
  LoadedObject* objects = nullptr;
  size_t count = 0, capacity = 0;
  char* paths = nullptr;
  size_t paths_used = 0, paths_capacity = 0;
  char* read_buffer = nullptr;  // for /proc/self/maps, when a name is relative
  static constexpr size_t kReadBuffer = 16384;

  bool add_path(const char* text, size_t length, uint32_t* offset) {
    if (paths_used + length + 1 > paths_capacity) return false;
    *offset = static_cast<uint32_t>(paths_used);
    std::memcpy(paths + paths_used, text, length);
    paths[paths_used + length] = '\0';
    paths_used += length + 1;
    return true;
  }
  const char* path(const LoadedObject& object) const { return paths + object.path_offset; }
};

struct SnapshotSize {
  size_t objects = 0, name_bytes = 0, relative_names = 0;
};

bool is_relative(const char* name) { return name[0] != '/' && std::strchr(name, '/') != nullptr; }

// From the internal arena when the engine is up (an mmap and munmap per dlclose would cost a TLB
// shootdown on every thread), else mapped.
bool allocate_snapshot(Snapshot& snapshot) {
  SnapshotSize size;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) -> int {
        auto* out = static_cast<SnapshotSize*>(data);
        const char* name = info->dlpi_name != nullptr ? info->dlpi_name : "";
        ++out->objects;
        out->name_bytes += std::strlen(name) + 1;
        if (is_relative(name)) ++out->relative_names;
        return 0;
      },
      &size);
  // Room for a few objects loaded by other threads between the two walks.
  snapshot.capacity = size.objects + 16;
  snapshot.paths_capacity = size.name_bytes + size_t{16} * 256 + size.relative_names * PATH_MAX;
  const size_t object_bytes = (snapshot.capacity * sizeof(LoadedObject) + 63) & ~size_t{63};
  const size_t buffer_bytes = size.relative_names != 0 ? Snapshot::kReadBuffer : 0;
  snapshot.bytes = (object_bytes + snapshot.paths_capacity + buffer_bytes + 4095) & ~size_t{4095};
  snapshot.from_heap = is_initialized() && tls_thread.in_jemalloc == 0;
  snapshot.memory = snapshot.from_heap ? je::mallocx(snapshot.bytes, MALLOCX_ARENA(private_heap().internal_arena()) |
                                                                         MALLOCX_TCACHE_NONE | MALLOCX_LG_ALIGN(6))
                                       : map_internal(snapshot.bytes, false);
  if (snapshot.memory == nullptr) return false;
  snapshot.objects = static_cast<LoadedObject*>(snapshot.memory);
  snapshot.paths = static_cast<char*>(snapshot.memory) + object_bytes;
  snapshot.read_buffer = buffer_bytes != 0 ? snapshot.paths + snapshot.paths_capacity : nullptr;
  return true;
}

void release_snapshot(Snapshot& snapshot) {
  if (snapshot.from_heap) {
    je::dallocx(snapshot.memory, MALLOCX_TCACHE_NONE);
  } else {
    unmap_internal(snapshot.memory, snapshot.bytes);
  }
}

int add_object(dl_phdr_info* info, size_t, void* data) {
  auto* snapshot = static_cast<Snapshot*>(data);
  if (snapshot->count == snapshot->capacity) return 1;
  const Extent extent = extent_of(info);
  if (extent.high <= extent.low) return 0;
  const char* name = info->dlpi_name != nullptr ? info->dlpi_name : "";
  LoadedObject& object = snapshot->objects[snapshot->count];
  object.load_bias = info->dlpi_addr;
  object.low = extent.low;
  object.high = extent.high;
  object.loader_name_hash = name_hash(name);
  // "libx.so" found through a relative LD_LIBRARY_PATH entry, or dlopen("./x.so"): the kernel has
  // the absolute path (the program may change directory before the report).
  object.relative = is_relative(name);
  object.still_loaded = false;
  object.build_id = build_id_of(info);
  if (!snapshot->add_path(name, std::strlen(name), &object.path_offset)) return 1;
  ++snapshot->count;
  return 0;
}

// The absolute paths of objects the loader names relatively, from the file mappings of
// /proc/self/maps ("start-end perms offset dev inode path"), " (deleted)" removed.
void resolve_relative_paths(Snapshot& snapshot) {
  if (snapshot.read_buffer == nullptr) return;
  const int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char* const buffer = snapshot.read_buffer;
  size_t filled = 0;
  for (;;) {
    const ssize_t got = ::read(fd, buffer + filled, Snapshot::kReadBuffer - filled);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    filled += static_cast<size_t>(got);
    size_t consumed = 0;
    for (;;) {
      char* line = buffer + consumed;
      auto* newline = static_cast<char*>(std::memchr(line, '\n', filled - consumed));
      if (newline == nullptr) break;
      *newline = '\0';
      consumed = static_cast<size_t>(newline - buffer) + 1;
      char* cursor = line;
      const uintptr_t start = std::strtoull(cursor, &cursor, 16);
      if (*cursor != '-') continue;
      const uintptr_t end = std::strtoull(cursor + 1, &cursor, 16);
      // perms, offset, dev, inode
      for (int field = 0; field < 4 && cursor != nullptr; ++field) {
        while (*cursor == ' ') ++cursor;
        cursor = std::strchr(cursor, ' ');
      }
      if (cursor == nullptr) continue;
      while (*cursor == ' ') ++cursor;
      if (*cursor != '/') continue;
      size_t length = std::strlen(cursor);
      constexpr const char kDeleted[] = " (deleted)";
      constexpr size_t kDeletedLength = sizeof kDeleted - 1;
      if (length > kDeletedLength && std::strcmp(cursor + length - kDeletedLength, kDeleted) == 0)
        length -= kDeletedLength;
      for (size_t i = 0; i < snapshot.count; ++i) {
        LoadedObject& object = snapshot.objects[i];
        if (!object.relative || object.low < start || object.low >= end) continue;
        if (snapshot.add_path(cursor, length, &object.path_offset)) object.relative = false;
      }
    }
    // Keep the unfinished line; a line longer than the buffer is dropped.
    if (consumed == 0 && filled == Snapshot::kReadBuffer) {
      filled = 0;
      continue;
    }
    std::memmove(buffer, buffer + consumed, filled - consumed);
    filled -= consumed;
  }
  ::close(fd);
}

int mark_still_loaded(dl_phdr_info* info, size_t, void* data) {
  auto* snapshot = static_cast<Snapshot*>(data);
  const Extent extent = extent_of(info);
  if (extent.high <= extent.low) return 0;
  const uint64_t hash = name_hash(info->dlpi_name);
  bool build_id_read = false;
  BuildId build_id;
  for (size_t i = 0; i < snapshot->count; ++i) {
    LoadedObject& object = snapshot->objects[i];
    if (object.still_loaded || object.load_bias != info->dlpi_addr || object.low != extent.low ||
        object.high != extent.high || object.loader_name_hash != hash)
      continue;
    if (!build_id_read) {
      build_id = build_id_of(info);
      build_id_read = true;
    }
    if (object.build_id == build_id) {
      object.still_loaded = true;
      break;
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Recording, with the writers' lock held.

Registry* registry_locked() {
  Registry* registry = g_registry.load(std::memory_order_acquire);
  if (registry != nullptr) return registry;
  registry = static_cast<Registry*>(map_internal(sizeof(Registry), true));
  if (registry != nullptr) g_registry.store(registry, std::memory_order_release);
  return registry;
}

// The record of this module as it was mapped: an existing one when the same file was unloaded from
// the same place before (a plugin loaded and unloaded in a loop), else a new one. kMaxModules when
// there is no room.
uint32_t module_record_locked(Registry& registry, const Snapshot& snapshot, const LoadedObject& object) {
  const uint32_t count = registry.module_count.load(std::memory_order_relaxed);
  const char* path = snapshot.path(object);
  for (uint32_t i = count; i-- > 0;) {
    const ModuleRecord& record = registry.modules[i];
    if (record.load_bias == object.load_bias && record.low == object.low && record.high == object.high &&
        record.build_id == object.build_id && std::strcmp(registry.paths + record.path_offset, path) == 0)
      return i;
  }
  const size_t length = std::strlen(path);
  if (count == kMaxModules || registry.path_used + length + 1 > kPathBytes) return kMaxModules;
  ModuleRecord& record = registry.modules[count];
  record.load_bias = object.load_bias;
  record.low = object.low;
  record.high = object.high;
  record.build_id = object.build_id;
  record.path_offset = registry.path_used;
  std::memcpy(registry.paths + registry.path_used, path, length + 1);
  registry.path_used += static_cast<uint32_t>(length + 1);
  registry.module_count.store(count + 1, std::memory_order_release);
  return count;
}

// Whether another thread's dlclose has already recorded this unload: an event for the same record
// after the generation this thread's snapshot was taken in.
bool recorded_since(const Registry& registry, uint32_t module, uint32_t generation) {
  const uint32_t count = registry.event_count.load(std::memory_order_relaxed);
  for (uint32_t i = count; i-- > 0;) {
    const UnloadEvent& event = registry.events[i];
    if (event.generation <= generation) break;
    if (event.module == module) return true;
  }
  return false;
}

void record_unloads(const Snapshot& snapshot, uint32_t snapshot_generation) {
  WriterLock lock;
  if (!lock.held()) return;
  Registry* registry = nullptr;
  const uint32_t generation = g_module_generation.load(std::memory_order_relaxed) + 1;
  bool recorded = false;
  for (size_t i = 0; i < snapshot.count; ++i) {
    const LoadedObject& object = snapshot.objects[i];
    if (object.still_loaded) continue;
    if (registry == nullptr) registry = registry_locked();
    if (registry == nullptr) return;
    const uint32_t module = module_record_locked(*registry, snapshot, object);
    const uint32_t events = registry->event_count.load(std::memory_order_relaxed);
    // No room: this unload goes unrecorded, and its frames are named as without the registry.
    if (module == kMaxModules || events == kMaxEvents) continue;
    if (recorded_since(*registry, module, snapshot_generation)) continue;
    registry->events[events] = {module, generation};
    registry->event_count.store(events + 1, std::memory_order_release);
    recorded = true;
  }
  // Published last: a thread that sees the new generation sees its events. A dlclose that unmapped
  // nothing (a handle still open elsewhere) leaves stacks and stack caches as they are.
  if (recorded) g_module_generation.store(generation, std::memory_order_release);
}

// ---------------------------------------------------------------------------------------------
// Reading.

// The first event of a generation after `generation` (events are in generation order).
uint32_t first_event_after(const Registry& registry, uint32_t count, uint32_t generation) {
  const UnloadEvent* begin = registry.events;
  const UnloadEvent* found = std::upper_bound(
      begin, begin + count, generation, [](uint32_t g, const UnloadEvent& event) { return g < event.generation; });
  return static_cast<uint32_t>(found - begin);
}

bool holds(const ModuleRecord& record, uintptr_t return_address) {
  // A return address follows its call: the call itself, one byte back, is what lies in the module.
  return return_address > record.low && return_address - 1 < record.high;
}

}  // namespace

int dlclose_recording_unloads(DlcloseFunction original, void* handle) noexcept {
  const int entry_errno = errno;
  const uint32_t snapshot_generation = module_generation();
  Snapshot snapshot;
  const bool have_snapshot = allocate_snapshot(snapshot);
  if (have_snapshot) {
    dl_iterate_phdr(add_object, &snapshot);
    bool any_relative = false;
    for (size_t i = 0; i < snapshot.count; ++i) any_relative = any_relative || snapshot.objects[i].relative;
    if (any_relative) resolve_relative_paths(snapshot);
  }
  // The registry is mapped now, while the library is: mapped once it had gone, it took the hole
  // the library left, and the program's next dlopen of it loaded it elsewhere than without
  // heapkeeper (found by an adversarial tester: a plugin reloaded after its first dlclose moved in
  // 4 runs of 10).
  if (have_snapshot && g_registry.load(std::memory_order_acquire) == nullptr) {
    WriterLock lock;
    if (lock.held()) registry_locked();
  }
  errno = entry_errno;
  const int result = original(handle);
  const int result_errno = errno;
  if (have_snapshot) {
    dl_iterate_phdr(mark_still_loaded, &snapshot);
    record_unloads(snapshot, snapshot_generation);
    release_snapshot(snapshot);
  }
  errno = result_errno;
  return result;
}

size_t loaded_build_id(const dl_phdr_info* info, uint8_t* out) noexcept {
  static_assert(kMaxBuildId <= kMaxBuildIdBytes);
  const BuildId id = build_id_of(info);
  std::memcpy(out, id.bytes, id.length);
  return id.length;
}

bool unloaded_module_for(uintptr_t return_address, uint32_t generation, UnloadedModule* out) noexcept {
  const Registry* registry = g_registry.load(std::memory_order_acquire);
  if (registry == nullptr || generation == kMappedNow) return false;
  const uint32_t count = registry->event_count.load(std::memory_order_acquire);
  for (uint32_t i = first_event_after(*registry, count, generation); i < count; ++i) {
    const UnloadEvent& event = registry->events[i];
    const ModuleRecord& record = registry->modules[event.module];
    if (!holds(record, return_address)) continue;
    out->index = event.module;
    out->unload_generation = event.generation;
    out->path = registry->paths + record.path_offset;
    out->build_id = record.build_id.bytes;
    out->build_id_length = record.build_id.length;
    out->load_bias = record.load_bias;
    out->low = record.low;
    out->high = record.high;
    return true;
  }
  return false;
}

bool unloaded_between(const uintptr_t* return_addresses, uint32_t depth, uint32_t after, uint32_t up_to) noexcept {
  if (after >= up_to) return false;
  const Registry* registry = g_registry.load(std::memory_order_acquire);
  if (registry == nullptr) return false;
  const uint32_t count = registry->event_count.load(std::memory_order_acquire);
  for (uint32_t i = first_event_after(*registry, count, after); i < count; ++i) {
    const UnloadEvent& event = registry->events[i];
    if (event.generation > up_to) break;
    const ModuleRecord& record = registry->modules[event.module];
    for (uint32_t k = 0; k < depth; ++k) {
      if (holds(record, return_addresses[k])) return true;
    }
  }
  return false;
}

uint32_t first_unload_after(const uintptr_t* return_addresses, uint32_t depth, uint32_t generation) noexcept {
  const Registry* registry = g_registry.load(std::memory_order_acquire);
  if (registry == nullptr || generation == kMappedNow) return 0;
  const uint32_t count = registry->event_count.load(std::memory_order_acquire);
  for (uint32_t i = first_event_after(*registry, count, generation); i < count; ++i) {
    const ModuleRecord& record = registry->modules[registry->events[i].module];
    for (uint32_t k = 0; k < depth; ++k) {
      if (holds(record, return_addresses[k])) return registry->events[i].generation;
    }
  }
  return 0;
}

uint64_t unloaded_identity(const uintptr_t* return_addresses, uint32_t depth, uint32_t generation) noexcept {
  const Registry* registry = g_registry.load(std::memory_order_acquire);
  if (registry == nullptr || generation == kMappedNow) return 0;
  const uint32_t modules = registry->module_count.load(std::memory_order_acquire);
  const uint32_t count = registry->event_count.load(std::memory_order_acquire);
  const uint32_t first = first_event_after(*registry, count, generation);
  uint64_t identity = 0;
  for (uint32_t k = 0; k < depth; ++k) {
    const uintptr_t address = return_addresses[k];
    // Most frames lie in no module ever unloaded: one pass over the records says so.
    bool in_some_record = false;
    for (uint32_t m = 0; m < modules && !in_some_record; ++m) in_some_record = holds(registry->modules[m], address);
    if (!in_some_record) continue;
    for (uint32_t i = first; i < count; ++i) {
      if (!holds(registry->modules[registry->events[i].module], address)) continue;
      identity += mix((uint64_t{registry->events[i].module} + 1) * 0x9e3779b97f4a7c15ull + k);
      break;
    }
  }
  return identity;
}

size_t unloaded_module_count() noexcept {
  const Registry* registry = g_registry.load(std::memory_order_acquire);
  return registry == nullptr ? 0 : registry->module_count.load(std::memory_order_acquire);
}

size_t unload_event_count() noexcept {
  const Registry* registry = g_registry.load(std::memory_order_acquire);
  return registry == nullptr ? 0 : registry->event_count.load(std::memory_order_acquire);
}

void unloaded_modules_after_fork() noexcept { g_owner.store(nullptr, std::memory_order_relaxed); }

}  // namespace heapkeeper::alloc

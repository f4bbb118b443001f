// Implementation of the snapshot builder (see snapshot_builder.h).
#include "stats/snapshot_builder.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "allocator/block_header.h"
#include "allocator/block_map.h"
#include "allocator/heap_summary.h"
#include "allocator/jemalloc_calls.h"
#include "allocator/python_code_table.h"
#include "allocator/python_frame_word.h"
#include "allocator/stack_table.h"
#include "allocator/thread_registry.h"
#include "collector/collector.h"
#include "report/site_summary.h"
#include "stats/memory_figures.h"

namespace heapkeeper::stats {
namespace {

void copy_text(char* out, size_t capacity, const std::string& text) {
  size_t n = std::min(capacity - 1, text.size());
  std::memcpy(out, text.data(), n);
  out[n] = '\0';
}

unsigned size_class_of(uint64_t size) {
  unsigned bucket = size == 0 ? 0 : 63u - static_cast<unsigned>(__builtin_clzll(size));
  return bucket < kSizeClasses ? bucket : kSizeClasses - 1;
}

uint64_t stack_key(uint32_t stack_id) { return alloc::stack_table().site_key(stack_id); }

}  // namespace

void SnapshotBuilder::fill_frames(uint32_t stack_id, RawFrame* frames, uint32_t& depth) {
  alloc::StackView view = alloc::stack_table().frames(stack_id);
  depth = std::min<uint32_t>(view.depth, kMaxFrames);
  for (uint32_t i = 0; i < depth; ++i) {
    // Raw: the reader names the frame from the module table (viewer/segment_reader.h).
    RawFrame& out = frames[i];
    out.reserved = 0;
    if (python_word::is_python(view.frames[i])) {  // named from the snapshot's Python code table
      out.address = view.frames[i];
      out.module_index = kNoModuleIndex;
      out.module_offset = 0;
      python_keys_.push_back(python_word::code_key(view.frames[i]));
      continue;
    }
    const uint32_t module = module_map_.attribute(view.frames[i], view.generation, modules_);
    out.address = view.frames[i];
    out.module_index = module < kMaxModules ? module : kNoModuleIndex;
    out.module_offset = module < kMaxModules ? view.frames[i] - modules_[module].load_bias : 0;
  }
}

void SnapshotBuilder::sample_growth_unwatched(uint64_t now_ns) {
  constexpr uint64_t kUnwatchedSpacingNs = 30'000'000'000ull;
  // The first unwatched snapshot only starts the clock: the first sample comes a spacing later. A
  // process that ends sooner (most) never pays for it, and the first publish falls in start-up,
  // when a program has the most sites for the least reason: python3 importing its modules has some
  // 10,000, whose walk, merge and histories (232 bytes a site) added 1.3 MiB to the churn's peak
  // RSS (issue #12). Growth needs five samples anyway: two minutes of them at this spacing.
  if (last_unwatched_sample_ns_ == 0) {
    last_unwatched_sample_ns_ = now_ns;
    return;
  }
  if (now_ns - last_unwatched_sample_ns_ < kUnwatchedSpacingNs) return;
  last_unwatched_sample_ns_ = now_ns;
  report::SiteAccumulator sites;
  alloc::block_map().for_each_live([&](uintptr_t region) {
    sites.add(alloc::block_map().header(region)->stack_id, alloc::block_map().header(region)->size());
  });
  growth_.sample(now_ns, sites.sorted());
}

void SnapshotBuilder::add_sites(RawSnapshot& out, const collect::ScanReport& last, double seconds, uint64_t now_ns) {
  // One walk over the live blocks: histogram, per-site totals, and where their bytes are resident.
  report::SiteAccumulator sites;
  const alloc::BlockMap& blocks = alloc::block_map();
  // On the (internal) heap: its 16 KiB mincore window need not sit on the publisher's stack.
  auto residency = std::make_unique<LiveResidency>(blocks.heap_base(), alloc::private_heap().tracked().used());
  blocks.for_each_live([&](uintptr_t region) {
    const alloc::BlockHeader* header = blocks.header(region);
    const uint64_t size = header->size();
    const unsigned bucket = size_class_of(size);
    ++out.size_class_blocks[bucket];
    out.size_class_bytes[bucket] += size;
    sites.add(header->stack_id, size);
    // A large region's size follows from the request (jemalloc's size classes, nallocx): asking
    // jemalloc about a region that may be freed meanwhile (sallocx) is not safe on this thread.
    const size_t offset = header->user_offset();
    size_t region_size = blocks.slab_region_size(region);
    if (region_size == 0) region_size = alloc::je::nallocx(size + offset == 0 ? 1 : size + offset, 0);
    residency->add(region, region_size, offset, size, offset != 0);  // in band: the header is in front
  });
  residency->finish(out.memory);
  const std::vector<report::SiteTotals> sorted = sites.sorted();
  out.total_site_count = static_cast<uint32_t>(sorted.size());
  growth_.sample(now_ns, sorted);
  std::unordered_map<uint32_t, uint64_t> retained_by_stack;
  for (const collect::ScanReport::RetainedSite& r : last.retained_sites)
    retained_by_stack[r.stack_id] = r.retained_bytes;

  // Leaks of the last scan, keyed by stack content, to show beside the sites.
  std::unordered_map<uint64_t, std::pair<uint64_t, uint64_t>> leaked_by_stack;
  for (const collect::LeakGroup& g : last.groups) {
    if (!g.suppressed_by.empty()) continue;
    auto& entry = leaked_by_stack[stack_key(g.stack_id)];
    entry.first += g.blocks;
    entry.second += g.bytes;
  }

  std::unordered_map<uint32_t, uint64_t> site_allocations;
  for (const report::SiteTotals& totals : sorted) {
    if (out.site_count >= kMaxSites) break;
    RawSite& site = out.sites[out.site_count++];
    site.live_bytes = totals.bytes;
    site.live_blocks = totals.blocks;
    site.stack_id = totals.stack_id;
    site.allocations = alloc::stack_table().allocations(totals.stack_id);
    site_allocations[totals.stack_id] = site.allocations;
    // The scratch snapshot is reused: what is set only sometimes below starts from zero.
    site.allocation_rate = 0;
    site.leaked_blocks = site.leaked_bytes = site.retained_bytes = 0;
    site.retained_known = 0;
    auto previous = previous_site_allocations_.find(totals.stack_id);
    if (seconds > 0 && previous != previous_site_allocations_.end() && site.allocations >= previous->second) {
      site.allocation_rate = static_cast<double>(site.allocations - previous->second) / seconds;
    }
    auto leaked = leaked_by_stack.find(stack_key(totals.stack_id));
    if (leaked != leaked_by_stack.end()) {
      site.leaked_blocks = leaked->second.first;
      site.leaked_bytes = leaked->second.second;
    }
    const SiteGrowth::Growth growth = growth_.of(totals.stack_id);
    site.growing = growth.growing ? 1 : 0;
    site.growth_bytes_per_second = growth.bytes_per_second;
    if (auto retained = retained_by_stack.find(totals.stack_id); retained != retained_by_stack.end()) {
      site.retained_bytes = retained->second;
      site.retained_known = 1;
    }
    fill_frames(totals.stack_id, site.frames, site.depth);
  }
  previous_site_allocations_ = std::move(site_allocations);
}

void SnapshotBuilder::build(RawSnapshot& out, uint64_t now_ns, uint64_t start_ns, bool symbolize) {
  // Only the figures are cleared: table entries are written as they are filled, and the pages of
  // tables nobody fills stay untouched (see store_used).
  std::memset(&out, 0, offsetof(RawSnapshot, sites));
  std::memset(out.scans, 0, sizeof(out.scans));
  out.symbolized = symbolize ? 1 : 0;
  const alloc::HeapSummary summary = alloc::summarize_heap();
  out.time_ns = now_ns;
  out.uptime_ns = now_ns > start_ns ? now_ns - start_ns : 0;
  out.publish_count = ++publish_count_;
  out.live_bytes = summary.live_bytes;
  out.live_blocks = summary.live_blocks;
  out.peak_live_bytes = summary.peak_live_bytes;
  out.total_allocations = summary.total_allocations;
  out.total_frees = summary.total_frees;
  const double seconds =
      previous_time_ns_ != 0 && now_ns > previous_time_ns_ ? static_cast<double>(now_ns - previous_time_ns_) / 1e9 : 0;
  if (seconds > 0) {
    out.allocation_rate = static_cast<double>(summary.total_allocations - previous_allocations_) / seconds;
    out.free_rate = static_cast<double>(summary.total_frees - previous_frees_) / seconds;
  }
  out.heap_reserved_bytes = summary.heap.reserve_bytes;
  out.heap_mapped_bytes = summary.heap.mapped_bytes;
  out.heap_resident_bytes = summary.heap.resident_bytes;
  out.heap_returned_bytes = summary.heap.returned_bytes;
  out.heap_active_bytes = summary.heap.active_bytes;
  out.foreign_frees = summary.foreign_frees;
  out.bad_frees = summary.bad_frees;
  out.distinct_stacks = summary.distinct_stacks;
  out.threads_seen = summary.threads_seen;
  fill_memory_figures(out.memory, summary.heap);

  // Sites, the size histogram and the leak table only while a reader is watching: they cost a walk
  // over every live block and a megabyte of tables, at twice a second, and a reader that starts
  // watching waits for the next snapshot that has them (SegmentReader::snapshot).
  collect::ScanReport last = collect::last_scan();
  // The leak table leaves out suppressed leaks: the verdicts are asked of the binary (which knows
  // names) once per allocation stack, and only while someone watches.
  if (symbolize && !last.at_exit) collect::settle_suppressions(last);
  if (symbolize) {
    module_map_.load();
    modules_.clear();
    python_keys_.clear();
    add_sites(out, last, seconds, now_ns);
  } else {
    previous_site_allocations_.clear();  // a site's rate needs two watched snapshots in a row
    sample_growth_unwatched(now_ns);
  }

  alloc::thread_registry().for_each_active([&](alloc::ThreadState& s) {
    if (out.thread_count >= kMaxThreads || s.heapkeeper_thread) return;
    ThreadFigures& t = out.threads[out.thread_count++];
    t.tid = s.tid;
    t.index = s.index;
    t.allocations = s.allocations.load(std::memory_order_relaxed);
    t.frees = s.frees.load(std::memory_order_relaxed);
    t.net_bytes = static_cast<int64_t>(s.allocated_bytes.load(std::memory_order_relaxed)) -
                  static_cast<int64_t>(s.freed_bytes.load(std::memory_order_relaxed));
    // A name is three system calls (/proc/self/task/TID/comm) a thread: read afresh only for a
    // reader who watches, or for a thread not named yet; a name set since shows at the next look.
    const alloc::ThreadInfo* known = alloc::thread_registry().info(s.index);
    if (symbolize || known == nullptr || known->name[0] == '\0') alloc::thread_registry().refresh_name(s);
    if (const alloc::ThreadInfo* info = alloc::thread_registry().info(s.index))
      std::memcpy(t.name, info->name, sizeof(t.name));
    t.name[sizeof(t.name) - 1] = '\0';
  });

  for (const collect::ScanReport& r : collect::recent_scans(kMaxScans)) {
    ScanFigures& f = out.scans[out.scan_count++];
    f.number = r.number;
    f.time_ns = r.time_ns;
    f.pause_ms = static_cast<double>(r.pause_ns) / 1e6;
    f.reachable_blocks = r.reachable_blocks;
    f.leaked_blocks = r.leaked_blocks - r.suppressed_blocks;
    f.leaked_bytes = r.leaked_bytes - r.suppressed_bytes;
    f.new_leaked_blocks = r.new_leaked_blocks;
    f.new_leaked_bytes = r.new_leaked_bytes;
    f.reclaimed_blocks = r.reclaimed_blocks;
    f.reclaimed_bytes = r.reclaimed_bytes;
    f.ok = r.ok;
    f.at_exit = r.at_exit;
  }
  if (symbolize) {
    for (const collect::LeakGroup& g : last.groups) {
      if (out.leak_count >= kMaxLeaks) break;
      if (!g.suppressed_by.empty()) continue;
      RawLeak& leak = out.leaks[out.leak_count++];
      leak.kind = static_cast<uint32_t>(g.kind);
      leak.blocks = g.blocks;
      leak.bytes = g.bytes;
      leak.new_blocks = g.new_blocks;
      leak.age_scans = g.max_age_scans;
      fill_frames(g.stack_id, leak.frames, leak.depth);
    }
  }

  for (size_t i = 0; symbolize && i < modules_.size() && i < kMaxModules; ++i) {
    const report::RawModule& from = modules_[i];
    ModuleEntry& to = out.modules[out.module_count++];
    to.load_bias = from.load_bias;
    to.low = from.low;
    to.high = from.high;
    to.unloaded = from.unloaded ? 1 : 0;
    to.build_id_length = static_cast<uint32_t>(std::min(from.build_id.size(), sizeof(to.build_id)));
    std::memcpy(to.build_id, from.build_id.data(), to.build_id_length);
    // A path that does not fit would name another file: cut, it names nothing (frames keep offsets).
    copy_text(to.path, sizeof(to.path), from.path.size() < sizeof(to.path) ? from.path : std::string());
  }

  // The code names of the Python frames above, each once.
  std::sort(python_keys_.begin(), python_keys_.end());
  python_keys_.erase(std::unique(python_keys_.begin(), python_keys_.end()), python_keys_.end());
  for (size_t i = 0; symbolize && i < python_keys_.size() && out.python_code_count < kMaxPythonCodes; ++i) {
    const alloc::PythonCodeRecord* record = alloc::python_code_table().find(python_keys_[i]);
    if (record == nullptr) continue;
    PythonCodeEntry& to = out.python_codes[out.python_code_count++];
    to.key = record->key;
    to.first_line = record->first_line;
    copy_text(to.qualname, sizeof(to.qualname), std::string(record->qualname(), record->qualname_length));
    copy_text(to.filename, sizeof(to.filename), std::string(record->filename(), record->filename_length));
    to.linetable_length = std::min<uint32_t>(record->linetable_length, sizeof(to.linetable));
    std::memcpy(to.linetable, record->linetable(), to.linetable_length);
  }

  // Time series: one point a second.
  if (now_ns >= last_series_ns_ + 1'000'000'000ull || last_series_ns_ == 0) {
    last_series_ns_ = now_ns;
    series_[series_next_] = {now_ns, summary.live_bytes, last.leaked_bytes - last.suppressed_bytes};
    series_next_ = (series_next_ + 1) % kSeriesLength;
    if (series_count_ < kSeriesLength) ++series_count_;
  }
  std::memcpy(out.series, series_, sizeof(series_));
  out.series_count = series_count_;
  out.series_next = series_next_;

  previous_time_ns_ = now_ns;
  previous_allocations_ = summary.total_allocations;
  previous_frees_ = summary.total_frees;
}

}  // namespace heapkeeper::stats

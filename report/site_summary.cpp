// Implementation of allocation-site grouping (see site_summary.h).
#include "report/site_summary.h"

#include <algorithm>
#include <unordered_map>

#include "allocator/block_header.h"
#include "allocator/block_map.h"
#include "allocator/stack_table.h"

namespace heapkeeper::report {

namespace {

size_t slot_of(uint32_t stack_id, size_t mask) { return (stack_id * 0x9e3779b97f4a7c15ull >> 20) & mask; }

}  // namespace

void SiteAccumulator::add(uint32_t stack_id, uint64_t bytes) {
  if ((used_ + 1) * 2 > table_.size()) {
    std::vector<SiteTotals> old(table_.empty() ? 1024 : table_.size() * 2);
    old.swap(table_);
    for (const SiteTotals& site : old) {
      if (site.blocks == 0) continue;
      size_t i = slot_of(site.stack_id, table_.size() - 1);
      while (table_[i].blocks != 0) i = (i + 1) & (table_.size() - 1);
      table_[i] = site;
    }
  }
  size_t i = slot_of(stack_id, table_.size() - 1);
  while (table_[i].blocks != 0 && table_[i].stack_id != stack_id) i = (i + 1) & (table_.size() - 1);
  SiteTotals& site = table_[i];
  if (site.blocks == 0) {
    site.stack_id = stack_id;
    ++used_;
  }
  ++site.blocks;
  site.bytes += bytes;
}

std::vector<SiteTotals> SiteAccumulator::sorted() const {
  // Merge ids whose frames are identical and name the same modules (the stack table may intern a
  // stack twice under a race, or once per library mapped at its addresses).
  std::unordered_map<uint64_t, SiteTotals> merged;
  for (const SiteTotals& site : table_) {
    if (site.blocks == 0) continue;
    const uint64_t key = alloc::stack_table().site_key(site.stack_id);
    SiteTotals& into = merged[key];
    if (into.blocks == 0) into.stack_id = site.stack_id;
    into.blocks += site.blocks;
    into.bytes += site.bytes;
  }
  std::vector<SiteTotals> result;
  result.reserve(merged.size());
  for (auto& [key, site] : merged) result.push_back(site);
  std::sort(result.begin(), result.end(), [](const SiteTotals& a, const SiteTotals& b) {
    return a.bytes != b.bytes ? a.bytes > b.bytes : a.blocks > b.blocks;
  });
  return result;
}

std::vector<SiteTotals> live_sites() {
  SiteAccumulator accumulator;
  alloc::block_map().for_each_live([&](uintptr_t region) {
    const alloc::BlockHeader* header = alloc::block_map().header(region);
    accumulator.add(header->stack_id, header->size());
  });
  return accumulator.sorted();
}

std::vector<ThreadSiteTotals> live_sites_by_thread() {
  // Keyed by (stack id, thread), then merged as sorted() merges: identical stacks are one site.
  std::unordered_map<uint64_t, ThreadSiteTotals> by_id;
  alloc::block_map().for_each_live([&](uintptr_t region) {
    const alloc::BlockHeader* header = alloc::block_map().header(region);
    ThreadSiteTotals& site = by_id[(uint64_t{header->stack_id} << 32) | header->thread_index()];
    site.stack_id = header->stack_id;
    site.thread = header->thread_index();
    ++site.blocks;
    site.bytes += header->size();
  });
  std::unordered_map<uint64_t, std::unordered_map<uint32_t, ThreadSiteTotals>> merged;  // site key, thread
  for (const auto& [key, site] : by_id) {
    ThreadSiteTotals& into = merged[alloc::stack_table().site_key(site.stack_id)][site.thread];
    if (into.blocks == 0) into.stack_id = site.stack_id, into.thread = site.thread;
    into.blocks += site.blocks;
    into.bytes += site.bytes;
  }
  std::vector<ThreadSiteTotals> result;
  for (const auto& [key, threads] : merged)
    for (const auto& [thread, site] : threads) result.push_back(site);
  std::sort(result.begin(), result.end(), [](const ThreadSiteTotals& a, const ThreadSiteTotals& b) {
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    return a.blocks != b.blocks ? a.blocks > b.blocks : a.thread < b.thread;
  });
  return result;
}

}  // namespace heapkeeper::report

// Writing and reading the raw dump (see raw_dump.h). The writer runs inside the traced process
// (guard held: its std::string lives in heapkeeper's own arena); the reader runs in `heapkeeper` on
// bytes that may be anything, so every read goes through one bounds-checked cursor.
#include "report/raw_dump.h"

#include <cstring>
#include <unordered_set>

#include "report/raw_encoding.h"

namespace heapkeeper::report {
namespace {

constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8;

}  // namespace

void write_modules(RawWriter& w, const std::vector<RawModule>& modules) {
  w.u32(static_cast<uint32_t>(modules.size()));
  for (const RawModule& m : modules) {
    w.u8(m.unloaded ? 1 : 0);
    w.u64(m.load_bias);
    w.u64(m.low);
    w.u64(m.high);
    w.bytes(m.build_id);
    w.bytes(m.path);
    w.u32(static_cast<uint32_t>(m.symbols.size()));
    for (const RawModule::Symbol& symbol : m.symbols) {
      w.u64(symbol.start);
      w.u64(symbol.size);
      w.bytes(symbol.name);
    }
  }
}

void write_stacks(RawWriter& w, const std::vector<RawStack>& stacks) {
  w.u32(static_cast<uint32_t>(stacks.size()));
  for (const RawStack& stack : stacks) {
    w.u32(stack.id);
    w.u32(static_cast<uint32_t>(stack.frames.size()));
    for (const RawFrame& f : stack.frames) {
      w.u64(f.address);
      w.u32(f.module);
    }
  }
}

void write_python_codes(RawWriter& w, const std::vector<RawPythonCode>& codes) {
  w.u32(static_cast<uint32_t>(codes.size()));
  for (const RawPythonCode& code : codes) {
    w.u64(code.key);
    w.i32(code.first_line);
    w.bytes(code.qualname);
    w.bytes(code.filename);
    w.bytes(code.linetable);
  }
}

void read_python_codes(RawCursor& c, std::vector<RawPythonCode>& codes) {
  for (uint32_t i = 0, n = c.count("python codes", 24); i < n && c.ok(); ++i) {
    RawPythonCode& code = codes.emplace_back();
    code.key = c.u64("python code");
    code.first_line = c.number<int32_t>("python code");
    code.qualname = c.bytes("python qualname", 4096);
    code.filename = c.bytes("python filename", 4096);
    code.linetable = c.bytes("python location table", size_t{1} << 20);
  }
}

void read_modules(RawCursor& c, std::vector<RawModule>& modules) {
  for (uint32_t i = 0, n = c.count("modules", 37); i < n && c.ok(); ++i) {
    RawModule m;
    m.unloaded = c.flag("module");
    m.load_bias = c.u64("module");
    m.low = c.u64("module");
    m.high = c.u64("module");
    m.build_id = c.bytes("module build-id", kRawDumpMaxBuildId);
    m.path = c.bytes("module path", 4096);
    for (uint32_t k = 0, symbols = c.count("module symbols", 20); k < symbols && c.ok(); ++k) {
      RawModule::Symbol& symbol = m.symbols.emplace_back();
      symbol.start = c.u64("module symbol");
      symbol.size = c.u64("module symbol");
      symbol.name = c.bytes("module symbol name", 4096);
    }
    if (c.ok() && m.low > m.high) c.fail("module range ends before it starts");
    modules.push_back(std::move(m));
  }
}

void read_stacks(RawCursor& c, size_t module_count, std::vector<RawStack>& stacks, std::unordered_set<uint32_t>& ids) {
  for (uint32_t i = 0, n = c.count("stacks", 8); i < n && c.ok(); ++i) {
    RawStack stack;
    stack.id = c.u32("stack");
    const uint32_t depth = c.count("stack depth", 12);
    if (c.ok() && depth > kRawDumpMaxDepth) c.fail("stack deeper than " + std::to_string(kRawDumpMaxDepth));
    for (uint32_t k = 0; k < depth && c.ok(); ++k) {
      RawFrame f;
      f.address = c.u64("frame");
      f.module = c.u32("frame");
      if (c.ok() && f.module != kNoModule && f.module >= module_count) c.fail("frame names a module not in the map");
      stack.frames.push_back(f);
    }
    if (c.ok() && !ids.insert(stack.id).second) c.fail("stack " + std::to_string(stack.id) + " appears twice");
    stacks.push_back(std::move(stack));
  }
}

const RawStack* RawReport::stack(uint32_t id) const {
  for (const RawStack& s : stacks) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

std::string serialize_raw_dump(const RawReport& r) {
  RawWriter w;
  w.u64(kRawDumpMagic);
  w.u32(kRawDumpVersion);
  w.u32(r.flags);
  w.u64(0);  // total size, filled in last
  w.i32(r.pid);
  w.i64(r.started_at);
  w.i64(r.written_at);
  w.bytes(r.program);
  w.bytes(r.command_line);
  for (uint64_t v : {r.live_bytes, r.live_blocks, r.peak_live_bytes, r.allocations, r.frees, r.foreign_frees,
                     r.bad_frees, r.distinct_stacks, r.threads_seen, r.heap_reserved, r.heap_mapped, r.heap_resident,
                     r.heap_returned, r.heap_active, r.heap_internal_mapped})
    w.u64(v);
  w.u32(r.stack_depth);
  w.u8(r.free_stacks ? 1 : 0);
  w.u8(r.mode);
  w.u8(r.on_bad_free);
  w.u64(r.scan_interval_ms);
  w.u32(static_cast<uint32_t>(r.suppressions.size()));
  for (const std::string& p : r.suppressions) w.bytes(p);
  w.bytes(r.baseline_path);
  w.u64(r.live_site_count);
  w.u32(static_cast<uint32_t>(r.live_sites.size()));
  for (const RawSite& s : r.live_sites) {
    w.u32(s.stack_id);
    w.u64(s.blocks);
    w.u64(s.bytes);
  }
  if (r.flags & kWantProfile) {
    w.u32(static_cast<uint32_t>(r.thread_sites.size()));
    for (const RawThreadSite& s : r.thread_sites) {
      w.u32(s.stack_id);
      w.u32(s.thread);
      w.u64(s.blocks);
      w.u64(s.bytes);
    }
    w.u32(static_cast<uint32_t>(r.threads.size()));
    for (const RawThread& t : r.threads) {
      w.u32(t.thread);
      w.i32(t.tid);
      w.bytes(t.name);
    }
  }
  const RawScan& s = r.scan;
  w.u8(s.present ? 1 : 0);
  if (s.present) {
    w.u64(s.number);
    w.u8(s.ok ? 1 : 0);
    w.u8(s.at_exit ? 1 : 0);
    w.bytes(s.failure);
    w.bytes(s.stop_method);
    for (uint64_t v : {s.pause_ns,
                       s.mark_ns,
                       s.threads_stopped,
                       s.root_ranges,
                       s.root_bytes,
                       s.heap_bytes_marked,
                       s.live_blocks,
                       s.reachable_blocks,
                       s.leaked_blocks,
                       s.leaked_bytes,
                       s.new_leaked_blocks,
                       s.new_leaked_bytes,
                       s.reclaimed_blocks,
                       s.reclaimed_bytes,
                       s.held_blocks,
                       s.reclaimed_blocks_total,
                       s.reclaimed_bytes_total,
                       s.direct_blocks,
                       s.indirect_blocks,
                       s.cycle_blocks})
      w.u64(v);
    for (uint64_t v : s.reference_histogram) w.u64(v);
    w.u64(s.scans);
    w.u64(s.collected_blocks);
    w.u64(s.collected_bytes);
    w.u32(static_cast<uint32_t>(s.groups.size()));
    for (const RawLeakGroup& g : s.groups) {
      w.u8(static_cast<uint8_t>(g.kind));
      w.u32(g.stack_id);
      for (uint64_t v : {g.blocks, g.bytes, g.new_blocks, g.new_bytes, g.age_scans}) w.u64(v);
    }
    w.u32(static_cast<uint32_t>(s.most_referenced.size()));
    for (const RawReferenced& m : s.most_referenced) {
      w.u64(m.size);
      w.u32(m.references);
      w.u32(m.stack_id);
    }
    w.u8(s.retained_known ? 1 : 0);
    if (s.retained_known) {
      w.u64(s.retained_analysis_ns);
      w.u64(s.references_recorded);
      w.u32(static_cast<uint32_t>(s.retained_sites.size()));
      for (const RawScan::RetainedSite& site : s.retained_sites) {
        w.u32(site.stack_id);
        for (uint64_t v : {site.blocks, site.bytes, site.retained_bytes}) w.u64(v);
      }
      w.u32(static_cast<uint32_t>(s.top_retainers.size()));
      for (const RawScan::RetainedBlock& block : s.top_retainers) {
        for (uint64_t v : {block.address, block.size, block.retained_bytes}) w.u64(v);
        w.u32(block.stack_id);
      }
    }
  }
  write_modules(w, r.modules);
  write_stacks(w, r.stacks);
  write_python_codes(w, r.python_codes);
  std::string& out = w.text();
  const uint64_t total = out.size();
  std::memcpy(out.data() + 16, &total, sizeof total);
  return std::move(out);
}

bool parse_raw_dump(std::string_view bytes, RawReport& r, std::string& error) {
  r = RawReport{};
  if (bytes.size() < kHeaderBytes) {
    error = "not a heapkeeper raw dump: " + std::to_string(bytes.size()) + " bytes, shorter than its header";
    return false;
  }
  RawCursor c(bytes);
  if (c.u64("header") != kRawDumpMagic) {
    error = "not a heapkeeper raw dump (wrong magic number)";
    return false;
  }
  const uint32_t version = c.u32("header");
  if (version != kRawDumpVersion) {
    error = "raw dump of version " + std::to_string(version) + ", this heapkeeper reads version " +
            std::to_string(kRawDumpVersion);
    return false;
  }
  r.flags = c.u32("header");
  if (r.flags > (kWantLeakText | kWantJson | kWantFrames | kWantProfile)) {
    error = "corrupt heapkeeper raw dump: unknown flags " + std::to_string(r.flags);
    return false;
  }
  const uint64_t total = c.u64("header");
  if (total != bytes.size()) {
    error = "raw dump truncated or padded: its header says " + std::to_string(total) + " bytes, there are " +
            std::to_string(bytes.size());
    return false;
  }
  r.pid = c.number<int32_t>("process");
  r.started_at = c.number<int64_t>("process");
  r.written_at = c.number<int64_t>("process");
  r.program = c.bytes("program");
  r.command_line = c.bytes("command line");
  for (uint64_t* v : {&r.live_bytes, &r.live_blocks, &r.peak_live_bytes, &r.allocations, &r.frees, &r.foreign_frees,
                      &r.bad_frees, &r.distinct_stacks, &r.threads_seen, &r.heap_reserved, &r.heap_mapped,
                      &r.heap_resident, &r.heap_returned, &r.heap_active, &r.heap_internal_mapped})
    *v = c.u64("summary");
  r.stack_depth = c.u32("config");
  r.free_stacks = c.flag("config");
  r.mode = c.u8("config");
  r.on_bad_free = c.u8("config");
  if (c.ok() && (r.mode > 2 || r.on_bad_free > 1)) c.fail("bad mode in config");
  r.scan_interval_ms = c.u64("config");
  for (uint32_t i = 0, n = c.count("suppressions", 4); i < n && c.ok(); ++i)
    r.suppressions.push_back(c.bytes("suppression pattern"));
  r.baseline_path = c.bytes("baseline path", 4096);
  r.live_site_count = c.u64("sites");
  for (uint32_t i = 0, n = c.count("sites", 20); i < n && c.ok(); ++i) {
    RawSite s;
    s.stack_id = c.u32("site");
    s.blocks = c.u64("site");
    s.bytes = c.u64("site");
    r.live_sites.push_back(s);
  }
  if (r.flags & kWantProfile) {
    for (uint32_t i = 0, n = c.count("thread sites", 24); i < n && c.ok(); ++i) {
      RawThreadSite site;
      site.stack_id = c.u32("thread site");
      site.thread = c.u32("thread site");
      site.blocks = c.u64("thread site");
      site.bytes = c.u64("thread site");
      r.thread_sites.push_back(site);
    }
    for (uint32_t i = 0, n = c.count("threads", 12); i < n && c.ok(); ++i) {
      RawThread thread;
      thread.thread = c.u32("thread");
      thread.tid = static_cast<int32_t>(c.u32("thread"));
      thread.name = c.bytes("thread name", 64);
      r.threads.push_back(std::move(thread));
    }
  }
  RawScan& s = r.scan;
  s.present = c.flag("scan");
  if (s.present) {
    s.number = c.u64("scan");
    s.ok = c.flag("scan");
    s.at_exit = c.flag("scan");
    s.failure = c.bytes("scan failure", 4096);
    s.stop_method = c.bytes("scan stop method", 64);
    for (uint64_t* v : {&s.pause_ns,
                        &s.mark_ns,
                        &s.threads_stopped,
                        &s.root_ranges,
                        &s.root_bytes,
                        &s.heap_bytes_marked,
                        &s.live_blocks,
                        &s.reachable_blocks,
                        &s.leaked_blocks,
                        &s.leaked_bytes,
                        &s.new_leaked_blocks,
                        &s.new_leaked_bytes,
                        &s.reclaimed_blocks,
                        &s.reclaimed_bytes,
                        &s.held_blocks,
                        &s.reclaimed_blocks_total,
                        &s.reclaimed_bytes_total,
                        &s.direct_blocks,
                        &s.indirect_blocks,
                        &s.cycle_blocks})
      *v = c.u64("scan figures");
    for (uint64_t& v : s.reference_histogram) v = c.u64("scan histogram");
    s.scans = c.u64("scan");
    s.collected_blocks = c.u64("scan");
    s.collected_bytes = c.u64("scan");
    for (uint32_t i = 0, n = c.count("leak groups", 45); i < n && c.ok(); ++i) {
      RawLeakGroup g;
      const uint8_t kind = c.u8("leak group");
      if (!valid_leak_kind(kind)) c.fail("bad leak kind in leak group");
      g.kind = static_cast<LeakKind>(kind);
      g.stack_id = c.u32("leak group");
      for (uint64_t* v : {&g.blocks, &g.bytes, &g.new_blocks, &g.new_bytes, &g.age_scans}) *v = c.u64("leak group");
      s.groups.push_back(g);
    }
    for (uint32_t i = 0, n = c.count("most referenced", 16); i < n && c.ok(); ++i) {
      RawReferenced m;
      m.size = c.u64("most referenced");
      m.references = c.u32("most referenced");
      m.stack_id = c.u32("most referenced");
      s.most_referenced.push_back(m);
    }
    s.retained_known = c.flag("retained");
    if (s.retained_known) {
      s.retained_analysis_ns = c.u64("retained");
      s.references_recorded = c.u64("retained");
      for (uint32_t i = 0, n = c.count("retained sites", 28); i < n && c.ok(); ++i) {
        RawScan::RetainedSite site;
        site.stack_id = c.u32("retained site");
        for (uint64_t* v : {&site.blocks, &site.bytes, &site.retained_bytes}) *v = c.u64("retained site");
        s.retained_sites.push_back(site);
      }
      for (uint32_t i = 0, n = c.count("retained blocks", 28); i < n && c.ok(); ++i) {
        RawScan::RetainedBlock block;
        for (uint64_t* v : {&block.address, &block.size, &block.retained_bytes}) *v = c.u64("retained block");
        block.stack_id = c.u32("retained block");
        s.top_retainers.push_back(block);
      }
    }
  }
  read_modules(c, r.modules);
  std::unordered_set<uint32_t> ids;
  read_stacks(c, r.modules.size(), r.stacks, ids);
  read_python_codes(c, r.python_codes);
  if (c.ok() && c.left() != 0) c.fail(std::to_string(c.left()) + " bytes after the python section");
  // Every stack the report refers to must be there: a reader must never look one up and miss.
  const auto known = [&](uint32_t id) { return ids.count(id) != 0; };
  for (const RawSite& site : r.live_sites)
    if (c.ok() && !known(site.stack_id))
      c.fail("a live site names stack " + std::to_string(site.stack_id) + ", absent");
  for (const RawThreadSite& site : r.thread_sites)
    if (c.ok() && !known(site.stack_id))
      c.fail("a thread's site names stack " + std::to_string(site.stack_id) + ", absent");
  for (const RawLeakGroup& g : s.groups)
    if (c.ok() && !known(g.stack_id)) c.fail("a leak names stack " + std::to_string(g.stack_id) + ", absent");
  for (const RawReferenced& m : s.most_referenced)
    if (c.ok() && !known(m.stack_id)) c.fail("a block names stack " + std::to_string(m.stack_id) + ", absent");
  for (const RawScan::RetainedSite& site : s.retained_sites)
    if (c.ok() && !known(site.stack_id))
      c.fail("a retained site names stack " + std::to_string(site.stack_id) + ", absent");
  for (const RawScan::RetainedBlock& block : s.top_retainers)
    if (c.ok() && !known(block.stack_id))
      c.fail("a retaining block names stack " + std::to_string(block.stack_id) + ", absent");
  if (!c.ok()) {
    error = "corrupt heapkeeper raw dump: " + c.error();
    return false;
  }
  return true;
}

std::string serialize_raw_answer(const RawAnswer& answer) {
  RawWriter w;
  w.u64(kRawAnswerMagic);
  w.u32(kRawDumpVersion);
  w.u32(answer.unsuppressed_leaks ? 1 : 0);
  w.u64(0);
  w.bytes(answer.leak_text);
  w.bytes(answer.json);
  w.u32(static_cast<uint32_t>(answer.suppressed.size()));
  for (const RawAnswer::Suppressed& s : answer.suppressed) {
    w.u32(s.stack_id);
    w.bytes(s.pattern);
  }
  w.bytes(answer.profile);
  std::string& out = w.text();
  const uint64_t total = out.size();
  std::memcpy(out.data() + 16, &total, sizeof total);
  return std::move(out);
}

bool parse_raw_answer(std::string_view bytes, RawAnswer& answer, std::string& error) {
  answer = RawAnswer{};
  RawCursor c(bytes);
  const uint64_t magic = c.u64("answer");
  const uint32_t version = c.u32("answer");
  const uint32_t flags = c.u32("answer");
  const uint64_t total = c.u64("answer");
  if (!c.ok() || magic != kRawAnswerMagic || version != kRawDumpVersion || flags > 1 || total != bytes.size()) {
    error = "the heapkeeper binary's answer is not one (" + std::to_string(bytes.size()) + " bytes)";
    return false;
  }
  answer.unsuppressed_leaks = flags == 1;
  answer.leak_text = c.bytes("leak text");
  answer.json = c.bytes("json");
  for (uint32_t i = 0, n = c.count("suppressed groups", 8); i < n && c.ok(); ++i) {
    RawAnswer::Suppressed& s = answer.suppressed.emplace_back();
    s.stack_id = c.u32("suppressed group");
    s.pattern = c.bytes("suppression pattern");
  }
  answer.profile = c.bytes("profile");
  if (c.ok() && c.left() != 0) c.fail("trailing bytes");
  if (!c.ok()) {
    error = "the heapkeeper binary's answer is corrupt: " + c.error();
    return false;
  }
  return true;
}

}  // namespace heapkeeper::report

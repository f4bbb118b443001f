// Encoding a HeapProfile as pprof's profile.proto (see pprof_profile.h). Field numbers are those
// of perftools.profiles.Profile and its messages; ids (locations, functions, mappings) start at 1,
// 0 meaning "none" on the wire.
#include "analysis/pprof_profile.h"

#include <cstdint>

#include <zlib.h>

#include <map>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "analysis/protobuf_writer.h"

namespace heapkeeper::analysis {
namespace {

// Field numbers of profile.proto.
namespace profile_field {
constexpr uint32_t kSampleType = 1, kSample = 2, kMapping = 3, kLocation = 4, kFunction = 5, kStringTable = 6,
                   kTimeNanos = 9, kPeriodType = 11, kPeriod = 12, kComment = 13, kDefaultSampleType = 14;
}
namespace value_type_field {
constexpr uint32_t kType = 1, kUnit = 2;
}
namespace sample_field {
constexpr uint32_t kLocationId = 1, kValue = 2, kLabel = 3;
}
namespace label_field {
constexpr uint32_t kKey = 1, kStr = 2, kNum = 3;
}
namespace mapping_field {
constexpr uint32_t kId = 1, kMemoryStart = 2, kMemoryLimit = 3, kFileOffset = 4, kFilename = 5, kBuildId = 6,
                   kHasFunctions = 7, kHasFilenames = 8, kHasLineNumbers = 9;
}
namespace location_field {
constexpr uint32_t kId = 1, kMappingId = 2, kAddress = 3, kLine = 4;
}
namespace line_field {
constexpr uint32_t kFunctionId = 1, kLine = 2;
}
namespace function_field {
constexpr uint32_t kId = 1, kName = 2, kSystemName = 3, kFilename = 4;
}

// profile.proto's string_table: every string once, "" first.
class StringTable {
 public:
  StringTable() { index(""); }
  int64_t index(const std::string& text) {
    auto [it, fresh] = indexes_.try_emplace(text, static_cast<int64_t>(strings_.size()));
    if (fresh) strings_.push_back(text);
    return it->second;
  }
  const std::vector<std::string>& strings() const { return strings_; }

 private:
  std::unordered_map<std::string, int64_t> indexes_;
  std::vector<std::string> strings_;
};

struct MappingUse {
  uint64_t id = 0;
  bool all_functions = true, all_files = true, all_lines = true;
};

class Encoder {
 public:
  Encoder(const HeapProfile& profile, bool leaks_by_default) : profile_(profile), leaks_by_default_(leaks_by_default) {}

  std::string encode() {
    number_mappings();
    ProtobufWriter head;
    const bool leaks = profile_.leaks_known;
    value_type(head, profile_field::kSampleType, "inuse_objects", "count");
    value_type(head, profile_field::kSampleType, "inuse_space", "bytes");
    if (leaks) {
      value_type(head, profile_field::kSampleType, "leaked_objects", "count");
      value_type(head, profile_field::kSampleType, "leaked_space", "bytes");
    }
    for (const ProfileSample& sample : profile_.samples) {
      const bool live = sample.kind == SampleKind::kLive;
      // Leak samples come only with a scan; an empty sample says nothing.
      if ((!live && !leaks) || (sample.bytes == 0 && sample.blocks == 0)) continue;
      ProtobufWriter message;
      std::vector<uint64_t> locations;
      for (const ProfileFrame& frame : profile_.stacks[sample.stack]) locations.push_back(location(frame));
      message.packed_field(sample_field::kLocationId, locations);
      std::vector<int64_t> values = {live ? as_int64(sample.blocks) : 0, live ? as_int64(sample.bytes) : 0};
      if (leaks) {
        values.push_back(live ? 0 : as_int64(sample.blocks));
        values.push_back(live ? 0 : as_int64(sample.bytes));
      }
      message.packed_field(sample_field::kValue, values);
      if (!live) {
        ProtobufWriter label;
        label.int64_field(label_field::kKey, strings_.index("leak_kind"));
        label.int64_field(label_field::kStr, strings_.index(leak_kind_label(sample.kind)));
        message.message_field(sample_field::kLabel, label);
      }
      if (sample.thread >= 0) thread_labels(message, profile_.threads[static_cast<size_t>(sample.thread)]);
      samples_.message_field(profile_field::kSample, message);
    }
    // Mappings last among the tables: they say whether every location in them is named.
    const std::string mapping_table = mappings();
    ProtobufWriter tail;
    // The dump's time may be anything (a corrupt or hostile dump): out of range is left out (0).
    constexpr int64_t kNanos = 1000000000;
    const int64_t written = profile_.written_at;
    const bool representable = written > 0 && written <= INT64_MAX / kNanos;
    tail.int64_field(profile_field::kTimeNanos, representable ? written * kNanos : 0);
    value_type(tail, profile_field::kPeriodType, "space", "bytes");
    tail.int64_field(profile_field::kPeriod, 1);
    tail.int64_field(profile_field::kComment,
                     strings_.index("heapkeeper: pid " + std::to_string(profile_.pid) + " " + profile_.program));
    tail.int64_field(profile_field::kDefaultSampleType,
                     strings_.index(leaks && leaks_by_default_ ? "leaked_space" : "inuse_space"));
    ProtobufWriter strings;
    for (const std::string& text : strings_.strings()) strings.bytes_field(profile_field::kStringTable, text);
    // Field order on the wire does not matter to readers; this is profile.proto's.
    return head.bytes() + samples_.bytes() + mapping_table + locations_.bytes() + functions_.bytes() + strings.bytes() +
           tail.bytes();
  }

 private:
  static int64_t as_int64(uint64_t value) { return value > INT64_MAX ? INT64_MAX : static_cast<int64_t>(value); }

  // The allocating thread, as Pyroscope and Parca name thread labels: thread_id (its tid) and
  // thread_name, each when known.
  void thread_labels(ProtobufWriter& sample, const ProfileThread& thread) {
    if (thread.tid > 0) {
      ProtobufWriter label;
      label.int64_field(label_field::kKey, strings_.index("thread_id"));
      label.int64_field(label_field::kNum, thread.tid);
      sample.message_field(sample_field::kLabel, label);
    }
    if (!thread.name.empty()) {
      ProtobufWriter label;
      label.int64_field(label_field::kKey, strings_.index("thread_name"));
      label.int64_field(label_field::kStr, strings_.index(thread.name));
      sample.message_field(sample_field::kLabel, label);
    }
  }

  void value_type(ProtobufWriter& out, uint32_t field, const char* type, const char* unit) {
    ProtobufWriter message;
    message.int64_field(value_type_field::kType, strings_.index(type));
    message.int64_field(value_type_field::kUnit, strings_.index(unit));
    out.message_field(field, message);
  }

  // Mapping ids: the program's own module first (profile.proto: "mapping[0] will be the main
  // binary"), then the others in the profile's order; only modules some frame is in.
  void number_mappings() {
    std::vector<bool> used(profile_.modules.size(), false);
    for (const ProfileSample& sample : profile_.samples)
      for (const ProfileFrame& frame : profile_.stacks[sample.stack])
        if (frame.module >= 0) used[static_cast<size_t>(frame.module)] = true;
    for (size_t i = 0; i < profile_.modules.size(); ++i)
      if (used[i] && profile_.modules[i].path == profile_.program) mapping_order_.push_back(i);
    for (size_t i = 0; i < profile_.modules.size(); ++i)
      if (used[i] && profile_.modules[i].path != profile_.program) mapping_order_.push_back(i);
    for (size_t i = 0; i < mapping_order_.size(); ++i) mapping_uses_[mapping_order_[i]].id = i + 1;
  }

  // The location of a frame (made on first use): one per return address, or, for a frame
  // heapkeeper made up (no address), one per name.
  uint64_t location(const ProfileFrame& frame) {
    const std::string key = frame.address != 0 ? std::to_string(frame.address) : "name:" + frame.function;
    auto [it, fresh] = location_ids_.try_emplace(key, location_ids_.size() + 1);
    if (!fresh) return it->second;
    ProtobufWriter message;
    message.varint_field(location_field::kId, it->second);
    if (frame.module >= 0) {
      MappingUse& use = mapping_uses_[static_cast<size_t>(frame.module)];
      message.varint_field(location_field::kMappingId, use.id);
      use.all_functions &= !frame.function.empty();
      use.all_files &= !frame.file.empty();
      use.all_lines &= frame.line > 0;
    }
    message.varint_field(location_field::kAddress, frame.address);
    if (!frame.function.empty()) {
      ProtobufWriter line;
      line.varint_field(line_field::kFunctionId, function(frame));
      line.int64_field(line_field::kLine, frame.line);
      message.message_field(location_field::kLine, line);
    }
    locations_.message_field(profile_field::kLocation, message);
    return it->second;
  }

  uint64_t function(const ProfileFrame& frame) {
    // A Python function is marked as one in its name: pprof has no field for a frame's language.
    const std::string name = frame.python ? frame.function + " [py]" : frame.function;
    auto [it, fresh] = function_ids_.try_emplace({name, frame.file}, function_ids_.size() + 1);
    if (!fresh) return it->second;
    ProtobufWriter message;
    message.varint_field(function_field::kId, it->second);
    message.int64_field(function_field::kName, strings_.index(name));
    message.int64_field(function_field::kSystemName, strings_.index(frame.function));
    message.int64_field(function_field::kFilename, strings_.index(frame.file));
    functions_.message_field(profile_field::kFunction, message);
    return it->second;
  }

  std::string mappings() {
    ProtobufWriter out;
    for (size_t index : mapping_order_) {
      const ProfileModule& module = profile_.modules[index];
      const MappingUse& use = mapping_uses_[index];
      ProtobufWriter message;
      message.varint_field(mapping_field::kId, use.id);
      message.varint_field(mapping_field::kMemoryStart, module.start);
      message.varint_field(mapping_field::kMemoryLimit, module.limit);
      message.varint_field(mapping_field::kFileOffset, module.file_offset);
      message.int64_field(mapping_field::kFilename, strings_.index(module.path));
      message.int64_field(mapping_field::kBuildId, strings_.index(module.build_id));
      message.bool_field(mapping_field::kHasFunctions, use.all_functions);
      message.bool_field(mapping_field::kHasFilenames, use.all_functions && use.all_files);
      message.bool_field(mapping_field::kHasLineNumbers, use.all_functions && use.all_lines);
      out.message_field(profile_field::kMapping, message);
    }
    return out.bytes();
  }

  const HeapProfile& profile_;
  const bool leaks_by_default_;
  StringTable strings_;
  ProtobufWriter samples_, locations_, functions_;
  std::vector<size_t> mapping_order_;
  std::map<size_t, MappingUse> mapping_uses_;  // by module index
  std::unordered_map<std::string, uint64_t> location_ids_;
  std::map<std::pair<std::string, std::string>, uint64_t> function_ids_;
};

}  // namespace

std::string pprof_message(const HeapProfile& profile, bool leaks_by_default) {
  return Encoder(profile, leaks_by_default).encode();
}

std::string gzip(std::string_view bytes) {
  if (bytes.size() > UINT32_MAX) throw std::runtime_error("the profile is larger than 4 GiB");
  z_stream stream{};
  // 15 + 16: the largest window, with a gzip header and trailer instead of zlib's.
  if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("zlib could not start compressing");
  std::string out(deflateBound(&stream, bytes.size()), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  const int status = deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  if (status != Z_STREAM_END) throw std::runtime_error("zlib could not compress the profile");
  return out;
}

}  // namespace heapkeeper::analysis

// The pprof encoder's pieces against the protocol buffers specification and zlib, and a profile's
// structure read back with a minimal wire-format reader written here from the specification (Go's
// pprof reads real profiles in tests/integration/pprof.sh): the encodings the spec gives as
// examples, gzip that zlib inflates back, and a profile whose tables hold what profile.proto asks.
#include <gtest/gtest.h>
#include <zlib.h>

#include <map>
#include <string>
#include <vector>

#include "analysis/pprof_profile.h"
#include "analysis/protobuf_writer.h"

namespace heapkeeper::analysis {
namespace {

// A message's fields: number -> values (varints as numbers, length-delimited as bytes).
struct Fields {
  std::map<uint32_t, std::vector<uint64_t>> numbers;
  std::map<uint32_t, std::vector<std::string>> bytes;
};

uint64_t read_varint(const std::string& in, size_t& at) {
  uint64_t value = 0;
  for (int shift = 0; at < in.size(); shift += 7) {
    const auto byte = static_cast<unsigned char>(in[at++]);
    value |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) return value;
  }
  ADD_FAILURE() << "truncated varint";
  return value;
}

Fields read_message(const std::string& in) {
  Fields fields;
  size_t at = 0;
  while (at < in.size()) {
    const uint64_t tag = read_varint(in, at);
    const auto field = static_cast<uint32_t>(tag >> 3);
    if ((tag & 7) == 0) {
      fields.numbers[field].push_back(read_varint(in, at));
    } else if ((tag & 7) == 2) {
      const uint64_t length = read_varint(in, at);
      EXPECT_LE(at + length, in.size());
      fields.bytes[field].push_back(in.substr(at, length));
      at += length;
    } else {
      ADD_FAILURE() << "wire type " << (tag & 7) << " is not one the encoder writes";
      break;
    }
  }
  return fields;
}

std::vector<uint64_t> read_packed(const std::string& in) {
  std::vector<uint64_t> values;
  for (size_t at = 0; at < in.size();) values.push_back(read_varint(in, at));
  return values;
}

std::string gunzip(const std::string& in) {
  z_stream stream{};
  EXPECT_EQ(inflateInit2(&stream, 15 + 16), Z_OK);
  std::string out(1 << 20, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  stream.avail_in = static_cast<uInt>(in.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&stream, Z_FINISH), Z_STREAM_END);
  out.resize(stream.total_out);
  inflateEnd(&stream);
  return out;
}

// protobuf.dev's encoding guide: field 1 = 150 is 08 96 01; field 2 = "testing" is 12 07 74 65
// 73 74 69 6e 67; packed field 4 = [3, 270, 86942] is 22 06 03 8e 02 9e a7 05.
TEST(ProtobufWriter, SpecificationExamples) {
  ProtobufWriter writer;
  writer.varint_field(1, 150);
  EXPECT_EQ(writer.bytes(), std::string("\x08\x96\x01"));
  writer.clear();
  writer.bytes_field(2, "testing");
  EXPECT_EQ(writer.bytes(), std::string("\x12\x07testing"));
  writer.clear();
  writer.packed_field(4, std::vector<uint64_t>{3, 270, 86942});
  EXPECT_EQ(writer.bytes(), std::string("\x22\x06\x03\x8e\x02\x9e\xa7\x05"));
  writer.clear();
  writer.varint_field(1, 0);  // proto3: a default value is left out
  writer.int64_field(2, -1);  // two's complement, ten bytes
  EXPECT_EQ(writer.bytes(), std::string("\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"));
}

HeapProfile two_sites() {
  HeapProfile profile;
  profile.pid = 42;
  profile.program = "/bin/prog";
  profile.live_bytes = 5000 + 204800 + 96;  // 96 bytes at sites the list leaves out
  profile.live_blocks = 250 + 3;
  profile.leaks_known = true;
  profile.modules.push_back({"/lib/libc.so.6", "beef", 0x7f0000000000, 0x7f0000200000, 0});
  profile.modules.push_back({"/bin/prog", "abcd", 0x555500000000, 0x555500010000, 0});
  const ProfileFrame main_frame{0x555500001100, 1, 0x1100, "main", "prog.c", 20};
  profile.stacks.push_back({{0x555500001200, 1, 0x1200, "leak_record", "prog.c", 15}, main_frame});
  profile.stacks.push_back({{0x555500001300, 1, 0x1300, "make_cache_entry", "prog.c", 11}, main_frame});
  profile.samples.push_back({0, SampleKind::kLive, 50, 5000});
  profile.samples.push_back({1, SampleKind::kLive, 200, 204800, 0});
  profile.threads.push_back({1234, "worker"});
  profile.samples.push_back({0, SampleKind::kDirectLeak, 50, 5000});
  add_unlisted_sites(profile);
  return profile;
}

// Each leak kind of the scan (report/leak_kind.h) becomes its own sample kind and pprof label.
TEST(PprofProfile, LeakKindLabels) {
  EXPECT_STREQ(leak_kind_label(leak_sample_kind(report::LeakKind::kDirect)), "direct");
  EXPECT_STREQ(leak_kind_label(leak_sample_kind(report::LeakKind::kIndirect)), "indirect");
  EXPECT_STREQ(leak_kind_label(leak_sample_kind(report::LeakKind::kCycle)), "cycle");
  EXPECT_STREQ(leak_kind_label(SampleKind::kLive), "");
}

TEST(PprofProfile, TablesHoldWhatProfileProtoAsks) {
  const HeapProfile profile = two_sites();
  const std::string file = pprof_file(profile);
  ASSERT_GE(file.size(), 2u);
  EXPECT_EQ(file.substr(0, 2), std::string("\x1f\x8b"));  // gzip's magic
  const Fields message = read_message(gunzip(file));
  const std::vector<std::string>& strings = message.bytes.at(6);
  ASSERT_FALSE(strings.empty());
  EXPECT_EQ(strings[0], "");  // string_table[0] must be ""

  std::vector<std::string> types;
  for (const std::string& type : message.bytes.at(1)) types.push_back(strings[read_message(type).numbers.at(1)[0]]);
  EXPECT_EQ(types, (std::vector<std::string>{"inuse_objects", "inuse_space", "leaked_objects", "leaked_space"}));
  EXPECT_EQ(strings[message.numbers.at(14)[0]], "inuse_space");  // default_sample_type

  // Sums per sample type: the live totals (the unlisted 96 bytes included) and the leak.
  std::vector<uint64_t> sums(4, 0);
  size_t labelled = 0;
  std::map<uint64_t, Fields> locations;
  for (const std::string& location : message.bytes.at(4)) {
    const Fields fields = read_message(location);
    locations[fields.numbers.at(1)[0]] = fields;
  }
  for (const std::string& sample : message.bytes.at(2)) {
    const Fields fields = read_message(sample);
    const std::vector<uint64_t> values = read_packed(fields.bytes.at(2)[0]);
    ASSERT_EQ(values.size(), 4u);
    for (size_t i = 0; i < 4; ++i) sums[i] += values[i];
    for (uint64_t id : read_packed(fields.bytes.at(1)[0])) EXPECT_TRUE(locations.count(id)) << "location " << id;
    std::map<std::string, std::string> labels;
    if (fields.bytes.count(3)) {
      for (const std::string& encoded : fields.bytes.at(3)) {
        const Fields label = read_message(encoded);
        const std::string& key = strings[label.numbers.at(1)[0]];
        labels[key] =
            label.numbers.count(2) ? strings[label.numbers.at(2)[0]] : "#" + std::to_string(label.numbers.at(3)[0]);
      }
    }
    if (labels.count("leak_kind")) {
      EXPECT_EQ(labels, (std::map<std::string, std::string>{{"leak_kind", "direct"}}));
      EXPECT_EQ(values[3], 5000u);
      ++labelled;
    } else if (labels.count("thread_id")) {
      EXPECT_EQ(labels, (std::map<std::string, std::string>{{"thread_id", "#1234"}, {"thread_name", "worker"}}));
      EXPECT_EQ(values[1], 204800u);
      ++labelled;
    } else {
      EXPECT_TRUE(labels.empty());
    }
  }
  EXPECT_EQ(sums, (std::vector<uint64_t>{253, 5000 + 204800 + 96, 50, 5000}));
  EXPECT_EQ(labelled, 2u);

  // The program's mapping first, with its build-id; libc is named by no frame, so absent.
  const std::vector<std::string>& mappings = message.bytes.at(3);
  ASSERT_EQ(mappings.size(), 1u);
  const Fields mapping = read_message(mappings[0]);
  EXPECT_EQ(strings[mapping.numbers.at(5)[0]], "/bin/prog");
  EXPECT_EQ(strings[mapping.numbers.at(6)[0]], "abcd");
  EXPECT_EQ(mapping.numbers.at(2)[0], 0x555500000000u);
  EXPECT_EQ(mapping.numbers.at(3)[0], 0x555500010000u);
  EXPECT_EQ(mapping.numbers.at(7)[0], 1u);  // has_functions: every location in it is named
}

TEST(PprofProfile, NoScanNoLeakTypes) {
  HeapProfile profile = two_sites();
  profile.leaks_known = false;
  const Fields message = read_message(gunzip(pprof_file(profile)));
  EXPECT_EQ(message.bytes.at(1).size(), 2u);  // inuse_objects, inuse_space only
  EXPECT_EQ(message.bytes.at(2).size(), 3u);  // the two live sites and the unlisted rest; no leak sample
}

// `export --format pprof --leaks` and serve's /debug/pprof/heap?leaks=1: leaked_space is what pprof
// shows without -sample_index; without a scan there is none to default to.
TEST(PprofProfile, LeaksByDefault) {
  HeapProfile profile = two_sites();
  auto default_type = [](const HeapProfile& p, bool leaks) {
    const Fields message = read_message(gunzip(pprof_file(p, leaks)));
    return message.bytes.at(6)[message.numbers.at(14)[0]];
  };
  EXPECT_EQ(default_type(profile, true), "leaked_space");
  EXPECT_EQ(default_type(profile, false), "inuse_space");
  profile.leaks_known = false;
  EXPECT_EQ(default_type(profile, true), "inuse_space");
}

TEST(FoldedStacks, RootFirstLargestFirst) {
  const HeapProfile profile = two_sites();
  EXPECT_EQ(folded_text(folded_stacks(profile, false)),
            "main;make_cache_entry 204800\nmain;leak_record 5000\n[other allocation sites] 96\n");
  EXPECT_EQ(folded_text(folded_stacks(profile, true)), "main;leak_record 5000\n");
}

}  // namespace
}  // namespace heapkeeper::analysis

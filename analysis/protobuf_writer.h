// ProtobufWriter: the few pieces of the protocol buffers wire format that pprof's profile.proto
// needs — varint fields, length-delimited fields (strings, nested messages) and packed repeated
// varints — written by hand.
//
// Why not libprotobuf: profile.proto is a dozen small messages written once, never read, so the
// generated code would bring protoc into the build (a build-time code generator and a runtime
// library whose versions must match) for what is about a hundred lines of encoding here. The wire
// format is stable and fully specified (protobuf.dev/programming-guides/encoding); what a reader
// checks is tested against Go's pprof itself (tests/integration/pprof.sh).
//
// proto3 rules followed: a scalar field equal to its default (0, false, "") is left out, except
// where a repeated field's element must be kept (string_table's first entry is "").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace heapkeeper::analysis {

class ProtobufWriter {
 public:
  // A varint-encoded scalar (uint64, int64 as two's complement, bool). Zero is left out.
  void varint_field(uint32_t field, uint64_t value) {
    if (value == 0) return;
    tag(field, kVarint);
    varint(value);
  }
  void int64_field(uint32_t field, int64_t value) { varint_field(field, static_cast<uint64_t>(value)); }
  void bool_field(uint32_t field, bool value) { varint_field(field, value ? 1 : 0); }

  // A length-delimited field: a string, bytes, or a nested message's encoding. Written even when
  // empty, for repeated strings (string_table[0] is "").
  void bytes_field(uint32_t field, std::string_view bytes) {
    tag(field, kLengthDelimited);
    varint(bytes.size());
    out_.append(bytes);
  }
  void message_field(uint32_t field, const ProtobufWriter& message) { bytes_field(field, message.bytes()); }

  // A repeated varint field, packed (proto3's default encoding for repeated scalars). Left out
  // when empty.
  template <typename Integer>
  void packed_field(uint32_t field, const std::vector<Integer>& values) {
    if (values.empty()) return;
    ProtobufWriter packed;
    for (Integer value : values) packed.varint(static_cast<uint64_t>(value));
    bytes_field(field, packed.bytes());
  }

  const std::string& bytes() const { return out_; }
  void clear() { out_.clear(); }

 private:
  enum WireType : uint32_t { kVarint = 0, kLengthDelimited = 2 };

  void tag(uint32_t field, WireType type) { varint((uint64_t{field} << 3) | type); }
  void varint(uint64_t value) {
    while (value >= 0x80) {
      out_ += static_cast<char>((value & 0x7f) | 0x80);
      value >>= 7;
    }
    out_ += static_cast<char>(value);
  }

  std::string out_;
};

}  // namespace heapkeeper::analysis

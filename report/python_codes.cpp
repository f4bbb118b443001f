// The python section of a raw dump (see python_codes.h).
#include "report/python_codes.h"

#include <unordered_set>

#include "allocator/python_code_table.h"
#include "allocator/python_frame_word.h"

namespace heapkeeper::report {

void add_python_codes(const std::vector<RawStack>& stacks, std::vector<RawPythonCode>& codes) {
  std::unordered_set<uint64_t> known;
  for (const RawPythonCode& code : codes) known.insert(code.key);
  for (const RawStack& stack : stacks) {
    for (const RawFrame& frame : stack.frames) {
      if (!python_word::is_python(frame.address)) continue;
      const uint64_t key = python_word::code_key(frame.address);
      if (!known.insert(key).second) continue;
      const alloc::PythonCodeRecord* record = alloc::python_code_table().find(key);
      if (record == nullptr) continue;
      RawPythonCode& code = codes.emplace_back();
      code.key = key;
      code.first_line = record->first_line;
      code.qualname.assign(record->qualname(), record->qualname_length);
      code.filename.assign(record->filename(), record->filename_length);
      code.linetable.assign(record->linetable(), record->linetable_length);
    }
  }
}

}  // namespace heapkeeper::report

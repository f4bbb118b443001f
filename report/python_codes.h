// The python section of a raw dump (report/raw_dump.h): the copied names of the code of every
// Python frame a dump's stacks hold, so the `heapkeeper` binary can name those frames and decode
// their lines. Inside the traced process, guard held (it allocates); reads
// allocator/python_code_table.h, never the interpreter.
#pragma once

#include <vector>

#include "report/raw_dump.h"

namespace heapkeeper::report {

// Appends to `codes` a record for each code key the frames of `stacks` name that is not there yet.
void add_python_codes(const std::vector<RawStack>& stacks, std::vector<RawPythonCode>& codes);

}  // namespace heapkeeper::report

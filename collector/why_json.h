// The answer to `heapkeeper why PID TARGET`, as JSON (see retainers.h for how it is found):
//   {"target": {"address" | "function", "blocks", "bytes", "retained_bytes"},
//    "paths": [{"root": {"kind", "name", "module", "offset"},
//               "chain": [{"address", "size", "site": {"function", "file", "line"}}]}]}
// Root kinds: "global" (a module's data: its symbol and module, offset in the module), "stack"
// (a thread's stack: offset = bytes above its stack pointer), "register", "kernel",
// "bootstrap", "anonymous" (offset into the mapping).
#pragma once

#include <string>

namespace heapkeeper::collect {

// `argument` is "TARGET\nPATHS": a block address (0x..., interior allowed) or the name of a
// function in the blocks' allocation stacks, and how many paths (1..16). Sets `status` to an
// errno-like code when the answer is an error.
std::string build_why_json(const std::string& argument, int& status);

}  // namespace heapkeeper::collect

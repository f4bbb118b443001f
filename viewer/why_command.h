// Asking a tracked process who holds a block or an allocation site's blocks (`heapkeeper why`, and
// the viewer's retainers pane): the binary turns a function name into the address ranges of its
// code (analysis/function_ranges.h), the process answers with raw facts (report/raw_why.h), and
// the answer is named here (analysis/why_renderer.h).
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace heapkeeper::analysis {
class ModuleSymbolizer;
}

namespace heapkeeper::view {

class SegmentReader;

// The named answer for `target` (a block address "0x..." or a function name) in `doc`
// (analysis/why_renderer.h's JSON), or false with `error` one line. `reader` is open for commands.
bool ask_why(SegmentReader& reader, pid_t pid, const std::string& target, size_t paths,
             analysis::ModuleSymbolizer& symbolizer, nlohmann::json& doc, std::string& error);

// The same for the blocks of one allocation site (the stack id a snapshot's site carries), for
// the viewer's retainers pane; `doc`'s target is {"stack": ID}.
bool ask_why_site(SegmentReader& reader, pid_t pid, uint32_t stack_id, size_t paths,
                  analysis::ModuleSymbolizer& symbolizer, nlohmann::json& doc, std::string& error);

// The answer as text lines: a headline ("NAME (192 B in 3 blocks) retains 192 B; 3 shortest
// retainer paths:"), then each path's root and its chain, as `heapkeeper why` prints them.
std::vector<std::string> why_text_lines(const nlohmann::json& doc);

// One line naming a path's root as a person would ("global global_tree in /path/prog (+0x4010)",
// "stack of thread 12 (holder), in holder's frame, 40 bytes above its stack pointer"...).
std::string root_text(const nlohmann::json& root);
// "make_payload retainer_graph.c:35": a chain step's allocation site.
std::string site_text(const nlohmann::json& site);

}  // namespace heapkeeper::view

// The local-only debug info callbacks (see local_debuginfo.h).
#include "analysis/local_debuginfo.h"

namespace heapkeeper::analysis {
namespace {

char* g_debuginfo_search_path = nullptr;  // libdwfl's default: the file's directory, /usr/lib/debug

const Dwfl_Callbacks kFileCallbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_build_id_find_debuginfo,
    .section_address = nullptr,
    .debuginfo_path = &g_debuginfo_search_path,
};

const Dwfl_Callbacks kProcessCallbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_build_id_find_debuginfo,
    .section_address = nullptr,
    .debuginfo_path = &g_debuginfo_search_path,
};

}  // namespace

const Dwfl_Callbacks* local_file_callbacks() { return &kFileCallbacks; }
const Dwfl_Callbacks* local_process_callbacks() { return &kProcessCallbacks; }

}  // namespace heapkeeper::analysis

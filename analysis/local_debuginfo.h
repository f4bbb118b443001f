// libdwfl callbacks that look separate debug info up only where it is installed locally.
//
// By build ID under /usr/lib/debug/.build-id: dwfl_standard_find_debuginfo would go on to ask
// debuginfod over the network, which a report must never wait for. Objects built with -g carry
// their DWARF in the main file and need neither.
#pragma once

#include <elfutils/libdwfl.h>

namespace heapkeeper::analysis {

// For module files reported by path (dwfl_report_elf): the ELF found by build ID or path.
const Dwfl_Callbacks* local_file_callbacks();

// For a live process's modules (dwfl_linux_proc_report): the ELF found through /proc/PID.
const Dwfl_Callbacks* local_process_callbacks();

}  // namespace heapkeeper::analysis

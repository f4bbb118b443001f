// The elfutils functions the symbolizer uses, resolved from libdw.so.1 on first use.
//
// Symbols are needed only when a report is written, and most traced processes write one at exit
// or never. Linking libdw would load it and its dependencies (libelf, libz, libbz2; liblzma comes
// with libunwind anyway) into every traced process at start-up: about half a megabyte of resident
// pages and four more objects for the loader to relocate, in processes that may never ask for a
// symbol. So libdw is opened
// with dlopen the first time the symbolizer needs it (never on the allocation path).
#pragma once

#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>

namespace heapkeeper::report {

struct LibdwFunctions {
  decltype(&::dwfl_begin) begin;
  decltype(&::dwfl_end) end;
  decltype(&::dwfl_report_begin) report_begin;
  decltype(&::dwfl_report_end) report_end;
  decltype(&::dwfl_linux_proc_report) linux_proc_report;
  decltype(&::dwfl_report_elf) report_elf;
  decltype(&::dwfl_module_build_id) module_build_id;
  decltype(&::dwfl_linux_proc_find_elf) linux_proc_find_elf;
  decltype(&::dwfl_build_id_find_debuginfo) build_id_find_debuginfo;
  decltype(&::dwfl_addrmodule) addrmodule;
  decltype(&::dwfl_module_info) module_info;
  decltype(&::dwfl_module_getelf) module_getelf;
  decltype(&::dwfl_module_addrinfo) module_addrinfo;
  decltype(&::dwfl_module_getsrc) module_getsrc;
  decltype(&::dwfl_module_nextcu) module_nextcu;
  decltype(&::dwfl_lineinfo) lineinfo;
  decltype(&::dwarf_haspc) haspc;
  decltype(&::dwarf_getsrc_die) getsrc_die;
  decltype(&::dwarf_linesrc) linesrc;
  decltype(&::dwarf_lineno) lineno;
};

// libdw's functions, or null when libdw.so.1 cannot be loaded or lacks one of them; then the
// symbolizer falls back to the dynamic symbol table (dladdr) and says so once on stderr.
const LibdwFunctions* libdw();

}  // namespace heapkeeper::report

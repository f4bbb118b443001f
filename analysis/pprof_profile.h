// pprof's profile.proto (github.com/google/pprof, proto/profile.proto) of a HeapProfile: the format
// Go's pprof, Pyroscope, Parca and tcmalloc's tools read, gzipped as pprof writes it to disk.
//
// Sample types, each sample carrying all of them: inuse_objects/inuse_space (blocks and bytes still
// allocated, the default, as in Go's heap profiles), then, when a leak scan ran,
// leaked_objects/leaked_space (unreachable blocks: what no other tool's pprof output knows). A leak
// sample has the label leak_kind = direct | indirect; live samples have none. Counts are exact
// (period 1): heapkeeper sees every block. Live samples from a process (not from a JSON report,
// which does not say) are split by allocating thread, labelled thread_id (tid) and thread_name.
//
// Locations keep their return addresses and mappings their ranges, paths and GNU build-ids, so
// `pprof -symbolize=force` (or a symbol server keyed by build-id) can name frames again later; a
// mapping whose every location is named says has_functions, so pprof does not try to.
#pragma once

#include <string>
#include <string_view>

#include "analysis/heap_profile.h"

namespace heapkeeper::analysis {

// The encoded Profile message (not compressed). Its default sample type (what pprof shows without
// -sample_index) is inuse_space, or with `leaks_by_default` and a leak scan leaked_space.
std::string pprof_message(const HeapProfile& profile, bool leaks_by_default = false);

// `bytes` in gzip's format (RFC 1952), as pprof files are stored.
std::string gzip(std::string_view bytes);

// gzip(pprof_message(profile)): what `go tool pprof FILE` reads.
inline std::string pprof_file(const HeapProfile& profile, bool leaks_by_default = false) {
  return gzip(pprof_message(profile, leaks_by_default));
}

}  // namespace heapkeeper::analysis

// The symbolizer service of a `heapkeeper run`: one process that answers the raw dumps of every
// traced process of the run (report/analysis_handoff.h), so that a module of one build is read
// once for the whole run (ModuleSymbolizer caches by build-id) and no process starts a binary to
// have its report made.
//
// Why a service rather than an on-disk cache: a cache still costs every process an exec of the
// binary and a load of the cache (milliseconds each, the bulk of what a report costs once names are
// cached), and a shared directory of cache files is a surface to defend (links, races, corrupt
// entries); a socket in a private directory answers in one round trip, and processes outside any
// run still get their reports by starting the binary themselves.
//
// The run's service is a grandchild of `heapkeeper run` made before the run execs the program: it is
// nobody's child the program could see or wait for. It listens on a unix socket in a new 0700
// directory (under $XDG_RUNTIME_DIR, else, or when that path is too long for a socket's, /tmp),
// answers only its own uid (SO_PEERCRED), and ends once the program the run became has exited (a
// pidfd), removing the socket and directory.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <string>

#include "analysis/module_symbolizer.h"

namespace heapkeeper::analysis {

// Starts the service for this process, which is about to exec the program: the socket's path, or
// empty with `error` one line. The listening socket is close-on-exec: the program never holds it.
std::string start_symbolizer_service(std::string& error);

// A user's service, for traced processes outside any run (plain LD_PRELOAD): started by the first
// `heapkeeper symbolize --answer --serve PATH` that finds nobody answering at PATH, it serves every
// process of this uid that connects and ends after two seconds without a client, carrying on with
// the binary's symbolizer cache (what it read for its own dump).
//
// The binary claims PATH before it reads anything: a socket listening there at once, whose clients
// wait in its backlog while the binary answers its own dump, so that of the binaries that processes
// exiting together start (a parallel build's), one reads the modules and the others pass their
// dumps on (ask_user_service).
struct UserServiceClaim {
  int listener = -1;     // listening at PATH: this binary is to start the service
  struct stat bound {};  // PATH's file as claimed (a later service may replace it)
  bool served = false;   // a service of ours already answers at PATH
};
UserServiceClaim claim_user_service(const std::string& socket_path);
// Gives the name up (the binary could not answer): closes the listener, removes PATH if unchanged.
void release_user_service(UserServiceClaim& claim, const std::string& socket_path);
// Asks the service at PATH for the answer to `dump` (the bytes the library sent); false if it gave
// none (refused the dump, died, or timed out), and the binary then answers itself.
bool ask_user_service(const std::string& socket_path, const std::string& dump, std::string& reply);
// Starts the service on the claimed listener with `symbolizer`'s cache. Returns at once in the
// caller; the service is a new session, re-parented, holding no descriptor of the program.
void start_user_symbolizer_service(UserServiceClaim& claim, const std::string& socket_path,
                                   std::unique_ptr<ModuleSymbolizer> symbolizer);

}  // namespace heapkeeper::analysis

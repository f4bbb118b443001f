// The program's own C++ runtime (libstdc++ or libc++abi), reached at run time.
//
// libheapkeeper.so carries a private, hidden copy of the parts of libstdc++ its own code needs
// (linked statically: loading the shared libstdc++ into every traced process, C programs and
// shells included, cost more start-up time than all of heapkeeper's own initialisation, issue
// #12). What the C++ standard makes visible to the program must still come from the program's
// runtime, not from that copy: the new-handler it installed with std::set_new_handler, and the
// std::bad_alloc its catch clauses and std::uncaught_exceptions() account for. Both are looked up
// by name the first time an allocation fails; a program that calls operator new has a C++ runtime
// loaded.
#pragma once

#include <cstddef>
#include <new>

namespace heapkeeper::alloc {

// The program's current new-handler (std::get_new_handler in its runtime), or null when it has
// none or no C++ runtime is loaded.
std::new_handler program_new_handler() noexcept;

// Throws std::bad_alloc through the program's runtime, as its own operator new would. Without a
// C++ runtime to throw through, prints one line and aborts, as libstdc++ built without exceptions
// does.
[[noreturn]] void throw_program_bad_alloc();

// Calls the program runtime's own nothrow operator new (the `alignment` variant when not 0). Used
// when an allocation failed and a new-handler is installed: the handler may throw std::bad_alloc,
// which nothrow new must turn into null, and only the program's runtime can catch its own
// exception without unbalancing its count of uncaught exceptions. That function calls the
// throwing operator new, which is heapkeeper's again. Null when the runtime has none.
void* program_nothrow_new(size_t size, size_t alignment) noexcept;

}  // namespace heapkeeper::alloc

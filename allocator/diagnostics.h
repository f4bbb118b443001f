// Fixed-buffer, async-signal-safe diagnostics for code that runs inside the traced program.
//
// printf and iostreams may allocate and take locks; heapkeeper reports bad frees from inside free()
// and may be called from signal handlers, so every message is built in a stack buffer and written
// with one write(2) to stderr. Lines are prefixed "heapkeeper[pid]: " so they stand out from the
// program's own output.
//
// "stderr" is the program's stderr as it was at start-up: sort, tar and dc close fd 2 in their own
// exit handlers, before heapkeeper reports. As valgrind does, start-up keeps a private duplicate
// (close-on-exec, at a high descriptor number) and every line goes there; if the program closes
// that descriptor or puts another file on its number, the change is noticed (device and inode no
// longer match) and fd 2 is used while it is still the start-up stderr, never when it is another
// file (a program that closed every descriptor and opened its own has one of them on 2); nothing
// is written then. A forked child closes its copy (a daemon must not keep its parent's stderr
// open) and uses fd 2 on the same terms. HEAPKEEPER_LOG_PATH ('%p' = pid) sends
// everything to a file instead, opened on the first line (a process with nothing to say creates none) by the rules of
// output_file.h. No write of a line raises SIGPIPE in the program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "allocator/bounded_text.h"

namespace heapkeeper::alloc {

class DiagnosticLine {
 public:
  DiagnosticLine();
  DiagnosticLine(const DiagnosticLine&) = delete;  // line_ points into this object's buffer_
  DiagnosticLine& operator=(const DiagnosticLine&) = delete;
  DiagnosticLine& text(std::string_view s);
  DiagnosticLine& number(uint64_t value);
  DiagnosticLine& signed_number(int64_t value);
  DiagnosticLine& hex(uint64_t value);
  DiagnosticLine& bytes(uint64_t value);  // "12.3 MiB" style
  // Text from outside heapkeeper (an environment value, a file name built from one), with what a
  // terminal would act on escaped: \n and \t, a backslash doubled, the other bytes below 0x20 and
  // those from 0x7f as \xNN (0x9b is a terminal's CSI where 8-bit controls are on; deciding which
  // UTF-8 is harmless is more code than a diagnostic deserves, inside the traced program).
  DiagnosticLine& escaped(std::string_view s);
  // A file name, escaped, its middle left out ("...") when long, so that what follows it on the line
  // (the reason a write failed) always fits.
  DiagnosticLine& path(std::string_view name);
  // Writes the line (adding '\n') to stderr and resets the buffer.
  void emit();

 private:
  static constexpr size_t kCapacity = 1024;
  char buffer_[kCapacity];
  BoundedText line_{buffer_, kCapacity - 1};  // one byte kept for the '\n'
};

// The program has just put a file of its own on descriptor `fd` (dup2, dup3). On 2, when the
// start-up stderr is a pipe, FIFO or socket and 2 no longer holds it, heapkeeper closes its copy
// of it, which would keep that pipe open after the program is done with it (a `$(prog 2>&1)`
// waiting for its end); fd 2 is then written to only while it holds the start-up stderr again,
// never the program's file. A terminal's or a file's copy stays: nobody waits for their end, and
// the reports still reach them. On the copy's own number, the copy is gone already. Not in a vfork
// child, whose descriptor table is its own but whose memory is its parent's. Keeps errno.
void note_descriptor_replaced(int fd) noexcept;

// Writes raw text to stderr in one write(2), retrying on EINTR.
void write_stderr(const char* data, size_t length);

// Keeps the private duplicate of stderr. Called once at start-up, after the configuration is read;
// allocation-free.
void initialize_diagnostic_output();

// In a forked child: closes the inherited duplicate, so that a daemon which redirects its 0-2
// does not hold its parent's stderr open, and writes to fd 2 only while it is that same stderr.
void diagnostic_output_after_fork_in_child();

}  // namespace heapkeeper::alloc

// Writing the JSON report to the path the user named (HEAPKEEPER_REPORT, heapkeeper_write_report),
// which may be a file to replace, a stream to write to, or something heapkeeper must not touch.
//
// - Nothing there, or a regular file: replaced atomically. The text goes to a new file in the same
//   directory, named <name>.tmp.<12 random characters> and created with O_CREAT|O_EXCL|O_NOFOLLOW
//   (another user can neither guess the name nor put a link there), which is then renamed over
//   the target: a reader sees the old report or the whole new one, and a hard link to the old
//   file keeps the old file. A new report gets the mode any new file would get (0644 less the
//   umask, or the directory's default ACL); a report of ours that is replaced keeps its
//   permission bits (chmod 600 stays private), and its temporary file is 0600 until then.
// - A character device or a FIFO, or a symbolic link to one (/dev/null, /dev/stdout, a FIFO some
//   reader waits on): written in place, as a stream, and never replaced.
// - A symbolic link to a regular file: that file is replaced as above (created if missing); the
//   link stays.
// - Refused (allocator/output_file.h): a link, or a FIFO, that another user put in a sticky
//   world-writable directory; a link through /proc (/dev/stdout) that leads to a regular file,
//   since a descriptor the program closed may hold any file by then; a block device; a directory.
#pragma once

#include <string_view>

#include "allocator/output_file.h"

namespace heapkeeper::report {

// Writes `text` to `path` as above: 0, or -1 with `problem` saying why (and errno set).
int write_report_text(const char* path, std::string_view text, alloc::OutputProblem& problem);

}  // namespace heapkeeper::report

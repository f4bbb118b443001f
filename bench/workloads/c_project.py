#!/usr/bin/env python3
"""Writes a small C project for the process-heavy benchmark (scripts/bench.sh, issue #12): FILES
source files of a few functions each, a header, a main that calls them all and prints their sum,
and a Makefile (one compiler process per file and one link, as a real project's build).

`make -s -j2 -B` rebuilds it from scratch every time, every process of the build traced: what a
tracker costs on a build is its per-process cost times a few hundred short processes.

Usage: c_project.py DIRECTORY FILES
"""

import sys
from pathlib import Path


def main():
    if len(sys.argv) != 3 or not sys.argv[2].isdigit() or int(sys.argv[2]) < 1:
        sys.exit("usage: c_project.py DIRECTORY FILES")
    directory, files = Path(sys.argv[1]), int(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    header = [f"long unit{i}(long x);" for i in range(files)]
    (directory / "units.h").write_text("\n".join(header) + "\n")
    for i in range(files):
        body = [f'#include "units.h"', "#include <stdlib.h>", "#include <string.h>", ""]
        for f in range(4):
            body += [f"static long step{f}(long x) {{", f"  char *buf = malloc(64 + (size_t)(x & 63));",
                     "  if (!buf) return x;", f"  memset(buf, {f + 1}, 64);", f"  long r = x * {2 * f + 3} + buf[{f}];",
                     "  free(buf);", "  return r % 1000003;", "}", ""]
        body += [f"long unit{i}(long x) {{", "  for (int k = 0; k < 8; ++k) x = step0(step1(step2(step3(x + k))));",
                 f"  return x + {i};", "}"]
        (directory / f"unit{i}.c").write_text("\n".join(body) + "\n")
    calls = "\n".join(f"  sum += unit{i}({i});" for i in range(files))
    (directory / "main.c").write_text(
        '#include <stdio.h>\n#include "units.h"\nint main(void) {\n  long sum = 0;\n'
        f'{calls}\n  printf("sum %ld\\n", sum);\n  return 0;\n}}\n')
    objects = " ".join(f"unit{i}.o" for i in range(files))
    (directory / "Makefile").write_text(
        f"CFLAGS = -O1\nOBJECTS = main.o {objects}\n\nprog: $(OBJECTS)\n\t$(CC) -o $@ $(OBJECTS)\n\n"
        "%.o: %.c units.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n")


if __name__ == "__main__":
    main()

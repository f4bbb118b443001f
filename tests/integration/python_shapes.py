# A Python program of known shape for python_frames.sh: each kind of frame chain heapkeeper must
# name — nested calls, a generator, a method, a thread, an exception unwinding through frames, a C
# extension's leak, a reference cycle a global keeps — allocates a block of its own size at a line
# marked "# SITE name"; "# CALL name" marks the calls on the way there. The checker reads the marks,
# never fixed line numbers. It ends with libc's exit(), not Python's: the exit report then sees the
# blocks still held (Python's own finalization would free them first).
import ctypes
import sys
import threading
import tracemalloc

import hk_pyleak

MB = 1 << 20
KEEP = []
CYCLE = None


def inner(size):
    return bytearray(size)  # SITE nested


def middle(size):
    return inner(size)  # CALL nested middle


def outer(size):
    return middle(size)  # CALL nested outer


def numbers(size):
    yield bytearray(size)  # SITE generator


class Holder:
    def grow(self, size):
        self.data = bytearray(size)  # SITE method


def worker(size):
    KEEP.append(bytearray(size))  # SITE thread


def thrower(size):
    buffer = bytearray(size)  # SITE raise
    raise ValueError(buffer)


def catcher(size):
    try:
        thrower(size)  # CALL raise catcher
    except ValueError as error:
        KEEP.append(error.args[0])
    KEEP.append(bytearray(size // 2))  # SITE after_raise


class Node:
    pass


def make_cycle(size):
    first, second = Node(), Node()
    first.other, second.other = second, first
    first.payload = bytearray(size)  # SITE cycle
    return first


def make_tuples(count):
    return [(index,) for index in range(count)]  # SITE objects


def call_extension(size):
    hk_pyleak.leak(size)  # SITE extension


def main():
    global CYCLE
    KEEP.append(outer(8 * MB))  # CALL nested main
    KEEP.extend(numbers(7 * MB))  # CALL generator main
    holder = Holder()
    holder.grow(6 * MB)  # CALL method main
    KEEP.append(holder)
    thread = threading.Thread(target=worker, args=(5 * MB,))
    thread.start()
    thread.join()
    catcher(4 * MB)  # CALL raise main
    CYCLE = make_cycle(3 * MB)  # CALL cycle main
    KEEP.append(make_tuples(20000))  # CALL objects main
    call_extension(1 * MB + 1)  # CALL extension main
    if tracemalloc.is_tracing():
        for statistic in tracemalloc.take_snapshot().statistics("lineno")[:6]:
            frame = statistic.traceback[0]
            print(f"{frame.filename}:{frame.lineno}")


main()  # CALL nested <module>
sys.stdout.flush()
ctypes.CDLL(None).exit(0)

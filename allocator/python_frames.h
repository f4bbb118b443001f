// Python frames in allocation stacks: for a CPython 3.11 interpreter in the process, each recorded
// stack carries the Python frames active at the allocation — code and instruction, as words of
// allocator/python_frame_word.h — merged into the native stack where `_PyEval_EvalFrameDefault`
// frames stand (each such C frame runs one or more Python frames, the outermost of them its entry
// frame). Names and line numbers are made in the `heapkeeper` binary from what
// allocator/python_code_table.h copies; nothing here formats or decodes.
//
// Never calls into Python: on 3.11 even PyThreadState_GetFrame may allocate, and malloc may be
// called with the interpreter in any state. The calling thread's state is read from the GIL-state
// thread-specific key (pthread_getspecific: no lock, no allocation), its frame chain walked through
// tstate->cframe->current_frame and ->previous. A thread changes its own chain only itself, and
// every link is in place before the interpreter calls anything that may allocate, so the chain is
// consistent when malloc reads it; frames still in their prologue (before the first traceable
// instruction) are skipped as CPython's own _PyFrame_IsIncomplete does. Once finalization starts
// (thread states of daemon threads are freed without their keys being cleared) no Python frames
// are recorded.
//
// Cost on the allocation path (python_frames.cpp): the thread-state read, a walk of the Python
// frames that hashes what names each (ten loads a frame, at constant offsets for the usual 3.11
// layout) and a probe of a per-thread cache of merged stacks; only a new (native stack, Python
// frames) combination walks them again to build and intern a merged stack and copy code names.
#pragma once

#include <cstdint>

namespace heapkeeper::alloc {

// Finds a CPython 3.11 in the process (the program or a library loaded with it): the interpreter's
// runtime state, the address range of `_PyEval_EvalFrameDefault`, its object types. Another
// CPython version gets one line saying stacks show its native frames only. Guard held, at library
// start (a Python embedded through a later dlopen is not seen). Honours HEAPKEEPER_PYTHON=0.
void initialize_python_frames();

// Whether Python frames are being recorded (a 3.11 interpreter was found and not turned off).
bool python_frames_enabled();

struct PythonStackCache;  // per thread: merged stacks by (native stack, Python frames)

// The id of the stack `native_id` (just captured, at most `depth` frames) with the calling thread's
// Python frames merged in; `native_id` itself when the thread runs no Python. `*cache` is the
// thread's cache, made on first use (left null when the internal arena cannot provide it); with
// `cache` null (a capture without a thread's stack cache) every call merges anew.
uint32_t add_python_frames(PythonStackCache** cache, uint32_t native_id, int depth);

// Empties a thread's cache for a new thread (or a dlclose: the merged stacks name old code).
void reset_python_stack_cache(PythonStackCache* cache);

}  // namespace heapkeeper::alloc

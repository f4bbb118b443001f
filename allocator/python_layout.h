// Where CPython 3.11 keeps what heapkeeper reads to name the Python frames of a stack: byte offsets
// into its runtime state, thread state, frames, code, bytes and str objects, taken from the
// interpreter's own headers (python_layout.c, built with libpython3.11-dev's internal headers).
//
// One C file includes Python's headers and nothing else does, so the engine reads the interpreter
// as plain memory at known offsets and never links to or calls into libpython (allocator/
// python_frames.h says why it must not).
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct HeapkeeperPythonLayout {
  uint32_t version_hex;  // PY_VERSION_HEX of the headers: only major and minor must match
  // _PyRuntimeState
  size_t runtime_finalizing, runtime_auto_interpreter, runtime_tss_initialized, runtime_tss_key;
  // PyThreadState and _PyCFrame
  size_t thread_cframe, cframe_current_frame;
  // _PyInterpreterFrame
  size_t frame_code, frame_previous, frame_prev_instr, frame_is_entry, frame_owner;
  uint32_t owner_generator;  // FRAME_OWNED_BY_GENERATOR
  // PyObject, PyVarObject, PyCodeObject
  size_t object_type, var_size;
  size_t code_adaptive, code_first_traceable, code_first_line, code_qualname, code_filename, code_linetable;
  size_t code_unit_bytes;
  // PyBytesObject
  size_t bytes_data;
  // PyASCIIObject / PyCompactUnicodeObject: the state word's bit-fields, as this compiler lays them out
  size_t unicode_length, unicode_state, ascii_data, compact_data;
  uint32_t state_kind_shift, state_kind_mask, state_compact_bit, state_ascii_bit;
};

// Null when heapkeeper was built without CPython 3.11's headers.
const struct HeapkeeperPythonLayout* heapkeeper_python311_layout(void);

#ifdef __cplusplus
}
#endif

// The CPython 3.11 layout heapkeeper reads (python_layout.h), from the interpreter's headers.
#include "allocator/python_layout.h"

#ifdef HEAPKEEPER_PYTHON311_HEADERS
#define Py_BUILD_CORE 1
#include <Python.h>
#include <internal/pycore_frame.h>
#include <internal/pycore_runtime.h>
#include <string.h>

#if PY_MAJOR_VERSION != 3 || PY_MINOR_VERSION != 11
#error "python_layout.c needs CPython 3.11's headers"
#endif

// The position of one bit-field of the str state word, found by setting it in a zeroed object:
// bit-field order is the compiler's choice, and this file is compiled by the same compiler as the
// interpreter's ABI assumes.
static uint32_t state_word(const PyASCIIObject* object) {
  uint32_t word;
  memcpy(&word, (const char*)object + offsetof(PyASCIIObject, state), sizeof word);
  return word;
}

static uint32_t lowest_bit(uint32_t word) { return word == 0 ? 0 : (uint32_t)__builtin_ctz(word); }

const struct HeapkeeperPythonLayout* heapkeeper_python311_layout(void) {
  static struct HeapkeeperPythonLayout layout;
  static int ready = 0;
  if (ready) return &layout;
  layout.version_hex = PY_VERSION_HEX;
  layout.runtime_finalizing = offsetof(_PyRuntimeState, _finalizing);
  layout.runtime_auto_interpreter = offsetof(_PyRuntimeState, gilstate.autoInterpreterState);
  layout.runtime_tss_initialized = offsetof(_PyRuntimeState, gilstate.autoTSSkey._is_initialized);
  layout.runtime_tss_key = offsetof(_PyRuntimeState, gilstate.autoTSSkey._key);
  layout.thread_cframe = offsetof(PyThreadState, cframe);
  layout.cframe_current_frame = offsetof(_PyCFrame, current_frame);
  layout.frame_code = offsetof(_PyInterpreterFrame, f_code);
  layout.frame_previous = offsetof(_PyInterpreterFrame, previous);
  layout.frame_prev_instr = offsetof(_PyInterpreterFrame, prev_instr);
  layout.frame_is_entry = offsetof(_PyInterpreterFrame, is_entry);
  layout.frame_owner = offsetof(_PyInterpreterFrame, owner);
  layout.owner_generator = FRAME_OWNED_BY_GENERATOR;
  layout.object_type = offsetof(PyObject, ob_type);
  layout.var_size = offsetof(PyVarObject, ob_size);
  layout.code_adaptive = offsetof(PyCodeObject, co_code_adaptive);
  layout.code_first_traceable = offsetof(PyCodeObject, _co_firsttraceable);
  layout.code_first_line = offsetof(PyCodeObject, co_firstlineno);
  layout.code_qualname = offsetof(PyCodeObject, co_qualname);
  layout.code_filename = offsetof(PyCodeObject, co_filename);
  layout.code_linetable = offsetof(PyCodeObject, co_linetable);
  layout.code_unit_bytes = sizeof(_Py_CODEUNIT);
  layout.bytes_data = offsetof(PyBytesObject, ob_sval);
  layout.unicode_length = offsetof(PyASCIIObject, length);
  layout.unicode_state = offsetof(PyASCIIObject, state);
  layout.ascii_data = sizeof(PyASCIIObject);
  layout.compact_data = sizeof(PyCompactUnicodeObject);
  PyASCIIObject probe;
  memset(&probe, 0, sizeof probe);
  probe.state.kind = 7;
  layout.state_kind_mask = state_word(&probe);
  layout.state_kind_shift = lowest_bit(layout.state_kind_mask);
  memset(&probe, 0, sizeof probe);
  probe.state.compact = 1;
  layout.state_compact_bit = lowest_bit(state_word(&probe));
  memset(&probe, 0, sizeof probe);
  probe.state.ascii = 1;
  layout.state_ascii_bit = lowest_bit(state_word(&probe));
  ready = 1;
  return &layout;
}

#else

const struct HeapkeeperPythonLayout* heapkeeper_python311_layout(void) { return 0; }

#endif

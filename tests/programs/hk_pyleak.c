// A CPython 3.11 extension module that leaks: hk_pyleak.leak(n) mallocs n bytes and drops the
// pointer. The Python frames test (tests/integration/python_frames.sh) checks that heapkeeper's
// leak report names the Python line that called it.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

// The pointer passes through here so the compiler cannot drop the allocation as unused.
static void* volatile last_block;

static PyObject* leak(PyObject* self, PyObject* argument) {
  (void)self;
  const Py_ssize_t size = PyLong_AsSsize_t(argument);
  if (size < 0) return NULL;
  char* block = malloc((size_t)size);
  if (block == NULL) return PyErr_NoMemory();
  memset(block, 0x5a, (size_t)size);
  last_block = block;
  last_block = NULL;
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leak", leak, METH_O, "malloc(n) and forget the pointer"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "hk_pyleak", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_hk_pyleak(void) { return PyModule_Create(&module); }

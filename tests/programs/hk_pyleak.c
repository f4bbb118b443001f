// A CPython 3.11 extension module that leaks: hk_pyleak.leak(n) mallocs n bytes and drops the
// pointer. The Python frames test (tests/integration/python_frames.sh) checks that heapkeeper's
// leak report names the Python line that called it. hk_pyleak.log_on_small_altstack() raises a
// signal whose handler, on an 8 KiB alternate stack with a guard page below it (the historical
// SIGSTKSZ, which crash handlers still use), logs a line to a file it opens, as a crash handler
// writing its report does, under the Python frames of its caller; it returns the bytes logged.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

static volatile sig_atomic_t logged_in_handler;
static void log_from_handler(int number) {
  (void)number;
  FILE* log = fopen("/dev/null", "w");
  if (log == NULL) return;
  logged_in_handler = fprintf(log, "%s: %d %s\n", "handler", 42, "logged");
  fclose(log);
}

static PyObject* log_on_small_altstack(PyObject* self, PyObject* unused) {
  (void)self;
  (void)unused;
  const size_t size = 8192;
  char* mapping = mmap(NULL, size + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED || mprotect(mapping, 4096, PROT_NONE) != 0) return PyErr_SetFromErrno(PyExc_OSError);
  stack_t alternate = {0}, previous = {0};
  alternate.ss_sp = mapping + 4096;
  alternate.ss_size = size;
  if (sigaltstack(&alternate, &previous) != 0) return PyErr_SetFromErrno(PyExc_OSError);
  struct sigaction action = {0}, previous_action = {0};
  action.sa_handler = log_from_handler;
  action.sa_flags = SA_ONSTACK;
  sigaction(SIGUSR1, &action, &previous_action);
  logged_in_handler = 0;
  raise(SIGUSR1);
  sigaction(SIGUSR1, &previous_action, NULL);
  sigaltstack(&previous, NULL);  // the mapping stays: heapkeeper may have recorded its bounds
  return PyLong_FromLong(logged_in_handler);
}

static PyMethodDef methods[] = {
    {"leak", leak, METH_O, "malloc(n) and forget the pointer"},
    {"log_on_small_altstack", log_on_small_altstack, METH_NOARGS,
     "a signal handler on an 8 KiB alternate stack logs a line; the bytes it logged"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "hk_pyleak", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_hk_pyleak(void) { return PyModule_Create(&module); }

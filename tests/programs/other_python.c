// A stand-in for a CPython that is not 3.11: it exports the two symbols heapkeeper looks Python up by
// (`_PyEval_EvalFrameDefault`, and `Py_Version` as 3.12.1 says it) and allocates once. Under
// heapkeeper it must get the one line saying its stacks show native frames only
// (python_frames.sh); a real 3.12 is not installed where the tests run.
#include <stdio.h>
#include <stdlib.h>

__attribute__((visibility("default"))) const unsigned long Py_Version = 0x030C01F0;

__attribute__((visibility("default"), noinline)) void* _PyEval_EvalFrameDefault(void* thread, void* frame,
                                                                                int throw_flag) {
  (void)thread;
  (void)frame;
  return throw_flag ? NULL : malloc(64);
}

int main(void) {
  void* block = _PyEval_EvalFrameDefault(NULL, NULL, 0);
  printf("%s\n", block != NULL ? "allocated" : "no memory");
  free(block);
  return 0;
}

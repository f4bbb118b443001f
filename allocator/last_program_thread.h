// Ending the process when the program's last thread has exited, as glibc would without heapkeeper.
//
// glibc calls exit(0) when the last thread of a process exits (the main thread called pthread_exit,
// and the last other thread returns), counting every thread it made: heapkeeper's own too, so such a
// program never ended under heapkeeper (and SIGTERM did not end it: heapkeeper's threads block every
// signal). The thread registry counts the program's threads; when the last one it counted exits, a
// watcher of heapkeeper's waits until the process holds no thread but heapkeeper's and exited ones:
// glibc makes some threads without the pthread_create hook (SIGEV_THREAD timers, mq_notify, AIO
// helpers), and the exiting thread itself still runs the rest of its key destructors. Then it calls
// exit(0). A program thread made meanwhile (the registry's count rises again) ends the watch.
#pragma once

namespace heapkeeper::alloc {

// From the exiting thread, after its key destructor found it the last of the program's threads.
void watch_for_last_program_thread() noexcept;

}  // namespace heapkeeper::alloc

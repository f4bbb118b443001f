# Builds `heapkeeper_jemalloc`: Debian's libjemalloc_pic.a with its public symbols renamed to
# hk_je_*. The preload library defines malloc, free, mallocx, mallctl... itself, so the engine must
# reach a jemalloc whose entry points cannot be confused with the interposed ones, and which stays
# independent of any jemalloc the traced program links (Debian's redis-server does). Renaming a
# copy of the packaged archive keeps "Debian's jemalloc, nothing vendored" while giving us a
# private instance. Everything from the archive is hidden with --exclude-libs.

find_file(HEAPKEEPER_JEMALLOC_PIC_ARCHIVE libjemalloc_pic.a
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE} /usr/lib/x86_64-linux-gnu /usr/lib
  DOC "Debian's position-independent jemalloc archive (package libjemalloc-dev).")
if(NOT HEAPKEEPER_JEMALLOC_PIC_ARCHIVE)
  message(FATAL_ERROR "libjemalloc_pic.a not found: install libjemalloc-dev")
endif()
find_program(HEAPKEEPER_OBJCOPY NAMES objcopy REQUIRED)

set(_hk_renamed_symbols
  malloc free calloc realloc aligned_alloc posix_memalign memalign valloc malloc_usable_size
  mallocx rallocx xallocx sallocx dallocx sdallocx nallocx mallctl mallctlnametomib mallctlbymib
  malloc_stats_print malloc_conf malloc_conf_2_conf_harder malloc_message
  _ZdaPv _ZdaPvRKSt9nothrow_t _ZdaPvSt11align_val_t _ZdaPvSt11align_val_tRKSt9nothrow_t _ZdaPvm
  _ZdaPvmSt11align_val_t _ZdlPv _ZdlPvRKSt9nothrow_t _ZdlPvSt11align_val_t
  _ZdlPvSt11align_val_tRKSt9nothrow_t _ZdlPvm _ZdlPvmSt11align_val_t _Znam _ZnamRKSt9nothrow_t
  _ZnamSt11align_val_t _ZnamSt11align_val_tRKSt9nothrow_t _Znwm _ZnwmRKSt9nothrow_t
  _ZnwmSt11align_val_t _ZnwmSt11align_val_tRKSt9nothrow_t)
set(_hk_rename_map "")
foreach(sym IN LISTS _hk_renamed_symbols)
  string(APPEND _hk_rename_map "${sym} hk_je_${sym}\n")
endforeach()
# jemalloc's own mappings (its metadata) go through heapkeeper, which records them as internal
# memory that the collector never scans (allocator/internal_mappings.cpp).
string(APPEND _hk_rename_map "mmap hk_je_os_mmap\nmunmap hk_je_os_munmap\n")
# jemalloc's boot registers its fork handlers: heapkeeper takes them and runs them from its own,
# or leaves them out of a fork no other thread can disturb (allocator/quiet_fork.h).
string(APPEND _hk_rename_map "pthread_atfork hk_je_pthread_atfork\n")
file(WRITE ${CMAKE_BINARY_DIR}/jemalloc-rename.txt "${_hk_rename_map}")

set(HEAPKEEPER_JEMALLOC_ARCHIVE ${CMAKE_BINARY_DIR}/lib/libheapkeeper_jemalloc.a)
add_custom_command(
  OUTPUT ${HEAPKEEPER_JEMALLOC_ARCHIVE}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/lib
  COMMAND ${HEAPKEEPER_OBJCOPY} --redefine-syms=${CMAKE_BINARY_DIR}/jemalloc-rename.txt
          ${HEAPKEEPER_JEMALLOC_PIC_ARCHIVE} ${HEAPKEEPER_JEMALLOC_ARCHIVE}
  DEPENDS ${HEAPKEEPER_JEMALLOC_PIC_ARCHIVE} ${CMAKE_BINARY_DIR}/jemalloc-rename.txt
  COMMENT "Renaming Debian's jemalloc into a private copy (hk_je_*)")
add_custom_target(heapkeeper_jemalloc_archive DEPENDS ${HEAPKEEPER_JEMALLOC_ARCHIVE})

add_library(heapkeeper_jemalloc STATIC IMPORTED GLOBAL)
set_target_properties(heapkeeper_jemalloc PROPERTIES IMPORTED_LOCATION ${HEAPKEEPER_JEMALLOC_ARCHIVE})
add_dependencies(heapkeeper_jemalloc heapkeeper_jemalloc_archive)
target_link_libraries(heapkeeper_jemalloc INTERFACE Threads::Threads dl m)

# Sanitizer builds: everything that runs outside the traced program (the unit tests, the stats
# tests and the `heapkeeper` command) can be built with AddressSanitizer + UndefinedBehaviorSanitizer
# or with ThreadSanitizer. The code injected into targets (libheapkeeper.so and the engine,
# collector, report and stats libraries it links) never is: a sanitizer's runtime replaces malloc and
# watches every thread, so it could run neither under nor instead of the preload library. The
# preloaded end-to-end tests therefore stay out of sanitizer runs (heaptrack's "no_asan" group);
# scripts/test.sh builds only the sanitizable targets in build-asan and build-tsan.
#
# Every finding is fatal: -fno-sanitize-recover makes UBSan abort like ASan and TSan, so CTest sees
# a failed test, never a warning in a log nobody reads.

set(HEAPKEEPER_SANITIZE OFF CACHE STRING
    "Sanitize the unit tests and the viewer (never the preload library): OFF, address (ASan and UBSan; ON means the same) or thread (TSan).")
set_property(CACHE HEAPKEEPER_SANITIZE PROPERTY STRINGS OFF ON address thread)

string(TOLOWER "${HEAPKEEPER_SANITIZE}" _hk_sanitize)
if(_hk_sanitize STREQUAL "on" OR _hk_sanitize STREQUAL "address")
  set(HEAPKEEPER_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  set(HEAPKEEPER_SANITIZER_LINK_FLAGS -fsanitize=address,undefined)
elseif(_hk_sanitize STREQUAL "thread")
  # GCC warns that ThreadSanitizer does not model std::atomic_thread_fence (-Wtsan). The only fences
  # in sanitized code are the seqlock's (stats/shm_layout.h), whose data is itself copied with atomic
  # loads and stores, so TSan has no plain access to miss there.
  set(HEAPKEEPER_SANITIZER_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    list(APPEND HEAPKEEPER_SANITIZER_FLAGS $<$<COMPILE_LANGUAGE:CXX>:-Wno-tsan>)
  endif()
  set(HEAPKEEPER_SANITIZER_LINK_FLAGS -fsanitize=thread)
elseif(_hk_sanitize STREQUAL "off" OR _hk_sanitize STREQUAL "")
  set(HEAPKEEPER_SANITIZER_LINK_FLAGS "")
else()
  message(FATAL_ERROR "HEAPKEEPER_SANITIZE=${HEAPKEEPER_SANITIZE}: expected OFF, address or thread")
endif()

# Sanitizer flags given globally would instrument the preload library too: refuse them.
foreach(_hk_flags_variable CMAKE_C_FLAGS CMAKE_CXX_FLAGS CMAKE_SHARED_LINKER_FLAGS)
  if("${${_hk_flags_variable}}" MATCHES "-fsanitize")
    message(FATAL_ERROR "${_hk_flags_variable} holds -fsanitize, which would instrument libheapkeeper.so; "
                        "use -DHEAPKEEPER_SANITIZE=address|thread instead")
  endif()
endforeach()

# heapkeeper_sanitize(TARGET...): builds and links each target with the configured sanitizer. Only
# for code that never runs inside a traced program.
function(heapkeeper_sanitize)
  if(NOT HEAPKEEPER_SANITIZER_LINK_FLAGS)
    return()
  endif()
  foreach(target IN LISTS ARGN)
    target_compile_options(${target} PRIVATE ${HEAPKEEPER_SANITIZER_FLAGS})
    target_link_options(${target} PRIVATE ${HEAPKEEPER_SANITIZER_LINK_FLAGS})
    # Executables carry the runtimes' default options (a finding fails the run).
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "EXECUTABLE")
      target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/tests/sanitizer_options.c)
    endif()
  endforeach()
endfunction()

# Called once every target exists: the libraries injected into targets must carry no sanitizer flag.
function(heapkeeper_check_unsanitized)
  foreach(target IN LISTS ARGN)
    get_target_property(options ${target} COMPILE_OPTIONS)
    get_target_property(link_options ${target} LINK_OPTIONS)
    if("${options};${link_options}" MATCHES "-fsanitize")
      message(FATAL_ERROR "${target} is injected into traced programs and must never be sanitized")
    endif()
  endforeach()
endfunction()

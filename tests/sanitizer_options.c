/* Default options of the sanitizer runtimes, compiled into every sanitized target (see
 * cmake/Sanitizers.cmake). Each runtime asks its __*_default_options function once at start-up;
 * ASAN_OPTIONS, UBSAN_OPTIONS and TSAN_OPTIONS still override them.
 *
 * A finding must fail the test that made it: ASan and UBSan (built with -fno-sanitize-recover) stop
 * at the first error already; TSan would only print each race and carry on, and a test printing
 * races while passing is exactly the failure nobody reads. */
/* The runtimes look these up in the executable's dynamic symbol table: never hidden. */
#define HK_SANITIZER_DEFAULTS __attribute__((visibility("default"), used))

HK_SANITIZER_DEFAULTS const char* __asan_default_options(void) {
  return "halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1";
}

HK_SANITIZER_DEFAULTS const char* __ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1"; }

HK_SANITIZER_DEFAULTS const char* __tsan_default_options(void) { return "halt_on_error=1:second_deadlock_stack=1"; }

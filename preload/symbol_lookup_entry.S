// The exported dlsym and dlvsym: assembly, so that what they forward reaches glibc unchanged.
//
// glibc's dlsym resolves RTLD_NEXT (and picks the scope for RTLD_DEFAULT) from its own return
// address: the object that called it. A C wrapper calling the original would make every lookup
// look as if libheapkeeper.so had made it. These entry points ask
// heapkeeper_route_symbol_lookup (symbol_lookup.cpp) whether the name is one heapkeeper
// answers itself; if not, they restore the arguments and jump to the original, whose return
// address is then still the program's. Only x86-64 has them (see hooked_functions.h).
#if defined(__x86_64__)

        .text
        .hidden heapkeeper_route_symbol_lookup
        .hidden heapkeeper_real_dlsym
        .hidden heapkeeper_real_dlvsym

// void* dlsym(void* handle, const char* name)
        .p2align 4
        .globl  dlsym
        .type   dlsym, @function
dlsym:
        .cfi_startproc
#ifdef __CET__
        endbr64
#endif
        pushq   %rdi
        .cfi_adjust_cfa_offset 8
        pushq   %rsi
        .cfi_adjust_cfa_offset 8
        pushq   %rdx                    // three pushes keep the stack 16-byte aligned for the call
        .cfi_adjust_cfa_offset 8
        movq    24(%rsp), %rcx          // the caller's return address
        xorl    %edx, %edx              // no version
        call    heapkeeper_route_symbol_lookup
        popq    %rdx
        .cfi_adjust_cfa_offset -8
        popq    %rsi
        .cfi_adjust_cfa_offset -8
        popq    %rdi
        .cfi_adjust_cfa_offset -8
        testq   %rax, %rax
        jz      1f
        ret
1:      jmp     *heapkeeper_real_dlsym(%rip)
        .cfi_endproc
        .size   dlsym, .-dlsym

// void* dlvsym(void* handle, const char* name, const char* version)
        .p2align 4
        .globl  dlvsym
        .type   dlvsym, @function
dlvsym:
        .cfi_startproc
#ifdef __CET__
        endbr64
#endif
        pushq   %rdi
        .cfi_adjust_cfa_offset 8
        pushq   %rsi
        .cfi_adjust_cfa_offset 8
        pushq   %rdx
        .cfi_adjust_cfa_offset 8
        movq    24(%rsp), %rcx
        call    heapkeeper_route_symbol_lookup
        popq    %rdx
        .cfi_adjust_cfa_offset -8
        popq    %rsi
        .cfi_adjust_cfa_offset -8
        popq    %rdi
        .cfi_adjust_cfa_offset -8
        testq   %rax, %rax
        jz      1f
        ret
1:      jmp     *heapkeeper_real_dlvsym(%rip)
        .cfi_endproc
        .size   dlvsym, .-dlvsym

#endif

        .section .note.GNU-stack, "", @progbits

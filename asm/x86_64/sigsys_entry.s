# The SIGSYS entry.  The kernel enters it as an SA_SIGINFO handler: rdi = the
# signal number, rsi = siginfo, rdx = ucontext, and a return address of
# sud_restorer on the stack, RSP 8 bytes off 16-byte alignment.  It calls
# the Rust dispatcher with (siginfo, ucontext), then jumps to the restorer:
# a call and return that match, and a direct jump, where a `ret` to the
# kernel-made return address would be mispredicted on every trap.  Before the
# jump RSP is where a `ret` would leave it: past the padding and the return
# address, which the CFI still finds just below RSP, so that an unwinder
# goes on into the restorer's signal frame.
# It makes no syscall, so it need not lie in the allowed region.

    .pushsection .text.sud_sigsys_entry, "ax", @progbits
    .globl sud_sigsys_entry
    .type sud_sigsys_entry, @function
    .p2align 4
sud_sigsys_entry:
    .cfi_startproc
    mov rdi, rsi
    mov rsi, rdx
    lea rsp, [rsp - 8]          # 16-byte alignment for the call
    .cfi_adjust_cfa_offset 8
    call {DISPATCH}
    lea rsp, [rsp + 16]
    .cfi_adjust_cfa_offset -16
    jmp {RESTORER}
    .cfi_endproc
    .size sud_sigsys_entry, . - sud_sigsys_entry
    .popsection

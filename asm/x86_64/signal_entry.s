# The entry of every handler sud installs but SIGSYS's (host handlers and
# guest handlers).  Like sud_sigsys_entry it is asm so that the layers that
# install it (dispositions) know its address without knowing the Rust code it
# calls (signals): the kernel enters it as an SA_SIGINFO handler, rdi = the
# signal, rsi = siginfo, rdx = ucontext, with sud_restorer as the return
# address; it passes all three on, then jumps to the restorer, a direct
# jump where a `ret` to the kernel-made return address would be mispredicted.
# It makes no syscall, so it need not lie in the allowed region.

    .pushsection .text.sud_signal_entry, "ax", @progbits
    .globl sud_signal_entry
    .type sud_signal_entry, @function
    .p2align 4
sud_signal_entry:
    .cfi_startproc
    lea rsp, [rsp - 8]                  # 16-byte alignment for the call
    .cfi_adjust_cfa_offset 8
    call {ON_SIGNAL}
    lea rsp, [rsp + 16]                 # RSP as `ret` would leave it, above the return address
    .cfi_adjust_cfa_offset -16
    jmp {RESTORER}
    .cfi_endproc
    .size sud_signal_entry, . - sud_signal_entry
    .popsection

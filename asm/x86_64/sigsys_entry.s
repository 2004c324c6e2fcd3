# The SIGSYS entry.  The kernel enters it as an SA_SIGINFO handler: rdi = the
# signal number, rsi = siginfo, rdx = ucontext, and a return address of
# sud_restorer on the stack, RSP 8 bytes off 16-byte alignment.  It calls
# the Rust dispatcher with (siginfo, ucontext), then jumps to the restorer:
# a call and return that match, and a direct jump, where a `ret` to the
# kernel-made return address would be mispredicted on every trap.
# It makes no syscall, so it need not lie in the allowed region.

    .pushsection .text.sud_sigsys_entry, "ax", @progbits
    .globl sud_sigsys_entry
    .type sud_sigsys_entry, @function
    .p2align 4
sud_sigsys_entry:
    mov rdi, rsi                # first argument: siginfo
    mov rsi, rdx                # second argument: ucontext
    lea rsp, [rsp - 8]          # 16-byte alignment for the call
    call {DISPATCH}                     # the dispatcher: the callback decides
    lea rsp, [rsp + 16]         # the padding and the return address: RSP as `ret` would leave it
    jmp {RESTORER}              # rt_sigreturn, with RSP just above the frame's return address
    .size sud_sigsys_entry, . - sud_sigsys_entry
    .popsection

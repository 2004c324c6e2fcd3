# The SIGSYS entry.  The kernel enters it as an SA_SIGINFO handler: rdi = the
# signal number, rsi = siginfo, rdx = ucontext, and a return address of
# sud_restorer on the stack.  It hands (siginfo, ucontext) to the Rust
# dispatcher, whose own `ret` then goes straight to the restorer.
# It makes no syscall, so it need not lie in the allowed region.

    .pushsection .text.sud_sigsys_entry, "ax", @progbits
    .globl sud_sigsys_entry
    .type sud_sigsys_entry, @function
    .p2align 4
sud_sigsys_entry:
    mov rdi, rsi                # first argument: siginfo
    mov rsi, rdx                # second argument: ucontext
    jmp {DISPATCH}              # tail call: the stack is as the kernel built it, aligned for a call
    .size sud_sigsys_entry, . - sud_sigsys_entry
    .popsection

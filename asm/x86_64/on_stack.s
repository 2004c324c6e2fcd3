# sud_call_on_stack(arg, function, stack_end): calls function(arg) with RSP
# at stack_end, rounded down to 16 bytes, and returns on the caller's stack.
# sud_entry's redirect runs the redirect function on the thread's redirect
# stack through it, as the signal path does with sud_redirect_on_stack.
# RBP holds the caller's stack meanwhile, and the CFI follows it there, so
# that a backtrace from the function goes on into the caller.
# It makes no syscall, so it need not lie in the allowed region.

    .pushsection .text.sud_call_on_stack, "ax", @progbits
    .globl sud_call_on_stack
    .type sud_call_on_stack, @function
    .p2align 4
sud_call_on_stack:
    .cfi_startproc
    push rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbp, 0
    mov rbp, rsp
    .cfi_def_cfa_register rbp
    mov rsp, rdx
    and rsp, -16                # the ABI's alignment at the call
    call rsi
    mov rsp, rbp
    .cfi_def_cfa_register rsp
    pop rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore rbp
    ret
    .cfi_endproc
    .size sud_call_on_stack, . - sud_call_on_stack
    .popsection

# The rt_sigreturn restorer of every handler sud installs.  x86-64 exempts no
# rt_sigreturn from dispatch, so the restorer lives in the allowed region.
# Its first nine bytes are exactly 48 c7 c0 0f 00 00 00 0f 05, the sequence
# debuggers and unwinders recognise as the return address of a signal frame
# when no unwind table covers it.
#
# It has one, as glibc's __restore_rt does: a signal frame (`S`) whose rules
# find the interrupted code's registers, RSP and rip in the sigcontext
# (uc_mcontext), since RSP points to the ucontext here (the handler's
# return, or sud_sigsys_entry's jump, took the return address off).
# Unwinders look a caller up at its return address - 1, so the table starts
# at a `nop` placed before the restorer (the interrupted instruction, a
# signal frame's "return address", is looked up as it is).  A symbolizer
# names the frame by that byte too: sud_signal_frame, a local symbol, rather
# than whatever comes before it.

    .pushsection sud_allowed, "axR", @progbits
    .type sud_signal_frame, @function
sud_signal_frame:
    .cfi_startproc
    .cfi_signal_frame
    cfi_registers_at 7, {UC_MCONTEXT}
    nop
    .globl sud_restorer
    .type sud_restorer, @function
    .p2align 4
sud_restorer:
    mov rax, {NR_RT_SIGRETURN}
    syscall
    ud2                         # never reached; keeps the region going past the syscall
    .cfi_endproc
    .size sud_restorer, . - sud_restorer
    .size sud_signal_frame, sud_restorer - sud_signal_frame
    .popsection

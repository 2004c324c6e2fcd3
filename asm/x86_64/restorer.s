# The rt_sigreturn restorer of every handler sud installs.  x86-64 exempts no
# rt_sigreturn from dispatch, so the restorer lives in the allowed region.
# Its first nine bytes are exactly 48 c7 c0 0f 00 00 00 0f 05, the sequence
# debuggers and unwinders recognise as the return address of a signal frame.

    .pushsection sud_allowed, "axR", @progbits
    .globl sud_restorer
    .type sud_restorer, @function
    .p2align 4
sud_restorer:
    mov rax, {NR_RT_SIGRETURN}  # rt_sigreturn reinstalls the frame's registers, mask and altstack
    syscall                     # allowed region: runs even while the selector says BLOCK
    ud2                         # never reached; keeps the region going past the syscall
    .size sud_restorer, . - sud_restorer
    .popsection

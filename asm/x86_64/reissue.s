# Reissue stubs: rt_sigreturn returns into one of them, outside signal
# context, to run a trapped guest syscall natively with the guest's registers.
# A syscall run here can block, be interrupted (EINTR) and be restarted
# (SA_RESTART sends the kernel back to this very `syscall`), and it runs under
# the guest's signal mask, exactly as the guest's own `syscall` would have.

    .pushsection sud_allowed, "axR", @progbits

# sud_reissue: entered with every register as the guest had it at its
# `syscall`, except RSP = guest RSP - {RED_ZONE} - 8, where the dispatcher
# stored the guest's return address.  The slot lies below the guest's red
# zone, so no byte the guest owns is written, and a signal that interrupts
# the syscall puts its frame below RSP - {RED_ZONE}, so the slot survives it.
    .globl sud_reissue
    .type sud_reissue, @function
    .p2align 4
sud_reissue:
    syscall                     # the guest's syscall, with the guest's arguments
    mov rcx, [rsp]              # rcx = the guest's return address, as a native syscall leaves it; mov keeps the flags
    ret {RED_ZONE}              # back to the guest, and RSP back over the slot and the red zone in the same instruction
    .size sud_reissue, . - sud_reissue

# sud_reissue_sigreturn: a guest's own rt_sigreturn (the restorer of a handler
# outside the allowed region).  It needs the guest's RSP exactly, since the
# frame it reinstalls lies there, and it never returns.
    .globl sud_reissue_sigreturn
    .type sud_reissue_sigreturn, @function
    .p2align 4
sud_reissue_sigreturn:
    syscall                     # rax = rt_sigreturn, RSP = the guest's signal frame
    ud2                         # never reached; keeps the region going past the syscall
    .size sud_reissue_sigreturn, . - sud_reissue_sigreturn

    .popsection

# Reissue stubs: rt_sigreturn returns into one of them, outside signal
# context, to run a trapped guest syscall natively with the guest's registers.
# A syscall run here can block, be interrupted (EINTR) and be restarted
# (SA_RESTART sends the kernel back to this very `syscall`), and it runs under
# the guest's signal mask, exactly as the guest's own `syscall` would have.
# The task stubs (tasks.s) follow, and use back_to_guest too.

    .pushsection sud_allowed, "axR", @progbits

# The way back to the guest from a stub whose [rsp] is the guest's return
# address, just below the red zone: rcx = the return address, as a native
# syscall leaves it, RSP the guest's again, then a jump (not `ret`, which is
# mispredicted right after a syscall where the kernel refills the
# return-stack buffer).  Once rcx holds it, the slot may be overwritten.
.macro back_to_guest
    mov rcx, [rsp]                      # rcx = the return address; mov keeps the flags the kernel restored
    lea rsp, [rsp + 8 + {RED_ZONE}]     # over the slot and the red zone: the guest's RSP; lea keeps them too
    jmp rcx                             # to the guest, after its syscall
.endm

# sud_reissue: entered with every register as the guest had it at its
# `syscall`, except RCX = the guest's return address (the address after its
# `syscall`, which is where a native syscall leaves RCX pointing anyway).
# The dispatcher writes nothing to the guest's stack: right below the red
# zone lies the live signal frame (its XSAVE area ends there) until
# rt_sigreturn has read it.  The stub keeps the return address itself, below
# the red zone, once the frame is dead; a signal that interrupts the syscall
# builds its frame below RSP - {RED_ZONE}, so the slot survives it.
    .globl sud_reissue
    .type sud_reissue, @function
    .p2align 4
sud_reissue:
    lea rsp, [rsp - {RED_ZONE}]         # step over the guest's red zone; lea keeps the flags
    push rcx                            # the return address, across the syscall that overwrites rcx
    syscall                             # the guest's syscall, with the guest's arguments
    back_to_guest                       # rcx = return address, RSP the guest's
    .size sud_reissue, . - sud_reissue

# sud_reissue_keep_REG: as sud_reissue, for a syscall whose argument in REG
# the dispatcher replaced (by a pointer to a copy without SIGSYS in its signal
# mask); R11 holds the guest's own value, which REG gets back afterwards.
.macro reissue_keep reg
    .globl sud_reissue_keep_\reg
    .type sud_reissue_keep_\reg, @function
    .p2align 4
sud_reissue_keep_\reg:
    lea rsp, [rsp - {RED_ZONE}]         # step over the guest's red zone
    push rcx                            # the return address
    push r11                            # the guest's own value of the replaced argument
    syscall                             # the syscall, with the sanitised argument
    pop \reg                            # the guest's value back; pop keeps the flags
    back_to_guest                       # rcx = return address, RSP the guest's
    .size sud_reissue_keep_\reg, . - sud_reissue_keep_\reg
.endm

    reissue_keep rdi
    reissue_keep r10
    reissue_keep r8
    reissue_keep r9

# sud_reissue_set_altstack: a guest's sigaltstack, already answered by the
# dispatcher (RAX = 0); what is left is to install the alternate stack it
# chose, which cannot be done from the SIGSYS handler while it runs on the
# current one.  R11 = the stack_t to install.
    .globl sud_reissue_set_altstack
    .type sud_reissue_set_altstack, @function
    .p2align 4
sud_reissue_set_altstack:
    lea rsp, [rsp - {RED_ZONE}]         # step over the guest's red zone
    push rcx                            # the return address
    push rdi                            # the guest registers this syscall takes
    push rsi                            # (the second argument register)
    push rax                            # the guest's result
    mov rdi, r11                        # the new stack
    xor esi, esi                        # no old one wanted
    mov eax, {NR_SIGALTSTACK}           # sigaltstack(stack, NULL)
    syscall                             # validated by the dispatcher: it succeeds
    pop rax                             # the guest's result and registers back
    pop rsi                             # the guest's rsi
    pop rdi                             # the guest's rdi
    back_to_guest                       # rcx = return address, RSP the guest's
    .size sud_reissue_set_altstack, . - sud_reissue_set_altstack

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

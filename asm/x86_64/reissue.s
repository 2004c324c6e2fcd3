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

# sud_reissue_mask_REG: as sud_reissue, for a syscall that waits under the
# signal mask REG points to, when that mask holds SIGSYS.  R11 = the mask
# without SIGSYS; the stub keeps it on its own stack (no memory shared with
# another thread or a nested handler), points REG at it for the syscall, and
# gives REG the guest's pointer back afterwards.
.macro reissue_mask reg
    .globl sud_reissue_mask_\reg
    .type sud_reissue_mask_\reg, @function
    .p2align 4
sud_reissue_mask_\reg:
    lea rsp, [rsp - {RED_ZONE}]         # step over the guest's red zone
    push rcx                            # the return address
    push \reg                           # the guest's own pointer
    push r11                            # the mask without SIGSYS
    mov \reg, rsp                       # the syscall reads that one
    syscall                             # the syscall; a restart (SA_RESTART) reads the same copy
    lea rsp, [rsp + 8]                  # over the copy; lea keeps the flags
    pop \reg                            # the guest's pointer back; pop keeps the flags
    back_to_guest                       # rcx = return address, RSP the guest's
    .size sud_reissue_mask_\reg, . - sud_reissue_mask_\reg
.endm

    reissue_mask rdi                    # rt_sigsuspend
    reissue_mask r10                    # ppoll
    reissue_mask r8                     # epoll_pwait, epoll_pwait2, io_uring_enter

# sud_reissue_mask_pair: as sud_reissue_mask_REG for pselect6 and
# io_pgetevents, whose sixth argument (R9) points to a (mask pointer, size)
# pair: the stub builds the mask and the pair on its own stack.
    .globl sud_reissue_mask_pair
    .type sud_reissue_mask_pair, @function
    .p2align 4
sud_reissue_mask_pair:
    lea rsp, [rsp - {RED_ZONE}]         # step over the guest's red zone
    push rcx                            # the return address
    push r9                             # the guest's own pointer to its pair
    push r11                            # the mask without SIGSYS
    mov r9, rsp                         # its address, for the pair
    push {SIGSET_SIZE}                  # the pair: size
    push r9                             # and mask pointer
    mov r9, rsp                         # the syscall reads this pair
    syscall                             # the syscall
    lea rsp, [rsp + 24]                 # over the pair and the copy; lea keeps the flags
    pop r9                              # the guest's pointer back; pop keeps the flags
    back_to_guest                       # rcx = return address, RSP the guest's
    .size sud_reissue_mask_pair, . - sud_reissue_mask_pair

# sud_reissue_mask_uring_arg: io_uring_enter with IORING_ENTER_EXT_ARG,
# whose R8 points to a struct io_uring_getevents_arg (u64 sigmask, u32
# sigmask_sz, u32 min_wait_usec, u64 ts; R9 = its size, 24): the stub
# builds a copy on its own stack with `sigmask` pointing to the mask in R11.
# The dispatcher read the struct a moment ago; a guest that unmaps it in
# between (from another thread) faults here instead of getting EFAULT.
    .globl sud_reissue_mask_uring_arg
    .type sud_reissue_mask_uring_arg, @function
    .p2align 4
sud_reissue_mask_uring_arg:
    lea rsp, [rsp - {RED_ZONE}]         # step over the guest's red zone
    push rcx                            # the return address
    push r8                             # the guest's own pointer to its struct
    push r11                            # the mask without SIGSYS
    mov r11, rsp                        # its address, for the copy
    push qword ptr [r8 + {URING_ARG_TS}]         # the copy, from the top: ts
    push qword ptr [r8 + {URING_ARG_SIGMASK_SZ}] # sigmask_sz and min_wait_usec
    push r11                            # sigmask: the mask above (offset 0)
    mov r8, rsp                         # the syscall reads the copy
    syscall                             # the syscall
    lea rsp, [rsp + 32]                 # over the copy and the mask; lea keeps the flags
    pop r8                              # the guest's pointer back; pop keeps the flags
    back_to_guest                       # rcx = return address, RSP the guest's
    .size sud_reissue_mask_uring_arg, . - sud_reissue_mask_uring_arg

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

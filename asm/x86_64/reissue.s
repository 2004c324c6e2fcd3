# Reissue stubs: rt_sigreturn returns into one of them, outside signal
# context, to run a trapped guest syscall natively with the guest's registers.
# A syscall run here can block, be interrupted (EINTR) and be restarted
# (SA_RESTART sends the kernel back to this very `syscall`), and it runs under
# the guest's signal mask, exactly as the guest's own `syscall` would have.
# The task stubs (tasks.s) follow, and use back_to_guest too.
#
# Each stub is entered as if the guest's `syscall` had been a call that
# pushed nothing: RSP = the guest's, RCX = the guest's return address (the
# address after its `syscall`).  Their CFI says so, and then follows the
# return address into its slot below the red zone, so that a debugger
# unwinds from a thread blocked here into the guest's code.

    .pushsection sud_allowed, "axR", @progbits

# The way back to the guest from a stub whose [rsp] is the guest's return
# address, just below the red zone: rcx = the return address, as a native
# syscall leaves it, RSP the guest's again, then a jump (not `ret`, which is
# mispredicted right after a syscall where the kernel refills the
# return-stack buffer).  mov and lea keep the flags the kernel restored.
# Once rcx holds the return address, the slot may be overwritten.
# A stub's way in: RCX = the guest's return address (the dispatcher's),
# RSP = the guest's.  The return address goes just below the red zone,
# where back_to_guest takes it; lea, not sub, steps over the red zone: it
# keeps the guest's flags.  Opens the stub's FDE.
.macro stub_entry
    .cfi_startproc
    .cfi_def_cfa_offset 0
    .cfi_register rip, rcx
    lea rsp, [rsp - {RED_ZONE}]
    .cfi_adjust_cfa_offset {RED_ZONE}
    push rcx
    .cfi_adjust_cfa_offset 8
    .cfi_offset rip, -8-{RED_ZONE}
.endm

.macro back_to_guest
    mov rcx, [rsp]
    lea rsp, [rsp + 8 + {RED_ZONE}]
    .cfi_adjust_cfa_offset -8-{RED_ZONE}
    .cfi_register rip, rcx
    jmp rcx
.endm

# The guest's syscall in each stub that runs one ends at an offset from the
# stub's entry that src/reissue/guest_view.rs names (`*_END`, checked by its
# test), with the stub's frame there as it says: a seccomp trap of it is
# reported at that address, and turned into the guest's own.

# sud_reissue: every register as the guest had it at its `syscall`, except
# RCX = the guest's return address (where a native syscall leaves RCX
# pointing anyway).  The dispatcher writes nothing to the guest's stack:
# right below the red zone lies the live signal frame (its XSAVE area ends
# there) until rt_sigreturn has read it.  The stub keeps the return address
# itself, below the red zone, once the frame is dead; a signal that
# interrupts the syscall builds its frame below RSP - {RED_ZONE}, so the
# slot survives it.
    .globl sud_reissue
    .type sud_reissue, @function
    .p2align 4
sud_reissue:
    stub_entry
    syscall                             # ends at REISSUE_END
    back_to_guest
    .cfi_endproc
    .size sud_reissue, . - sud_reissue

# sud_reissue_mask_REG: as sud_reissue, for a syscall that waits under the
# signal mask REG points to, when that mask holds SIGSYS.  R11 = the mask
# without SIGSYS; the stub keeps it on its own stack (no memory shared with
# another thread or a nested handler), points REG at it for the syscall (a
# restart under SA_RESTART reads the same copy), and gives REG the guest's
# pointer back afterwards; mov and lea keep the flags.  At the syscall the
# return address is MASK_RETURN above RSP, the guest's REG just below it.
.macro reissue_mask reg
    .globl sud_reissue_mask_\reg
    .type sud_reissue_mask_\reg, @function
    .p2align 4
sud_reissue_mask_\reg:
    stub_entry
    push \reg
    .cfi_adjust_cfa_offset 8
    push r11
    .cfi_adjust_cfa_offset 8
    mov \reg, rsp
    syscall                             # ends at MASK_<REG>_END
    mov \reg, [rsp + {MASK_RETURN} - 8]
    lea rsp, [rsp + {MASK_RETURN}]
    .cfi_adjust_cfa_offset -{MASK_RETURN}
    back_to_guest
    .cfi_endproc
    .size sud_reissue_mask_\reg, . - sud_reissue_mask_\reg
.endm

    reissue_mask rdi                    # rt_sigsuspend
    reissue_mask r10                    # ppoll
    reissue_mask r8                     # epoll_pwait, epoll_pwait2, io_uring_enter

# sud_reissue_mask_pair: as sud_reissue_mask_REG for pselect6 and
# io_pgetevents, whose sixth argument (R9) points to a (mask pointer, size)
# pair: the stub builds the mask, then the pair pointing to it, on its own
# stack.  At the syscall the return address is PAIR_RETURN above RSP, the
# guest's R9 just below it.
    .globl sud_reissue_mask_pair
    .type sud_reissue_mask_pair, @function
    .p2align 4
sud_reissue_mask_pair:
    stub_entry
    push r9
    .cfi_adjust_cfa_offset 8
    push r11
    .cfi_adjust_cfa_offset 8
    mov r9, rsp
    push {SIGSET_SIZE}
    .cfi_adjust_cfa_offset 8
    push r9
    .cfi_adjust_cfa_offset 8
    mov r9, rsp
    syscall                             # ends at PAIR_END
    mov r9, [rsp + {PAIR_RETURN} - 8]
    lea rsp, [rsp + {PAIR_RETURN}]
    .cfi_adjust_cfa_offset -{PAIR_RETURN}
    back_to_guest
    .cfi_endproc
    .size sud_reissue_mask_pair, . - sud_reissue_mask_pair

# sud_reissue_mask_uring_arg: io_uring_enter with IORING_ENTER_EXT_ARG,
# whose R8 points to a struct io_uring_getevents_arg (u64 sigmask, u32
# sigmask_sz, u32 min_wait_usec, u64 ts; R9 = its size, 24): the stub
# builds a copy on its own stack, from the top down, with `sigmask` (offset
# 0) pointing to the mask in R11, pushed just above it.  At the syscall the
# return address is URING_RETURN above RSP, the guest's R8 just below it.
# The dispatcher read the struct a moment ago; a guest that unmaps it in
# between (from another thread) faults here instead of getting EFAULT.
    .globl sud_reissue_mask_uring_arg
    .type sud_reissue_mask_uring_arg, @function
    .p2align 4
sud_reissue_mask_uring_arg:
    stub_entry
    push r8
    .cfi_adjust_cfa_offset 8
    push r11
    .cfi_adjust_cfa_offset 8
    mov r11, rsp
    push qword ptr [r8 + {URING_ARG_TS}]
    .cfi_adjust_cfa_offset 8
    push qword ptr [r8 + {URING_ARG_SIGMASK_SZ}]    # sigmask_sz and min_wait_usec
    .cfi_adjust_cfa_offset 8
    push r11
    .cfi_adjust_cfa_offset 8
    mov r8, rsp
    syscall                             # ends at URING_END
    mov r8, [rsp + {URING_RETURN} - 8]
    lea rsp, [rsp + {URING_RETURN}]
    .cfi_adjust_cfa_offset -{URING_RETURN}
    back_to_guest
    .cfi_endproc
    .size sud_reissue_mask_uring_arg, . - sud_reissue_mask_uring_arg

# sud_reissue_sigreturn: a guest's own rt_sigreturn (the restorer of a handler
# outside the allowed region), RAX = rt_sigreturn.  It needs the guest's RSP
# exactly, since the frame it reinstalls lies there, and it never returns;
# the `ud2` keeps the region going past the `syscall`.  RSP points to the
# guest's ucontext, as at sud_restorer: the same signal-frame CFI (see
# restorer.s) describes the code that frame interrupted.
    .globl sud_reissue_sigreturn
    .type sud_reissue_sigreturn, @function
    .p2align 4
sud_reissue_sigreturn:
    .cfi_startproc
    .cfi_signal_frame
    cfi_registers_at 7, {UC_MCONTEXT}
    syscall
    ud2
    .cfi_endproc
    .size sud_reissue_sigreturn, . - sud_reissue_sigreturn

    .popsection

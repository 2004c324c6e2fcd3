# Syscall trampolines: syscalls that run natively whatever the selector says,
# because their `syscall` instruction lies in the allowed region.  The runtime
# makes all of its own syscalls through them; host and generated code may
# call them too.
#
# sud_syscall0 .. sud_syscall6 take the C calling convention:
#   rdi = syscall number; rsi, rdx, rcx, r8, r9, [rsp + 8] = arguments 1 to 6;
#   rax = the kernel's raw result (-4095 to -1 is -errno).  They clobber only
#   registers a C call may clobber.
# sud_syscall takes the registers of the `syscall` instruction itself:
#   rax = number; rdi, rsi, rdx, r10, r8, r9 = arguments 1 to 6; rax = result;
#   it clobbers rcx and r11 only, as `syscall` does, so generated code can
#   replace a `syscall` by `call sud_syscall` when it needs a native call.
#
# None of them returns with `ret`: a `ret` right after a syscall is
# mispredicted wherever the kernel refills the return-stack buffer on its
# way back to user space (SRSO and Spectre-v2 mitigations), which costs
# about as much as the syscall itself.  They keep the return address in a
# register the syscall leaves alone and jump to it.

    .pushsection sud_allowed, "axR", @progbits

# One C-convention trampoline taking `nargs` arguments after the number.
.macro sud_trampoline name, nargs
    .globl \name                        # exported: generated code calls it by name
    .type \name, @function
    .p2align 4
\name:
    mov rax, rdi                # the kernel takes the syscall number in rax
.if \nargs >= 1
    mov rdi, rsi                # argument 1
.endif
.if \nargs >= 2
    mov rsi, rdx                # argument 2
.endif
.if \nargs >= 3
    mov rdx, rcx                # argument 3
.endif
.if \nargs >= 4
    mov r10, r8                 # argument 4 goes in r10: `syscall` overwrites rcx
.endif
.if \nargs >= 5
    mov r8, r9                  # argument 5
.endif
.if \nargs <= 5
    pop r9                      # the return address, in a register this syscall leaves alone
    syscall                     # inside the allowed region: never dispatched
    jmp r9                      # back to the caller, result in rax
.else
    mov r9, [rsp + 8]           # argument 6, the caller's first stack argument
    push rbx                    # no argument register is free: borrow rbx (callee-saved)
    mov rbx, [rsp + 8]          # the return address
    syscall                     # inside the allowed region: never dispatched
    mov rcx, rbx                # the return address, in rcx as the syscall left it clobbered
    pop rbx                             # the caller's rbx back
    lea rsp, [rsp + 8]          # drop the return address, as `ret` would
    jmp rcx                     # back to the caller, result in rax
.endif
    .size \name, . - \name
.endm

    sud_trampoline sud_syscall0, 0
    sud_trampoline sud_syscall1, 1
    sud_trampoline sud_syscall2, 2
    sud_trampoline sud_syscall3, 3
    sud_trampoline sud_syscall4, 4
    sud_trampoline sud_syscall5, 5
    sud_trampoline sud_syscall6, 6

    .globl sud_syscall
    .type sud_syscall, @function
    .p2align 4
sud_syscall:
    push rbx                    # every register but rcx and r11 is kept: borrow rbx
    mov rbx, [rsp + 8]          # the return address
    syscall                     # the caller already loaded the kernel's registers
    mov rcx, rbx                # rcx = the return address, as a `syscall` leaves it
    pop rbx                             # the caller's rbx back
    lea rsp, [rsp + 8]          # drop the return address; lea keeps the flags
    jmp rcx                     # result in rax, r11 = RFLAGS, as after a `syscall`
    .size sud_syscall, . - sud_syscall

    .popsection

# A host thread running a guest thread (Thread::run_guest): sud_run_guest
# enters guest code at a register state, and sud_leave_guest, where the
# guest's exit goes, comes back out of it as if sud_run_guest returned.
# Neither makes a syscall, so neither need lie in the allowed region.

    .pushsection .text.sud_guest_thread, "ax", @progbits

# sud_run_guest(rdi = the guest's Registers, rsi = a HostContext): keeps
# the callee-saved registers and RSP in the HostContext (offsets HOST_*),
# then loads every register of the guest's, RFLAGS first and RSP and RDI
# last, and jumps to its RIP with RCX = RIP and R11 = RFLAGS, as a native
# clone leaves the child.  It returns only through sud_leave_guest.
    .globl sud_run_guest
    .type sud_run_guest, @function
    .p2align 4
sud_run_guest:
    .cfi_startproc
    mov [rsi + {HOST_RSP}], rsp
    mov [rsi + {HOST_RBX}], rbx
    mov [rsi + {HOST_RBP}], rbp
    mov [rsi + {HOST_R12}], r12
    mov [rsi + {HOST_R13}], r13
    mov [rsi + {HOST_R14}], r14
    mov [rsi + {HOST_R15}], r15
    push qword ptr [rdi + {REGS_RFLAGS}]
    .cfi_adjust_cfa_offset 8
    popfq
    .cfi_adjust_cfa_offset -8
    mov rax, [rdi + {REGS_RAX}]
    mov rbx, [rdi + {REGS_RBX}]
    mov rdx, [rdi + {REGS_RDX}]
    mov rsi, [rdi + {REGS_RSI}]
    mov rbp, [rdi + {REGS_RBP}]
    mov r8, [rdi + {REGS_R8}]
    mov r9, [rdi + {REGS_R9}]
    mov r10, [rdi + {REGS_R10}]
    mov r11, [rdi + {REGS_RFLAGS}]
    mov r12, [rdi + {REGS_R12}]
    mov r13, [rdi + {REGS_R13}]
    mov r14, [rdi + {REGS_R14}]
    mov r15, [rdi + {REGS_R15}]
    mov rcx, [rdi + {REGS_RIP}]
    mov rsp, [rdi + {REGS_RSP}]
    .cfi_undefined rip                  # the guest thread has no caller
    mov rdi, [rdi + {REGS_RDI}]
    jmp rcx
    .cfi_endproc
    .size sud_run_guest, . - sud_run_guest

# sud_leave_guest: the guest thread's exit, reissued here instead of run
# (rt_sigreturn comes here).  RDI = the exit status, R11 = the HostContext
# sud_run_guest filled: back on the host's stack with its callee-saved
# registers, it returns the status from sud_run_guest.
    .globl sud_leave_guest
    .type sud_leave_guest, @function
    .p2align 4
sud_leave_guest:
    .cfi_startproc
    .cfi_undefined rip
    mov eax, edi
    mov rsp, [r11 + {HOST_RSP}]
    mov rbx, [r11 + {HOST_RBX}]
    mov rbp, [r11 + {HOST_RBP}]
    mov r12, [r11 + {HOST_R12}]
    mov r13, [r11 + {HOST_R13}]
    mov r14, [r11 + {HOST_R14}]
    mov r15, [r11 + {HOST_R15}]
    .cfi_def_cfa rsp, 8
    .cfi_offset rip, -8
    cld
    ret
    .cfi_endproc
    .size sud_leave_guest, . - sud_leave_guest

    .popsection

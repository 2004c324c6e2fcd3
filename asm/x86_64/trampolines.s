# Syscall trampolines: syscalls that run natively whatever the selector says,
# because their `syscall` instruction lies in the allowed region.  The runtime
# makes all of its own syscalls through them; host and generated code may
# call them too (they are exported, by name, for that).
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
# register the syscall leaves alone and jump to it; their CFI follows it
# from the stack into that register, so that a debugger unwinds from a
# thread blocked in one of them.

# CFI helpers for this file and the ones after it, which come in one
# `global_asm!` in a fixed order.  The unwinder finds a caller through
# rules that say where the caller's RSP (the CFA) and return address are.
# Where they sit in memory at an address held in a register (a signal
# frame's sigcontext, the frame of sud_entry and the redirect stubs), the
# rules are DWARF expressions, which the assembler only takes as raw bytes:
# DW_CFA_def_cfa_expression (0x0f) and DW_CFA_expression (0x10), each with
# DW_OP_breg<base> (0x70 + base) and a signed LEB128 offset, here always two
# bytes long so that any offset from Rust below 8 KiB fits.
# DWARF register numbers: 0 rax, 1 rdx, 2 rcx, 3 rbx, 4 rsi, 5 rdi, 6 rbp,
# 7 rsp, 8 to 15 r8 to r15, 16 the return address.
#
# Registers a stub saves around its own syscalls are not described when the
# C ABI lets a call clobber them: no unwinder looks for those in a caller.

# The CFA is the word at base + offset.
.macro cfi_cfa_at base, offset
.if (\offset) < 0 || (\offset) >= 8192
    .error "cfi_cfa_at: offset out of range"
.endif
    .cfi_escape 0x0f, 4, 0x70 + \base, ((\offset) & 0x7f) | 0x80, (\offset) >> 7, 0x06
.endm

# Register reg was saved at base + offset.
.macro cfi_saved_at reg, base, offset
.if (\offset) < 0 || (\offset) >= 8192
    .error "cfi_saved_at: offset out of range"
.endif
    .cfi_escape 0x10, \reg, 3, 0x70 + \base, ((\offset) & 0x7f) | 0x80, (\offset) >> 7
.endm

# A `Registers` block (REGS_* offsets: the kernel's sigcontext order) at
# base + offset holds the caller's RSP, its return address (rip) and every
# general register it had.
.macro cfi_registers_at base, offset
    cfi_cfa_at \base, \offset+{REGS_RSP}
    cfi_saved_at 0, \base, \offset+{REGS_RAX}
    cfi_saved_at 1, \base, \offset+{REGS_RDX}
    cfi_saved_at 2, \base, \offset+{REGS_RCX}
    cfi_saved_at 3, \base, \offset+{REGS_RBX}
    cfi_saved_at 4, \base, \offset+{REGS_RSI}
    cfi_saved_at 5, \base, \offset+{REGS_RDI}
    cfi_saved_at 6, \base, \offset+{REGS_RBP}
    cfi_saved_at 7, \base, \offset+{REGS_RSP}
    cfi_saved_at 8, \base, \offset+{REGS_R8}
    cfi_saved_at 9, \base, \offset+{REGS_R9}
    cfi_saved_at 10, \base, \offset+{REGS_R10}
    cfi_saved_at 11, \base, \offset+{REGS_R11}
    cfi_saved_at 12, \base, \offset+{REGS_R12}
    cfi_saved_at 13, \base, \offset+{REGS_R13}
    cfi_saved_at 14, \base, \offset+{REGS_R14}
    cfi_saved_at 15, \base, \offset+{REGS_R15}
    cfi_saved_at 16, \base, \offset+{REGS_RIP}
.endm

    .pushsection sud_allowed, "axR", @progbits

# The syscall, at [rsp] the caller's return address and every argument
# register taken: rbx (callee-saved, so pushed first) carries the return
# address across the syscall, rcx (clobbered by the syscall anyway) from
# there on, and the return is a jump.  pop, mov and lea leave alone the
# RFLAGS the kernel restored.
.macro syscall_returning_in_rcx
    push rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbx, 0
    mov rbx, [rsp + 8]
    syscall
    mov rcx, rbx
    pop rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore rbx
    lea rsp, [rsp + 8]
    .cfi_adjust_cfa_offset -8
    .cfi_register rip, rcx
    jmp rcx
.endm

# One C-convention trampoline taking `nargs` arguments after the number: each
# argument moves one register down, the fourth into r10 because `syscall`
# overwrites rcx.
.macro sud_trampoline name, nargs
    .globl \name
    .type \name, @function
    .p2align 4
\name:
    .cfi_startproc
    mov rax, rdi
.if \nargs >= 1
    mov rdi, rsi
.endif
.if \nargs >= 2
    mov rsi, rdx
.endif
.if \nargs >= 3
    mov rdx, rcx
.endif
.if \nargs >= 4
    mov r10, r8
.endif
.if \nargs >= 5
    mov r8, r9
.endif
.if \nargs <= 5
    # r9 is free: it carries the return address across the syscall.
    pop r9
    .cfi_adjust_cfa_offset -8
    .cfi_register rip, r9
    syscall
    jmp r9
.else
    # Every argument register is taken.
    mov r9, [rsp + 8]           # argument 6, the caller's first stack argument
    syscall_returning_in_rcx
.endif
    .cfi_endproc
    .size \name, . - \name
.endm

    sud_trampoline sud_syscall0, 0
    sud_trampoline sud_syscall1, 1
    sud_trampoline sud_syscall2, 2
    sud_trampoline sud_syscall3, 3
    sud_trampoline sud_syscall4, 4
    sud_trampoline sud_syscall5, 5
    sud_trampoline sud_syscall6, 6

# sud_syscall: the return address travels as in sud_syscall6, and ends in
# rcx, as a `syscall` leaves it.  Every register but rcx and r11 is the
# caller's, and so are the flags: pop, mov and lea leave alone the RFLAGS
# the kernel restored, which r11 also holds, as after a `syscall`.
    .globl sud_syscall
    .type sud_syscall, @function
    .p2align 4
sud_syscall:
    .cfi_startproc
    syscall_returning_in_rcx
    .cfi_endproc
    .size sud_syscall, . - sud_syscall

    .popsection

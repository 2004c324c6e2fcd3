# The extended state of the direct paths (sud_entry, redirect, rewritten
# sites): saved below the frame before Rust runs, restored after, exactly.
# Two ways, picked once by src/xsave.rs (XSAVE_MODE):
#
# - REGISTERS, where XGETBV can read XINUSE and the kernel enables no
#   component but x87, SSE, AVX and AVX-512: the vector, mask and MXCSR
#   registers the guest has in use are stored and loaded with plain moves,
#   a few times cheaper than XSAVEC + XRSTOR (XRSTOR alone costs about 100
#   ns on the machines measured).  Components the guest had in their
#   initial state and Rust took out of it go back with VZEROUPPER (the
#   upper halves) or an XRSTOR of the initial state (x87, masks, zmm16-31):
#   the guest finds every value, and XINUSE, as it left them.  An x87 in
#   use (rare: a pending `long double`) takes the XSAVE way instead, for
#   that call.
# - XSAVEC, XSAVE or FXSAVE of every component, and XRSTOR / FXRSTOR.
#
# The area's layout for REGISTERS is src/xsave.rs's (REGS_*): the slot
# at XSAVE_HEADER stays free for the header of the initial-state XRSTOR.

# Moves `insn` between each register `prefix`N, N in `regs` (from `first`
# on, consecutive), and its slot: `base` + 64 * (N - `first`) above RSP.
# (In the routines below, RSP is 8 bytes under the area: their callers'
# `call`.)
.macro vector_slots insn, prefix, base, first, load, regs:vararg
    .irp n, \regs
    .if \load
    \insn \prefix\n, [rsp + \base + (\n - \first) * 64]
    .else
    \insn [rsp + \base + (\n - \first) * 64], \prefix\n
    .endif
    .endr
.endm

# Every vector register the guest has in use (R13 = XINUSE), to its slot
# (load 0) or back (load 1); the area starts 8 bytes above RSP.
.macro vector_registers load
    test r13d, {XCOMP_ZMM_HI256}
    jz 81f
    vector_slots vmovdqa64, zmm, {REGS_V0} + 8, 0, \load, 0,1,2,3,4,5,6,7
    vector_slots vmovdqa64, zmm, {REGS_V8} + 8, 8, \load, 8,9,10,11,12,13,14,15
    jmp 83f
81:
    test r13d, {XCOMP_AVX}
    jz 82f
    vector_slots vmovdqa, ymm, {REGS_V0} + 8, 0, \load, 0,1,2,3,4,5,6,7
    vector_slots vmovdqa, ymm, {REGS_V8} + 8, 8, \load, 8,9,10,11,12,13,14,15
    jmp 83f
82:
    vector_slots movaps, xmm, {REGS_V0} + 8, 0, \load, 0,1,2,3,4,5,6,7
    vector_slots movaps, xmm, {REGS_V8} + 8, 8, \load, 8,9,10,11,12,13,14,15
83:
    test r13d, {XCOMP_HI16_ZMM}
    jz 84f
    vector_slots vmovdqa64, zmm, {REGS_V16} + 8, 16, \load, 16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
84:
    test r13d, {XCOMP_OPMASK}
    jz 85f
    .irp k, 0,1,2,3,4,5,6,7
    .if \load
    kmovq k\k, [rsp + {REGS_K0} + 8 + \k * 8]
    .else
    kmovq [rsp + {REGS_K0} + 8 + \k * 8], k\k
    .endif
    .endr
85:
.endm

# sud_save_extended: saves the guest's extended state into the area 8
# bytes above RSP (its caller's `call`) and gives Rust code the ABI's x87
# and SSE state; leaves the way it took in R12 and, in REGISTERS mode, the
# guest's XINUSE in R13.  sud_restore_extended: the reverse, R12 and R13
# as left.  Both are shared by every entry that keeps the extended state,
# and touch RAX, RCX, RDX and the flags besides.  They make no syscall, so
# they lie outside the allowed region, which stays one page.
    .pushsection .text.sud_extended_state, "ax", @progbits
    .type sud_save_extended, @function
    .p2align 4
sud_save_extended:
    .cfi_startproc
    movzx r12d, byte ptr [rip + {XSAVE_MODE}]
    cmp r12d, {XSAVE_MODE_REGISTERS}
    jne 90f
    mov ecx, 1
    xgetbv                              # edx:eax = XINUSE
    test eax, {XCOMP_X87}
    jnz 89f
    mov r13d, eax
    stmxcsr [rsp + 8 + {REGS_MXCSR}]
    vector_registers 0
    ldmxcsr [rip + {DEFAULT_MXCSR}]     # x87 is in its initial state: the ABI's already
    ret
89:
    movzx r12d, byte ptr [rip + {XSAVE_FALLBACK}]
90:
    # XRSTOR wants the XSAVE header zeroed where XSAVE(C) does not write it,
    # and the x87 status word, which XSAVEC skips while x87 is in its
    # initial state, zero too.
    xor eax, eax
    .irp quadword, 0,1,2,3,4,5,6,7
    mov [rsp + 8 + {XSAVE_HEADER} + \quadword * 8], rax
    .endr
    mov [rsp + 8 + {XSAVE_FSW}], ax
    mov eax, -1                         # edx:eax = every component the kernel enabled
    mov edx, -1
    cmp r12d, {XSAVE_MODE_XSAVEC}
    jne 91f
    xsavec64 [rsp + 8]                  # compacted: components in their initial state cost nothing
    jmp 93f
91:
    cmp r12d, {XSAVE_MODE_XSAVE}
    jne 92f
    xsave64 [rsp + 8]
    jmp 93f
92:
    fxsave64 [rsp + 8]                  # no XSAVE: x87 and SSE state only
93:
    # An unmasked x87 exception pending (the guest's last x87 instruction
    # raised it) is cleared, or the next waiting x87 instruction here takes
    # it; XRSTOR brings it back.
    test byte ptr [rsp + 8 + {XSAVE_FSW}], {FSW_ES}
    jz 96f
    fnclex
96:
    emms                                # Rust code gets the ABI's x87 state: an empty stack (fninit costs 25x more),
    fldcw [rip + {DEFAULT_FCW}]         # the default control word,
    ldmxcsr [rip + {DEFAULT_MXCSR}]     # and the default SSE control: round to nearest, exceptions masked
    ret
    .cfi_endproc
    .size sud_save_extended, . - sud_save_extended

    .type sud_restore_extended, @function
    .p2align 4
sud_restore_extended:
    .cfi_startproc
    cmp r12d, {XSAVE_MODE_REGISTERS}
    jne 98f
    # What Rust took out of its initial state that the guest had there goes
    # back to it, then the guest's registers are loaded.
    mov ecx, 1
    xgetbv
    mov ecx, r13d
    not ecx
    and eax, ecx
    test eax, {XCOMP_AVX} | {XCOMP_ZMM_HI256}
    jz 86f
    vzeroupper
86:
    and eax, {XCOMP_X87} | {XCOMP_OPMASK} | {XCOMP_HI16_ZMM}
    jz 87f
    xor edx, edx                        # edx:eax = those components; XSTATE_BV = 0: their initial state
    .irp quadword, 0,1,2,3,4,5,6,7
    mov [rsp + 8 + {XSAVE_HEADER} + \quadword * 8], rdx
    .endr
    xrstor64 [rsp + 8]
87:
    vector_registers 1
    ldmxcsr [rsp + 8 + {REGS_MXCSR}]
    ret
98:
    mov eax, -1                         # edx:eax = every component, as saved
    mov edx, -1
    cmp r12d, {XSAVE_MODE_FXSAVE}
    je 94f
    xrstor64 [rsp + 8]                  # reads the standard or compacted form alike
    ret
94:
    fxrstor64 [rsp + 8]
    ret
    .cfi_endproc
    .size sud_restore_extended, . - sud_restore_extended
    .popsection

# With the frame in RBX: saves the extended state below it, calls `target`
# with the frame, restores the extended state and then, from the frame,
# RFLAGS and every general register, RSP last.  R12 keeps the save mode
# across the call, R13 the guest's XINUSE in REGISTERS mode (the frame
# holds the guest's R12 and R13).  The stub's FDE must have remembered
# (.cfi_remember_state) its rules at entry, where the return address is
# as it is again after the last instruction here.
.macro call_with_extended_state target
    mov rsp, rbx                        # the save area goes below the frame
    and rsp, -64                        # XSAVE and the aligned moves want 64-byte alignment
    sub rsp, [rip + {XSAVE_SIZE}]
    call sud_save_extended
    mov rdi, rbx
    call \target                        # RSP is 64-byte aligned here
    call sud_restore_extended
    mov rsp, rbx                        # the frame; from here on RSP-relative, so no slot is ever below RSP
    push qword ptr [rsp + {REGS_RFLAGS}]    # just below the frame: dead space
    popfq
    # RBX is about to be reloaded: the rules move to RSP, which stays at
    # the frame until the guest's RSP comes back last.
    cfi_registers_at 7, 0
    mov rax, [rsp + {REGS_RAX}]
    mov rbx, [rsp + {REGS_RBX}]
    mov rcx, [rsp + {REGS_RCX}]
    mov rdx, [rsp + {REGS_RDX}]
    mov rsi, [rsp + {REGS_RSI}]
    mov rdi, [rsp + {REGS_RDI}]
    mov rbp, [rsp + {REGS_RBP}]
    mov r8, [rsp + {REGS_R8}]
    mov r9, [rsp + {REGS_R9}]
    mov r10, [rsp + {REGS_R10}]
    mov r11, [rsp + {REGS_R11}]
    mov r12, [rsp + {REGS_R12}]
    mov r13, [rsp + {REGS_R13}]
    mov r14, [rsp + {REGS_R14}]
    mov r15, [rsp + {REGS_R15}]
    mov rsp, [rsp + {REGS_RSP}]
    .cfi_restore_state
    .cfi_def_cfa rsp, 0
.endm

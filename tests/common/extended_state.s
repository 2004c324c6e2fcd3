# The guest routines of tests/extended_state.rs: extern "C" fn(state) each,
# the same body around a different syscall instruction.

    .pushsection .bss
    .p2align 3
xs_state:
    .zero 8                             # the State of the running routine
    .popsection

    .text
# Loads everything from the state (as its `how` says), makes the syscall
# `insn`, and stores everything back.
.macro xs_routine name, insn
    .globl \name
    .type \name, @function
    .p2align 4
\name:
    mov [rdi + {SAVED}], rbx            # the callee-saved registers the routine overwrites
    mov [rdi + {SAVED} + 8], rbp
    mov [rdi + {SAVED} + 16], r12
    mov [rdi + {SAVED} + 24], r13
    mov [rdi + {SAVED} + 32], r14
    mov [rdi + {SAVED} + 40], r15
    mov [rdi + {SAVED} + 48], rsp
    mov [rip + xs_state], rdi
    and rsp, -16                        # sud_entry's alignment, for all alike
    test qword ptr [rdi + {HOW}], {INIT}
    jz 1f
    vzeroupper                          # the upper halves, and x87, masks and zmm16-31
    mov eax, {INIT_COMPONENTS}          # by XRSTOR from a zero header: their initial state
    xor edx, edx
    xrstor64 [rdi + {INIT_AREA}]
1:
    test qword ptr [rdi + {HOW}], {WIDE}
    jz 2f
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    vmovdqu64 zmm\n, [rdi + {ZMM_IN} + \n * 64]
    .endr
    .irp n, 0,1,2,3,4,5,6,7
    kmovq k\n, [rdi + {K_IN} + \n * 8]
    .endr
    jmp 3f
2:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movdqu xmm\n, [rdi + {ZMM_IN} + \n * 64]
    .endr
3:
    test qword ptr [rdi + {HOW}], {X87}
    jz 4f
    .irp n, 0,1,2,3,4,5,6,7
    fild qword ptr [rdi + {K_IN} + \n * 8]
    .endr
4:
    ldmxcsr [rdi + {MXCSR_IN}]
    push qword ptr [rdi + {GPRS_IN} + {AT_RFLAGS}]
    popfq
    .irp r, rax,rbx,rcx,rdx,rsi,rbp,r8,r9,r10,r11,r12,r13,r14,r15
    mov_in \r
    .endr
    mov rdi, [rdi + {GPRS_IN} + {AT_RDI}]   # last: it held the state
    \insn
    pushfq
    push rax
    mov rax, [rip + xs_state]
    .irp r, rbx,rcx,rdx,rsi,rdi,rbp,r8,r9,r10,r11,r12,r13,r14,r15
    mov_out \r
    .endr
    pop qword ptr [rax + {GPRS_OUT} + {AT_RAX}]
    pop qword ptr [rax + {GPRS_OUT} + {AT_RFLAGS}]
    mov rdi, rax
    mov ecx, 1
    xgetbv
    mov [rdi + {XINUSE_OUT}], eax
    mov [rdi + {XINUSE_OUT} + 4], edx
    stmxcsr [rdi + {MXCSR_OUT}]
    fxsave64 [rdi + {FXSAVE_OUT}]
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    vmovdqu64 [rdi + {ZMM_OUT} + \n * 64], zmm\n
    .endr
    .irp n, 0,1,2,3,4,5,6,7
    kmovq [rdi + {K_OUT} + \n * 8], k\n
    .endr
    fninit                              # the ABI's x87 and SSE state for Rust
    mov dword ptr [rdi + {MXCSR_IN}], 0x1f80
    ldmxcsr [rdi + {MXCSR_IN}]
    vzeroupper
    cld
    mov rbx, [rdi + {SAVED}]
    mov rbp, [rdi + {SAVED} + 8]
    mov r12, [rdi + {SAVED} + 16]
    mov r13, [rdi + {SAVED} + 24]
    mov r14, [rdi + {SAVED} + 32]
    mov r15, [rdi + {SAVED} + 40]
    mov rsp, [rdi + {SAVED} + 48]
    ret
    .size \name, . - \name
.endm

# Where each register is in gprs_* (tests/extended_state.rs says).
.macro mov_in r
    mov \r, [rdi + {GPRS_IN} + xs_at_\r]
.endm
.macro mov_out r
    mov [rax + {GPRS_OUT} + xs_at_\r], \r
.endm
    .set xs_at_rax, {AT_RAX}
    .set xs_at_rbx, {AT_RBX}
    .set xs_at_rcx, {AT_RCX}
    .set xs_at_rdx, {AT_RDX}
    .set xs_at_rsi, {AT_RSI}
    .set xs_at_rdi, {AT_RDI}
    .set xs_at_rbp, {AT_RBP}
    .set xs_at_r8, {AT_R8}
    .set xs_at_r9, {AT_R9}
    .set xs_at_r10, {AT_R10}
    .set xs_at_r11, {AT_R11}
    .set xs_at_r12, {AT_R12}
    .set xs_at_r13, {AT_R13}
    .set xs_at_r14, {AT_R14}
    .set xs_at_r15, {AT_R15}

.macro plain_syscall
    syscall
.endm

.macro entry_call
    call sud_entry
.endm

# mov eax, getppid; syscall: SiteForm::Mov.
.macro mov_syscall
    mov eax, {NR_GETPPID}
    .globl xs_mov_site_syscall
xs_mov_site_syscall:
    syscall
.endm

# syscall; jmp over 12 bytes of padding: SiteForm::Island, the island at
# the padding's start, 4 bytes after the syscall.
.macro island_syscall
    .p2align 4
    .globl xs_island_site_syscall
xs_island_site_syscall:
    syscall
    jmp 5f
    .p2align 4
5:
.endm

    xs_routine xs_syscall, plain_syscall
    xs_routine xs_entry, entry_call
    .globl xs_sites_start
xs_sites_start:
    xs_routine xs_mov_site, mov_syscall
    xs_routine xs_island_site, island_syscall
    .globl xs_sites_end
xs_sites_end:

# Overwrites every vector, mask and x87 register, as code in a callback
# may: all ones, and junk on an emptied x87 stack.
    .globl xs_clobber
    .type xs_clobber, @function
xs_clobber:
    .irp n, 0,1,2,3,4,5,6,7
    fldpi
    .endr
    .irp n, 0,1,2,3,4,5,6,7
    fstp st(0)
    .endr
    vpternlogd zmm0, zmm0, zmm0, 0xff
    .irp n, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    vmovdqa64 zmm\n, zmm0
    .endr
    kxnorq k1, k1, k1
    .irp n, 0,2,3,4,5,6,7
    kmovq k\n, k1
    .endr
    ret                                 # the upper halves left dirty: no VZEROUPPER

    .size xs_clobber, . - xs_clobber

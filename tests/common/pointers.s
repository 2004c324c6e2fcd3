# Guest code that moves its thread pointer, as a libc does at start-up, and
# then makes trapped syscalls and takes a signal with it moved: not a single
# instruction here touches thread-local data, so it runs with any FS.
#
# guest_with_own_fs(rdi = the FS base to use, rsi = how many getppid to
# make, rdx = pid, rcx = tid, r8 = a signal to send itself, or 0):
# saves the FS base it starts with (ARCH_GET_FS), sets its own
# (ARCH_SET_FS), makes the getppids and sends the signal, reads FS back
# (ARCH_GET_FS), puts the first one back, and returns what it read back.
    .text
    .globl guest_with_own_fs
    .type guest_with_own_fs, @function
    .p2align 4
guest_with_own_fs:
    .cfi_startproc
    push rbx
    .cfi_adjust_cfa_offset 8
    push r12
    .cfi_adjust_cfa_offset 8
    push r13
    .cfi_adjust_cfa_offset 8
    push r14
    .cfi_adjust_cfa_offset 8
    push r15
    .cfi_adjust_cfa_offset 8
    sub rsp, 16
    .cfi_adjust_cfa_offset 16
    mov r12, rdi
    mov r13, rsi
    mov r14, rdx
    mov r15, rcx
    mov rbx, r8
    mov eax, {NR_ARCH_PRCTL}
    mov edi, {ARCH_GET_FS}
    mov rsi, rsp
    syscall
    mov eax, {NR_ARCH_PRCTL}
    mov edi, {ARCH_SET_FS}
    mov rsi, r12
    syscall
    test r13, r13
    jz 2f
1:
    mov eax, {NR_GETPPID}
    syscall
    dec r13
    jnz 1b
2:
    test rbx, rbx
    jz 3f
    mov eax, {NR_TGKILL}
    mov rdi, r14
    mov rsi, r15
    mov rdx, rbx
    syscall
3:
    mov eax, {NR_ARCH_PRCTL}
    mov edi, {ARCH_GET_FS}
    lea rsi, [rsp + 8]
    syscall
    mov eax, {NR_ARCH_PRCTL}
    mov edi, {ARCH_SET_FS}
    mov rsi, [rsp]
    syscall
    mov rax, [rsp + 8]
    add rsp, 16
    .cfi_adjust_cfa_offset -16
    pop r15
    .cfi_adjust_cfa_offset -8
    pop r14
    .cfi_adjust_cfa_offset -8
    pop r13
    .cfi_adjust_cfa_offset -8
    pop r12
    .cfi_adjust_cfa_offset -8
    pop rbx
    .cfi_adjust_cfa_offset -8
    ret
    .cfi_endproc
    .size guest_with_own_fs, . - guest_with_own_fs

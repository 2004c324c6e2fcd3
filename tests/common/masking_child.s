# guest_clone_masking_child(t: *mut MaskingChild) -> i64: a raw clone (t's
# flags, stack and child_tid) whose child waits for t.gate to reach 1,
# blocks every signal (as a thread library's exit path does), makes a
# getppid (into t.first), says so (t.masked = 1), waits for t.gate to reach
# 2, makes another getppid (into t.second) and exits.  Every syscall of it
# is guest code, trapped while its selector says BLOCK.
    .text
    .globl guest_clone_masking_child
    .type guest_clone_masking_child, @function
    .p2align 4
guest_clone_masking_child:
    .cfi_startproc
    push rbx
    .cfi_adjust_cfa_offset 8
    mov rbx, rdi
    mov eax, {NR_CLONE}
    mov rdi, [rbx + {M_FLAGS}]
    mov rsi, [rbx + {M_STACK}]
    xor edx, edx
    mov r10, [rbx + {M_CHILD_TID}]
    xor r8d, r8d
    syscall
    test rax, rax
    jz 1f
    pop rbx
    .cfi_adjust_cfa_offset -8
    ret
1:
    .cfi_undefined rip
    pause
    cmp qword ptr [rbx + {M_GATE}], 1
    jb 1b
    push -1
    mov eax, {NR_RT_SIGPROCMASK}
    mov edi, {SIG_BLOCK}
    mov rsi, rsp
    xor edx, edx
    mov r10d, 8
    syscall
    mov eax, {NR_GETPPID}
    syscall
    mov [rbx + {M_FIRST}], rax
    mov qword ptr [rbx + {M_MASKED}], 1
2:
    pause
    cmp qword ptr [rbx + {M_GATE}], 2
    jb 2b
    mov eax, {NR_GETPPID}
    syscall
    mov [rbx + {M_SECOND}], rax
    mov eax, {NR_EXIT}
    xor edi, edi
    syscall
    ud2
    .cfi_endproc
    .size guest_clone_masking_child, . - guest_clone_masking_child

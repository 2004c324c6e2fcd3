# Guest code for tests/edges.rs: a guest that moves its FS itself
# (wrfsbase) around a sud_entry call or a raw tgkill, a fault and a
# restorer, a raw clone whose child reads its CLONE_PARENT_SETTID word
# first, and a sud_entry call with four arguments.
    .text
    .globl rv_entry_with_fs
    .type rv_entry_with_fs, @function
# rv_entry_with_fs(rdi = fs to use, rsi = r11 for sud_entry) -> rax of getppid via sud_entry
rv_entry_with_fs:
    push rbx
    push r12
    sub rsp, 8
    rdfsbase rbx
    wrfsbase rdi
    mov eax, {NR_GETPPID}
    mov r11, rsi
    call {ENTRY}
    wrfsbase rbx
    add rsp, 8
    pop r12
    pop rbx
    ret

    .globl rv_guest_fs_tgkill
    .type rv_guest_fs_tgkill, @function
# rv_guest_fs_tgkill(rdi = fs, rsi = pid, rdx = tid, rcx = signal): moves FS (wrfsbase),
# makes a raw tgkill syscall, puts FS back.
rv_guest_fs_tgkill:
    push rbx
    rdfsbase rbx
    wrfsbase rdi
    mov rdi, rsi
    mov rsi, rdx
    mov rdx, rcx
    mov eax, {NR_TGKILL}
    syscall
    wrfsbase rbx
    pop rbx
    ret

    .globl rv_fault
    .type rv_fault, @function
rv_fault:
    xor eax, eax
    mov byte ptr [rax], 1
    .globl rv_fault_done
rv_fault_done:
    ret

    .globl rv_restorer
rv_restorer:
    mov eax, 15
    syscall
    .text
    .globl rv_clone_ptid
# rv_clone_ptid(rdi flags, rsi stack top, rdx parent_tid ptr, rcx child_tid ptr, r8 out ptr)
rv_clone_ptid:
    push rbx
    mov rbx, r8
    mov r9, rdx
    mov r10, rcx
    xor r8d, r8d
    mov eax, {NR_CLONE}
    syscall
    test rax, rax
    jz 1f
    pop rbx
    ret
1:
    mov eax, dword ptr [r9]
    mov [rbx], rax
    mov eax, {NR_EXIT}
    xor edi, edi
    syscall
    ud2
    
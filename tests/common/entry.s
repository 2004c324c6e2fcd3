# Guest code that makes its syscalls through `call sud_entry` rather than
# `syscall`: a thread created and ended that way, and a call made with an x87
# exception pending.  Numbers and the entry's address come from Rust
# (tests/common/asm.rs).

    .text
# extern "C" fn entry_clone(flags, stack_top, child_tid, marker) -> i64:
# clone(flags, stack_top, 0, child_tid, 0) through `call sud_entry` with
# R11 = 0 (the global selector).  The child, on its new stack, sets *marker
# and exits through sud_entry too (it is not armed, as its creator was not,
# but sud made it a state of its own, which its exit must give back).
    .globl entry_clone
    .type entry_clone, @function
entry_clone:
    push r15
    mov r15, rcx                        # the marker pointer, in a register the child keeps
    mov r10, rdx                        # child_tid (the kernel's fourth argument)
    xor edx, edx                        # no parent_tid
    mov eax, {NR_CLONE}
    xor r8d, r8d                        # no tls
    xor r11d, r11d                      # the global selector
    call {ENTRY}
    test rax, rax
    jz 1f
    pop r15                             # the parent
    ret
1:
    mov qword ptr [r15], 1              # the child ran guest code
    mov eax, {NR_EXIT}
    xor edi, edi
    xor r11d, r11d                      # the global selector
    call {ENTRY}
    ud2
    .size entry_clone, . - entry_clone

# extern "C" fn entry_with_pending_x87() -> u64: a getppid through
# sud_entry (global selector) made with an unmasked x87 exception pending,
# as a guest may leave one: the status word after it.
    .globl entry_with_pending_x87
    .type entry_with_pending_x87, @function
entry_with_pending_x87:
    sub rsp, 8                          # a slot, and RSP 16-byte aligned
    fninit
    mov word ptr [rsp], 0x037e          # the default control word, invalid operation unmasked
    fldcw [rsp]
    fld1
    fchs
    fsqrt                               # sqrt(-1): invalid, unmasked: pending until the next waiting x87 instruction
    mov eax, {NR_GETPPID}
    xor r11d, r11d                      # the global selector
    call {ENTRY}
    fnstsw ax                           # no wait: the status word as the guest has it
    movzx eax, ax
    fnclex                              # the pending exception, dropped
    fninit
    add rsp, 8
    ret
    .size entry_with_pending_x87, . - entry_with_pending_x87

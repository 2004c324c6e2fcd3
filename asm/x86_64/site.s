# sud_site_entry: where the thunk of a rewritten site (src/rewrite/) goes.
# The guest's `mov eax, imm32; syscall` became `jmp thunk; syscall`, and
# the thunk is `lea rsp, [rsp - {RED_ZONE}]; mov eax, imm32;
# call [rip + entry]`, followed by the address after the site's `syscall`.
# So on entry: RSP = the guest's RSP - {RED_ZONE} - 8, [rsp] points at that
# address, RAX = the syscall number, every other register the guest's.
#
# The frame is built as the kernel would have trapped the `syscall`: rip
# and RCX = the address after it, R11 and rflags = RFLAGS, RSP = the
# guest's.  The frame's word is the GS base: the thread's state when
# sud put it there, anything else otherwise (Rust then looks further).
# Rust leaves where to go on in the thunk's return-address slot, below the
# red zone; `ret {RED_ZONE}` takes it and gives the guest its RSP back.

    .pushsection sud_allowed, "axR", @progbits
    .globl sud_site_entry
    .type sud_site_entry, @function
    .p2align 4
sud_site_entry:
    .cfi_startproc
    .cfi_remember_state
    pushfq
    .cfi_adjust_cfa_offset 8
    lea rsp, [rsp - {FRAME_SIZE}]
    .cfi_adjust_cfa_offset {FRAME_SIZE}
    save_gprs
    rdgsbase r11
    mov [rsp + {FRAME_WORD}], r11
    mov rax, [rsp + {FRAME_SIZE}]       # RFLAGS, just above the frame
    mov [rsp + {REGS_RFLAGS}], rax
    mov [rsp + {REGS_R11}], rax         # as `syscall` leaves R11
    mov rax, [rsp + {FRAME_SIZE} + 8]   # the thunk's word: the address after the site
    mov rax, [rax]
    mov [rsp + {REGS_RIP}], rax
    mov [rsp + {REGS_RCX}], rax         # as `syscall` leaves RCX
    lea rax, [rsp + {FRAME_SIZE} + 16 + {RED_ZONE}]  # the guest's RSP
    mov [rsp + {REGS_RSP}], rax
    cld                                 # the ABI's direction flag for Rust code
    mov rbx, rsp
    cfi_registers_at 3, 0
    call_with_extended_state {SITE_DISPATCH}
    lea rsp, [rsp - {RED_ZONE} - 8]
    .cfi_def_cfa_offset 8
    ret {RED_ZONE}
    .cfi_endproc
    .size sud_site_entry, . - sud_site_entry
    .popsection

# Calls into Rust outside signal context, with the guest's whole state kept:
#
# - sud_entry: the signal-free entry.  Generated code calls it in place of a
#   `syscall` instruction and the user's callback decides, as for a trapped
#   syscall.  Reads RAX (number), RDI, RSI, RDX, R10, R8, R9 (arguments) and
#   R11 (the selector the calling thread is armed with, or 0 for
#   sud_selector).  Returns RAX = the result, RCX = the return address and
#   R11 = RFLAGS, as `syscall` leaves them; every other general register,
#   RFLAGS, and the x87, SSE, AVX and AVX-512 state are kept.  RSP must be
#   16-byte aligned before the `call`.  The return address the `call` pushes
#   and this entry's own frame lie below the caller's RSP: the caller's red
#   zone is not kept (a caller that needs it moves RSP down 128 bytes first).
# - sud_redirect, sud_redirect_on_stack: rt_sigreturn returns into one of
#   them to run the user's redirect function as ordinary code, on the
#   guest's stack below its red zone or on the thread's redirect stack,
#   after which the guest resumes as after a native syscall.
#
# Each builds a DirectFrame (the guest's Registers, then one word: a
# selector or state address) with offsets from Rust, saves the extended
# state below it with XSAVEC, XSAVE or FXSAVE (the best the CPU and kernel
# offer, XSAVE_MODE), calls into Rust with the frame and the ABI's default
# x87, SSE and direction-flag state, then restores everything from the
# frame, which Rust may have changed.
#
# CFI: while Rust runs, RBX holds the frame, whose Registers hold the
# guest's RSP, the address it resumes at (rip) and every general register:
# cfi_registers_at describes the guest's frame from there, so that a
# backtrace from the callback or the redirect function goes on into the
# guest's code.  Before RBX is set, the rules follow the pushes; once every
# register is the guest's again, they are those of the stub's entry.

    .pushsection sud_allowed, "axR", @progbits

# Stores every general register but RSP into the frame at RSP, for Rust to
# read and change.
.macro save_gprs
    mov [rsp + {REGS_RAX}], rax
    mov [rsp + {REGS_RBX}], rbx
    mov [rsp + {REGS_RCX}], rcx
    mov [rsp + {REGS_RDX}], rdx
    mov [rsp + {REGS_RSI}], rsi
    mov [rsp + {REGS_RDI}], rdi
    mov [rsp + {REGS_RBP}], rbp
    mov [rsp + {REGS_R8}], r8
    mov [rsp + {REGS_R9}], r9
    mov [rsp + {REGS_R10}], r10
    mov [rsp + {REGS_R11}], r11
    mov [rsp + {REGS_R12}], r12
    mov [rsp + {REGS_R13}], r13
    mov [rsp + {REGS_R14}], r14
    mov [rsp + {REGS_R15}], r15
.endm

# sud_entry: the `call` left the return address at [rsp]; the frame goes
# below the caller's RFLAGS, pushed before anything changes them.  The
# frame records the caller's RSP before its `call` and the return address
# as the guest's rip: where the guest resumes.  Rust leaves where to go on
# (the return address, or a reissue stub) just below the caller's RSP, in
# the return address's slot, so that a `ret` takes it and leaves RSP the
# caller's again.
    .globl sud_entry
    .type sud_entry, @function
    .p2align 4
sud_entry:
    .cfi_startproc
    .cfi_remember_state
    pushfq
    .cfi_adjust_cfa_offset 8
    lea rsp, [rsp - {FRAME_SIZE}]
    .cfi_adjust_cfa_offset {FRAME_SIZE}
    save_gprs
    mov [rsp + {FRAME_WORD}], r11       # the caller's selector (0: sud_selector)
    mov rax, [rsp + {FRAME_SIZE}]       # RFLAGS, just above the frame
    mov [rsp + {REGS_RFLAGS}], rax
    mov rax, [rsp + {FRAME_SIZE} + 8]   # the return address, above them
    mov [rsp + {REGS_RIP}], rax
    lea rax, [rsp + {FRAME_SIZE} + 16]  # the caller's RSP, above that
    mov [rsp + {REGS_RSP}], rax
    cld                                 # the ABI's direction flag for Rust code
    mov rbx, rsp
    cfi_registers_at 3, 0
    call_with_extended_state {ENTRY_DISPATCH}
    lea rsp, [rsp - {ENTRY_CONTINUE_SLOT}]
    .cfi_adjust_cfa_offset {ENTRY_CONTINUE_SLOT}
    ret
    .cfi_endproc
    .size sud_entry, . - sud_entry

# After rt_sigreturn: RSP = the guest's RSP - {RED_ZONE}, RCX = the return
# address, R11 = the thread's state; every other register the guest's.  The
# guest's RFLAGS go above the frame, below its red zone.  Joins
# sud_redirect_on_stack with RAX = the guest's RSP.
    .globl sud_redirect
    .type sud_redirect, @function
    .p2align 4
sud_redirect:
    .cfi_startproc
    .cfi_def_cfa_offset {RED_ZONE}
    .cfi_register rip, rcx
    pushfq
    .cfi_adjust_cfa_offset 8
    lea rsp, [rsp - {FRAME_SIZE}]
    .cfi_adjust_cfa_offset {FRAME_SIZE}
    save_gprs
    lea rax, [rsp + {FRAME_SIZE} + 8 + {RED_ZONE}]  # above RFLAGS and the red zone
    jmp .Lredirect_frame
    .cfi_endproc
    .size sud_redirect, . - sud_redirect

# After rt_sigreturn, on the thread's redirect stack: RSP points at the
# guest's RSP, left there by the dispatcher; otherwise as sud_redirect.
# From .Lredirect_frame on, for both: the frame takes the guest's RSP (in
# RAX, which the CFI follows until the frame holds it), the thread's state,
# the return address (rip) and RFLAGS (pushed above the frame), and after
# the redirect function RCX = the return address, as after a native
# syscall.
    .globl sud_redirect_on_stack
    .type sud_redirect_on_stack, @function
sud_redirect_on_stack:
    .cfi_startproc
    cfi_cfa_at 7, 0
    .cfi_register rip, rcx
    .cfi_remember_state
    pushfq
    cfi_cfa_at 7, 8
    lea rsp, [rsp - {FRAME_SIZE}]
    cfi_cfa_at 7, {FRAME_SIZE}+8
    save_gprs
    mov rax, [rsp + {FRAME_SIZE} + 8]   # above RFLAGS
    .cfi_def_cfa rax, 0
.Lredirect_frame:
    mov [rsp + {REGS_RSP}], rax
    cfi_cfa_at 7, {REGS_RSP}
    mov [rsp + {FRAME_WORD}], r11
    mov [rsp + {REGS_RIP}], rcx
    mov rax, [rsp + {FRAME_SIZE}]       # RFLAGS, just above the frame
    mov [rsp + {REGS_RFLAGS}], rax
    cld                                 # the ABI's direction flag for Rust code
    mov rbx, rsp
    cfi_registers_at 3, 0
    call_with_extended_state {REDIRECT_RUN}
    jmp rcx
    .cfi_endproc
    .size sud_redirect_on_stack, . - sud_redirect_on_stack

    .popsection

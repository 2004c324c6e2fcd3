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

    .pushsection sud_allowed, "axR", @progbits

# Stores every general register but RSP into the frame at RSP.
.macro save_gprs
    mov [rsp + {REGS_RAX}], rax         # the guest's registers, for Rust to read and change
    mov [rsp + {REGS_RBX}], rbx         # rbx into the frame
    mov [rsp + {REGS_RCX}], rcx         # rcx into the frame
    mov [rsp + {REGS_RDX}], rdx         # rdx into the frame
    mov [rsp + {REGS_RSI}], rsi         # rsi into the frame
    mov [rsp + {REGS_RDI}], rdi         # rdi into the frame
    mov [rsp + {REGS_RBP}], rbp         # rbp into the frame
    mov [rsp + {REGS_R8}], r8           # r8 into the frame
    mov [rsp + {REGS_R9}], r9           # r9 into the frame
    mov [rsp + {REGS_R10}], r10         # r10 into the frame
    mov [rsp + {REGS_R11}], r11         # r11 into the frame
    mov [rsp + {REGS_R12}], r12         # r12 into the frame
    mov [rsp + {REGS_R13}], r13         # r13 into the frame
    mov [rsp + {REGS_R14}], r14         # r14 into the frame
    mov [rsp + {REGS_R15}], r15         # r15 into the frame
.endm

# With the frame in RBX: saves the extended state below it, calls `target`
# with the frame, restores the extended state and then, from the frame,
# RFLAGS and every general register, RSP last.  R12 keeps the save mode
# across the call (the frame holds the guest's R12).
.macro call_with_extended_state target
    mov rsp, rbx                        # the save area goes below the frame
    and rsp, -64                        # XSAVE wants 64-byte alignment
    sub rsp, [rip + {XSAVE_SIZE}]       # room for the extended state
    xor eax, eax                        # XRSTOR wants the XSAVE header zeroed where XSAVE(C) does not write it:
    .irp quadword, 0,1,2,3,4,5,6,7
    mov [rsp + {XSAVE_HEADER} + \quadword * 8], rax  # the header's eight quadwords
    .endr
    mov [rsp + {XSAVE_FSW}], ax         # and the x87 status word, which XSAVEC skips while x87 is in its initial state
    movzx r12d, byte ptr [rip + {XSAVE_MODE}] # which save instruction; kept in r12 for the restore
    mov eax, -1                         # edx:eax = every component the kernel enabled
    mov edx, -1                         # (high half)
    cmp r12d, {XSAVE_MODE_XSAVEC}       # which form was saved
    jne 91f                             # not XSAVEC
    xsavec64 [rsp]                      # compacted: components in their initial state cost nothing
    jmp 93f                             # saved
91:
    cmp r12d, {XSAVE_MODE_XSAVE}        # which form was saved
    jne 92f                             # not XSAVE either
    xsave64 [rsp]                       # the standard form
    jmp 93f                             # saved
92:
    fxsave64 [rsp]                      # no XSAVE: x87 and SSE state only
93:
    test byte ptr [rsp + {XSAVE_FSW}], {FSW_ES} # an unmasked x87 exception pending (the guest's last x87 instruction raised it)?
    jz 96f                              # none: the usual case
    fnclex                              # cleared, or the next waiting x87 instruction here takes it (XRSTOR brings it back)
96:
    emms                                # Rust code gets the ABI's x87 state: an empty stack (fninit costs 25x more),
    fldcw [rip + {DEFAULT_FCW}]         # the default control word,
    ldmxcsr [rip + {DEFAULT_MXCSR}]     # and the default SSE control: round to nearest, exceptions masked
    mov rdi, rbx                        # the frame
    call \target                        # RSP is 64-byte aligned here
    mov eax, -1                         # edx:eax = every component, as saved
    mov edx, -1                         # (high half)
    cmp r12d, {XSAVE_MODE_FXSAVE}       # FXSAVE needs FXRSTOR
    je 94f                              # FXSAVE: restore with FXRSTOR
    xrstor64 [rsp]                      # reads the standard or compacted form alike
    jmp 95f                             # restored
94:
    fxrstor64 [rsp]                     # the x87 and SSE state FXSAVE kept
95:
    mov rsp, rbx                        # the frame; from here on RSP-relative, so no slot is ever below RSP
    push qword ptr [rsp + {REGS_RFLAGS}]    # just below the frame: dead space
    popfq                               # RFLAGS from the frame
    mov rax, [rsp + {REGS_RAX}]         # every general register from the frame
    mov rbx, [rsp + {REGS_RBX}]         # rbx from the frame
    mov rcx, [rsp + {REGS_RCX}]         # rcx from the frame
    mov rdx, [rsp + {REGS_RDX}]         # rdx from the frame
    mov rsi, [rsp + {REGS_RSI}]         # rsi from the frame
    mov rdi, [rsp + {REGS_RDI}]         # rdi from the frame
    mov rbp, [rsp + {REGS_RBP}]         # rbp from the frame
    mov r8, [rsp + {REGS_R8}]           # r8 from the frame
    mov r9, [rsp + {REGS_R9}]           # r9 from the frame
    mov r10, [rsp + {REGS_R10}]         # r10 from the frame
    mov r11, [rsp + {REGS_R11}]         # r11 from the frame
    mov r12, [rsp + {REGS_R12}]         # r12 from the frame
    mov r13, [rsp + {REGS_R13}]         # r13 from the frame
    mov r14, [rsp + {REGS_R14}]         # r14 from the frame
    mov r15, [rsp + {REGS_R15}]         # r15 from the frame
    mov rsp, [rsp + {REGS_RSP}]         # the guest's RSP, last
.endm

    .globl sud_entry
    .type sud_entry, @function
    .p2align 4
sud_entry:
    pushfq                              # the caller's RFLAGS, before anything changes them
    lea rsp, [rsp - {FRAME_SIZE}]       # the frame
    save_gprs                           # the guest's registers into the frame
    mov [rsp + {FRAME_WORD}], r11       # the caller's selector (0: sud_selector)
    mov rax, [rsp + {FRAME_SIZE}]       # RFLAGS, pushed above
    mov [rsp + {REGS_RFLAGS}], rax      # rax into the frame
    mov rax, [rsp + {FRAME_SIZE} + 8]   # the return address: where the guest resumes
    mov [rsp + {REGS_RIP}], rax         # rax into the frame
    lea rax, [rsp + {FRAME_SIZE} + 16]  # the caller's RSP before its `call`
    mov [rsp + {REGS_RSP}], rax         # rax into the frame
    cld                                 # the ABI's direction flag for Rust code
    mov rbx, rsp                        # the frame, across the call
    call_with_extended_state {ENTRY_DISPATCH} # the callback decides
    lea rsp, [rsp - 8]                  # Rust left where to go on just below the caller's RSP:
    ret                                 # the return address, or a reissue stub; RSP is the caller's again
    .size sud_entry, . - sud_entry

# After rt_sigreturn: RSP = the guest's RSP - {RED_ZONE}, RCX = the return
# address, R11 = the thread's state; every other register the guest's.
    .globl sud_redirect
    .type sud_redirect, @function
    .p2align 4
sud_redirect:
    pushfq                              # the guest's RFLAGS
    lea rsp, [rsp - {FRAME_SIZE}]       # the frame, below the guest's red zone
    save_gprs                           # the guest's registers into the frame
    lea rax, [rsp + {FRAME_SIZE} + 8 + {RED_ZONE}]  # the guest's RSP: above the flags and the red zone
    jmp .Lredirect_frame                # the rest is as for the redirect stack
    .size sud_redirect, . - sud_redirect

# After rt_sigreturn, on the thread's redirect stack: RSP points at the
# guest's RSP, left there by the dispatcher; otherwise as sud_redirect.
    .globl sud_redirect_on_stack
    .type sud_redirect_on_stack, @function
sud_redirect_on_stack:
    pushfq                              # the guest's RFLAGS
    lea rsp, [rsp - {FRAME_SIZE}]       # the frame
    save_gprs                           # the guest's registers into the frame
    mov rax, [rsp + {FRAME_SIZE} + 8]   # the guest's RSP, above the flags
.Lredirect_frame:
    mov [rsp + {REGS_RSP}], rax         # rax into the frame
    mov [rsp + {FRAME_WORD}], r11       # the thread's state
    mov [rsp + {REGS_RIP}], rcx         # the return address
    mov rax, [rsp + {FRAME_SIZE}]       # the guest's RFLAGS, pushed above
    mov [rsp + {REGS_RFLAGS}], rax      # rax into the frame
    cld                                 # the ABI's direction flag for Rust code
    mov rbx, rsp                        # the frame, across the call
    call_with_extended_state {REDIRECT_RUN} # the redirect function runs
    jmp rcx                             # RCX = the return address, as after a native syscall
    .size sud_redirect_on_stack, . - sud_redirect_on_stack

    .popsection

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
# Each builds a DirectFrame (the guest's Registers, then one word: a state or
# selector address) with offsets from Rust, saves the extended state below
# it with XSAVEC, XSAVE or FXSAVE (the best the CPU and kernel offer,
# XSAVE_MODE), calls into Rust with the frame, and restores everything from
# the frame, which Rust may have changed.

    .pushsection sud_allowed, "axR", @progbits

# Stores every general register but RSP into the frame at RSP.
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

# Saves the extended state below the frame (RBX = the frame) and calls
# `target` with the frame, then restores the extended state.  The save area
# is 64-byte aligned, its header zeroed as XRSTOR requires; R12 keeps the
# mode across the call (the frame holds the guest's R12).
.macro call_with_extended_state target
    mov rsp, rbx
    and rsp, -64                        # XSAVE wants 64-byte alignment
    sub rsp, [rip + {XSAVE_SIZE}]       # room for the extended state
    xor eax, eax
    .irp i, 0,1,2,3,4,5,6,7
    mov [rsp + 512 + \i * 8], rax       # the XSAVE header: zero
    .endr
    movzx r12d, byte ptr [rip + {XSAVE_MODE}]
    mov eax, -1                         # every component the kernel enabled
    mov edx, -1
    cmp r12d, 2
    jne 91f
    xsavec64 [rsp]                      # components in their initial state cost nothing
    jmp 93f
91:
    cmp r12d, 1
    jne 92f
    xsave64 [rsp]
    jmp 93f
92:
    fxsave64 [rsp]                      # no XSAVE: x87 and SSE state
93:
    mov rdi, rbx                        # the frame
    call \target                        # RSP is 64-byte aligned here
    mov eax, -1
    mov edx, -1
    test r12d, r12d
    jz 94f
    xrstor64 [rsp]                      # reads the standard or compacted form alike
    jmp 95f
94:
    fxrstor64 [rsp]
95:
    mov rsp, rbx
    push qword ptr [rbx + {REGS_RFLAGS}]    # just below the frame: dead space
    popfq                               # RFLAGS from the frame
    mov rax, [rbx + {REGS_RAX}]         # every general register from the frame; RBX last
    mov rcx, [rbx + {REGS_RCX}]
    mov rdx, [rbx + {REGS_RDX}]
    mov rsi, [rbx + {REGS_RSI}]
    mov rdi, [rbx + {REGS_RDI}]
    mov rbp, [rbx + {REGS_RBP}]
    mov r8, [rbx + {REGS_R8}]
    mov r9, [rbx + {REGS_R9}]
    mov r10, [rbx + {REGS_R10}]
    mov r11, [rbx + {REGS_R11}]
    mov r12, [rbx + {REGS_R12}]
    mov r13, [rbx + {REGS_R13}]
    mov r14, [rbx + {REGS_R14}]
    mov r15, [rbx + {REGS_R15}]
    mov rsp, [rbx + {REGS_RSP}]         # the guest's RSP
.endm

    .globl sud_entry
    .type sud_entry, @function
    .p2align 4
sud_entry:
    pushfq                              # the caller's RFLAGS, before anything changes them
    lea rsp, [rsp - {FRAME_SIZE}]       # the frame
    save_gprs
    mov [rsp + {FRAME_WORD}], r11       # the caller's selector (0: sud_selector)
    mov rax, [rsp + {FRAME_SIZE}]
    mov [rsp + {REGS_RFLAGS}], rax
    mov rax, [rsp + {FRAME_SIZE} + 8]   # the return address: where the guest resumes
    mov [rsp + {REGS_RIP}], rax
    lea rax, [rsp + {FRAME_SIZE} + 16]  # the caller's RSP before its `call`
    mov [rsp + {REGS_RSP}], rax
    mov rbx, rsp
    call_with_extended_state {ENTRY_DISPATCH}
    lea rsp, [rsp - 8]                  # Rust left where to go on at RSP - 8: the return address, or a reissue stub
    mov rbx, [rbx + {REGS_RBX}]
    ret                                 # and RSP is the caller's again
    .size sud_entry, . - sud_entry

# After rt_sigreturn: RSP = the guest's RSP - {RED_ZONE}, RCX = the return
# address, R11 = the thread's state; every other register the guest's.
    .globl sud_redirect
    .type sud_redirect, @function
    .p2align 4
sud_redirect:
    pushfq                              # the guest's RFLAGS
    lea rsp, [rsp - {FRAME_SIZE}]       # the frame, below the guest's red zone
    save_gprs
    lea rax, [rsp + {FRAME_SIZE} + 8 + {RED_ZONE}]  # the guest's RSP
    jmp 1f

# After rt_sigreturn, on the thread's redirect stack: RSP points at the
# guest's RSP, left there by the dispatcher; otherwise as sud_redirect.
    .globl sud_redirect_on_stack
    .type sud_redirect_on_stack, @function
sud_redirect_on_stack:
    pushfq                              # the guest's RFLAGS
    lea rsp, [rsp - {FRAME_SIZE}]       # the frame
    save_gprs
    mov rax, [rsp + {FRAME_SIZE} + 8]   # the guest's RSP
1:
    mov [rsp + {REGS_RSP}], rax
    mov [rsp + {FRAME_WORD}], r11       # the thread's state
    mov [rsp + {REGS_RIP}], rcx         # the return address
    mov rax, [rsp + {FRAME_SIZE}]
    mov [rsp + {REGS_RFLAGS}], rax
    mov rbx, rsp
    call_with_extended_state {REDIRECT_RUN}
    mov rbx, [rbx + {REGS_RBX}]
    jmp rcx                             # RCX = the return address, as after a native syscall
    .size sud_redirect, . - sud_redirect
    .size sud_redirect_on_stack, . - sud_redirect_on_stack

    .popsection

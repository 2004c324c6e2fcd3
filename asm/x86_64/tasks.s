# Task stubs: rt_sigreturn returns into one of them to run a guest's fork,
# vfork, clone, clone3 or exit natively, outside signal context, and to give
# each task the guest creates what it needs before it runs a single guest
# instruction: dispatch armed again (the kernel never passes it on) and, for
# a new thread, its own state and alternate signal stack.
#
# Each is entered with every register as the guest had it at its `syscall`,
# except RCX = the guest's return address and R11 = a ThreadState (offsets
# STATE_* from Rust).  A child starts right after the `syscall` below with
# the parent's registers, RAX = 0, and RCX, R11 as the kernel leaves them.

    .pushsection sud_allowed, "axR", @progbits

# Prepares a new task from the ThreadState in r11: puts sud's SIGSYS handler
# back if the clone cleared every handler (CLONE_CLEAR_SIGHAND), then arms
# dispatch as the state says.  Clobbers rax, rdi, rsi, rdx, r10, r8, rcx, r11
# and the flags.  A task that cannot be armed must not run guest code: it
# dies at sud_unarmed_child.
.macro arm_child
    push r11                            # the state, across the syscalls
    cmp qword ptr [r11 + {STATE_SIGSYS_ACTION}], 0
    je 71f                              # no action to put back
    mov eax, {NR_RT_SIGACTION}
    mov edi, {SIGSYS}
    lea rsi, [r11 + {STATE_SIGSYS_ACTION}]  # sud's SIGSYS action, copied there by the dispatcher
    xor edx, edx                        # no old action wanted
    mov r10d, 8                         # the kernel's sigset size
    syscall
    test rax, rax
    jnz sud_unarmed_child
71:
    mov r11, [rsp]
    mov edi, {PR_SET_SYSCALL_USER_DISPATCH}
    mov rsi, [r11 + {STATE_ARM}]        # op
    mov rdx, [r11 + {STATE_ARM} + 8]    # offset
    mov r10, [r11 + {STATE_ARM} + 16]   # len
    mov r8, [r11 + {STATE_ARM} + 24]    # selector
    mov eax, {NR_PRCTL}
    syscall                             # arm: from here on the child's guest syscalls are dispatched
    test rax, rax
    jnz sud_unarmed_child
    pop r11
.endm

# sud_reissue_fork: fork, or a clone that keeps the caller's stack and
# memory layout (no CLONE_VM, or no new stack).  R11 = the state the child is
# armed from: the parent's, of which a fork child has its own copy.
    .globl sud_reissue_fork
    .type sud_reissue_fork, @function
    .p2align 4
sud_reissue_fork:
    lea rsp, [rsp - {RED_ZONE}]         # step over the guest's red zone; lea keeps the flags
    push rcx                            # the return address
    push r11                            # the state, for the child
    syscall                             # the guest's fork or clone
    push r11                            # RFLAGS as the kernel restored them (r11 holds them here)
    test rax, rax
    jnz 1f                              # the parent: the child's pid, or -errno
    push rdi                            # the child: keep the guest registers the arming uses
    push rsi
    push rdx
    push r10
    push r8
    mov r11, [rsp + 48]                 # the state, above the five registers and the flags
    arm_child
    pop r8
    pop r10
    pop rdx
    pop rsi
    pop rdi                             # rax is prctl's 0: the child's result
1:
    mov r11, [rsp]                      # r11 = RFLAGS, as after a native syscall
    popfq                               # and the flags themselves
    lea rsp, [rsp + 8]                  # over the state pointer
    back_to_guest
    .size sud_reissue_fork, . - sud_reissue_fork

# sud_reissue_vfork: vfork, or a CLONE_VFORK clone without a new stack.
# The child runs first, on this very stack, until it execs or exits; what
# the parent left on the stack may be gone when it wakes.  So the parent
# takes its return address from sud_vfork_parents, where the dispatcher
# filed it under the parent's tid.  R11 = the state the child is armed from.
    .globl sud_reissue_vfork
    .type sud_reissue_vfork, @function
    .p2align 4
sud_reissue_vfork:
    lea rsp, [rsp - {RED_ZONE}]         # step over the guest's red zone
    push rcx                            # the return address, for the child
    push r11                            # the state, for the child
    syscall                             # the guest's vfork: the parent sleeps until the child execs or exits
    push r11                            # RFLAGS as the kernel restored them
    test rax, rax
    jnz 2f                              # the parent
    push rdi                            # the child: as in sud_reissue_fork
    push rsi
    push rdx
    push r10
    push r8
    mov r11, [rsp + 48]
    arm_child
    pop r8
    pop r10
    pop rdx
    pop rsi
    pop rdi
    mov r11, [rsp]                      # r11 = RFLAGS
    popfq
    lea rsp, [rsp + 8]                  # over the state pointer
    back_to_guest                       # to the return address the child read before running guest code
2:
    push rax                            # the child's pid, or -errno
    mov eax, {NR_GETTID}
    syscall                             # rax = this thread's tid; rcx and r11 are free
    lea r11, [rip + {VFORK_PARENTS}]    # (tid, return address) pairs
    mov ecx, {VFORK_PARENTS_LEN}
3:
    cmp [r11], rax
    je 4f                               # our entry
    add r11, 16
    dec ecx
    jnz 3b
    ud2                                 # no entry: the dispatcher always files one
4:
    mov rcx, [r11 + 8]                  # rcx = the return address
    mov qword ptr [r11], 0              # the entry is free again
    pop rax                             # the result
    mov r11, [rsp]                      # r11 = RFLAGS
    popfq
    lea rsp, [rsp + 16 + {RED_ZONE}]    # over the two slots and the red zone: the guest's RSP
    jmp rcx                             # back to the guest
    .size sud_reissue_vfork, . - sud_reissue_vfork

# sud_reissue_thread: clone or clone3 with a new stack.  R11 = the new
# thread's state, which the dispatcher also left 16 bytes below the top of
# the new stack, where the child finds it.
    .globl sud_reissue_thread
    .type sud_reissue_thread, @function
    .p2align 4
sud_reissue_thread:
    lea rsp, [rsp - {RED_ZONE}]         # step over the guest's red zone
    push rcx                            # the parent's return address
    push r11                            # the child's state, to report the result in
    syscall                             # the guest's clone
    push r11                            # RFLAGS (the child pushes onto its new stack: top - 8)
    test rax, rax
    jz 5f
    mov r11, [rsp + 8]                  # the parent: the child's state
    mov [r11 + {STATE_CLONE_RESULT}], rax   # the child exists (its tid) or never will (-errno)
    mov r11, [rsp]                      # r11 = RFLAGS
    popfq
    lea rsp, [rsp + 8]                  # over the state pointer
    back_to_guest
5:
    mov r11, [rsp - 8]                  # the child, on its new stack: its state, at top - 16
    push rdi                            # keep the guest registers the setup uses
    push rsi
    push rdx
    push r10
    push r8
    push r11
    mov eax, {NR_GETTID}
    syscall
    mov r11, [rsp]
    mov [r11 + {STATE_TID}], eax        # the state learns whose it is
    lea rdi, [r11 + {STATE_ALTSTACK}]   # the thread's own alternate signal stack
    xor esi, esi
    mov eax, {NR_SIGALTSTACK}
    syscall
    test rax, rax
    jnz sud_unarmed_child
    mov r11, [rsp]
    arm_child
    pop r11                             # the state
    mov rcx, [r11 + {STATE_RESUME}]     # where the guest resumes: after its clone
    pop r8
    pop r10
    pop rdx
    pop rsi
    pop rdi                             # rax is prctl's 0: the child's result
    mov r11, [rsp]                      # r11 = RFLAGS, as after a native syscall
    popfq                               # RSP = the top of the new stack, as the guest asked
    jmp rcx
    .size sud_reissue_thread, . - sud_reissue_thread

# sud_reissue_exit: a managed thread's exit.  R11 = its state, RDI = the
# status.  The thread blocks every signal, disarms, drops its alternate
# stack, marks its state dead (a new thread may take it from then on) and
# exits; nothing of it is left behind.
    .globl sud_reissue_exit
    .type sud_reissue_exit, @function
    .p2align 4
sud_reissue_exit:
    mov r12, rdi                        # the status; the thread ends, so its registers no longer matter
    mov r13, r11                        # the state
    lea rsp, [rsp - {RED_ZONE}]         # step over the guest's red zone
    push -1                             # a signal set holding every signal
    mov eax, {NR_RT_SIGPROCMASK}
    mov edi, {SIG_SETMASK}
    mov rsi, rsp
    xor edx, edx
    mov r10d, 8
    syscall                             # no signal from here on: its stack is going away
    mov eax, {NR_PRCTL}
    mov edi, {PR_SET_SYSCALL_USER_DISPATCH}
    xor esi, esi                        # PR_SYS_DISPATCH_OFF
    xor edx, edx
    xor r10d, r10d
    xor r8d, r8d
    syscall                             # disarm: the selector is going away
    push 0                              # stack_t.ss_size
    push {SS_DISABLE}                   # stack_t.ss_flags
    push 0                              # stack_t.ss_sp
    mov rdi, rsp
    xor esi, esi
    mov eax, {NR_SIGALTSTACK}
    syscall                             # no alternate stack
    mov qword ptr [r13 + {STATE_STATE}], {STATE_DEAD}   # the state is free from here on
    mov rdi, r12
    mov eax, {NR_EXIT}
    syscall                             # the guest's exit
    ud2                                 # never reached; keeps the region going past the syscall
    .size sud_reissue_exit, . - sud_reissue_exit

# A new task that could not be set up must not run guest code unsupervised.
    .globl sud_unarmed_child
    .type sud_unarmed_child, @function
sud_unarmed_child:
    ud2                                 # SIGILL: dies here, where a debugger shows why
    .size sud_unarmed_child, . - sud_unarmed_child

    .popsection

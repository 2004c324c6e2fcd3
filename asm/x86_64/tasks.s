# Task stubs: rt_sigreturn (or sud_entry) goes on into one of them to run a
# guest's fork, vfork, clone, clone3 or exit natively, outside signal
# context, and to give each task the guest creates what it needs before it
# runs a single guest instruction: dispatch armed again as its creator was
# (the kernel never passes it on) and, for a new thread, its own state and
# alternate signal stack.
#
# Each is entered with every register as the guest had it at its `syscall`,
# except RCX = the guest's return address and R11 = a ThreadState (offsets
# STATE_* from Rust).  A child starts right after the `syscall` below with
# the parent's registers, RAX = 0, and RCX, R11 as the kernel leaves them.
#
# Every signal but SIGSYS is blocked across the clone, and in the child
# until it is set up: a signal taken before then would find no state of its
# own, and a guest handler would run unarmed.  (SIGSYS stays deliverable: the
# stubs' syscalls are never dispatched, and one seccomp forces must not kill
# the process; sud's handler passes it on.)  The guest's mask is kept where each side
# finds it afterwards, and put back.

    .pushsection sud_allowed, "axR", @progbits

# rt_sigprocmask, keeping every guest register but rcx and r11.
# Clobbers the flags.  `block_all`: every signal but SIGSYS blocked, the old
# mask stored where R11 points;
# `set`: the mask R11 points to installed.
.macro sigprocmask kind
    push rax                            # the guest registers the syscall takes
    push rdi                            # (rcx and r11 it clobbers anyway)
    push rsi                            # the guest's rsi
    push rdx                            # the guest's rdx
    push r10                            # the guest's r10
.ifc \kind,block_all
    mov edi, {SIG_BLOCK}                # block
    lea rsi, [rip + {ALL_BUT_SIGSYS}]   # every signal but SIGSYS
    mov rdx, r11                        # the old mask, kept where R11 says
.else
    mov edi, {SIG_SETMASK}              # replace the mask
    mov rsi, r11                        # with the one R11 points to
    xor edx, edx                        # no old mask wanted
.endif
    mov r10d, {SIGSET_SIZE}             # the kernel's sigset size
    mov eax, {NR_RT_SIGPROCMASK}        # rt_sigprocmask(how, set, old, size): cannot fail with these
    syscall                             # from the allowed region: never trapped
    pop r10                             # the guest registers back
    pop rdx                             # the guest's rdx
    pop rsi                             # the guest's rsi
    pop rdi                             # the guest's rdi
    pop rax                             # the guest's rax
.endm

# Prepares a new task from the ThreadState in r11: puts sud's SIGSYS handler
# back if the clone cleared every handler (CLONE_CLEAR_SIGHAND), then arms
# dispatch as the state says, unless its creator was not armed.  Clobbers
# rax, rdi, rsi, rdx, r10, r8, rcx, r11 and the flags.  A task that cannot
# be set up must not run guest code: it dies at sud_unarmed_child.
.macro arm_child
    push r11                            # the state, across the syscalls below
    cmp qword ptr [r11 + {STATE_SIGSYS_ACTION}], 0  # a handler address, or 0: nothing to put back
    je 71f                              # none: go on to arming
    mov eax, {NR_RT_SIGACTION}          # rt_sigaction(SIGSYS, &action, NULL, sigset size)
    mov edi, {SIGSYS}                   # the signal
    lea rsi, [r11 + {STATE_SIGSYS_ACTION}]  # sud's SIGSYS action, copied there by the dispatcher
    xor edx, edx                        # no old action wanted
    mov r10d, {SIGSET_SIZE}             # the kernel's sigset size
    syscall                             # sud's SIGSYS handler is back
    test rax, rax                       # failed: the child would die of its first trap
    jnz sud_unarmed_child               # the child could not be set up
71:
    mov r11, [rsp]                      # the state again (the syscall clobbered r11)
    cmp qword ptr [r11 + {STATE_ARM_OP}], 0 # PR_SYS_DISPATCH_OFF: the creator was not armed
    je 72f                              # nor is the child, as the kernel leaves it
    mov edi, {PR_SET_SYSCALL_USER_DISPATCH}  # prctl(PR_SET_SYSCALL_USER_DISPATCH, op, offset, len, selector)
    mov rsi, [r11 + {STATE_ARM_OP}]     # op: exclusive or inclusive
    mov rdx, [r11 + {STATE_ARM_OFFSET}] # offset of the range
    mov r10, [r11 + {STATE_ARM_LEN}]    # length of the range
    mov r8, [r11 + {STATE_ARM_SELECTOR}] # the selector the child reads
    mov eax, {NR_PRCTL}                 # prctl
    syscall                             # armed: from here on the child's guest syscalls are dispatched
    test rax, rax                       # failed: never run the guest unarmed
    jnz sud_unarmed_child               # the child could not be armed
72:
    pop r11                             # the state
.endm

# sud_reissue_fork: fork, or a clone without CLONE_VFORK that keeps the
# caller's stack (no new stack given).  R11 = the state the child is armed
# from: the parent's, of which the child has its own copy.  A vfork child
# (sud_reissue_vfork) joins at .Lfork_child, armed from the very state.
    .globl sud_reissue_fork
    .type sud_reissue_fork, @function
    .p2align 4
sud_reissue_fork:
    lea rsp, [rsp - {RED_ZONE}]         # step over the guest's red zone; lea keeps the flags
    push rcx                            # the return address
    push r11                            # the state, for the child
    lea rsp, [rsp - 8]                  # a slot for the guest's mask
    mov r11, rsp                        # where block_all keeps it
    sigprocmask block_all               # every signal but SIGSYS blocked, the guest's mask in the slot
    syscall                             # the guest's fork or clone
    push r11                            # RFLAGS as the kernel restored them (r11 holds them here)
    test rax, rax                       # 0 in the child
    jnz 1f                              # the parent: the child's pid, or -errno
.Lfork_child:
    push rdi                            # the child: keep the guest registers arm_child uses
    push rsi                            # (argument registers the syscalls below take)
    push rdx                            # the guest's rdx
    push r10                            # the guest's r10
    push r8                             # the guest's r8
    mov r11, [rsp + 7 * 8]              # the state: above the five registers, the flags and the mask
    arm_child                           # sud's SIGSYS handler back if need be, then armed
    pop r8                              # the guest registers back
    pop r10                             # (in the reverse order)
    pop rdx                             # the guest's rdx
    pop rsi                             # the guest's rsi
    pop rdi                             # rax is prctl's 0 (or the clone's 0): the child's result
1:
    lea r11, [rsp + 8]                  # the slot, above the flags
    sigprocmask set                     # the guest's mask back, in parent and child
    mov r11, [rsp]                      # r11 = RFLAGS, as after a native syscall
    popfq                               # and the flags themselves
    lea rsp, [rsp + 16]                 # over the mask and the state pointer
    back_to_guest                       # rcx = return address, RSP the guest's
    .size sud_reissue_fork, . - sud_reissue_fork

# sud_reissue_vfork: vfork, or a clone with CLONE_VFORK that keeps the
# caller's stack.  R11 = the thread's entry in VFORK_PARENTS (offsets
# VFORK_*), filed by the dispatcher with the state the child is armed from.
# The child runs on this very stack while the parent sleeps, and leaves it
# used: the parent finds what it needs afterwards in its entry, under its
# tid and its RSP.
    .globl sud_reissue_vfork
    .type sud_reissue_vfork, @function
    .p2align 4
sud_reissue_vfork:
    lea rsp, [rsp - {RED_ZONE}]         # step over the guest's red zone
    push rcx                            # the return address, for the child
    push qword ptr [r11 + {VFORK_STATE}]    # the state, for the child
    push r11                            # the entry, across the rt_sigprocmask
    lea r11, [r11 + {VFORK_MASK}]       # the guest's mask goes into the entry
    sigprocmask block_all               # every signal but SIGSYS blocked
    pop r11                             # the entry
    push qword ptr [r11 + {VFORK_MASK}] # and the child's copy of the mask, in its slot
    syscall                             # the guest's vfork: the parent sleeps until the child execs or exits
    push r11                            # RFLAGS as the kernel restored them
    test rax, rax                       # 0 in the child
    jz .Lfork_child                     # the child: the same stack layout as a fork child's
    push rax                            # the parent: the child's pid, or -errno
    mov eax, {NR_GETTID}                # gettid
    syscall                             # rax = this thread's tid; rcx and r11 are free
    lea r11, [rip + {VFORK_PARENTS}]    # the entries
    mov ecx, {VFORK_PARENTS_LEN}        # entries to look at
2:
    cmp [r11 + {VFORK_TID}], rax        # this thread's entry?
    jne 3f                              # no: the next one
    cmp [r11 + {VFORK_RSP}], rsp        # and this very call's: RSP as the dispatcher filed it
    je 4f                               # found
3:
    add r11, {VFORK_ENTRY_SIZE}         # the next entry
    dec ecx                             # one entry fewer to look at
    jnz 2b                              # more to look at
    ud2                                 # no entry: impossible, the dispatcher always files one
4:
    push r11                            # the entry, across the syscall below
    lea r11, [r11 + {VFORK_MASK}]       # the guest's mask, filed with the entry
    sigprocmask set                     # back in place (the child's copy may be gone)
    pop r11                             # the entry
    mov rcx, [r11 + {VFORK_RETURN}]     # rcx = the return address, as after a native syscall
    mov qword ptr [r11 + {VFORK_TID}], 0    # the entry is free again
    pop rax                             # the result
    mov r11, [rsp]                      # r11 = RFLAGS
    popfq                               # and the flags themselves
    lea rsp, [rsp + 24 + {RED_ZONE}]    # over the three slots and the red zone: the guest's RSP
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
    lea rsp, [rsp - 8]                  # a slot for the guest's mask
    mov r11, rsp                        # where block_all keeps it
    sigprocmask block_all               # every signal but SIGSYS blocked, the guest's mask in the slot
    mov r11, [rsp + 8]                  # the child's state
    mov rcx, [rsp]                      # the guest's mask (rcx is saved above)
    mov [r11 + {STATE_CLONE_MASK}], rcx # the child's copy, in its state
    syscall                             # the guest's clone
    push r11                            # RFLAGS (the child pushes onto its new stack: top - 8)
    test rax, rax                       # 0 in the child
    jz 5f                               # the child
    mov r11, [rsp + 16]                 # the parent: the child's state
    mov [r11 + {STATE_CLONE_RESULT}], rax   # the child exists (its tid) or never will (-errno); the slot is no longer read here
    lea r11, [rsp + 8]                  # the guest's mask, in the slot
    sigprocmask set                     # back in place
    mov r11, [rsp]                      # r11 = RFLAGS, as after a native syscall
    popfq                               # and the flags themselves
    lea rsp, [rsp + 16]                 # over the mask and the state pointer
    back_to_guest                       # rcx = return address, RSP the guest's
5:
    mov r11, [rsp - 8]                  # the child, on its new stack: its state, at top - 16
    push rdi                            # keep the guest registers the setup uses
    push rsi                            # (argument registers the syscalls below take)
    push rdx                            # the guest's rdx
    push r10                            # the guest's r10
    push r8                             # the guest's r8
    push r11                            # the state, across the syscalls
    mov eax, {NR_GETTID}                # gettid
    syscall                             # rax = the new thread's tid
    mov r11, [rsp]                      # the state (the syscall clobbered r11)
    mov [r11 + {STATE_TID}], eax        # the state learns whose it is
    lea rdi, [r11 + {STATE_ALTSTACK}]   # sigaltstack(&state.altstack, NULL): the thread's own
    xor esi, esi                        # no old stack wanted
    mov eax, {NR_SIGALTSTACK}           # sigaltstack
    syscall                             # the thread's own alternate stack is installed
    test rax, rax                       # without it sud could not find the state
    jnz sud_unarmed_child               # no alternate stack, no state: cannot run
    mov r11, [rsp]                      # the state
    arm_child                           # sud's SIGSYS handler back if need be, then armed
    mov r11, [rsp]                      # the state
    lea r11, [r11 + {STATE_CLONE_MASK}] # the guest's mask, inherited
    sigprocmask set                     # set up: the child may take signals
    pop r11                             # the state
    mov rcx, [r11 + {STATE_RESUME}]     # rcx = where the guest resumes: after its clone
    pop r8                              # the guest registers back
    pop r10                             # (in the reverse order)
    pop rdx                             # the guest's rdx
    pop rsi                             # the guest's rsi
    pop rdi                             # the guest's rdi
    xor eax, eax                        # rax = 0, the child's clone result (popfq below restores the flags)
    mov r11, [rsp]                      # r11 = RFLAGS, as after a native syscall
    popfq                               # RSP = the top of the new stack, as the guest asked
    jmp rcx                             # into the guest's child code
    .size sud_reissue_thread, . - sud_reissue_thread

# sud_reissue_exit: a managed thread's exit.  R11 = its state, RDI = the
# status.  The thread blocks every signal but SIGSYS, disarms, drops its alternate
# stack, marks its state dead (a new thread may take it from then on) and
# exits; nothing of it is left behind.
    .globl sud_reissue_exit
    .type sud_reissue_exit, @function
    .p2align 4
sud_reissue_exit:
    mov r12, rdi                        # the status; the thread ends, so its registers no longer matter
    mov r13, r11                        # the state
    mov eax, {NR_RT_SIGPROCMASK}        # rt_sigprocmask(SIG_SETMASK, &every signal but SIGSYS, NULL, size)
    mov edi, {SIG_SETMASK}              # replace the whole mask
    lea rsi, [rip + {ALL_BUT_SIGSYS}]   # with every signal but SIGSYS (a forced one must not kill the process)
    xor edx, edx                        # no old mask wanted
    mov r10d, {SIGSET_SIZE}             # the kernel's sigset size
    syscall                             # no signal from here on: its stack is going away
    mov eax, {NR_PRCTL}                 # prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0)
    mov edi, {PR_SET_SYSCALL_USER_DISPATCH} # the option
    mov esi, {PR_SYS_DISPATCH_OFF}      # off
    xor edx, edx                        # offset 0
    xor r10d, r10d                      # length 0
    xor r8d, r8d                        # no selector
    syscall                             # disarmed: the selector is going away
    mov eax, {NR_SIGALTSTACK}           # sigaltstack(&disabled, NULL)
    lea rdi, [rip + {NO_ALTSTACK}]      # a stack_t saying SS_DISABLE
    xor esi, esi                        # no old stack wanted
    syscall                             # no alternate stack: it is going away
    mov byte ptr [r13 + {STATE_STATE}], {STATE_DEAD}    # the status byte: the state is free from here on
    mov rdi, r12                        # the status
    mov eax, {NR_EXIT}                  # exit (this thread only)
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

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
# the process; sud's handler passes it on.)  The guest's mask is kept where
# each side finds it afterwards, and put back.
#
# The guest's flags come back through popfq, and r11 = RFLAGS, as after a
# native syscall.  The CFI follows the return address as in reissue.s; a
# child on a new stack has nothing to return to, and says so.

    .pushsection sud_allowed, "axR", @progbits

# rt_sigprocmask, keeping every guest register but rcx and r11 (which the
# syscall clobbers anyway); it cannot fail with these arguments.  Clobbers
# the flags.  `block_all`: every signal but SIGSYS blocked, the old mask
# stored where R11 points; `set`: the mask R11 points to installed.
.macro sigprocmask kind
    push rax
    .cfi_adjust_cfa_offset 8
    push rdi
    .cfi_adjust_cfa_offset 8
    push rsi
    .cfi_adjust_cfa_offset 8
    push rdx
    .cfi_adjust_cfa_offset 8
    push r10
    .cfi_adjust_cfa_offset 8
.ifc \kind,block_all
    mov edi, {SIG_BLOCK}
    lea rsi, [rip + {ALL_BUT_SIGSYS}]
    mov rdx, r11
.else
    mov edi, {SIG_SETMASK}
    mov rsi, r11
    xor edx, edx
.endif
    mov r10d, {SIGSET_SIZE}
    mov eax, {NR_RT_SIGPROCMASK}
    syscall
    pop r10
    .cfi_adjust_cfa_offset -8
    pop rdx
    .cfi_adjust_cfa_offset -8
    pop rsi
    .cfi_adjust_cfa_offset -8
    pop rdi
    .cfi_adjust_cfa_offset -8
    pop rax
    .cfi_adjust_cfa_offset -8
.endm

# Prepares a new task from the ThreadState in r11 (kept on the stack across
# the syscalls, which clobber r11): puts sud's SIGSYS handler back if the
# clone cleared every handler (CLONE_CLEAR_SIGHAND: the dispatcher copied
# sud's action into the state; 0 there means nothing to put back), then arms
# dispatch as the state says, unless its creator was not armed
# (PR_SYS_DISPATCH_OFF, as the kernel leaves the child).  Clobbers rax, rdi,
# rsi, rdx, r10, r8, rcx, r11 and the flags.  A task that cannot be set up
# must not run guest code, not even unarmed or with its first trap fatal: it
# dies at sud_unarmed_child.
.macro arm_child
    push r11
    .cfi_adjust_cfa_offset 8
    cmp qword ptr [r11 + {STATE_SIGSYS_ACTION}], 0
    je 71f
    mov eax, {NR_RT_SIGACTION}          # rt_sigaction(SIGSYS, &action, NULL, sigset size)
    mov edi, {SIGSYS}
    lea rsi, [r11 + {STATE_SIGSYS_ACTION}]
    xor edx, edx
    mov r10d, {SIGSET_SIZE}
    syscall
    test rax, rax
    jnz sud_unarmed_child
71:
    mov r11, [rsp]
    cmp qword ptr [r11 + {STATE_ARM_OP}], 0
    je 72f
    mov edi, {PR_SET_SYSCALL_USER_DISPATCH}  # prctl(PR_SET_SYSCALL_USER_DISPATCH, op, offset, len, selector)
    mov rsi, [r11 + {STATE_ARM_OP}]
    mov rdx, [r11 + {STATE_ARM_OFFSET}]
    mov r10, [r11 + {STATE_ARM_LEN}]
    mov r8, [r11 + {STATE_ARM_SELECTOR}]
    mov eax, {NR_PRCTL}
    syscall                             # armed: from here on the child's guest syscalls are dispatched
    test rax, rax
    jnz sud_unarmed_child
72:
    pop r11
    .cfi_adjust_cfa_offset -8
.endm

# The frame sud_reissue_fork and sud_reissue_vfork both build below the red
# zone, from the top: the return address, the state the child is armed
# from, the guest's mask, and RFLAGS after the syscall.  .Lfork_child
# finds the state in it, whichever of the two it came from; at the
# guest's syscall the mask is at RSP, the state TASK_STATE above it, the
# return address TASK_RETURN above it (sud_reissue_thread's frame is the
# same), as src/reissue/guest_view.rs reads them.
.set FORK_FRAME_STATE, {TASK_STATE} + 8 # once RFLAGS are pushed too
.if {TASK_STATE} != 8 || {TASK_RETURN} != 16
    .error "the task stubs' frame is not as src/reissue/guest_view.rs says"
.endif

# sud_reissue_fork: fork, or a clone without CLONE_VFORK that keeps the
# caller's stack (no new stack given).  R11 = the state the child is armed
# from: the parent's, of which the child has its own copy, with
# FORK_OWN_MEMORY set unless the clone shares the parent's memory.  Below the red
# zone: the return address, the state, a slot for the guest's mask, then
# RFLAGS after the syscall (r11 holds them there).  A vfork child
# (sud_reissue_vfork) joins at .Lfork_child with the same layout, armed from
# the very state.  The child keeps the guest registers arm_child uses;
# its rax, the result, is prctl's 0 or the clone's 0.
    .globl sud_reissue_fork
    .type sud_reissue_fork, @function
    .p2align 4
sud_reissue_fork:
    stub_entry
    push r11
    .cfi_adjust_cfa_offset 8
    lea rsp, [rsp - 8]
    .cfi_adjust_cfa_offset 8
    mov r11, rsp
    sigprocmask block_all
    # On its way, with every signal but SIGSYS blocked until the syscall has
    # run (no handler but a SIGSYS one can abandon it counted), once no code
    # write is open: no child copies a half-written site (src/sys/code.rs).
    # The guest's flags are kept around the count.
    pushfq
    .cfi_adjust_cfa_offset 8
3:
    lock inc qword ptr [rip + {FORKS_IN_FLIGHT}]
    cmp byte ptr [rip + {WRITE_WINDOW}], 0
    je 4f
    lock dec qword ptr [rip + {FORKS_IN_FLIGHT}]
    pause
    jmp 3b
4:
    popfq
    .cfi_adjust_cfa_offset -8
    syscall                             # the guest's fork or clone; ends at FORK_END
    push r11
    .cfi_adjust_cfa_offset 8
    test rax, rax
    .cfi_remember_state
    jnz 2f                              # the parent: the child's pid, or -errno
    test byte ptr [rsp + FORK_FRAME_STATE], {FORK_OWN_MEMORY}
    jz 5f                               # a clone sharing the parent's memory
    # The child, in a memory of its own with no other thread: no fork in
    # flight, no write open, no writer holding the rewrite lock.
    mov qword ptr [rip + {FORKS_IN_FLIGHT}], 0
    mov byte ptr [rip + {WRITE_WINDOW}], 0
    mov byte ptr [rip + {REWRITE_LOCK}], 0
    and qword ptr [rsp + FORK_FRAME_STATE], -{FORK_OWN_MEMORY} - 1
    mov eax, {NR_GETTID}                # the fork child (not a vfork child, which
    syscall                             # shares its parent's memory): its own tid
    mov r11, [rsp + FORK_FRAME_STATE]   # in its copy of the state, which is its own
    mov [r11 + {STATE_TID}], eax
5:
    xor eax, eax                        # the child's result
.Lfork_child:
    push rdi
    .cfi_adjust_cfa_offset 8
    push rsi
    .cfi_adjust_cfa_offset 8
    push rdx
    .cfi_adjust_cfa_offset 8
    push r10
    .cfi_adjust_cfa_offset 8
    push r8
    .cfi_adjust_cfa_offset 8
    mov r11, [rsp + 5 * 8 + FORK_FRAME_STATE]   # above the five registers just pushed
    arm_child
    pop r8
    .cfi_adjust_cfa_offset -8
    pop r10
    .cfi_adjust_cfa_offset -8
    pop rdx
    .cfi_adjust_cfa_offset -8
    pop rsi
    .cfi_adjust_cfa_offset -8
    pop rdi
    .cfi_adjust_cfa_offset -8
1:
    lea r11, [rsp + 8]
    sigprocmask set                     # in parent and child
    mov r11, [rsp]
    popfq
    .cfi_adjust_cfa_offset -8
    lea rsp, [rsp + 16]
    .cfi_adjust_cfa_offset -16
    back_to_guest
2:
    .cfi_restore_state
    lock dec qword ptr [rip + {FORKS_IN_FLIGHT}]   # this fork is no longer on its way
    jmp 1b
    .cfi_endproc
    .size sud_reissue_fork, . - sud_reissue_fork

# sud_reissue_vfork: vfork, or a clone with CLONE_VFORK that keeps the
# caller's stack.  R11 = the thread's entry in the vfork table (offsets
# VFORK_*), filed by the dispatcher with the state the child is armed from.
# The stack below the red zone is laid out as sud_reissue_fork's, for the
# child's sake: the return address, the state, the child's copy of the
# guest's mask, RFLAGS.  The child runs on this very stack while the parent
# sleeps, and leaves it used; but registers are each task's own, so the
# parent keeps its entry in RBX across the vfork (the guest's RBX waits in
# the entry) and finds there what the stack may have lost: the mask and the
# return address.
    .globl sud_reissue_vfork
    .type sud_reissue_vfork, @function
    .p2align 4
sud_reissue_vfork:
    stub_entry
    push qword ptr [r11 + {VFORK_STATE}]
    .cfi_adjust_cfa_offset 8
    mov [r11 + {VFORK_RBX}], rbx
    mov rbx, r11
    cfi_saved_at 3, 3, {VFORK_RBX}
    lea r11, [rbx + {VFORK_MASK}]
    sigprocmask block_all               # the guest's mask goes into the entry
    push qword ptr [rbx + {VFORK_MASK}]
    .cfi_adjust_cfa_offset 8
    syscall                             # the guest's vfork (ends at VFORK_END): the parent sleeps until the child execs or exits
    push r11
    .cfi_adjust_cfa_offset 8
    test rax, rax
    .cfi_remember_state
    jz 5f
    cfi_saved_at 16, 3, {VFORK_RETURN}  # the parent: the stack's return address may be the child's leftovers
    push rax
    .cfi_adjust_cfa_offset 8
    lea r11, [rbx + {VFORK_MASK}]
    sigprocmask set                     # the child's copy may be gone
    mov rcx, [rbx + {VFORK_RETURN}]
    .cfi_register rip, rcx
    mov r11, rbx
    mov rbx, [r11 + {VFORK_RBX}]
    .cfi_restore rbx
    mov qword ptr [r11 + {VFORK_TID}], 0    # the entry is free again
    pop rax
    .cfi_adjust_cfa_offset -8
    mov r11, [rsp]
    popfq
    .cfi_adjust_cfa_offset -8
    lea rsp, [rsp + 24 + {RED_ZONE}]
    .cfi_adjust_cfa_offset -24-{RED_ZONE}
    jmp rcx
5:
    .cfi_restore_state
    mov rbx, [rbx + {VFORK_RBX}]        # the child: the entry is intact while its parent sleeps
    .cfi_restore rbx
    jmp .Lfork_child
    .cfi_endproc
    .size sud_reissue_vfork, . - sud_reissue_vfork

# sud_reissue_thread: clone or clone3 with a new stack.  R11 = the new
# thread's state, which the dispatcher also left 16 bytes below the top of
# the new stack, where the child finds it.  The parent keeps the return
# address, the state (to report the clone's result in: the child's tid, or
# -errno when it never will exist) and a slot for the guest's mask below the
# red zone, and hands the child its copy of the mask in the state.  The
# child's first push (RFLAGS) lands at the top of its new stack - 8; it
# keeps the guest registers its setup uses below, and resumes at the
# state's resume address (after the guest's clone) with RAX = 0 and RSP =
# the top of its stack, as the guest asked.
    .globl sud_reissue_thread
    .type sud_reissue_thread, @function
    .p2align 4
sud_reissue_thread:
    stub_entry
    push r11
    .cfi_adjust_cfa_offset 8
    lea rsp, [rsp - 8]
    .cfi_adjust_cfa_offset 8
    mov r11, rsp
    sigprocmask block_all
    mov r11, [rsp + 8]
    mov rcx, [rsp]                      # rcx is free: the return address is saved above
    mov [r11 + {STATE_CLONE_MASK}], rcx
    syscall                             # the guest's clone; ends at THREAD_END
    push r11
    .cfi_adjust_cfa_offset 8
    test rax, rax
    jz 5f
    mov r11, [rsp + 16]
    movzx ecx, byte ptr [r11 + {STATE_PARENT_RELEASES}] # rcx is free too; read while the slot is ours
    mov [r11 + {STATE_CLONE_RESULT}], rax   # the slot is no longer read here
    test rax, rax
    js 6f                               # a failed clone: its slot is reusable now
    test ecx, ecx
    jz 7f                               # a thread runs on it
6:
    lock inc qword ptr [rip + {SLOTS_RETURNED}]
7:
    lea r11, [rsp + 8]
    sigprocmask set
    mov r11, [rsp]
    popfq
    .cfi_adjust_cfa_offset -8
    lea rsp, [rsp + 16]
    .cfi_adjust_cfa_offset -16
    back_to_guest
5:
    # The child, on its new stack: nothing above it to return to.
    .cfi_def_cfa rsp, 8
    .cfi_undefined rip
    mov r11, [rsp + 8 - {NEW_THREAD_TICKET_DEPTH}]  # its state, that far below the top, 8 above RSP after the RFLAGS push
    push rdi
    .cfi_adjust_cfa_offset 8
    push rsi
    .cfi_adjust_cfa_offset 8
    push rdx
    .cfi_adjust_cfa_offset 8
    push r10
    .cfi_adjust_cfa_offset 8
    push r8
    .cfi_adjust_cfa_offset 8
    push r11
    .cfi_adjust_cfa_offset 8
    mov eax, {NR_GETTID}
    syscall
    mov r11, [rsp]
    mov [r11 + {STATE_TID}], eax
    lea rdi, [r11 + {STATE_ALTSTACK}]   # sigaltstack(&state.altstack, NULL): the thread's own
    xor esi, esi
    mov eax, {NR_SIGALTSTACK}
    syscall
    test rax, rax                       # without it sud could not find the state
    jnz sud_unarmed_child
    mov r11, [rsp]
    arm_child
    mov r11, [rsp]
    lea r11, [r11 + {STATE_CLONE_MASK}]
    sigprocmask set                     # set up: the child may take signals
    pop r11
    .cfi_adjust_cfa_offset -8
    mov rcx, [r11 + {STATE_RESUME}]
    pop r8
    .cfi_adjust_cfa_offset -8
    pop r10
    .cfi_adjust_cfa_offset -8
    pop rdx
    .cfi_adjust_cfa_offset -8
    pop rsi
    .cfi_adjust_cfa_offset -8
    pop rdi
    .cfi_adjust_cfa_offset -8
    xor eax, eax                        # popfq below restores the flags
    mov r11, [rsp]
    popfq
    .cfi_adjust_cfa_offset -8
    jmp rcx
    .cfi_endproc
    .size sud_reissue_thread, . - sud_reissue_thread

# sud_reissue_exit: a managed thread's exit.  R11 = its state, RDI = the
# status.  The thread blocks every signal but SIGSYS (a forced one must not
# kill the process), disarms (the selector is going away), drops its
# alternate stack (it is going away too), marks its state dead (a new thread
# may take it from then on) and exits; nothing of it is left behind.  It
# never returns, so r12 and r13 are free, and the return address is lost
# with the first syscall: the CFI stops there.
    .globl sud_reissue_exit
    .type sud_reissue_exit, @function
    .p2align 4
sud_reissue_exit:
    .cfi_startproc
    .cfi_def_cfa_offset 0
    .cfi_register rip, rcx
    mov r12, rdi
    .cfi_undefined r12
    mov r13, r11
    .cfi_undefined r13
    mov eax, {NR_RT_SIGPROCMASK}        # rt_sigprocmask(SIG_SETMASK, &every signal but SIGSYS, NULL, size)
    mov edi, {SIG_SETMASK}
    lea rsi, [rip + {ALL_BUT_SIGSYS}]
    xor edx, edx
    mov r10d, {SIGSET_SIZE}
    syscall
    .cfi_undefined rip
    mov eax, {NR_PRCTL}                 # prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0)
    mov edi, {PR_SET_SYSCALL_USER_DISPATCH}
    mov esi, {PR_SYS_DISPATCH_OFF}
    xor edx, edx
    xor r10d, r10d
    xor r8d, r8d
    syscall
    mov eax, {NR_SIGALTSTACK}           # sigaltstack(&disabled, NULL)
    lea rdi, [rip + {NO_ALTSTACK}]
    xor esi, esi
    syscall
    mov byte ptr [r13 + {STATE_STATE}], {STATE_DEAD}
    lock inc qword ptr [rip + {SLOTS_RETURNED}] # the slot is reusable
    mov rdi, r12
    mov eax, {NR_EXIT}                  # exit (this thread only)
    syscall
    ud2                                 # never reached; keeps the region going past the syscall
    .cfi_endproc
    .size sud_reissue_exit, . - sud_reissue_exit

# A new task that could not be set up must not run guest code unsupervised:
# it dies here of SIGILL, where a debugger shows why.  It is jumped to from
# several stack depths, so the CFI records no caller.
    .globl sud_unarmed_child
    .type sud_unarmed_child, @function
sud_unarmed_child:
    .cfi_startproc
    .cfi_undefined rip
    ud2
    .cfi_endproc
    .size sud_unarmed_child, . - sud_unarmed_child

    .popsection

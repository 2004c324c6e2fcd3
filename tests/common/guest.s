# Guest code that makes task and signal syscalls itself (raw clone, clone3,
# fork, vfork and exec; sigaltstack from a chosen RSP; rt_sigaction in a
# vfork child), so that sud meets them as it meets a guest's: trapped at the
# `syscall`, with children that run guest code from their first instruction.
# Syscall numbers, flags, struct offsets and FAKE_PPID come from Rust
# (tests/common/asm.rs).

    .text

# A child's own signal mask, into RAX, read through a slot it makes below
# RSP (and leaves there).
.macro read_signal_mask
    sub rsp, 8                          # room for the mask
    mov eax, {NR_RT_SIGPROCMASK}        # rt_sigprocmask(0, NULL, rsp, 8)
    xor edi, edi
    xor esi, esi
    mov rdx, rsp
    mov r10d, {SIGSET_SIZE}
    syscall
    mov rax, [rsp]
.endm

# extern "C" fn guest_clone(t: *mut CloneTest) -> i64: clone(2) or clone3(2)
# (t.clone3 != 0) with t's arguments.  The child records its registers,
# RFLAGS, RSP, a trapped getppid and its signal mask in t, then exits with
# the thread exit syscall.  The parent records its RFLAGS as the syscall left them.
    .globl guest_clone
    .type guest_clone, @function
guest_clone:
    push rbx                            # callee-saved registers the test overwrites
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov r15, rdi                        # the test, in a register the child keeps
    mov rbx, 0x1111111111111111         # callee-saved values the child must see
    mov rbp, 0x2222222222222222
    mov r12, 0x3333333333333333
    mov r13, 0x4444444444444444
    mov r14, 0x5555555555555555
    cmp qword ptr [r15 + {T_CLONE3}], 0 # which syscall
    jne 1f
    mov eax, {NR_CLONE}                 # clone(flags, stack, parent_tid, child_tid, tls)
    mov rdi, [r15 + {T_FLAGS}]
    mov rsi, [r15 + {T_STACK}]
    mov rdx, [r15 + {T_PARENT_TID}]
    mov r10, [r15 + {T_CHILD_TID}]
    xor r8d, r8d
    jmp 2f
1:
    mov eax, {NR_CLONE3}                # clone3(args, size)
    lea rdi, [r15 + {T_ARGS}]
    mov esi, {CLONE_ARGS_SIZE}
    xor edx, edx                        # defined values in the other argument registers
    xor r10d, r10d
    xor r8d, r8d
2:
    stc                                 # a carry flag both sides must see
    syscall
    pushfq                              # RFLAGS first, before anything changes them
    test rax, rax
    jz 3f
    pop qword ptr [r15 + {T_PARENT_FLAGS}]  # the parent
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
3:
    pop qword ptr [r15 + {T_CHILD_FLAGS}]   # the child: its RFLAGS and registers, as native
    mov [r15 + {T_CHILD_REGS}], rbx
    mov [r15 + {T_CHILD_REGS} + 8], rbp
    mov [r15 + {T_CHILD_REGS} + 16], r12
    mov [r15 + {T_CHILD_REGS} + 24], r13
    mov [r15 + {T_CHILD_REGS} + 32], r14
    mov [r15 + {T_CHILD_ARGS}], rdi
    mov [r15 + {T_CHILD_ARGS} + 8], rsi
    mov [r15 + {T_CHILD_ARGS} + 16], rdx
    mov [r15 + {T_CHILD_ARGS} + 24], r10
    mov [r15 + {T_CHILD_ARGS} + 32], r8
    mov [r15 + {T_CHILD_RSP}], rsp
    mov eax, {NR_GETPPID}
    syscall                             # trapped if and only if the child is armed
    mov [r15 + {T_CHILD_GETPPID}], rax
    mov eax, {NR_RT_SIGPROCMASK}        # rt_sigprocmask(0, NULL, &t.child_mask, 8)
    xor edi, edi
    xor esi, esi
    lea rdx, [r15 + {T_CHILD_MASK}]
    mov r10d, {SIGSET_SIZE}
    syscall
    mov eax, {NR_EXIT}
    xor edi, edi
    syscall                             # the thread ends
    ud2
    .size guest_clone, . - guest_clone

# extern "C" fn guest_fork(nr, a1, a2) -> i64: fork, or clone(a1, 0, ...) or
# clone3(a1, a2): a child in a memory of its own, on this stack.  The child
# exits with bit 0 set if its own getppid is not trapped (answered FAKE_PPID),
# bit 1 if its signal mask is not EXPECTED_CHILD_MASK.
    .globl guest_fork
    .type guest_fork, @function
guest_fork:
    mov rax, rdi                        # the syscall
    mov rdi, rsi                        # its arguments: clone's flags, or clone3's struct
    mov rsi, rdx                        # clone's stack (0), or clone3's size
    xor edx, edx
    xor r10d, r10d
    xor r8d, r8d
    syscall
    test rax, rax
    jz 1f
    ret                                 # the parent: the child's pid
1:
    mov eax, {NR_GETPPID}
    syscall
    xor r12d, r12d
    cmp rax, {FAKE_PPID}
    setne r12b                          # bit 0: not trapped
    read_signal_mask
    cmp rax, [rip + {EXPECTED_CHILD_MASK}]
    setne al
    shl al, 1
    or r12b, al                         # bit 1: another mask
    mov edi, r12d
    mov eax, {NR_EXIT_GROUP}
    syscall
    ud2
    .size guest_fork, . - guest_fork

# extern "C" fn guest_syscall2_at(rsp, nr, a1, a2) -> i64: syscall nr(a1,
# a2) made with RSP = rsp.
    .globl guest_syscall2_at
    .type guest_syscall2_at, @function
guest_syscall2_at:
    push rbx
    mov rbx, rsp                        # our own stack, kept across
    mov rsp, rdi
    mov rax, rsi
    mov rdi, rdx
    mov rsi, rcx
    syscall
    mov rsp, rbx
    pop rbx
    ret
    .size guest_syscall2_at, . - guest_syscall2_at

# extern "C" fn guest_vfork_sigaction(act: *const KernelSigaction) -> i64:
# vfork; the child sets SIGUSR1's disposition to *act, as a posix_spawn
# child resets its parent's handlers, and exits 0 (1 if that failed).
    .globl guest_vfork_sigaction
    .type guest_vfork_sigaction, @function
guest_vfork_sigaction:
    push r15
    mov r15, rdi                        # the action, in a register the child keeps
    mov eax, {NR_VFORK}
    syscall
    test rax, rax
    jz 1f
    pop r15                             # the parent, woken when the child is gone
    ret
1:
    mov eax, {NR_RT_SIGACTION}          # rt_sigaction(SIGUSR1, act, NULL, 8)
    mov edi, {SIGUSR1}
    mov rsi, r15
    xor edx, edx
    mov r10d, {SIGSET_SIZE}
    syscall
    xor edi, edi
    test rax, rax
    setnz dil                           # 1 if it failed
    mov eax, {NR_EXIT_GROUP}
    syscall
    ud2
    .size guest_vfork_sigaction, . - guest_vfork_sigaction

# extern "C" fn guest_vfork_exec(t: *const VforkTest) -> i64: vfork (or
# clone(CLONE_VM | CLONE_VFORK | SIGCHLD) with no new stack); the child
# checks that it is trapped (else exits 99) and that its signal mask is
# t.mask (else exits 98), sets t.marker (memory it shares
# with its parent), sleeps t.sleep, then execs (execve, or execveat from
# AT_FDCWD) t.path, and if that fails exits with the errno.
    .globl guest_vfork_exec
    .type guest_vfork_exec, @function
guest_vfork_exec:
    push r15
    mov r15, rdi                        # the test, in a register the child keeps
    cmp qword ptr [r15 + {V_USE_CLONE}], 0
    jne 1f
    mov eax, {NR_VFORK}
    jmp 2f
1:
    mov eax, {NR_CLONE}
    mov edi, {VFORK_CLONE_FLAGS}
    xor esi, esi                        # no new stack: the child runs on this one
    xor edx, edx
    xor r10d, r10d
    xor r8d, r8d
2:
    syscall
    test rax, rax
    jz 3f
    pop r15                             # the parent, woken when the child is gone
    ret
3:
    mov eax, {NR_GETPPID}
    syscall
    mov edi, 99
    cmp rax, {FAKE_PPID}
    jne 5f
    read_signal_mask                    # on the parent's stack: it is asleep
    mov edi, 98
    cmp rax, [r15 + {V_MASK}]
    jne 5f
    mov rax, [r15 + {V_MARKER}]
    mov qword ptr [rax], 1              # seen by the parent only if memory is shared
    mov eax, {NR_NANOSLEEP}
    lea rdi, [r15 + {V_SLEEP}]
    xor esi, esi
    syscall                             # the parent must still be asleep after this
    cmp qword ptr [r15 + {V_USE_EXECVEAT}], 0
    jne 4f
    mov eax, {NR_EXECVE}
    mov rdi, [r15 + {V_PATH}]
    mov rsi, [r15 + {V_ARGV}]
    mov rdx, [r15 + {V_ENVP}]
    syscall                             # only returns on failure
    jmp 6f
4:
    mov eax, {NR_EXECVEAT}
    mov rdi, {AT_FDCWD}
    mov rsi, [r15 + {V_PATH}]
    mov rdx, [r15 + {V_ARGV}]
    mov r10, [r15 + {V_ENVP}]
    xor r8d, r8d
    syscall                             # only returns on failure
6:
    mov rdi, rax
    neg rdi                             # the errno as the exit status
5:
    mov eax, {NR_EXIT_GROUP}
    syscall
    ud2
    .size guest_vfork_exec, . - guest_vfork_exec

# extern "C" fn guest_clone_parked(flags, stack_top, child_tid, p: *const Parked) -> i64:
# clone(flags, stack_top, NULL, child_tid, 0); the child stores its getppid
# (trapped: FAKE_PPID) in p.ppid, waits (futex) until *p.release is non-zero,
# and exits with the thread exit syscall.
    .globl guest_clone_parked
    .type guest_clone_parked, @function
guest_clone_parked:
    push r15
    mov r15, rcx                        # the report, in a register the child keeps
    mov eax, {NR_CLONE}
    mov r10, rdx                        # clone(flags, stack, NULL, child_tid, 0)
    xor edx, edx
    xor r8d, r8d
    syscall
    test rax, rax
    jz 1f
    pop r15                             # the parent: the child's tid, or -errno
    ret
1:
    mov eax, {NR_GETPPID}
    syscall
    mov [r15 + {P_PPID}], rax
2:
    mov rdi, [r15 + {P_RELEASE}]
    cmp dword ptr [rdi], 0
    jne 3f
    mov eax, {NR_FUTEX}                 # futex(release, FUTEX_WAIT, 0, NULL)
    mov esi, {FUTEX_WAIT}
    xor edx, edx
    xor r10d, r10d
    syscall
    jmp 2b
3:
    mov eax, {NR_EXIT}
    xor edi, edi
    syscall                             # the thread ends
    ud2
    .size guest_clone_parked, . - guest_clone_parked

//! Threads, processes and signals under dispatch: per-thread selectors; guest
//! code creating threads (raw clone, clone3), processes (fork) and vfork
//! children that exec; the guest's signal mask, dispositions, SIGSYS handler
//! and alternate stack, virtualised so SIGSYS stays deliverable; host
//! handlers under ALLOW; teardown.  Each test runs in a process of its own.

#![allow(non_upper_case_globals)]

mod common;

use common::{Ends, isolated};
use linux_raw_sys::general::{
    __NR_clone, __NR_clone3, __NR_epoll_pwait, __NR_epoll_pwait2, __NR_exit, __NR_fork,
    __NR_getpid, __NR_getppid, __NR_gettid, __NR_io_pgetevents, __NR_io_uring_enter, __NR_ppoll,
    __NR_pselect6, __NR_rt_sigaction, __NR_rt_sigprocmask, __NR_rt_sigsuspend, __NR_sigaltstack,
    __NR_tgkill, CLONE_CHILD_CLEARTID, CLONE_FILES, CLONE_FS, CLONE_PARENT_SETTID, CLONE_SIGHAND,
    CLONE_SYSVSEM, CLONE_THREAD, CLONE_VFORK, CLONE_VM, SA_ONSTACK, SA_RESTORER, SA_SIGINFO,
    SIGCHLD, SIGSYS, SIGUSR1, SS_DISABLE,
};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use sud::{Action, Errno, Syscall, Thread, guest};

/// What emulated getppid answers: a trapped call is told this.
const FAKE_PPID: usize = 7777;

/// The selector of the thread whose getppid was last trapped.
static LAST_GETPPID_SELECTOR: AtomicU64 = AtomicU64::new(0);

/// The tests' policy: getppid emulated, everything else run natively.
fn emulate_getppid(call: &mut Syscall) -> Action {
    if call.number() == __NR_getppid {
        LAST_GETPPID_SELECTOR.store(call.selector().as_ptr() as u64, Ordering::SeqCst);
        Action::Emulate(FAKE_PPID)
    } else {
        Action::Reissue
    }
}

/// Sets up this thread with its own selector and arms it.
fn armed_thread() -> Thread {
    let thread = Thread::new().expect("Thread::new");
    thread.arm().expect("arm");
    thread
}

/// Runs `f` with `thread`'s selector at BLOCK.
fn blocked<T>(thread: &Thread, f: impl FnOnce() -> T) -> T {
    // SAFETY: the tests' guest code only makes syscalls meant for the callback.
    unsafe { thread.selector().block() };
    let out = f();
    thread.selector().allow();
    out
}

fn trapped_getppid() -> Result<usize, Errno> {
    // SAFETY: getppid has no arguments or effects.
    unsafe { guest::syscall0(__NR_getppid) }
}

// Guest code making raw clone, clone3, fork and vfork syscalls itself, with
// its children running guest code from their first instruction.
core::arch::global_asm!(
    r#"
    .text
# extern "C" fn guest_clone(t: *mut CloneTest) -> i64: clone(2) or clone3(2)
# (t.clone3 != 0) with t's arguments.  The child records its registers,
# RFLAGS, RSP, a trapped getppid and its signal mask in t, then exits with
# the thread exit syscall.  The parent records its RFLAGS as the syscall left them.
    .globl guest_clone
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
    mov r10d, 8
    syscall
    mov eax, {NR_EXIT}
    xor edi, edi
    syscall                             # the thread ends
    ud2

# extern "C" fn guest_fork(nr, a1, a2) -> i64: fork, or clone(a1, 0, ...) or
# clone3(a1, a2): a child in a memory of its own, on this stack.  The child
# exits with bit 0 set if its own getppid is not trapped (answered 7777),
# bit 1 if its signal mask is not EXPECTED_CHILD_MASK.
    .globl guest_fork
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
    sub rsp, 8                          # room for the mask
    mov eax, {NR_RT_SIGPROCMASK}        # rt_sigprocmask(0, NULL, rsp, 8)
    xor edi, edi
    xor esi, esi
    mov rdx, rsp
    mov r10d, 8
    syscall
    mov rax, [rsp]
    cmp rax, [rip + {EXPECTED_CHILD_MASK}]
    setne al
    shl al, 1
    or r12b, al                         # bit 1: another mask
    mov edi, r12d
    mov eax, {NR_EXIT_GROUP}
    syscall
    ud2

# extern "C" fn guest_syscall2_at(rsp, nr, a1, a2) -> i64: syscall nr(a1,
# a2) made with RSP = rsp.
    .globl guest_syscall2_at
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

# extern "C" fn guest_vfork_sigaction(act: *const KernelSigaction) -> i64:
# vfork; the child sets SIGUSR1's disposition to *act, as a posix_spawn
# child resets its parent's handlers, and exits 0 (1 if that failed).
    .globl guest_vfork_sigaction
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
    mov r10d, 8
    syscall
    xor edi, edi
    test rax, rax
    setnz dil                           # 1 if it failed
    mov eax, {NR_EXIT_GROUP}
    syscall
    ud2

# extern "C" fn guest_vfork_exec(t: *const VforkTest) -> i64: vfork (or
# clone(CLONE_VM | CLONE_VFORK | SIGCHLD) with no new stack); the child
# checks that it is trapped (else exits 99) and that its signal mask is
# t.mask (else exits 98), sets t.marker (memory it shares
# with its parent), sleeps t.sleep, then execs (execve, or execveat from
# AT_FDCWD) t.path, and if that fails exits with the errno.
    .globl guest_vfork_exec
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
    sub rsp, 8                          # room for the mask (the parent's stack: it is asleep)
    mov eax, {NR_RT_SIGPROCMASK}        # rt_sigprocmask(0, NULL, rsp, 8)
    xor edi, edi
    xor esi, esi
    mov rdx, rsp
    mov r10d, 8
    syscall
    mov rax, [rsp]
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
"#,
    NR_CLONE = const linux_raw_sys::general::__NR_clone,
    NR_CLONE3 = const linux_raw_sys::general::__NR_clone3,
    NR_VFORK = const linux_raw_sys::general::__NR_vfork,
    NR_EXECVE = const linux_raw_sys::general::__NR_execve,
    NR_EXECVEAT = const linux_raw_sys::general::__NR_execveat,
    NR_NANOSLEEP = const linux_raw_sys::general::__NR_nanosleep,
    NR_GETPPID = const __NR_getppid,
    NR_EXIT = const __NR_exit,
    NR_EXIT_GROUP = const linux_raw_sys::general::__NR_exit_group,
    FAKE_PPID = const FAKE_PPID,
    AT_FDCWD = const linux_raw_sys::general::AT_FDCWD,
    VFORK_CLONE_FLAGS = const CLONE_VM | CLONE_VFORK | SIGCHLD,
    CLONE_ARGS_SIZE = const std::mem::size_of::<linux_raw_sys::general::clone_args>(),
    T_FLAGS = const std::mem::offset_of!(CloneTest, flags),
    T_STACK = const std::mem::offset_of!(CloneTest, stack_top),
    T_PARENT_TID = const std::mem::offset_of!(CloneTest, parent_tid),
    T_CHILD_TID = const std::mem::offset_of!(CloneTest, child_tid),
    T_CLONE3 = const std::mem::offset_of!(CloneTest, clone3),
    T_ARGS = const std::mem::offset_of!(CloneTest, args),
    T_PARENT_FLAGS = const std::mem::offset_of!(CloneTest, parent_flags),
    T_CHILD_FLAGS = const std::mem::offset_of!(CloneTest, child_flags),
    T_CHILD_REGS = const std::mem::offset_of!(CloneTest, child_regs),
    T_CHILD_ARGS = const std::mem::offset_of!(CloneTest, child_args),
    T_CHILD_RSP = const std::mem::offset_of!(CloneTest, child_rsp),
    T_CHILD_GETPPID = const std::mem::offset_of!(CloneTest, child_getppid),
    T_CHILD_MASK = const std::mem::offset_of!(CloneTest, child_mask),
    NR_RT_SIGPROCMASK = const __NR_rt_sigprocmask,
    NR_RT_SIGACTION = const __NR_rt_sigaction,
    SIGUSR1 = const SIGUSR1,
    EXPECTED_CHILD_MASK = sym EXPECTED_CHILD_MASK,
    V_MASK = const std::mem::offset_of!(VforkTest, mask),
    V_USE_CLONE = const std::mem::offset_of!(VforkTest, use_clone),
    V_USE_EXECVEAT = const std::mem::offset_of!(VforkTest, use_execveat),
    V_MARKER = const std::mem::offset_of!(VforkTest, marker),
    V_SLEEP = const std::mem::offset_of!(VforkTest, sleep),
    V_PATH = const std::mem::offset_of!(VforkTest, path),
    V_ARGV = const std::mem::offset_of!(VforkTest, argv),
    V_ENVP = const std::mem::offset_of!(VforkTest, envp),
);

unsafe extern "C" {
    fn guest_clone(test: *mut CloneTest) -> i64;
    fn guest_fork(nr: u64, a1: u64, a2: u64) -> i64;
    fn guest_vfork_exec(test: *const VforkTest) -> i64;
    fn guest_syscall2_at(rsp: u64, nr: u64, a1: u64, a2: u64) -> i64;
    fn guest_vfork_sigaction(act: *const KernelSigaction) -> i64;
}

/// guest_clone's arguments and the child's report.
#[repr(C)]
#[derive(Default)]
struct CloneTest {
    flags: u64,
    stack_top: u64,
    parent_tid: u64,
    child_tid: u64,
    clone3: u64,
    args: [u64; 11],
    parent_flags: u64,
    child_flags: u64,
    child_regs: [u64; 5],
    child_args: [u64; 5],
    child_rsp: u64,
    child_getppid: u64,
    child_mask: u64,
}

/// The signal mask a guest_fork child must have.
static EXPECTED_CHILD_MASK: AtomicU64 = AtomicU64::new(0);

/// Gives this thread a mask of its own (SIGUSR2 blocked, not SIGSYS) for
/// a guest clone to keep, and returns it.
fn distinct_mask() -> u64 {
    // SAFETY: a valid sigset; this thread's mask only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let mask = common::sigblk(common::gettid());
    assert_ne!(mask & common::bit(libc::SIGUSR2), 0);
    mask
}

/// guest_vfork_exec's arguments.
#[repr(C)]
struct VforkTest {
    use_clone: u64,
    use_execveat: u64,
    marker: *mut u64,
    sleep: libc::timespec,
    path: *const u8,
    argv: *const *const u8,
    envp: *const *const u8,
    mask: u64,
}

const THREAD_FLAGS: u64 = (CLONE_VM
    | CLONE_FS
    | CLONE_FILES
    | CLONE_SIGHAND
    | CLONE_THREAD
    | CLONE_SYSVSEM
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID) as u64;

/// Creates a guest thread with raw clone or clone3 from guest code, waits
/// for it to exit, and checks what it saw.
fn run_guest_thread(thread: &Thread, use_clone3: bool) {
    let mask = distinct_mask();
    let mut stack = vec![0u8; 64 * 1024];
    let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
    let parent_tid = AtomicU32::new(0);
    let child_tid = AtomicU32::new(u32::MAX);
    let mut test = CloneTest {
        flags: THREAD_FLAGS,
        stack_top: top,
        ..Default::default()
    };
    test.parent_tid = parent_tid.as_ptr() as u64;
    test.child_tid = child_tid.as_ptr() as u64;
    if use_clone3 {
        test.clone3 = 1;
        // flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, ...
        let base = stack.as_mut_ptr() as u64;
        test.args[..8].copy_from_slice(&[
            THREAD_FLAGS,
            0,
            test.child_tid,
            test.parent_tid,
            0,
            base,
            top - base,
            0,
        ]);
    }
    // SAFETY: the guest creates a thread on `stack`, which outlives it (we
    // wait for its exit below); the child writes only into `test`.
    let tid = blocked(thread, || unsafe { guest_clone(&mut test) });
    assert!(tid > 0, "clone failed: {tid}");
    assert_eq!(
        common::sigblk(common::gettid()),
        mask,
        "the parent's signal mask changed"
    );
    assert_eq!(
        parent_tid.load(Ordering::SeqCst),
        tid as u32,
        "CLONE_PARENT_SETTID"
    );
    // CLONE_CHILD_CLEARTID: the kernel zeroes child_tid and wakes us at its exit.
    common::wait_for_thread_exit(&child_tid, tid);
    assert_eq!(
        test.child_regs,
        [
            0x1111111111111111,
            0x2222222222222222,
            0x3333333333333333,
            0x4444444444444444,
            0x5555555555555555
        ]
    );
    // Every other register as native: the syscall's arguments, RFLAGS.
    let args = if use_clone3 {
        [
            test.args.as_ptr() as u64,
            std::mem::size_of::<linux_raw_sys::general::clone_args>() as u64,
            0,
            0,
            0,
        ]
    } else {
        [THREAD_FLAGS, top, test.parent_tid, test.child_tid, 0]
    };
    assert_eq!(test.child_args, args);
    assert_eq!(
        test.child_flags, test.parent_flags,
        "RFLAGS differ between parent and child"
    );
    assert_eq!(
        test.parent_flags & 1,
        1,
        "the carry flag set before the syscall was lost"
    );
    assert_eq!(test.child_rsp, top, "the child started on its own stack");
    assert_eq!(
        test.child_mask, mask,
        "the child's signal mask is not its parent's"
    );
    assert_eq!(
        test.child_getppid, FAKE_PPID as u64,
        "the child's syscalls were not trapped"
    );
    let child_selector = LAST_GETPPID_SELECTOR.load(Ordering::SeqCst);
    assert_ne!(
        child_selector,
        thread.selector().as_ptr() as u64,
        "the child shares its parent's selector"
    );
    assert_ne!(
        child_selector,
        sud::SELECTOR.as_ptr() as u64,
        "the child is on the global selector"
    );
}

#[test]
fn guest_clone_thread_is_armed_from_its_first_instruction() {
    isolated(
        "guest_clone_thread_is_armed_from_its_first_instruction",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            run_guest_thread(&thread, false);
        },
    );
}

#[test]
fn guest_clone3_thread_is_armed_from_its_first_instruction() {
    isolated(
        "guest_clone3_thread_is_armed_from_its_first_instruction",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            run_guest_thread(&thread, true);
        },
    );
}

/// A child of a thread armed in inclusive mode is armed in inclusive mode:
/// the guest code's range is trapped in it too.
#[test]
fn guest_clone_thread_keeps_inclusive_mode() {
    isolated(
        "guest_clone_thread_keeps_inclusive_mode",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = Thread::new().unwrap();
            // The guest: guest_clone's code, up to the next function.
            let range = guest_clone as *const () as usize..guest_fork as *const () as usize;
            thread.arm_inclusive(range).unwrap();
            run_guest_thread(&thread, false);
            run_guest_thread(&thread, true);
        },
    );
}

/// Guest threads that exit leave nothing behind: far more are created, one
/// after another, than sud has slots for (4096).
#[test]
fn exited_guest_threads_leave_nothing_behind() {
    isolated(
        "exited_guest_threads_leave_nothing_behind",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            for i in 0..5000 {
                run_guest_thread(&thread, i % 2 == 0);
            }
        },
    );
}

/// Threads on the global selector create children on it too.
#[test]
fn guest_thread_of_global_selector_thread() {
    isolated(
        "guest_thread_of_global_selector_thread",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            sud::arm().unwrap();
            let mut stack = vec![0u8; 64 * 1024];
            let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
            let child_tid = AtomicU32::new(u32::MAX);
            let mut test = CloneTest {
                flags: THREAD_FLAGS & !(CLONE_PARENT_SETTID as u64),
                stack_top: top,
                ..Default::default()
            };
            test.child_tid = child_tid.as_ptr() as u64;
            // The global selector is shared: the parent stays blocked (its futex
            // waits trapped and reissued) until the child is gone.
            // SAFETY: as in run_guest_thread.
            let tid = unsafe {
                sud::SELECTOR.block();
                let tid = guest_clone(&mut test);
                if tid > 0 {
                    common::wait_for_thread_exit(&child_tid, tid);
                }
                sud::SELECTOR.allow();
                tid
            };
            assert!(tid > 0);
            assert_eq!(test.child_getppid, FAKE_PPID as u64);
        },
    );
}

fn wait_status(pid: i64) -> i32 {
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(
        unsafe { libc::waitpid(pid as i32, &mut status, 0) },
        pid as i32
    );
    status
}

/// A child in a memory of its own, created from guest code by `nr` with
/// arguments (a1, a2), must have its syscalls trapped.
fn check_fork_like(thread: &Thread, nr: u32, a1: u64, a2: u64) {
    let mask = distinct_mask();
    EXPECTED_CHILD_MASK.store(mask, Ordering::SeqCst);
    // SAFETY: the child only makes syscalls and exits.
    let pid = blocked(thread, || unsafe { guest_fork(nr as u64, a1, a2) });
    assert!(pid > 0, "syscall {nr} failed: {pid}");
    assert_eq!(
        common::sigblk(common::gettid()),
        mask,
        "the parent's signal mask changed (syscall {nr})"
    );
    let status = wait_status(pid);
    assert!(libc::WIFEXITED(status), "child ended {status:#x}");
    let status = libc::WEXITSTATUS(status);
    assert_eq!(
        status & 1,
        0,
        "the child's getppid (syscall {nr}) was not trapped"
    );
    assert_eq!(
        status & 2,
        0,
        "the child's signal mask (syscall {nr}) is not its parent's"
    );
    // And the parent is still trapped, with its state intact.
    assert_eq!(blocked(thread, trapped_getppid), Ok(FAKE_PPID));
}

#[test]
fn guest_fork_child_is_trapped() {
    isolated("guest_fork_child_is_trapped", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        check_fork_like(&thread, __NR_fork, 0, 0);
    });
}

/// clone without CLONE_VM and without a new stack, and clone3 likewise:
/// fork children, armed again.
#[test]
fn guest_clone_and_clone3_fork_children_are_trapped() {
    isolated(
        "guest_clone_and_clone3_fork_children_are_trapped",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            check_fork_like(&thread, __NR_clone, SIGCHLD as u64, 0);
            let mut args = linux_raw_sys::general::clone_args {
                flags: 0,
                pidfd: 0,
                child_tid: 0,
                parent_tid: 0,
                exit_signal: SIGCHLD as u64,
                stack: 0,
                stack_size: 0,
                tls: 0,
                set_tid: 0,
                set_tid_size: 0,
                cgroup: 0,
            };
            let size = std::mem::size_of_val(&args) as u64;
            check_fork_like(&thread, __NR_clone3, &mut args as *mut _ as u64, size);
        },
    );
}

/// How a guest's vfork-and-exec went.
struct VforkOutcome {
    status: i32,
    /// Whether the parent saw the child's write: memory shared.
    shared: bool,
    /// How long the parent was gone: it sleeps until the child execs or exits.
    waited: std::time::Duration,
}

fn vfork_exec(
    thread: &Thread,
    path: &std::ffi::CStr,
    use_clone: bool,
    use_execveat: bool,
) -> VforkOutcome {
    let argv = [path.as_ptr() as *const u8, std::ptr::null()];
    let envp = [std::ptr::null::<u8>()];
    let mut marker = 0u64;
    let mask = distinct_mask();
    let test = VforkTest {
        use_clone: use_clone as u64,
        use_execveat: use_execveat as u64,
        marker: &mut marker,
        sleep: libc::timespec {
            tv_sec: 0,
            tv_nsec: 150_000_000,
        },
        path: path.as_ptr().cast(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        mask,
    };
    let start = std::time::Instant::now();
    // SAFETY: the vfork child only makes syscalls, writes `marker`, execs or exits.
    let pid = blocked(thread, || unsafe { guest_vfork_exec(&test) });
    let waited = start.elapsed();
    assert!(pid > 0, "vfork failed: {pid}");
    assert_eq!(
        common::sigblk(common::gettid()),
        mask,
        "the vfork parent's signal mask changed"
    );
    // SAFETY: the child wrote it before the parent woke.
    let shared = unsafe { std::ptr::read_volatile(&marker) } == 1;
    VforkOutcome {
        status: wait_status(pid),
        shared,
        waited,
    }
}

#[test]
fn guest_vfork_execve_true_and_missing() {
    isolated("guest_vfork_execve_true_and_missing", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        for (use_clone, use_execveat) in [(false, false), (true, false), (false, true)] {
            let how = format!("clone {use_clone}, execveat {use_execveat}");
            let outcome = vfork_exec(&thread, c"/bin/true", use_clone, use_execveat);
            let status = outcome.status;
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "{how}: /bin/true ended {status:#x}"
            );
            assert!(
                outcome.shared,
                "{how}: the child did not share its parent's memory"
            );
            assert!(
                outcome.waited >= std::time::Duration::from_millis(150),
                "{how}: the parent did not wait ({:?})",
                outcome.waited
            );
            let outcome = vfork_exec(&thread, c"/nonexistent/program", use_clone, use_execveat);
            assert!(
                libc::WIFEXITED(outcome.status),
                "{how}: ended {:#x}",
                outcome.status
            );
            assert_eq!(
                libc::WEXITSTATUS(outcome.status),
                libc::ENOENT,
                "{how}: the child did not get ENOENT"
            );
            // The parent came back to the right place, still trapped.
            assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        }
    });
}

/// Two threads with selectors of their own: one thread's flips, and its
/// time in the callback, never let the other's guest syscalls through.
#[test]
fn per_thread_selectors_are_independent() {
    isolated(
        "per_thread_selectors_are_independent",
        Ends::Passing,
        || {
            static IN_CALLBACK: AtomicBool = AtomicBool::new(false);
            static SLOW: AtomicBool = AtomicBool::new(true);
            fn handler(call: &mut Syscall) -> Action {
                if call.number() == __NR_getppid
                    && SLOW.load(Ordering::SeqCst)
                    && call.thread_data() as usize == 1
                {
                    // Thread 1 lingers in the callback with its selector at ALLOW.
                    IN_CALLBACK.store(true, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    IN_CALLBACK.store(false, Ordering::SeqCst);
                }
                emulate_getppid(call)
            }
            sud::install(handler).unwrap();
            let one = std::thread::spawn(|| {
                let thread = armed_thread();
                thread.set_data(std::ptr::without_provenance_mut(1));
                blocked(&thread, trapped_getppid)
            });
            let two = std::thread::spawn(|| {
                let thread = armed_thread();
                thread.set_data(std::ptr::without_provenance_mut(2));
                while !IN_CALLBACK.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                // Thread 1 is in its callback, its selector at ALLOW: ours still blocks.
                let mut results = Vec::new();
                while IN_CALLBACK.load(Ordering::SeqCst) {
                    results.push(blocked(&thread, trapped_getppid));
                    // Our own flips: host code between guest calls runs natively.
                    results.push(Ok(if trapped_getppid() == Ok(FAKE_PPID) {
                        0
                    } else {
                        FAKE_PPID
                    }));
                }
                results
            });
            assert_eq!(one.join().unwrap(), Ok(FAKE_PPID));
            let results = two.join().unwrap();
            assert!(!results.is_empty());
            assert!(
                results.iter().all(|r| *r == Ok(FAKE_PPID)),
                "a syscall leaked or a host call was trapped"
            );
        },
    );
}

/// A guest that blocks every signal, SIGSYS included, keeps being trapped;
/// it reads back the mask it set, while the thread's real mask lacks SIGSYS.
#[test]
fn guest_blocking_all_signals_survives() {
    isolated("guest_blocking_all_signals_survives", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        let all = u64::MAX;
        let mut old = 0u64;
        let (set, after, get) = blocked(&thread, || {
            // SAFETY: rt_sigprocmask with valid sets.
            unsafe {
                let set = guest::syscall4(
                    __NR_rt_sigprocmask,
                    libc::SIG_SETMASK as usize,
                    &all as *const u64 as usize,
                    0,
                    8,
                );
                let after = trapped_getppid();
                let get = guest::syscall4(
                    __NR_rt_sigprocmask,
                    libc::SIG_SETMASK as usize,
                    0,
                    &mut old as *mut u64 as usize,
                    8,
                );
                (set, after, get)
            }
        });
        assert_eq!((set, after, get), (Ok(0), Ok(FAKE_PPID), Ok(0)));
        let sigkill_sigstop = common::bit(libc::SIGKILL) | common::bit(libc::SIGSTOP);
        assert_eq!(
            old,
            all & !sigkill_sigstop,
            "the guest does not see the mask it set"
        );
        let real = common::sigblk(common::gettid());
        assert_eq!(
            real & common::bit(libc::SIGSYS),
            0,
            "SIGSYS is really blocked"
        );
        assert_eq!(real | common::bit(libc::SIGSYS), all & !sigkill_sigstop);
        // A trapped syscall with every other signal blocked still works.
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
    });
}

/// ppoll with a mask holding SIGSYS waits with SIGSYS deliverable, and the
/// guest's mask pointer is given back untouched.
#[test]
fn ppoll_with_sigsys_in_its_mask() {
    isolated("ppoll_with_sigsys_in_its_mask", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        let mask = u64::MAX;
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 300_000_000,
        };
        let tid = common::gettid();
        let watcher = std::thread::spawn(move || {
            common::wait_blocked_in(tid, __NR_ppoll as i64);
            common::sigblk(tid)
        });
        let mask_pointer = &mask as *const u64 as usize;
        let (result, r10_after) = blocked(&thread, || {
            let result: usize;
            let r10_after: usize;
            // SAFETY: ppoll on no fds with a timeout and a valid mask; r10 is
            // checked to come back as the guest passed it.
            unsafe {
                core::arch::asm!(
                    "syscall",
                    inlateout("rax") __NR_ppoll as usize => result,
                    in("rdi") 0, in("rsi") 0, in("rdx") &timeout as *const libc::timespec,
                    inlateout("r10") mask_pointer => r10_after, in("r8") 8,
                    lateout("rcx") _, lateout("r11") _,
                );
            }
            (result, r10_after)
        });
        assert_eq!(result, 0, "ppoll timed out");
        assert_eq!(r10_after, mask_pointer, "the guest's r10 changed");
        let during = watcher.join().unwrap();
        assert_eq!(
            during & common::bit(libc::SIGSYS),
            0,
            "SIGSYS was blocked during ppoll"
        );
        assert_ne!(
            during & common::bit(libc::SIGUSR1),
            0,
            "the rest of the guest's mask was not applied"
        );
    });
}

/// Makes syscall `nr` with `args`, trapped and reissued on this armed
/// thread, while another thread checks, as it waits, that the guest's mask
/// (every signal but SIGUSR2) is applied without SIGSYS; with `wake`, it
/// then sends SIGUSR2.  The argument registers must come back as given.
fn masked_wait(thread: &Thread, nr: u32, args: [usize; 6], wake: bool) -> usize {
    extern "C" fn ignore(_: i32) {}
    common::libc_handler(libc::SIGUSR2, ignore, 0);
    let tid = common::gettid();
    let watcher = std::thread::spawn(move || {
        common::wait_blocked_in(tid, nr as i64);
        let during = common::sigblk(tid);
        if wake {
            // SAFETY: a signal to the waiting thread.
            unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGUSR2) };
        }
        during
    });
    let (result, after) = blocked(thread, || {
        let (result, a0, a1, a2, a3, a4, a5): (usize, usize, usize, usize, usize, usize, usize);
        // SAFETY: the caller passes valid arguments for `nr`.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") nr as usize => result,
                inlateout("rdi") args[0] => a0, inlateout("rsi") args[1] => a1, inlateout("rdx") args[2] => a2,
                inlateout("r10") args[3] => a3, inlateout("r8") args[4] => a4, inlateout("r9") args[5] => a5,
                lateout("rcx") _, lateout("r11") _,
            );
        }
        (result, [a0, a1, a2, a3, a4, a5])
    });
    let during = watcher.join().unwrap();
    assert_eq!(after, args, "syscall {nr}: the argument registers changed");
    assert_eq!(
        during & common::bit(libc::SIGSYS),
        0,
        "syscall {nr}: SIGSYS blocked while waiting"
    );
    assert_ne!(
        during & common::bit(libc::SIGUSR1),
        0,
        "syscall {nr}: the guest's mask was not applied"
    );
    result
}

/// Every syscall that waits under a mask of its own, given a mask with
/// SIGSYS: SIGSYS stays deliverable while it waits, the rest applies, and
/// the guest's registers and memory are as it left them.
#[test]
fn masked_waits_keep_sigsys_deliverable() {
    isolated(
        "masked_waits_keep_sigsys_deliverable",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            let mask = !common::bit(libc::SIGUSR2);
            let mask_at = &mask as *const u64 as usize;
            // A timeout of 200 ms for each call (pselect6 writes back what is left of its own).
            let timeouts = [libc::timespec {
                tv_sec: 0,
                tv_nsec: 200_000_000,
            }; 3];
            let short_at = |i: usize| &timeouts[i] as *const libc::timespec as usize;
            let etime = Errno::from_raw(libc::ETIME).unwrap().to_syscall_result();

            // rt_sigsuspend(mask, size): until SIGUSR2 comes.
            let r = masked_wait(&thread, __NR_rt_sigsuspend, [mask_at, 8, 0, 0, 0, 0], true);
            assert_eq!(r, Errno::EINTR.to_syscall_result());

            // pselect6(0, NULL, NULL, NULL, timeout, &{mask, size}).
            let pair = [mask_at, 8];
            let r = masked_wait(
                &thread,
                __NR_pselect6,
                [0, 0, 0, 0, short_at(0), pair.as_ptr() as usize],
                false,
            );
            assert_eq!(r, 0);

            // epoll_pwait(epfd, events, 1, 200 ms, mask, size), and epoll_pwait2.
            // SAFETY: a fresh epoll instance.
            let epfd = unsafe { libc::epoll_create1(0) } as usize;
            let mut events = [0u64; 4];
            let events_at = events.as_mut_ptr() as usize;
            let r = masked_wait(
                &thread,
                __NR_epoll_pwait,
                [epfd, events_at, 1, 200, mask_at, 8],
                false,
            );
            assert_eq!(r, 0);
            let r = masked_wait(
                &thread,
                __NR_epoll_pwait2,
                [epfd, events_at, 1, short_at(1), mask_at, 8],
                false,
            );
            assert_eq!(r, 0);

            // io_pgetevents(ctx, 1, 1, events, timeout, &{mask, size}).
            let mut ctx = 0u64;
            // SAFETY: io_setup writes the context into a live u64.
            assert_eq!(unsafe { libc::syscall(libc::SYS_io_setup, 1, &mut ctx) }, 0);
            let r = masked_wait(
                &thread,
                __NR_io_pgetevents,
                [
                    ctx as usize,
                    1,
                    1,
                    events_at,
                    short_at(2),
                    pair.as_ptr() as usize,
                ],
                false,
            );
            assert_eq!(r, 0);

            // io_uring_enter(fd, 0, 1, GETEVENTS | EXT_ARG, &getevents_arg, size).
            let mut params = [0u64; 15];
            // SAFETY: io_uring_setup fills a 120-byte struct io_uring_params.
            let ring = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) };
            assert!(
                ring >= 0,
                "io_uring_setup: {}",
                std::io::Error::last_os_error()
            );
            let kernel_timespec = [0i64, 200_000_000];
            let getevents_arg = [mask_at as u64, 8, kernel_timespec.as_ptr() as u64];
            let flags = (linux_raw_sys::io_uring::IORING_ENTER_GETEVENTS
                | linux_raw_sys::io_uring::IORING_ENTER_EXT_ARG) as usize;
            let r = masked_wait(
                &thread,
                __NR_io_uring_enter,
                [
                    ring as usize,
                    0,
                    1,
                    flags,
                    getevents_arg.as_ptr() as usize,
                    24,
                ],
                false,
            );
            assert_eq!(r, etime);
            assert_eq!(
                getevents_arg[0], mask_at as u64,
                "the guest's io_uring_getevents_arg changed"
            );

            assert_eq!(
                mask,
                !common::bit(libc::SIGUSR2),
                "the guest's mask changed"
            );
        },
    );
}

static GUEST_HANDLED: AtomicUsize = AtomicUsize::new(0);
static GUEST_HANDLER_RESULT: AtomicU64 = AtomicU64::new(0);
static GUEST_HANDLER_RSP: AtomicU64 = AtomicU64::new(0);

/// A guest signal handler: guest code, so its own syscall is trapped.
extern "C" fn guest_handler(_: i32, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    GUEST_HANDLER_RSP.store(stack_pointer(), Ordering::SeqCst);
    GUEST_HANDLER_RESULT.store(trapped_getppid().unwrap_or(0) as u64, Ordering::SeqCst);
    GUEST_HANDLED.fetch_add(1, Ordering::SeqCst);
    // The guest also asks, through its frame, for SIGSYS to be blocked after
    // it returns: the runtime must keep it virtual.
    // SAFETY: the kernel's ucontext.
    unsafe {
        (*(uc as *mut libc::ucontext_t)).uc_sigmask =
            std::mem::transmute::<[u64; 16], libc::sigset_t>([1 << (libc::SIGSYS - 1); 16])
    };
}

/// `struct kernel_sigaction`.
#[repr(C)]
#[derive(Default, Debug, PartialEq, Eq, Clone, Copy)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

fn guest_rt_sigaction(
    signal: u32,
    new: Option<&KernelSigaction>,
) -> (Result<usize, Errno>, KernelSigaction) {
    let mut old = KernelSigaction::default();
    let new = new.map_or(0, |n| n as *const KernelSigaction as usize);
    // SAFETY: valid kernel_sigaction pointers.
    let r = unsafe {
        guest::syscall4(
            __NR_rt_sigaction,
            signal as usize,
            new,
            &mut old as *mut _ as usize,
            8,
        )
    };
    (r, old)
}

/// A guest's rt_sigaction with every signal in its mask: SIGSYS is left out
/// of what is installed, but the guest reads back its own mask; its handler
/// runs as guest code, and SIGSYS set in its frame's mask stays virtual.
#[test]
fn guest_handlers_are_guest_code_with_virtual_masks() {
    isolated(
        "guest_handlers_are_guest_code_with_virtual_masks",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            let action = KernelSigaction {
                handler: guest_handler as *const () as usize,
                flags: (SA_SIGINFO | SA_RESTORER) as u64,
                restorer: 0x1234,
                mask: u64::MAX,
            };
            let (r, _) = blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action)));
            assert_eq!(r, Ok(0));
            let (r, old) = blocked(&thread, || guest_rt_sigaction(SIGUSR1, None));
            assert_eq!(r, Ok(0));
            assert_eq!(
                old,
                KernelSigaction {
                    mask: !(common::bit(libc::SIGKILL) | common::bit(libc::SIGSTOP)),
                    ..action
                }
            );
            // The real disposition never blocks SIGSYS.
            // SAFETY: reads the current disposition.
            let real = unsafe {
                let mut real: libc::sigaction = std::mem::zeroed();
                libc::sigaction(libc::SIGUSR1, std::ptr::null(), &mut real);
                real
            };
            // SAFETY: a valid sigset.
            assert_eq!(unsafe { libc::sigismember(&real.sa_mask, libc::SIGSYS) }, 0);
            // Raise it from guest code: the handler runs as guest code (its getppid trapped).
            let pid = std::process::id() as usize;
            let tid = common::gettid() as usize;
            // SAFETY: a signal to ourselves.
            let r = blocked(&thread, || unsafe {
                guest::syscall3(__NR_tgkill, pid, tid, SIGUSR1 as usize)
            });
            assert_eq!(r, Ok(0));
            assert_eq!(GUEST_HANDLED.load(Ordering::SeqCst), 1);
            assert_eq!(
                GUEST_HANDLER_RESULT.load(Ordering::SeqCst),
                FAKE_PPID as u64
            );
            // Its frame asked for SIGSYS blocked: virtual only.
            let mut mask = 0u64;
            // SAFETY: reads the mask.
            let r = blocked(&thread, || unsafe {
                guest::syscall4(__NR_rt_sigprocmask, 0, 0, &mut mask as *mut u64 as usize, 8)
            });
            assert_eq!(r, Ok(0));
            assert_ne!(
                mask & common::bit(libc::SIGSYS),
                0,
                "the guest's frame mask was lost"
            );
            assert_eq!(
                common::sigblk(common::gettid()) & common::bit(libc::SIGSYS),
                0
            );
            assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        },
    );
}

static GUEST_SIGSYS: AtomicUsize = AtomicUsize::new(0);
extern "C" fn guest_sigsys_handler(_: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo.
    let code = unsafe { (*info).si_code };
    GUEST_SIGSYS.store((code + 1000) as usize, Ordering::SeqCst);
    // Guest code: its syscalls are dispatched, even here.
    GUEST_HANDLER_RESULT.store(trapped_getppid().unwrap_or(0) as u64, Ordering::SeqCst);
}

/// The guest's own SIGSYS handler is virtual: it is reported back, receives
/// the SIGSYS that are not dispatch, and dispatch goes on; an ignored SIGSYS
/// is virtual too.
#[test]
fn guest_sigsys_disposition_is_virtual() {
    isolated("guest_sigsys_disposition_is_virtual", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        let action = KernelSigaction {
            handler: guest_sigsys_handler as *const () as usize,
            flags: (SA_SIGINFO | SA_RESTORER) as u64,
            restorer: 0x1234,
            mask: 0,
        };
        assert_eq!(
            blocked(&thread, || guest_rt_sigaction(SIGSYS, Some(&action))).0,
            Ok(0)
        );
        assert_eq!(
            blocked(&thread, || guest_rt_sigaction(SIGSYS, None)).1,
            action
        );
        // Dispatch still works, and a SIGSYS sent to this thread reaches the guest.
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        let pid = std::process::id() as usize;
        let tid = common::gettid() as usize;
        // SAFETY: a SIGSYS to this thread.
        let r = blocked(&thread, || unsafe {
            guest::syscall3(__NR_tgkill, pid, tid, SIGSYS as usize)
        });
        assert_eq!(r, Ok(0));
        assert_eq!(
            GUEST_SIGSYS.load(Ordering::SeqCst),
            (libc::SI_TKILL + 1000) as usize
        );
        assert_eq!(
            GUEST_HANDLER_RESULT.load(Ordering::SeqCst),
            FAKE_PPID as u64
        );
        // SIG_IGN: virtual; dispatch still works.
        let ignore = KernelSigaction {
            handler: libc::SIG_IGN,
            ..Default::default()
        };
        assert_eq!(
            blocked(&thread, || guest_rt_sigaction(SIGSYS, Some(&ignore))).0,
            Ok(0)
        );
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        // SAFETY: an ignored SIGSYS to this thread.
        let r = blocked(&thread, || unsafe {
            guest::syscall3(__NR_tgkill, pid, tid, SIGSYS as usize)
        });
        assert_eq!(r, Ok(0));
    });
}

static HOST_RUNS: AtomicUsize = AtomicUsize::new(0);
static HOST_SYSCALL_OK: AtomicBool = AtomicBool::new(false);
static HOST_RSP: AtomicU64 = AtomicU64::new(0);
static HOST_SAW_ALLOW: AtomicBool = AtomicBool::new(false);
static SPIN_FLAG: AtomicU64 = AtomicU64::new(0);
static THREAD_SELECTOR: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn host_handler(_: i32, _: *mut sud::SigInfo, _: *mut sud::UContext) {
    HOST_RUNS.fetch_add(1, Ordering::SeqCst);
    HOST_RSP.store(stack_pointer(), Ordering::SeqCst);
    let selector = THREAD_SELECTOR.load(Ordering::SeqCst) as *const u8;
    // SAFETY: the armed thread's selector byte, alive for the test.
    HOST_SAW_ALLOW.store(unsafe { selector.read_volatile() } == 0, Ordering::SeqCst);
    // Under ALLOW: an ordinary syscall runs natively.
    HOST_SYSCALL_OK.store(trapped_getppid() != Ok(FAKE_PPID), Ordering::SeqCst);
    SPIN_FLAG.store(1, Ordering::SeqCst);
}

fn stack_pointer() -> u64 {
    let rsp: u64;
    // SAFETY: reads RSP.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp) };
    rsp
}

/// Guest code that spins, making no syscall, until `flag` is set.
fn spin_until(flag: &AtomicU64) {
    // SAFETY: reads the flag in a loop; no syscall, no stack.
    unsafe {
        core::arch::asm!("2:", "cmp qword ptr [{0}], 0", "je 2b", in(reg) flag.as_ptr(), options(nostack));
    }
}

/// Host handlers run under ALLOW, whatever the interrupted thread's
/// selector said, on the thread's alternate stack, and the selector is put
/// back on return: here the signal lands while guest code spins under BLOCK.
#[test]
fn host_handlers_run_under_allow() {
    isolated("host_handlers_run_under_allow", Ends::Passing, || {
        static TRAPS: AtomicUsize = AtomicUsize::new(0);
        sud::install(|call| {
            TRAPS.fetch_add(1, Ordering::SeqCst);
            emulate_getppid(call)
        })
        .unwrap();
        sud::install_host_handler(SIGUSR1, host_handler, 0, 0).unwrap();
        let thread = armed_thread();
        THREAD_SELECTOR.store(thread.selector().as_ptr() as u64, Ordering::SeqCst);
        let tid = common::gettid();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            // SAFETY: a signal to the spinning thread.
            unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGUSR1) };
        });
        let still_blocked = blocked(&thread, || {
            spin_until(&SPIN_FLAG);
            thread.selector().is_blocked()
        });
        sender.join().unwrap();
        assert!(still_blocked, "the selector was not put back");
        assert_eq!(HOST_RUNS.load(Ordering::SeqCst), 1);
        assert!(
            HOST_SAW_ALLOW.load(Ordering::SeqCst),
            "the host handler ran under BLOCK"
        );
        assert!(
            HOST_SYSCALL_OK.load(Ordering::SeqCst),
            "the host handler's syscall was trapped"
        );
        assert_eq!(TRAPS.load(Ordering::SeqCst), 0, "something was trapped");
        // On the thread's alternate stack.
        let mut altstack = Stack::default();
        // SAFETY: queries the alternate stack.
        unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut altstack as *mut Stack) };
        let rsp = HOST_RSP.load(Ordering::SeqCst);
        assert!(
            (altstack.sp..altstack.sp + altstack.size).contains(&rsp),
            "the host handler ran at {rsp:#x}, off {altstack:x?}"
        );
    });
}

/// A guest's rt_sigaction for a signal with a host handler is recorded,
/// not installed: the host handler keeps the signal, and guest_action()
/// tells it what the guest asked for.
#[test]
fn guest_action_for_a_host_signal_is_kept_aside() {
    isolated(
        "guest_action_for_a_host_signal_is_kept_aside",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            sud::install_host_handler(SIGUSR1, host_handler, 0, 0).unwrap();
            let thread = armed_thread();
            THREAD_SELECTOR.store(thread.selector().as_ptr() as u64, Ordering::SeqCst);
            assert_eq!(sud::guest_action(SIGUSR1), None);
            let action = KernelSigaction {
                handler: guest_handler as *const () as usize,
                flags: (SA_SIGINFO | SA_RESTORER) as u64,
                restorer: 0x1234,
                mask: 1 << 3,
            };
            assert_eq!(
                blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action))).0,
                Ok(0)
            );
            assert_eq!(
                sud::guest_action(SIGUSR1).map(|a| (a.handler, a.flags, a.mask)),
                Some((action.handler, action.flags, action.mask))
            );
            let pid = std::process::id() as usize;
            let tid = common::gettid() as usize;
            // SAFETY: a signal to ourselves.
            let r = blocked(&thread, || unsafe {
                guest::syscall3(__NR_tgkill, pid, tid, SIGUSR1 as usize)
            });
            assert_eq!(r, Ok(0));
            assert_eq!(
                HOST_RUNS.load(Ordering::SeqCst),
                1,
                "the host handler lost its signal"
            );
            assert_eq!(
                GUEST_HANDLED.load(Ordering::SeqCst),
                0,
                "the guest's handler was installed"
            );
        },
    );
}

/// The callback may change the saved registers: what is reissued, and
/// what the guest resumes with, is what it leaves there.
#[test]
fn callback_changes_to_registers_take_effect() {
    isolated(
        "callback_changes_to_registers_take_effect",
        Ends::Passing,
        || {
            fn handler(call: &mut Syscall) -> Action {
                match call.number() {
                    // Reissue something else: getpid instead of getppid.
                    __NR_getppid => {
                        call.regs_mut().rax = __NR_getpid as u64;
                        Action::Reissue
                    }
                    // Emulate, and hand the guest a register of our choosing.
                    _ => {
                        call.regs_mut().r12 = 0xfeed_f00d;
                        Action::Emulate(5)
                    }
                }
            }
            sud::install(handler).unwrap();
            let thread = armed_thread();
            let pid = std::process::id() as usize;
            assert_eq!(
                blocked(&thread, trapped_getppid),
                Ok(pid),
                "the changed syscall number was not reissued"
            );
            // SAFETY: a trapped syscall 500, r12 given and read back.
            let (result, r12) = blocked(&thread, || unsafe {
                let (result, r12): (usize, u64);
                core::arch::asm!("syscall", inlateout("rax") 500usize => result, inlateout("r12") 1u64 => r12,
                lateout("rcx") _, lateout("r11") _);
                (result, r12)
            });
            assert_eq!((result, r12), (5, 0xfeed_f00d));
        },
    );
}

static ADOPTED_RUNS: AtomicUsize = AtomicUsize::new(0);
extern "C" fn someone_elses_handler(_: i32) {
    ADOPTED_RUNS.fetch_add(1, Ordering::SeqCst);
    // An ordinary libc call inside it: must run natively.
    // SAFETY: getppid has no effect.
    if unsafe { libc::getppid() } as usize == FAKE_PPID {
        ADOPTED_RUNS.fetch_add(100, Ordering::SeqCst);
    }
}

/// A handler someone else installed (here with libc) is adopted: it then
/// runs under ALLOW like a host handler.
#[test]
fn adopted_handler_runs_under_allow() {
    isolated("adopted_handler_runs_under_allow", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        common::libc_handler(libc::SIGUSR1, someone_elses_handler, 0);
        sud::adopt_signal(SIGUSR1).unwrap();
        let thread = armed_thread();
        let pid = std::process::id() as usize;
        let tid = common::gettid() as usize;
        // SAFETY: a signal to ourselves.
        let r = blocked(&thread, || unsafe {
            guest::syscall3(__NR_tgkill, pid, tid, SIGUSR1 as usize)
        });
        assert_eq!(r, Ok(0));
        assert_eq!(
            ADOPTED_RUNS.load(Ordering::SeqCst),
            1,
            "not run, or its getppid was trapped"
        );
    });
}

/// The SIGSYS handler runs on the thread's alternate stack: a guest whose
/// stack pointer leaves no room for a signal frame is still served.
#[test]
fn sigsys_runs_on_the_alternate_stack() {
    isolated("sigsys_runs_on_the_alternate_stack", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        // 256 bytes of stack: far less than one signal frame (2.5-3.5 KB).
        let mut tiny = [0u64; 32];
        let top = tiny.as_mut_ptr() as usize + 32 * 8;
        // SAFETY: switches to the tiny stack for one trapped syscall and back.
        let result = blocked(&thread, || unsafe {
            let result: usize;
            core::arch::asm!(
                "mov r12, rsp",
                "mov rsp, {top}",
                "syscall",
                "mov rsp, r12",
                top = in(reg) top,
                inlateout("rax") __NR_getppid as usize => result,
                out("r12") _, lateout("rcx") _, lateout("r11") _,
            );
            result
        });
        assert_eq!(result, FAKE_PPID);
        let _ = tiny;
    });
}

/// `stack_t`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Stack {
    sp: u64,
    flags: i32,
    size: u64,
}

fn guest_sigaltstack(new: Option<&Stack>) -> (Result<usize, Errno>, Stack) {
    let mut old = Stack::default();
    let new = new.map_or(0, |n| n as *const Stack as usize);
    // SAFETY: valid stack_t pointers.
    let r = unsafe { guest::syscall2(__NR_sigaltstack, new, &mut old as *mut Stack as usize) };
    (r, old)
}

/// A guest's own alternate stack is honoured: it reads back what it set
/// (and SS_DISABLE before), its SA_ONSTACK handler runs on it, and trapped
/// syscalls from that handler are still served.
#[test]
fn guest_sigaltstack_is_honoured() {
    isolated("guest_sigaltstack_is_honoured", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        let (r, before) = blocked(&thread, || guest_sigaltstack(None));
        assert_eq!(r, Ok(0));
        assert_eq!(
            before.flags, SS_DISABLE as i32,
            "the guest sees sud's own alternate stack"
        );
        let mut memory = vec![0u8; 64 * 1024];
        let theirs = Stack {
            sp: memory.as_mut_ptr() as u64,
            flags: 0,
            size: memory.len() as u64,
        };
        assert_eq!(
            blocked(&thread, || guest_sigaltstack(Some(&theirs))).0,
            Ok(0)
        );
        assert_eq!(blocked(&thread, || guest_sigaltstack(None)).1, theirs);
        let too_small = Stack {
            size: 1024,
            ..theirs
        };
        assert_eq!(
            blocked(&thread, || guest_sigaltstack(Some(&too_small))).0,
            Err(Errno::ENOMEM)
        );
        let action = KernelSigaction {
            handler: guest_handler as *const () as usize,
            flags: (SA_SIGINFO | SA_RESTORER | SA_ONSTACK) as u64,
            restorer: 0,
            mask: 0,
        };
        assert_eq!(
            blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action))).0,
            Ok(0)
        );
        let mut real = Stack::default();
        // SAFETY: queries the real alternate stack (the selector says ALLOW).
        unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut real as *mut Stack) };
        assert_eq!(
            (real.sp, real.size),
            (theirs.sp, theirs.size),
            "the guest's stack is not really installed"
        );
        let pid = std::process::id() as usize;
        let tid = common::gettid() as usize;
        // SAFETY: a signal to ourselves.
        let r = blocked(&thread, || unsafe {
            guest::syscall3(__NR_tgkill, pid, tid, SIGUSR1 as usize)
        });
        assert_eq!(r, Ok(0));
        let rsp = GUEST_HANDLER_RSP.load(Ordering::SeqCst);
        assert!(
            (theirs.sp..theirs.sp + theirs.size).contains(&rsp),
            "the handler ran at {rsp:#x}, not on the guest's stack"
        );
        assert_eq!(
            GUEST_HANDLER_RESULT.load(Ordering::SeqCst),
            FAKE_PPID as u64,
            "a syscall from the handler on the guest's stack was not served"
        );
        // Disabled again: the guest sees that; sud's own stack is back.
        let disable = Stack {
            flags: SS_DISABLE as i32,
            ..Default::default()
        };
        assert_eq!(
            blocked(&thread, || guest_sigaltstack(Some(&disable))).0,
            Ok(0)
        );
        assert_eq!(
            blocked(&thread, || guest_sigaltstack(None)).1.flags,
            SS_DISABLE as i32
        );
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        drop(memory);
    });
}

/// With SS_AUTODISARM, the kernel disarms a guest's alternate stack while a
/// handler runs on it: a syscall trapped in that handler still reaches the
/// thread's own state (its selector, flipped to ALLOW for a callback that
/// prints and allocates).
#[test]
fn guest_autodisarm_altstack_keeps_the_threads_state() {
    isolated(
        "guest_autodisarm_altstack_keeps_the_threads_state",
        Ends::Passing,
        || {
            fn talkative(call: &mut Syscall) -> Action {
                if call.number() == __NR_getppid {
                    // Ordinary syscalls in the callback (an allocation, a
                    // write): they must run under ALLOW.
                    let line = format!(
                        "callback: getppid on selector {:p}",
                        call.selector().as_ptr()
                    );
                    eprintln!("{line}");
                }
                emulate_getppid(call)
            }
            sud::install(talkative).unwrap();
            let thread = armed_thread();
            let mut memory = vec![0u8; 64 * 1024];
            let theirs = Stack {
                sp: memory.as_mut_ptr() as u64,
                flags: linux_raw_sys::general::SS_AUTODISARM as i32,
                size: memory.len() as u64,
            };
            assert_eq!(
                blocked(&thread, || guest_sigaltstack(Some(&theirs))).0,
                Ok(0)
            );
            assert_eq!(blocked(&thread, || guest_sigaltstack(None)).1, theirs);
            let action = KernelSigaction {
                handler: guest_handler as *const () as usize,
                flags: (SA_SIGINFO | SA_RESTORER | SA_ONSTACK) as u64,
                restorer: 0,
                mask: 0,
            };
            assert_eq!(
                blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action))).0,
                Ok(0)
            );
            let pid = std::process::id() as usize;
            let tid = common::gettid() as usize;
            // SAFETY: a signal to ourselves.
            let r = blocked(&thread, || unsafe {
                guest::syscall3(__NR_tgkill, pid, tid, SIGUSR1 as usize)
            });
            assert_eq!(r, Ok(0));
            let rsp = GUEST_HANDLER_RSP.load(Ordering::SeqCst);
            assert!(
                (theirs.sp..theirs.sp + theirs.size).contains(&rsp),
                "the handler ran at {rsp:#x}"
            );
            assert_eq!(
                GUEST_HANDLER_RESULT.load(Ordering::SeqCst),
                FAKE_PPID as u64
            );
            assert_eq!(
                LAST_GETPPID_SELECTOR.load(Ordering::SeqCst),
                thread.selector().as_ptr() as u64,
                "the trap in the handler went to another state"
            );
            assert!(
                !sud::SELECTOR.is_blocked(),
                "the global selector was left at BLOCK"
            );
            drop(memory);
        },
    );
}

/// Dropping a Thread disarms it and puts back the alternate stack it had,
/// and its slot is reused: far more Threads come and go than there are slots.
#[test]
fn thread_teardown_restores_and_disarms() {
    isolated(
        "thread_teardown_restores_and_disarms",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let mut before = Stack::default();
            // SAFETY: queries the current alternate stack.
            unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut before as *mut Stack) };
            let mut last_selector = std::ptr::null_mut();
            for _ in 0..10_000 {
                let thread = armed_thread();
                assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
                last_selector = thread.selector().as_ptr();
            }
            let mut after = Stack::default();
            // SAFETY: as above.
            unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut after as *mut Stack) };
            assert_eq!(after, before);
            // Disarmed: with the selector it was armed with at BLOCK, nothing is
            // trapped.  (Its slot stays mapped, so the byte may be written.)
            // SAFETY: writes the selector byte of a released slot.
            unsafe { last_selector.write_volatile(1) };
            let r = trapped_getppid();
            // SAFETY: as above.
            unsafe { last_selector.write_volatile(0) };
            assert_ne!(r, Ok(FAKE_PPID), "the dropped Thread was still armed");
        },
    );
}

/// The stress test: 8 threads, each making 100,000 trapped syscalls mixing
/// emulate (getppid) and reissue (getpid), flipping their own selectors
/// between batches, while a per-thread timer signal fires at a high rate on
/// all of them and its host handler makes syscalls.  Every count exact.
#[test]
fn stress_threads_timers_and_flips() {
    isolated("stress_threads_timers_and_flips", Ends::Passing, || {
        const THREADS: usize = 8;
        const CALLS: usize = 100_000;
        static TRAPPED: AtomicUsize = AtomicUsize::new(0);
        static TICKS: AtomicUsize = AtomicUsize::new(0);
        static BAD_TICKS: AtomicUsize = AtomicUsize::new(0);
        fn handler(call: &mut Syscall) -> Action {
            TRAPPED.fetch_add(1, Ordering::Relaxed);
            emulate_getppid(call)
        }
        unsafe extern "C" fn tick(_: i32, _: *mut sud::SigInfo, _: *mut sud::UContext) {
            TICKS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: getpid has no effect; under ALLOW it is never trapped.
            if unsafe { guest::syscall0(__NR_getpid) } != Ok(std::process::id() as usize) {
                BAD_TICKS.fetch_add(1, Ordering::Relaxed);
            }
        }
        sud::install(handler).unwrap();
        let timer_signal = libc::SIGRTMIN() as u32;
        sud::install_host_handler(timer_signal, tick, 0, libc::SA_RESTART as u64).unwrap();
        let pid = std::process::id() as usize;
        let start = std::time::Instant::now();
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                std::thread::spawn(move || {
                    let thread = armed_thread();
                    let timer = per_thread_timer(timer_signal, 200_000); // every 200 us
                    let mut wrong = 0;
                    let mut done = 0;
                    while done < CALLS {
                        let batch = (CALLS - done).min(1000);
                        blocked(&thread, || {
                            for i in 0..batch {
                                if i % 2 == 0 {
                                    wrong += (trapped_getppid() != Ok(FAKE_PPID)) as usize;
                                } else {
                                    // SAFETY: getpid, reissued.
                                    wrong += (unsafe { guest::syscall0(__NR_getpid) } != Ok(pid))
                                        as usize;
                                }
                            }
                        });
                        // Host code between batches: nothing trapped.
                        wrong += (trapped_getppid() == Ok(FAKE_PPID)) as usize;
                        done += batch;
                    }
                    // SAFETY: our own timer.
                    unsafe { libc::timer_delete(timer) };
                    wrong
                })
            })
            .collect();
        let wrong: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        let elapsed = start.elapsed();
        println!(
            "{} trapped, {} timer ticks in {elapsed:?}",
            TRAPPED.load(Ordering::Relaxed),
            TICKS.load(Ordering::Relaxed)
        );
        assert_eq!(wrong, 0);
        assert_eq!(TRAPPED.load(Ordering::Relaxed), THREADS * CALLS);
        assert!(
            TICKS.load(Ordering::Relaxed) > 5000,
            "the timers hardly fired"
        );
        assert_eq!(BAD_TICKS.load(Ordering::Relaxed), 0);
        assert!(elapsed.as_secs() < 60);
    });
}

/// A timer signalling the calling thread every `ns` nanoseconds (high-resolution, not tick-bound).
fn per_thread_timer(signal: u32, ns: i64) -> libc::timer_t {
    // SAFETY: creates and arms a timer for this thread.
    unsafe {
        let mut event: libc::sigevent = std::mem::zeroed();
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal as i32;
        event.sigev_notify_thread_id = common::gettid();
        let mut timer: libc::timer_t = std::mem::zeroed();
        assert_eq!(
            libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer),
            0
        );
        let period = libc::timespec {
            tv_sec: 0,
            tv_nsec: ns,
        };
        let spec = libc::itimerspec {
            it_interval: period,
            it_value: period,
        };
        assert_eq!(
            libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()),
            0
        );
        timer
    }
}

// Silence unused imports in configurations that skip a test.
const _: [u32; 2] = [SIGCHLD, __NR_gettid];

static SETUP_SIGNALS_HANDLED: AtomicUsize = AtomicUsize::new(0);
static SETUP_SIGNALS_UNARMED: AtomicUsize = AtomicUsize::new(0);
/// Where the kernel writes each new thread's tid (CLONE_PARENT_SETTID), for
/// the thread that signals it at once.
static NEW_THREAD_TID: AtomicU32 = AtomicU32::new(0);
static STOP_SIGNALLING: AtomicBool = AtomicBool::new(false);

/// A guest handler counting the runs in which its own syscall was not
/// trapped: runs in a thread not yet armed.
extern "C" fn setup_signal_handler(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    if trapped_getppid() != Ok(FAKE_PPID) {
        SETUP_SIGNALS_UNARMED.fetch_add(1, Ordering::SeqCst);
    }
    SETUP_SIGNALS_HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// A signal sent to a new guest thread the moment it exists waits until the
/// thread is set up (its state, alternate stack and arming): the guest's
/// handler always runs in an armed thread.  Another thread sends SIGUSR1 to
/// each new thread as soon as the kernel publishes its tid, which is before
/// the thread has run an instruction.
#[test]
fn signals_wait_until_a_new_thread_is_set_up() {
    isolated(
        "signals_wait_until_a_new_thread_is_set_up",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            let action = KernelSigaction {
                handler: setup_signal_handler as *const () as usize,
                flags: (SA_SIGINFO | SA_RESTORER) as u64,
                restorer: 0,
                mask: 0,
            };
            let (r, _) = blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action)));
            assert_eq!(r, Ok(0));
            let pid = std::process::id() as i32;
            let signaller = std::thread::spawn(move || {
                let mut sent = 0;
                while !STOP_SIGNALLING.load(Ordering::SeqCst) {
                    let tid = NEW_THREAD_TID.swap(0, Ordering::SeqCst);
                    // SAFETY: a signal to a thread of this process (or ESRCH once it is gone).
                    if tid != 0
                        && unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, SIGUSR1) } == 0
                    {
                        sent += 1;
                    }
                }
                sent
            });
            let mut stack = vec![0u8; 64 * 1024];
            let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
            for _ in 0..300 {
                let child_tid = AtomicU32::new(u32::MAX);
                let mut test = CloneTest {
                    flags: THREAD_FLAGS,
                    stack_top: top,
                    parent_tid: NEW_THREAD_TID.as_ptr() as u64,
                    child_tid: child_tid.as_ptr() as u64,
                    ..Default::default()
                };
                // SAFETY: as in run_guest_thread: `stack` outlives the child,
                // which writes only into `test`.
                let tid = blocked(&thread, || unsafe { guest_clone(&mut test) });
                assert!(tid > 0, "clone failed: {tid}");
                common::wait_for_thread_exit(&child_tid, tid);
                assert_eq!(
                    test.child_getppid, FAKE_PPID as u64,
                    "the child's syscalls were not trapped"
                );
            }
            STOP_SIGNALLING.store(true, Ordering::SeqCst);
            let sent = signaller.join().unwrap();
            let handled = SETUP_SIGNALS_HANDLED.load(Ordering::SeqCst);
            println!("{sent} signals sent to new threads, {handled} handled");
            assert!(handled > 0, "no signal reached a new thread ({sent} sent)");
            assert_eq!(
                SETUP_SIGNALS_UNARMED.load(Ordering::SeqCst),
                0,
                "a guest handler ran in a thread not yet armed ({handled} handled)"
            );
        },
    );
}

/// A guest's sigaltstack made with RSP just above its alternate stack in
/// use (off it, so the kernel would allow it) either installs the new stack
/// for real or is refused: never reported done and left undone.  sud runs
/// the real sigaltstack a little below the guest's RSP, which there lies on
/// the old stack; it answers EPERM.
#[test]
fn guest_sigaltstack_just_above_the_old_stack() {
    isolated(
        "guest_sigaltstack_just_above_the_old_stack",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            let mut memory = vec![0u8; 3 * 64 * 1024];
            let base = (memory.as_mut_ptr() as u64 + 15) & !15;
            let first = Stack {
                sp: base,
                flags: 0,
                size: 64 * 1024,
            };
            let second = Stack {
                sp: base + 2 * 64 * 1024,
                ..first
            };
            assert_eq!(
                blocked(&thread, || guest_sigaltstack(Some(&first))).0,
                Ok(0)
            );
            // RSP 64 bytes above the first stack: off it, as the kernel judges.
            let rsp = first.sp + first.size + 64;
            // SAFETY: the guest syscall runs on `memory`, which is ours.
            let r = blocked(&thread, || unsafe {
                guest_syscall2_at(
                    rsp,
                    __NR_sigaltstack as u64,
                    &second as *const Stack as u64,
                    0,
                )
            });
            let mut real = Stack::default();
            // SAFETY: queries the real alternate stack (the selector says ALLOW).
            unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut real as *mut Stack) };
            match r {
                0 => assert_eq!(
                    (real.sp, real.size),
                    (second.sp, second.size),
                    "sigaltstack reported success, but the stack was not installed"
                ),
                r => {
                    assert_eq!(r, -(libc::EPERM as i64), "sigaltstack failed: {r}");
                    assert_eq!(
                        (real.sp, real.size),
                        (first.sp, first.size),
                        "refused, yet the stack changed"
                    );
                    assert_eq!(blocked(&thread, || guest_sigaltstack(None)).1.sp, first.sp);
                }
            }
            assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
            drop(memory);
        },
    );
}

/// Two threads setting the same signal's disposition at the same moment,
/// round after round: what the guest reads back (sud's record) and what is
/// installed always agree: SIG_IGN recorded is SIG_IGN installed, a handler
/// recorded is sud's entry installed.
#[test]
fn concurrent_guest_rt_sigaction_keeps_record_and_kernel_in_step() {
    isolated(
        "concurrent_guest_rt_sigaction_keeps_record_and_kernel_in_step",
        Ends::Passing,
        || {
            extern "C" fn ignore(_: i32) {}
            sud::install(emulate_getppid).unwrap();
            const ROUNDS: usize = 3000;
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
            let setter = |handler: usize| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let thread = armed_thread();
                    let action = KernelSigaction {
                        handler,
                        flags: (SA_SIGINFO | SA_RESTORER) as u64,
                        restorer: 0,
                        mask: 0,
                    };
                    for _ in 0..ROUNDS {
                        barrier.wait();
                        let (r, _) = blocked(&thread, || {
                            guest_rt_sigaction(libc::SIGUSR2 as u32, Some(&action))
                        });
                        assert_eq!(r, Ok(0));
                        barrier.wait();
                    }
                })
            };
            let threads = [setter(libc::SIG_IGN), setter(ignore as *const () as usize)];
            let mut disagreements = 0;
            for _ in 0..ROUNDS {
                barrier.wait();
                barrier.wait();
                let recorded = sud::guest_action(libc::SIGUSR2 as u32).unwrap().handler;
                // SAFETY: reads the installed disposition.
                let installed = unsafe {
                    let mut real: libc::sigaction = std::mem::zeroed();
                    libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut real);
                    real.sa_sigaction
                };
                if (recorded == libc::SIG_IGN) != (installed == libc::SIG_IGN) {
                    disagreements += 1;
                }
            }
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(
                disagreements, 0,
                "recorded and installed dispositions disagreed in {disagreements} of {ROUNDS} rounds"
            );
        },
    );
}

/// A vfork child shares its parent's memory, where sud keeps the guest's
/// dispositions, but not its handler table: what it sets (as a posix_spawn
/// child resets every handled signal to SIG_DFL before it execs) stays its
/// own.  The parent still reads back its handler, and its handler still
/// runs.
#[test]
fn vfork_child_rt_sigaction_leaves_the_parents_handlers() {
    isolated(
        "vfork_child_rt_sigaction_leaves_the_parents_handlers",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            let action = KernelSigaction {
                handler: guest_handler as *const () as usize,
                flags: (SA_SIGINFO | SA_RESTORER) as u64,
                restorer: 0,
                mask: 0,
            };
            let (r, _) = blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action)));
            assert_eq!(r, Ok(0));
            let default = KernelSigaction::default();
            // SAFETY: the vfork child only makes syscalls and exits.
            let pid = blocked(&thread, || unsafe { guest_vfork_sigaction(&default) });
            assert!(pid > 0, "vfork failed: {pid}");
            let status = wait_status(pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "the child's rt_sigaction failed: {status:#x}"
            );
            assert_eq!(
                sud::guest_action(SIGUSR1).map(|a| a.handler),
                Some(action.handler),
                "the child's SIG_DFL became the parent's"
            );
            let (r, old) = blocked(&thread, || guest_rt_sigaction(SIGUSR1, None));
            assert_eq!(r, Ok(0));
            assert_eq!(old.handler, action.handler);
            let before = GUEST_HANDLED.load(Ordering::SeqCst);
            let pid = std::process::id() as usize;
            let tid = common::gettid() as usize;
            // SAFETY: a signal to ourselves.
            let r = blocked(&thread, || unsafe {
                guest::syscall3(__NR_tgkill, pid, tid, SIGUSR1 as usize)
            });
            assert_eq!(r, Ok(0));
            assert_eq!(
                GUEST_HANDLED.load(Ordering::SeqCst),
                before + 1,
                "the parent's handler did not run"
            );
        },
    );
}

//! Threads, processes and signals under dispatch: per-thread selectors; guest
//! code creating threads (raw clone, clone3), processes (fork) and vfork
//! children that exec; the guest's signal mask, dispositions, SIGSYS handler
//! and alternate stack, virtualised so SIGSYS stays deliverable; host
//! handlers under ALLOW; teardown.  Each test runs in a process of its own.

#![allow(non_upper_case_globals)]

mod common;

use common::{Ends, isolated};
use linux_raw_sys::general::{
    __NR_exit, __NR_getpid, __NR_getppid, __NR_gettid, __NR_ppoll, __NR_rt_sigaction,
    __NR_rt_sigprocmask, __NR_sigaltstack, __NR_tgkill, CLONE_CHILD_CLEARTID, CLONE_FILES,
    CLONE_FS, CLONE_PARENT_SETTID, CLONE_SIGHAND, CLONE_SYSVSEM, CLONE_THREAD, CLONE_VM,
    SA_ONSTACK, SA_RESTORER, SA_SIGINFO, SIGCHLD, SIGSYS, SIGUSR1, SS_DISABLE,
};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use sud::{Action, Errno, Syscall, Thread, guest};

/// What emulated getppid answers: a trapped call is told this.
const FAKE_PPID: usize = 7777;

/// The tests' policy: getppid emulated, everything else run natively.
fn emulate_getppid(call: &mut Syscall) -> Action {
    if call.number() == __NR_getppid { Action::Emulate(FAKE_PPID) } else { Action::Reissue }
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
# RSP and a trapped getppid in t, then exits with the thread exit syscall.
    .globl guest_clone
guest_clone:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov r15, rdi
    mov rbx, 0x1111111111111111         # callee-saved values the child must see
    mov rbp, 0x2222222222222222
    mov r12, 0x3333333333333333
    mov r13, 0x4444444444444444
    mov r14, 0x5555555555555555
    cmp qword ptr [r15 + 48], 0
    jne 1f
    mov eax, {NR_CLONE}                 # clone(flags, stack, parent_tid, child_tid, tls)
    mov rdi, [r15 + 0]
    mov rsi, [r15 + 8]
    mov rdx, [r15 + 16]
    mov r10, [r15 + 24]
    xor r8d, r8d
    jmp 2f
1:
    mov eax, {NR_CLONE3}                # clone3(args, size)
    lea rdi, [r15 + 56]
    mov esi, 88
2:
    syscall
    test rax, rax
    jz 3f
    pop r15                             # the parent
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
3:
    mov [r15 + 144], rbx                # the child: its registers, as native
    mov [r15 + 152], rbp
    mov [r15 + 160], r12
    mov [r15 + 168], r13
    mov [r15 + 176], r14
    mov [r15 + 184], rsp
    mov eax, {NR_GETPPID}
    syscall                             # trapped if and only if the child is armed
    mov [r15 + 192], rax
    mov eax, {NR_EXIT}
    xor edi, edi
    syscall                             # the thread ends
    ud2

# extern "C" fn guest_fork() -> i64: fork; the child exits 0 if its own
# getppid is trapped (answered 7777), 1 if not.
    .globl guest_fork
guest_fork:
    mov eax, {NR_FORK}
    syscall
    test rax, rax
    jz 1f
    ret
1:
    mov eax, {NR_GETPPID}
    syscall
    xor edi, edi
    cmp rax, {FAKE_PPID}
    setne dil
    mov eax, {NR_EXIT_GROUP}
    syscall
    ud2

# extern "C" fn guest_vfork_exec(path, argv, envp) -> i64: vfork; the child
# checks that it is trapped (else exits 99), then execs path, and if that
# fails exits with the errno.
    .globl guest_vfork_exec
guest_vfork_exec:
    mov r8, rdi                         # keep the arguments across the syscalls
    mov r9, rsi
    mov r10, rdx
    mov eax, {NR_VFORK}
    syscall
    test rax, rax
    jz 1f
    ret
1:
    mov eax, {NR_GETPPID}
    syscall
    mov edi, 99
    cmp rax, {FAKE_PPID}
    jne 2f
    mov rdi, r8
    mov rsi, r9
    mov rdx, r10
    mov eax, {NR_EXECVE}
    syscall                             # only returns on failure
    mov rdi, rax
    neg rdi
2:
    mov eax, {NR_EXIT_GROUP}
    syscall
    ud2
"#,
    NR_CLONE = const linux_raw_sys::general::__NR_clone,
    NR_CLONE3 = const linux_raw_sys::general::__NR_clone3,
    NR_FORK = const linux_raw_sys::general::__NR_fork,
    NR_VFORK = const linux_raw_sys::general::__NR_vfork,
    NR_EXECVE = const linux_raw_sys::general::__NR_execve,
    NR_GETPPID = const __NR_getppid,
    NR_EXIT = const __NR_exit,
    NR_EXIT_GROUP = const linux_raw_sys::general::__NR_exit_group,
    FAKE_PPID = const FAKE_PPID,
);

unsafe extern "C" {
    fn guest_clone(test: *mut CloneTest) -> i64;
    fn guest_fork() -> i64;
    fn guest_vfork_exec(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> i64;
}

/// guest_clone's arguments and the child's report (offsets fixed by the asm).
#[repr(C)]
#[derive(Default)]
struct CloneTest {
    flags: u64,          // 0
    stack_top: u64,      // 8
    parent_tid: u64,     // 16: pointer
    child_tid: u64,      // 24: pointer
    _unused: [u64; 2],   // 32
    clone3: u64,         // 48
    args: [u64; 11],     // 56: struct clone_args (88 bytes)
    child_regs: [u64; 5], // 144: rbx, rbp, r12, r13, r14
    child_rsp: u64,      // 184
    child_getppid: u64,  // 192
}

const THREAD_FLAGS: u64 = (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD
    | CLONE_SYSVSEM | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID) as u64;

/// Creates a guest thread with raw clone or clone3 from guest code, waits
/// for it to exit, and checks what it saw.
fn run_guest_thread(thread: &Thread, use_clone3: bool) {
    let mut stack = vec![0u8; 64 * 1024];
    let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
    let parent_tid = AtomicU32::new(0);
    let child_tid = AtomicU32::new(u32::MAX);
    let mut test = CloneTest { flags: THREAD_FLAGS, stack_top: top, ..Default::default() };
    test.parent_tid = parent_tid.as_ptr() as u64;
    test.child_tid = child_tid.as_ptr() as u64;
    if use_clone3 {
        test.clone3 = 1;
        // flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, ...
        let base = stack.as_mut_ptr() as u64;
        test.args[..8].copy_from_slice(&[
            THREAD_FLAGS, 0, test.child_tid, test.parent_tid, 0, base, top - base, 0,
        ]);
    }
    // SAFETY: the guest creates a thread on `stack`, which outlives it (we
    // wait for its exit below); the child writes only into `test`.
    let tid = blocked(thread, || unsafe { guest_clone(&mut test) });
    assert!(tid > 0, "clone failed: {tid}");
    assert_eq!(parent_tid.load(Ordering::SeqCst), tid as u32, "CLONE_PARENT_SETTID");
    // CLONE_CHILD_CLEARTID: the kernel zeroes child_tid and wakes us at its exit.
    while child_tid.load(Ordering::SeqCst) != 0 {
        // SAFETY: a futex wait on a live u32.
        unsafe {
            libc::syscall(libc::SYS_futex, child_tid.as_ptr(), libc::FUTEX_WAIT, tid as u32, 0);
        }
    }
    assert_eq!(
        test.child_regs,
        [0x1111111111111111, 0x2222222222222222, 0x3333333333333333, 0x4444444444444444, 0x5555555555555555]
    );
    assert_eq!(test.child_rsp, top, "the child started on its own stack");
    assert_eq!(test.child_getppid, FAKE_PPID as u64, "the child's syscalls were not trapped");
}

#[test]
fn guest_clone_thread_is_armed_from_its_first_instruction() {
    isolated("guest_clone_thread_is_armed_from_its_first_instruction", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        run_guest_thread(&thread, false);
    });
}

#[test]
fn guest_clone3_thread_is_armed_from_its_first_instruction() {
    isolated("guest_clone3_thread_is_armed_from_its_first_instruction", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        run_guest_thread(&thread, true);
    });
}

/// Guest threads that exit leave nothing behind: far more are created, one
/// after another, than sud has slots for (4096).
#[test]
fn exited_guest_threads_leave_nothing_behind() {
    isolated("exited_guest_threads_leave_nothing_behind", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        for i in 0..5000 {
            run_guest_thread(&thread, i % 2 == 0);
        }
    });
}

/// Threads on the global selector create children on it too.
#[test]
fn guest_thread_of_global_selector_thread() {
    isolated("guest_thread_of_global_selector_thread", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        sud::arm().unwrap();
        let mut stack = vec![0u8; 64 * 1024];
        let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
        let child_tid = AtomicU32::new(u32::MAX);
        let mut test = CloneTest { flags: THREAD_FLAGS & !(CLONE_PARENT_SETTID as u64), stack_top: top, ..Default::default() };
        test.child_tid = child_tid.as_ptr() as u64;
        // The global selector is shared: the parent stays blocked (its futex
        // waits trapped and reissued) until the child is gone.
        // SAFETY: as in run_guest_thread.
        let tid = unsafe {
            sud::SELECTOR.block();
            let tid = guest_clone(&mut test);
            while tid > 0 && child_tid.load(Ordering::SeqCst) != 0 {
                libc::syscall(libc::SYS_futex, child_tid.as_ptr(), libc::FUTEX_WAIT, tid as u32, 0);
            }
            sud::SELECTOR.allow();
            tid
        };
        assert!(tid > 0);
        assert_eq!(test.child_getppid, FAKE_PPID as u64);
    });
}

fn wait_status(pid: i64) -> i32 {
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid as i32, &mut status, 0) }, pid as i32);
    status
}

#[test]
fn guest_fork_child_is_trapped() {
    isolated("guest_fork_child_is_trapped", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        // SAFETY: the child only makes syscalls and exits.
        let pid = blocked(&thread, || unsafe { guest_fork() });
        assert!(pid > 0, "fork failed: {pid}");
        let status = wait_status(pid);
        assert!(libc::WIFEXITED(status), "child ended {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "the fork child's getppid was not trapped");
        // And the parent is still trapped, with its state intact.
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
    });
}

fn vfork_exec(thread: &Thread, path: &std::ffi::CStr) -> i32 {
    let argv = [path.as_ptr() as *const u8, std::ptr::null()];
    let envp = [std::ptr::null::<u8>()];
    // SAFETY: the vfork child only makes syscalls, execs or exits.
    let pid = blocked(thread, || unsafe { guest_vfork_exec(path.as_ptr().cast(), argv.as_ptr(), envp.as_ptr()) });
    assert!(pid > 0, "vfork failed: {pid}");
    wait_status(pid)
}

#[test]
fn guest_vfork_execve_true_and_missing() {
    isolated("guest_vfork_execve_true_and_missing", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        let status = vfork_exec(&thread, c"/bin/true");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "/bin/true ended {status:#x}");
        let status = vfork_exec(&thread, c"/nonexistent/program");
        assert!(libc::WIFEXITED(status), "ended {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), libc::ENOENT, "the child did not get ENOENT");
        // The parent came back to the right place, still trapped.
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
    });
}

/// Two threads with selectors of their own: one thread's flips, and its
/// time in the callback, never let the other's guest syscalls through.
#[test]
fn per_thread_selectors_are_independent() {
    isolated("per_thread_selectors_are_independent", Ends::Passing, || {
        static IN_CALLBACK: AtomicBool = AtomicBool::new(false);
        static SLOW: AtomicBool = AtomicBool::new(true);
        fn handler(call: &mut Syscall) -> Action {
            if call.number() == __NR_getppid && SLOW.load(Ordering::SeqCst) && call.thread_data() as usize == 1 {
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
            thread.set_data(1 as *mut ());
            blocked(&thread, trapped_getppid)
        });
        let two = std::thread::spawn(|| {
            let thread = armed_thread();
            thread.set_data(2 as *mut ());
            while !IN_CALLBACK.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            // Thread 1 is in its callback, its selector at ALLOW: ours still blocks.
            let mut results = Vec::new();
            while IN_CALLBACK.load(Ordering::SeqCst) {
                results.push(blocked(&thread, trapped_getppid));
                // Our own flips: host code between guest calls runs natively.
                results.push(Ok(if trapped_getppid() == Ok(FAKE_PPID) { 0 } else { FAKE_PPID }));
            }
            results
        });
        assert_eq!(one.join().unwrap(), Ok(FAKE_PPID));
        let results = two.join().unwrap();
        assert!(!results.is_empty());
        assert!(results.iter().all(|r| *r == Ok(FAKE_PPID)), "a syscall leaked or a host call was trapped");
    });
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
                let set = guest::syscall4(__NR_rt_sigprocmask, libc::SIG_SETMASK as usize, &all as *const u64 as usize, 0, 8);
                let after = trapped_getppid();
                let get = guest::syscall4(__NR_rt_sigprocmask, libc::SIG_SETMASK as usize, 0, &mut old as *mut u64 as usize, 8);
                (set, after, get)
            }
        });
        assert_eq!((set, after, get), (Ok(0), Ok(FAKE_PPID), Ok(0)));
        let sigkill_sigstop = common::bit(libc::SIGKILL) | common::bit(libc::SIGSTOP);
        assert_eq!(old, all & !sigkill_sigstop, "the guest does not see the mask it set");
        let real = common::sigblk(common::gettid());
        assert_eq!(real & common::bit(libc::SIGSYS), 0, "SIGSYS is really blocked");
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
        let timeout = libc::timespec { tv_sec: 0, tv_nsec: 300_000_000 };
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
        assert_eq!(during & common::bit(libc::SIGSYS), 0, "SIGSYS was blocked during ppoll");
        assert_ne!(during & common::bit(libc::SIGUSR1), 0, "the rest of the guest's mask was not applied");
    });
}

static GUEST_HANDLED: AtomicUsize = AtomicUsize::new(0);
static GUEST_HANDLER_RESULT: AtomicU64 = AtomicU64::new(0);
static GUEST_HANDLER_SELECTOR_BLOCKED: AtomicBool = AtomicBool::new(false);
static GUEST_HANDLER_RSP: AtomicU64 = AtomicU64::new(0);

/// A guest signal handler: guest code, so its own syscall is trapped.
extern "C" fn guest_handler(_: i32, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let rsp: u64;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp) };
    GUEST_HANDLER_RSP.store(rsp, Ordering::SeqCst);
    GUEST_HANDLER_RESULT.store(trapped_getppid().unwrap_or(0) as u64, Ordering::SeqCst);
    GUEST_HANDLED.fetch_add(1, Ordering::SeqCst);
    // The guest also asks, through its frame, for SIGSYS to be blocked after
    // it returns: the runtime must keep it virtual.
    // SAFETY: the kernel's ucontext.
    unsafe { (*(uc as *mut libc::ucontext_t)).uc_sigmask = std::mem::transmute::<[u64; 16], libc::sigset_t>([1 << (libc::SIGSYS - 1); 16]) };
    let _ = GUEST_HANDLER_SELECTOR_BLOCKED.load(Ordering::SeqCst);
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

fn guest_rt_sigaction(signal: u32, new: Option<&KernelSigaction>) -> (Result<usize, Errno>, KernelSigaction) {
    let mut old = KernelSigaction::default();
    let new = new.map_or(0, |n| n as *const KernelSigaction as usize);
    // SAFETY: valid kernel_sigaction pointers.
    let r = unsafe { guest::syscall4(__NR_rt_sigaction, signal as usize, new, &mut old as *mut _ as usize, 8) };
    (r, old)
}

/// A guest's rt_sigaction with every signal in its mask: SIGSYS is left out
/// of what is installed, but the guest reads back its own mask; its handler
/// runs as guest code, and SIGSYS set in its frame's mask stays virtual.
#[test]
fn guest_handlers_are_guest_code_with_virtual_masks() {
    isolated("guest_handlers_are_guest_code_with_virtual_masks", Ends::Passing, || {
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
        assert_eq!(old, KernelSigaction { mask: u64::MAX & !(common::bit(libc::SIGKILL) | common::bit(libc::SIGSTOP)), ..action });
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
        let r = blocked(&thread, || unsafe { guest::syscall3(__NR_tgkill, pid, tid, SIGUSR1 as usize) });
        assert_eq!(r, Ok(0));
        assert_eq!(GUEST_HANDLED.load(Ordering::SeqCst), 1);
        assert_eq!(GUEST_HANDLER_RESULT.load(Ordering::SeqCst), FAKE_PPID as u64);
        // Its frame asked for SIGSYS blocked: virtual only.
        let mut mask = 0u64;
        // SAFETY: reads the mask.
        let r = blocked(&thread, || unsafe {
            guest::syscall4(__NR_rt_sigprocmask, 0, 0, &mut mask as *mut u64 as usize, 8)
        });
        assert_eq!(r, Ok(0));
        assert_ne!(mask & common::bit(libc::SIGSYS), 0, "the guest's frame mask was lost");
        assert_eq!(common::sigblk(common::gettid()) & common::bit(libc::SIGSYS), 0);
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
    });
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
        assert_eq!(blocked(&thread, || guest_rt_sigaction(SIGSYS, Some(&action))).0, Ok(0));
        assert_eq!(blocked(&thread, || guest_rt_sigaction(SIGSYS, None)).1, action);
        // Dispatch still works, and a SIGSYS sent to this thread reaches the guest.
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        let pid = std::process::id() as usize;
        let tid = common::gettid() as usize;
        // SAFETY: a SIGSYS to this thread.
        let r = blocked(&thread, || unsafe { guest::syscall3(__NR_tgkill, pid, tid, SIGSYS as usize) });
        assert_eq!(r, Ok(0));
        assert_eq!(GUEST_SIGSYS.load(Ordering::SeqCst), (libc::SI_TKILL + 1000) as usize);
        assert_eq!(GUEST_HANDLER_RESULT.load(Ordering::SeqCst), FAKE_PPID as u64);
        // SIG_IGN: virtual; dispatch still works.
        let ignore = KernelSigaction { handler: libc::SIG_IGN, ..Default::default() };
        assert_eq!(blocked(&thread, || guest_rt_sigaction(SIGSYS, Some(&ignore))).0, Ok(0));
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        // SAFETY: an ignored SIGSYS to this thread.
        let r = blocked(&thread, || unsafe { guest::syscall3(__NR_tgkill, pid, tid, SIGSYS as usize) });
        assert_eq!(r, Ok(0));
    });
}

static HOST_RUNS: AtomicUsize = AtomicUsize::new(0);
static HOST_SAW_BLOCKED: AtomicBool = AtomicBool::new(false);
static HOST_SYSCALL_OK: AtomicBool = AtomicBool::new(false);

unsafe extern "C" fn host_handler(_: i32, _: *mut sud::SigInfo, _: *mut sud::UContext) {
    HOST_RUNS.fetch_add(1, Ordering::SeqCst);
    // Under ALLOW: an ordinary syscall runs natively.
    HOST_SYSCALL_OK.store(trapped_getppid() != Ok(FAKE_PPID), Ordering::SeqCst);
}

/// Host handlers run under ALLOW, whatever the interrupted thread's
/// selector said, and the selector is put back on return.
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
        let pid = std::process::id() as usize;
        let tid = common::gettid() as usize;
        let (r, still_blocked) = blocked(&thread, || {
            // SAFETY: a signal to ourselves, reissued: delivered as it returns.
            let r = unsafe { guest::syscall3(__NR_tgkill, pid, tid, SIGUSR1 as usize) };
            (r, thread.selector().is_blocked())
        });
        assert_eq!(r, Ok(0));
        assert!(still_blocked, "the selector was not put back");
        assert_eq!(HOST_RUNS.load(Ordering::SeqCst), 1);
        assert!(HOST_SYSCALL_OK.load(Ordering::SeqCst), "the host handler's syscall was trapped");
        assert_eq!(TRAPS.load(Ordering::SeqCst), 1, "only the guest's tgkill was trapped");
        let _ = HOST_SAW_BLOCKED.load(Ordering::SeqCst);
    });
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
        let r = blocked(&thread, || unsafe { guest::syscall3(__NR_tgkill, pid, tid, SIGUSR1 as usize) });
        assert_eq!(r, Ok(0));
        assert_eq!(ADOPTED_RUNS.load(Ordering::SeqCst), 1, "not run, or its getppid was trapped");
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
        assert_eq!(before.flags, SS_DISABLE as i32, "the guest sees sud's own alternate stack");
        let mut memory = vec![0u8; 64 * 1024];
        let theirs = Stack { sp: memory.as_mut_ptr() as u64, flags: 0, size: memory.len() as u64 };
        assert_eq!(blocked(&thread, || guest_sigaltstack(Some(&theirs))).0, Ok(0));
        assert_eq!(blocked(&thread, || guest_sigaltstack(None)).1, theirs);
        let too_small = Stack { size: 1024, ..theirs };
        assert_eq!(blocked(&thread, || guest_sigaltstack(Some(&too_small))).0, Err(Errno::ENOMEM));
        let action = KernelSigaction {
            handler: guest_handler as *const () as usize,
            flags: (SA_SIGINFO | SA_RESTORER | SA_ONSTACK) as u64,
            restorer: 0,
            mask: 0,
        };
        assert_eq!(blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action))).0, Ok(0));
        let mut real = Stack::default();
        // SAFETY: queries the real alternate stack (the selector says ALLOW).
        unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut real as *mut Stack) };
        assert_eq!((real.sp, real.size), (theirs.sp, theirs.size), "the guest's stack is not really installed");
        let pid = std::process::id() as usize;
        let tid = common::gettid() as usize;
        // SAFETY: a signal to ourselves.
        let r = blocked(&thread, || unsafe { guest::syscall3(__NR_tgkill, pid, tid, SIGUSR1 as usize) });
        assert_eq!(r, Ok(0));
        let rsp = GUEST_HANDLER_RSP.load(Ordering::SeqCst);
        assert!((theirs.sp..theirs.sp + theirs.size).contains(&rsp), "the handler ran at {rsp:#x}, not on the guest's stack");
        assert_eq!(GUEST_HANDLER_RESULT.load(Ordering::SeqCst), FAKE_PPID as u64, "a syscall from the handler on the guest's stack was not served");
        // Disabled again: the guest sees that; sud's own stack is back.
        let disable = Stack { flags: SS_DISABLE as i32, ..Default::default() };
        assert_eq!(blocked(&thread, || guest_sigaltstack(Some(&disable))).0, Ok(0));
        assert_eq!(blocked(&thread, || guest_sigaltstack(None)).1.flags, SS_DISABLE as i32);
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        drop(memory);
    });
}

/// Dropping a Thread disarms it and puts back the alternate stack it had.
#[test]
fn thread_teardown_restores_and_disarms() {
    isolated("thread_teardown_restores_and_disarms", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let mut before = Stack::default();
        // SAFETY: queries the current alternate stack.
        unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut before as *mut Stack) };
        for _ in 0..10_000 {
            let thread = armed_thread();
            assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        }
        let mut after = Stack::default();
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut after as *mut Stack) };
        assert_eq!(after, before);
        // Disarmed: even with some selector at BLOCK, nothing is trapped.
        assert_ne!(trapped_getppid(), Ok(FAKE_PPID));
    });
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
                                    wrong += (unsafe { guest::syscall0(__NR_getpid) } != Ok(pid)) as usize;
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
        println!("{} trapped, {} timer ticks in {elapsed:?}", TRAPPED.load(Ordering::Relaxed), TICKS.load(Ordering::Relaxed));
        assert_eq!(wrong, 0);
        assert_eq!(TRAPPED.load(Ordering::Relaxed), THREADS * CALLS);
        assert!(TICKS.load(Ordering::Relaxed) > 5000, "the timers hardly fired");
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
        assert_eq!(libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer), 0);
        let period = libc::timespec { tv_sec: 0, tv_nsec: ns };
        let spec = libc::itimerspec { it_interval: period, it_value: period };
        assert_eq!(libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()), 0);
        timer
    }
}

// Silence unused imports in configurations that skip a test.
const _: [u32; 2] = [SIGCHLD, __NR_gettid];

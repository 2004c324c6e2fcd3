//! Beyond the core: redirect (a trapped syscall carried out by ordinary code
//! after rt_sigreturn), inclusive mode (only a JIT's range trapped), and
//! `sud_entry` (the signal-free entry for generated code).  Register and
//! vector preservation for redirect and the entry is checked at the
//! instruction level by tests/freestanding's `registers`.  Each test runs in
//! a process of its own.

#![allow(non_upper_case_globals)]

mod common;

use common::asm::{entry_clone, entry_with_pending_x87};
use common::guest::{FAKE_PPID, blocked, native_getppid, stack_pointer};
use common::{Ends, isolated};
use linux_raw_sys::general::{__NR_getpid, __NR_getppid, __NR_read};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use sud::{Action, Errno, Error, Syscall, Thread, guest};

static HOOK_EINTR: AtomicUsize = AtomicUsize::new(0);
static HOOK_OWN_SYSCALL: AtomicU64 = AtomicU64::new(0);
static HOOK_RSP: AtomicU64 = AtomicU64::new(0);
static HOOK_GUEST_RSP: AtomicU64 = AtomicU64::new(0);
static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static PIPE_READ_END: AtomicI32 = AtomicI32::new(-1);

extern "C" fn count_signal(_: i32) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// The redirect function: ordinary code that blocks in a native read (libc,
/// not trapped: its selector says ALLOW), retries after EINTR, and makes a
/// syscall of its own.
fn redirected_read(call: &mut Syscall) -> usize {
    HOOK_RSP.store(stack_pointer(), Ordering::SeqCst);
    HOOK_GUEST_RSP.store(call.regs().rsp, Ordering::SeqCst);
    HOOK_OWN_SYSCALL.store(native_getppid() as u64, Ordering::SeqCst);
    let [_, buf, len, ..] = call.args();
    loop {
        // SAFETY: the guest's buffer, as the guest passed it.
        let n = unsafe {
            libc::read(
                PIPE_READ_END.load(Ordering::SeqCst),
                buf as *mut libc::c_void,
                len,
            )
        };
        if n >= 0 {
            return n as usize;
        }
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap();
        if errno == libc::EINTR {
            HOOK_EINTR.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        return Errno::from_raw(errno).unwrap().to_syscall_result();
    }
}

fn redirect_reads(call: &mut Syscall) -> Action {
    match call.number() {
        __NR_read => Action::Redirect,
        __NR_getppid => Action::Emulate(FAKE_PPID),
        _ => Action::Reissue,
    }
}

/// A guest thread's read, redirected to a function that blocks on a pipe;
/// a signal interrupts it (EINTR, then it reads again), and the data comes.
fn redirected_read_interrupted(
    redirect_stack: Option<&mut [u8]>,
) -> (Result<usize, Errno>, [u8; 16]) {
    sud::install(redirect_reads).unwrap();
    sud::install_redirect(redirected_read).unwrap();
    common::libc_handler(libc::SIGUSR1, count_signal, 0);
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    PIPE_READ_END.store(fds[0], Ordering::SeqCst);
    let stack = redirect_stack.map(|s| (s.as_mut_ptr() as usize, s.len()));
    let tid = std::sync::Arc::new(AtomicI32::new(0));
    let guest = {
        let tid = tid.clone();
        std::thread::spawn(move || {
            let thread = Thread::new().unwrap();
            thread.arm().unwrap();
            if let Some((base, len)) = stack {
                // SAFETY: the test's buffer outlives this thread's redirects.
                unsafe { thread.set_redirect_stack(base as *mut u8, len) };
            }
            tid.store(common::gettid(), Ordering::SeqCst);
            let mut buf = [0u8; 16];
            // SAFETY: a read into a live buffer, redirected.
            let r = blocked(&thread, || unsafe {
                guest::syscall3(__NR_read, 12345, buf.as_mut_ptr() as usize, 16)
            });
            (r, buf)
        })
    };
    while tid.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let tid = tid.load(Ordering::SeqCst);
    let pc = common::wait_blocked_in(tid, __NR_read as i64);
    let region = sud::allowed_region();
    assert!(
        !region.contains(&pc),
        "the redirected read blocked in the allowed region: not ordinary code"
    );
    // Outside signal context: not every signal blocked, as in a handler.
    assert_eq!(
        common::sigblk(tid),
        0,
        "the redirect function runs under a handler's mask"
    );
    // SAFETY: a signal to our own thread.
    unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGUSR1) };
    while HOOK_EINTR.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    common::wait_blocked_in(tid, __NR_read as i64);
    // SAFETY: writes 5 bytes.
    assert_eq!(
        unsafe { libc::write(fds[1], b"hello".as_ptr().cast(), 5) },
        5
    );
    guest.join().unwrap()
}

#[test]
fn redirect_blocks_is_interrupted_and_completes() {
    isolated(
        "redirect_blocks_is_interrupted_and_completes",
        Ends::Passing,
        || {
            let (result, buf) = redirected_read_interrupted(None);
            assert_eq!(result, Ok(5));
            assert_eq!(&buf[..5], b"hello");
            assert_eq!(
                SIGNALS.load(Ordering::SeqCst),
                1,
                "the signal did not run during the redirect"
            );
            assert_eq!(HOOK_EINTR.load(Ordering::SeqCst), 1);
            assert_eq!(
                HOOK_OWN_SYSCALL.load(Ordering::SeqCst) as usize,
                native_getppid(),
                "the redirect's own syscall was trapped"
            );
            // On the guest's stack, below its red zone.
            let (rsp, guest_rsp) = (
                HOOK_RSP.load(Ordering::SeqCst),
                HOOK_GUEST_RSP.load(Ordering::SeqCst),
            );
            assert!(
                rsp < guest_rsp - 128 && rsp > guest_rsp - 1024 * 1024,
                "ran at {rsp:#x}, guest RSP {guest_rsp:#x}"
            );
        },
    );
}

#[test]
fn redirect_on_the_threads_redirect_stack() {
    isolated(
        "redirect_on_the_threads_redirect_stack",
        Ends::Passing,
        || {
            let mut stack = vec![0u8; 256 * 1024];
            let range = stack.as_ptr() as u64..stack.as_ptr() as u64 + stack.len() as u64;
            let (result, buf) = redirected_read_interrupted(Some(&mut stack));
            assert_eq!(result, Ok(5));
            assert_eq!(&buf[..5], b"hello");
            assert!(
                range.contains(&HOOK_RSP.load(Ordering::SeqCst)),
                "the redirect did not run on its stack"
            );
            assert!(!range.contains(&HOOK_GUEST_RSP.load(Ordering::SeqCst)));
        },
    );
}

/// A page of JIT-written code making syscalls, at a known offset.
struct JitPage {
    base: *mut u8,
}

/// Offset of the `syscall` instruction in the JIT page; the kernel tests the
/// address after it, `SYSCALL_END`.
const SYSCALL_AT: usize = 0x100;
const SYSCALL_END: usize = SYSCALL_AT + 2;

impl JitPage {
    fn new() -> JitPage {
        // SAFETY: a fresh anonymous mapping.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        } as *mut u8;
        assert!(!base.is_null() && base as isize != -1);
        // mov eax, __NR_getppid; syscall; ret  -- with the syscall at SYSCALL_AT.
        let mut code = vec![0x90u8; SYSCALL_AT - 5]; // nop sled up to the mov
        code.push(0xb8);
        code.extend_from_slice(&__NR_getppid.to_le_bytes());
        code.extend_from_slice(&[0x0f, 0x05, 0xc3]);
        // SAFETY: writes into the page, then makes it executable.
        unsafe {
            base.copy_from_nonoverlapping(code.as_ptr(), code.len());
            assert_eq!(
                libc::mprotect(base.cast(), 4096, libc::PROT_READ | libc::PROT_EXEC),
                0
            );
        }
        JitPage { base }
    }

    fn addr(&self, offset: usize) -> usize {
        self.base as usize + offset
    }

    /// Runs the JIT code: getppid from inside the page.
    fn getppid(&self) -> usize {
        // SAFETY: the page holds `... mov eax, 110; syscall; ret` from offset 0.
        let f: extern "C" fn() -> usize = unsafe { std::mem::transmute(self.base) };
        f()
    }
}

/// Inclusive mode: the JIT's syscall is trapped, the same syscall from
/// ordinary code runs natively even with the selector at BLOCK; the range is
/// respected at both ends, the kernel testing the address after `syscall`.
#[test]
fn inclusive_mode_traps_only_the_range() {
    isolated("inclusive_mode_traps_only_the_range", Ends::Passing, || {
        sud::install(|call| {
            if call.number() == __NR_getppid {
                Action::Emulate(FAKE_PPID)
            } else {
                Action::Reissue
            }
        })
        .unwrap();
        let jit = JitPage::new();
        let thread = Thread::new().unwrap();
        let native = native_getppid();
        let cases = [
            // (range, trapped)
            (jit.addr(0)..jit.addr(4096), true),
            (jit.addr(SYSCALL_END)..jit.addr(SYSCALL_END + 1), true),
            (jit.addr(0)..jit.addr(SYSCALL_END + 1), true),
            (jit.addr(SYSCALL_END - 1)..jit.addr(SYSCALL_END), false),
            (jit.addr(0)..jit.addr(SYSCALL_END), false),
            (jit.addr(SYSCALL_END + 1)..jit.addr(4096), false),
        ];
        for (range, trapped) in cases {
            thread.arm_inclusive(range.clone()).unwrap();
            let (from_jit, from_rust) = blocked(&thread, || {
                // SAFETY: getppid, from ordinary code.
                (jit.getppid(), unsafe { guest::syscall0(__NR_getppid) })
            });
            let want = if trapped { FAKE_PPID } else { native };
            assert_eq!(
                from_jit,
                want,
                "range {:#x}..{:#x} (syscall ends at {:#x})",
                range.start,
                range.end,
                jit.addr(SYSCALL_END)
            );
            assert_eq!(
                from_rust,
                Ok(native),
                "ordinary code was trapped in inclusive mode"
            );
        }
        thread.disarm().unwrap();
    });
}

#[test]
fn inclusive_mode_refuses_bad_ranges() {
    isolated("inclusive_mode_refuses_bad_ranges", Ends::Passing, || {
        let thread = Thread::new().unwrap();
        let region = sud::allowed_region();
        let einval = Err(Error::Os(Errno::EINVAL));
        assert_eq!(thread.arm_inclusive(0x10000..0x10000), einval, "empty");
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 0x20000..0x10000;
        assert_eq!(thread.arm_inclusive(reversed), einval, "reversed");
        assert_eq!(
            thread.arm_inclusive(region.start..region.start + 1),
            einval,
            "covers the allowed region"
        );
        assert_eq!(
            thread.arm_inclusive(0..usize::MAX),
            einval,
            "covers everything"
        );
        // SAFETY: the kernel refuses the wrapping range before arming.
        let wraps =
            unsafe { sud::set_syscall_user_dispatch(2, usize::MAX - 1, 4, std::ptr::null()) };
        assert_eq!(wraps, einval);
    });
}

/// `call sud_entry` from Rust, with R11 = the thread's selector.
fn entry(nr: u32, selector: *const u8) -> Result<usize, Errno> {
    let result: usize;
    let entry = sud::region_symbols().entry;
    // SAFETY: sud_entry takes the syscall registers and R11, clobbers RCX and
    // R11 only, and writes below RSP (the red zone is not kept: no `nostack`).
    unsafe {
        core::arch::asm!(
            "call {entry}",
            entry = in(reg) entry,
            inlateout("rax") nr as usize => result,
            in("rdi") 0, in("rsi") 0, in("rdx") 0, in("r10") 0, in("r8") 0, in("r9") 0,
            inlateout("r11") selector as usize => _,
            lateout("rcx") _,
        );
    }
    Errno::result(result)
}

static ENTRY_CALLS: AtomicUsize = AtomicUsize::new(0);
static ENTRY_SELECTOR: AtomicU64 = AtomicU64::new(0);

/// sud_entry runs the same callback, with the same outcomes, without a
/// signal; the callback sees the calling thread's selector, at ALLOW.
#[test]
fn entry_emulates_reissues_redirects_and_denies() {
    isolated(
        "entry_emulates_reissues_redirects_and_denies",
        Ends::Passing,
        || {
            fn handler(call: &mut Syscall) -> Action {
                ENTRY_CALLS.fetch_add(1, Ordering::SeqCst);
                assert!(call.siginfo().is_none(), "sud_entry is signal-free");
                assert!(
                    !call.selector().is_blocked(),
                    "the callback runs under ALLOW"
                );
                ENTRY_SELECTOR.store(call.selector().as_ptr() as u64, Ordering::SeqCst);
                match call.number() {
                    __NR_getppid => Action::Emulate(FAKE_PPID),
                    __NR_getpid => Action::Reissue,
                    500 => Action::Deny(Errno::EPERM),
                    _ => Action::Redirect,
                }
            }
            sud::install(handler).unwrap();
            sud::install_redirect(|call| call.number() as usize * 2).unwrap();
            let thread = Thread::new().unwrap();
            thread.arm().unwrap();
            let selector = thread.selector().as_ptr();
            let pid = std::process::id() as usize;
            let results = blocked(&thread, || {
                let r = [
                    entry(__NR_getppid, selector),
                    entry(__NR_getpid, selector),
                    entry(500, selector),
                    entry(501, selector),
                ];
                (r, thread.selector().is_blocked())
            });
            assert_eq!(
                results,
                ([Ok(FAKE_PPID), Ok(pid), Err(Errno::EPERM), Ok(1002)], true)
            );
            assert_eq!(ENTRY_CALLS.load(Ordering::SeqCst), 4);
            assert_eq!(
                ENTRY_SELECTOR.load(Ordering::SeqCst),
                selector as u64,
                "the callback saw another selector"
            );
            // Signal-free indeed: unarmed, it works the same.
            thread.disarm().unwrap();
            assert_eq!(entry(__NR_getppid, selector), Ok(FAKE_PPID));
            assert_eq!(entry(__NR_getppid, std::ptr::null()), Ok(FAKE_PPID));
            assert_eq!(
                ENTRY_SELECTOR.load(Ordering::SeqCst),
                sud::SELECTOR.as_ptr() as u64
            );
        },
    );
}

/// A guest thread created through sud_entry's reissue of clone is armed:
/// the task stubs serve the entry as they serve SIGSYS.
#[test]
fn entry_reissue_of_fork_arms_the_child() {
    isolated(
        "entry_reissue_of_fork_arms_the_child",
        Ends::Passing,
        || {
            sud::install(|call| {
                if call.number() == __NR_getppid {
                    Action::Emulate(FAKE_PPID)
                } else {
                    Action::Reissue
                }
            })
            .unwrap();
            let thread = Thread::new().unwrap();
            thread.arm().unwrap();
            let selector = thread.selector().as_ptr();
            let pid = blocked(&thread, || {
                let pid = entry(linux_raw_sys::general::__NR_fork, selector).unwrap();
                if pid == 0 {
                    // The child, still blocked: its getppid must be trapped.
                    // SAFETY: getppid, then exit_group from the child.
                    unsafe {
                        let trapped = guest::syscall0(__NR_getppid) == Ok(FAKE_PPID);
                        libc::syscall(libc::SYS_exit_group, if trapped { 0 } else { 1 });
                    }
                }
                pid
            });
            let mut status = 0;
            // SAFETY: waits for our child.
            assert_eq!(
                unsafe { libc::waitpid(pid as i32, &mut status, 0) },
                pid as i32
            );
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child ended {status:#x}"
            );
            let _ = __NR_getpid;
        },
    );
}

/// A thread created through sud_entry by an unarmed thread: the child runs
/// (unarmed, as its creator), and the global selector, ALLOW when the call
/// was made, is ALLOW after it.
#[test]
fn entry_clone_from_an_unarmed_thread() {
    isolated("entry_clone_from_an_unarmed_thread", Ends::Passing, || {
        sud::install(|_| Action::Reissue).unwrap();
        entry_clone_once();
    });
}

/// Threads created and ended through sud_entry on the global selector give
/// their state back: far more come and go than sud has slots for (4096).
#[test]
fn entry_clone_threads_leave_nothing_behind() {
    isolated(
        "entry_clone_threads_leave_nothing_behind",
        Ends::Passing,
        || {
            sud::install(|_| Action::Reissue).unwrap();
            for _ in 0..5000 {
                entry_clone_once();
            }
        },
    );
}

fn entry_clone_once() {
    {
        let mut stack = vec![0u8; 64 * 1024];
        let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
        let child_tid = std::sync::atomic::AtomicU32::new(u32::MAX);
        let mut marker = 0u64;
        let flags = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_CHILD_CLEARTID) as u64;
        // SAFETY: the child runs on `stack`, which outlives it (we wait for
        // its exit), and writes only `marker`.
        let tid = unsafe { entry_clone(flags, top, child_tid.as_ptr(), &mut marker) };
        assert!(tid > 0, "clone through sud_entry failed: {tid}");
        common::wait_for_thread_exit(&child_tid, tid);
        // SAFETY: the child is gone.
        assert_eq!(
            unsafe { std::ptr::read_volatile(&marker) },
            1,
            "the child never ran"
        );
        assert!(
            !sud::SELECTOR.is_blocked(),
            "sud_entry left the global selector at BLOCK"
        );
        drop(stack);
    }
}

/// A guest's pending x87 exception (unmasked, raised by its last x87
/// instruction, delivered by its next waiting one) neither fires inside
/// sud_entry, where sud's own code would take it as a SIGFPE, nor is lost:
/// the guest gets it back with the rest of its x87 state.
#[test]
fn entry_keeps_a_pending_x87_exception_pending() {
    isolated(
        "entry_keeps_a_pending_x87_exception_pending",
        Ends::Passing,
        || {
            sud::install(|_| Action::Reissue).unwrap();
            // SAFETY: the guest code restores a clean x87 state before it returns.
            let status = unsafe { entry_with_pending_x87() };
            assert_eq!(
                status & 0x81,
                0x81,
                "the pending invalid-operation exception (IE, ES) was lost: status {status:#x}"
            );
        },
    );
}

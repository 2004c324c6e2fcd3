//! Handlers that never return: a guest handler or a host handler left by
//! siglongjmp (natively fine, and how JITs and shells leave a fault or an
//! interrupt).  sud's stack is SS_AUTODISARM, so the kernel takes it for
//! each delivery and only that frame's rt_sigreturn gives it back: after
//! the jump the thread has none, and the next trap's frame lands on the
//! interrupted stack.  The thread must still be served with its own state
//! (its selector, so that the callback's own syscalls run) and get its
//! stack back.  Frames that land off sud's stack legitimately, on the
//! redirect stack while a handler is inside a redirect, must leave it
//! disarmed, and a guest handler taken there nests where the guest is
//! (the RSP it left), as natively.  Each test runs in a process of its own.

mod common;

use common::guest::{
    FAKE_PPID, LAST_GETPPID_SELECTOR, armed_thread, blocked, emulate_getppid, trapped_getppid,
};
use common::signals::{KernelSigaction, Stack, guest_rt_sigaction, raise_as_guest};
use common::{Ends, isolated};
use linux_raw_sys::general::{
    __NR_getppid, __NR_sigaltstack, SA_ONSTACK, SA_RESTORER, SA_SIGINFO, SIGUSR1, SIGUSR2,
    SS_DISABLE,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use sud::{Action, SigInfo, Syscall, Thread, UContext};

/// glibc's `sigjmp_buf` (200 bytes), with room to spare.
#[repr(C, align(16))]
struct JumpBuffer([u64; 64]);

static mut JUMP: JumpBuffer = JumpBuffer([0; 64]);

unsafe extern "C" {
    fn __sigsetjmp(buffer: *mut JumpBuffer, save_mask: i32) -> i32;
    fn siglongjmp(buffer: *mut JumpBuffer, value: i32) -> !;
}

extern "C" fn jumping_guest_handler(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: `jump_out` set JUMP and is still running.
    unsafe { siglongjmp(&raw mut JUMP, 1) }
}

/// # Safety
/// Only the kernel calls it, as a signal handler with its frame.
unsafe extern "C" fn jumping_host_handler(_: i32, _: *mut SigInfo, _: *mut UContext) {
    // SAFETY: as above.
    unsafe { siglongjmp(&raw mut JUMP, 1) }
}

/// The thread's real alternate stack, as the kernel has it.
fn real_altstack() -> Stack {
    let mut real = Stack::default();
    // SAFETY: reads the alternate stack into `real`.
    unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &raw mut real) };
    real
}

/// Raises SIGUSR1 from guest code, whose handler jumps back here: 1.
#[inline(never)]
fn jump_out(thread: &Thread) -> i32 {
    // SAFETY: nothing with a destructor lives across the jump.
    let jumped = unsafe { __sigsetjmp(&raw mut JUMP, 1) };
    if jumped == 0 {
        let _ = raise_as_guest(thread, SIGUSR1);
        panic!("the handler returned");
    }
    // Left mid-trap: the selector is as the handler had it.
    thread.selector().allow();
    jumped
}

/// getppid answered with the pid, which the callback gets with an
/// ordinary syscall: it runs only under the thread's own selector at ALLOW.
fn emulate_with_a_syscall(call: &mut Syscall) -> Action {
    if call.number() == __NR_getppid {
        Action::Emulate(std::process::id() as usize)
    } else {
        Action::Reissue
    }
}

fn install_jumping_guest_handler(thread: &Thread) {
    let action = KernelSigaction {
        handler: jumping_guest_handler as *const () as usize,
        flags: (SA_SIGINFO | SA_RESTORER) as u64,
        restorer: 0,
        mask: 0,
    };
    let (installed, _) = blocked(thread, || guest_rt_sigaction(SIGUSR1, Some(&action)));
    assert_eq!(installed, Ok(0));
}

/// After a jump out of a guest handler, the next trap sees the thread's
/// own selector, and its rt_sigreturn gives sud's stack back.
#[test]
fn guest_handler_left_by_siglongjmp() {
    isolated("guest_handler_left_by_siglongjmp", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        install_jumping_guest_handler(&thread);
        let before = real_altstack();
        assert_eq!(jump_out(&thread), 1);
        // The kernel took it for the delivery the handler never returned from.
        assert_eq!(real_altstack().flags, SS_DISABLE as i32);
        LAST_GETPPID_SELECTOR.store(0, Ordering::SeqCst);
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        assert_eq!(
            LAST_GETPPID_SELECTOR.load(Ordering::SeqCst),
            thread.selector().as_ptr() as u64,
            "the callback was told another thread's selector"
        );
        let after = real_altstack();
        assert_eq!((after.sp, after.size), (before.sp, before.size));
        // And from there on, as before the jump.
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        assert_eq!(real_altstack().size, before.size);
    });
}

/// The same, with a callback that makes a syscall of its own (which would
/// trap, with SIGSYS blocked, under a selector still at BLOCK).
#[test]
fn callback_syscalls_after_a_guest_handler_left_by_siglongjmp() {
    isolated(
        "callback_syscalls_after_a_guest_handler_left_by_siglongjmp",
        Ends::Passing,
        || {
            sud::install(emulate_with_a_syscall).unwrap();
            let thread = armed_thread();
            install_jumping_guest_handler(&thread);
            for _ in 0..3 {
                assert_eq!(jump_out(&thread), 1);
                let answer = blocked(&thread, trapped_getppid);
                assert_eq!(answer, Ok(std::process::id() as usize));
            }
        },
    );
}

/// A host handler (a JIT's fault handler) that jumps back into the host.
#[test]
fn host_handler_left_by_siglongjmp() {
    isolated("host_handler_left_by_siglongjmp", Ends::Passing, || {
        sud::install(emulate_with_a_syscall).unwrap();
        let thread = armed_thread();
        sud::install_host_handler(SIGUSR1, jumping_host_handler, 0, 0).unwrap();
        let before = real_altstack();
        for _ in 0..3 {
            assert_eq!(jump_out(&thread), 1);
            let answer = blocked(&thread, trapped_getppid);
            assert_eq!(answer, Ok(std::process::id() as usize));
            assert_eq!(real_altstack().size, before.size);
        }
    });
}

/// Whether the redirect function is running (its handler's getppid is
/// then emulated), and what each handler got from its getppid.
static IN_REDIRECT: AtomicBool = AtomicBool::new(false);
static OUTER_GOT: AtomicUsize = AtomicUsize::new(0);
static INNER_GOT: AtomicUsize = AtomicUsize::new(0);

fn redirect_getppid(call: &mut Syscall) -> Action {
    if call.number() != __NR_getppid {
        Action::Reissue
    } else if IN_REDIRECT.load(Ordering::SeqCst) {
        Action::Emulate(FAKE_PPID)
    } else {
        Action::Redirect
    }
}

/// Host code: raises SIGUSR2 (a native tgkill) while it runs.
fn redirected_raising(_: &mut Syscall) -> usize {
    IN_REDIRECT.store(true, Ordering::SeqCst);
    // SAFETY: a signal to this thread, which the test is ready for.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), SIGUSR2) };
    IN_REDIRECT.store(false, Ordering::SeqCst);
    REDIRECTED
}

const REDIRECTED: usize = 4242;

extern "C" fn outer_handler(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let first = trapped_getppid().unwrap_or(0);
    // Trapped again after the inner handler returned: its frame must not
    // land where this handler's frames live on sud's stack.
    let second = trapped_getppid().unwrap_or(0);
    OUTER_GOT.store(if first == second { first } else { 0 }, Ordering::SeqCst);
}

extern "C" fn inner_handler(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Some stack, as a real handler uses.
    let mut buffer = [0u8; 2048];
    std::hint::black_box(&mut buffer);
    INNER_GOT.store(trapped_getppid().unwrap_or(0), Ordering::SeqCst);
}

/// A guest handler running on sud's stack (no SA_ONSTACK) whose getppid is
/// redirected onto the thread's redirect stack, and a second guest handler
/// taken during that redirect: its frame lands on the redirect stack (sud's
/// is disarmed while the first handler runs on it) and must keep it so.
#[test]
fn handler_during_a_redirect_from_a_handler_on_suds_stack() {
    isolated(
        "handler_during_a_redirect_from_a_handler_on_suds_stack",
        Ends::Passing,
        || {
            let thread = redirecting_thread();
            install_nesting_handlers(&thread, 0);
            let before = real_altstack();
            for _ in 0..3 {
                raise_nested(&thread);
                let after = real_altstack();
                assert_eq!((after.sp, after.size), (before.sp, before.size));
            }
            assert_eq!(blocked(&thread, trapped_getppid), Ok(REDIRECTED));
        },
    );
}

/// The same with both handlers SA_ONSTACK on the guest's own alternate
/// stack: the first runs there, and the second, taken during the redirect
/// (while the guest is still inside its syscall on that stack), nests below
/// it there, as natively, judged on the RSP the guest left rather than on
/// the redirect stack's.
#[test]
fn onstack_handler_during_a_redirect_from_an_onstack_handler() {
    isolated(
        "onstack_handler_during_a_redirect_from_an_onstack_handler",
        Ends::Passing,
        || {
            let thread = redirecting_thread();
            let guest_stack = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
            let theirs = Stack {
                sp: guest_stack.as_mut_ptr() as u64,
                flags: 0,
                size: guest_stack.len() as u64,
            };
            // SAFETY: a valid stack_t for the guest's sigaltstack.
            let set = blocked(&thread, || unsafe {
                sud::guest::syscall2(__NR_sigaltstack, &raw const theirs as usize, 0)
            });
            assert_eq!(set, Ok(0));
            install_nesting_handlers(&thread, SA_ONSTACK as u64);
            for _ in 0..3 {
                raise_nested(&thread);
            }
            assert_eq!(blocked(&thread, trapped_getppid), Ok(REDIRECTED));
        },
    );
}

/// An armed thread whose getppid is redirected onto a redirect stack of its
/// own, the redirect function raising SIGUSR2.
fn redirecting_thread() -> Thread {
    sud::install(redirect_getppid).unwrap();
    sud::install_redirect(redirected_raising).unwrap();
    let thread = armed_thread();
    let redirect_stack = Box::leak(vec![0u8; 256 * 1024].into_boxed_slice());
    // SAFETY: a stack of its own for the test's whole process.
    unsafe { thread.set_redirect_stack(redirect_stack.as_mut_ptr(), redirect_stack.len()) };
    thread
}

/// The guest's handlers: the outer one for SIGUSR1, the inner one for
/// SIGUSR2, with `flags` added.
fn install_nesting_handlers(thread: &Thread, flags: u64) {
    for (signal, handler) in [
        (SIGUSR1, outer_handler as *const () as usize),
        (SIGUSR2, inner_handler as *const () as usize),
    ] {
        let action = KernelSigaction {
            handler,
            flags: (SA_SIGINFO | SA_RESTORER) as u64 | flags,
            restorer: 0,
            mask: 0,
        };
        let (installed, _) = blocked(thread, || guest_rt_sigaction(signal, Some(&action)));
        assert_eq!(installed, Ok(0));
    }
}

/// SIGUSR1 from guest code: the outer handler's getppid is redirected, the
/// inner handler's (during the redirect) emulated.
fn raise_nested(thread: &Thread) {
    OUTER_GOT.store(0, Ordering::SeqCst);
    INNER_GOT.store(0, Ordering::SeqCst);
    assert_eq!(raise_as_guest(thread, SIGUSR1), Ok(0));
    assert_eq!(OUTER_GOT.load(Ordering::SeqCst), REDIRECTED);
    assert_eq!(INNER_GOT.load(Ordering::SeqCst), FAKE_PPID);
}

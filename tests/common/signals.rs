//! Signals as the tests set them up: a guest's raw rt_sigaction (with
//! `struct kernel_sigaction`), `stack_t` for sigaltstack, a guest handler
//! that reports where it ran and what its trapped syscall was told, and a
//! plain libc handler for signals sud is not asked about.

use super::guest::{blocked, stack_pointer, trapped_getppid};
use linux_raw_sys::general::{__NR_rt_sigaction, __NR_tgkill};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use sud::{Errno, Thread, guest};

/// Installs a plain libc signal handler.
pub fn libc_handler(signal: i32, handler: extern "C" fn(i32), flags: i32) {
    // SAFETY: a zeroed sigaction with a valid handler.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = flags;
        assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
    }
}

/// Sends `signal` to the calling thread from guest code: a tgkill made with
/// `thread`'s selector at BLOCK, so trapped and reissued.  A handled signal
/// has been handled when it returns.
pub fn raise_as_guest(thread: &Thread, signal: u32) -> Result<usize, Errno> {
    let pid = std::process::id() as usize;
    let tid = super::gettid() as usize;
    // SAFETY: a signal to this thread, which the test is ready for.
    blocked(thread, || unsafe {
        guest::syscall3(__NR_tgkill, pid, tid, signal as usize)
    })
}

/// How many times guest_handler ran.
pub static GUEST_HANDLED: AtomicUsize = AtomicUsize::new(0);
/// What guest_handler's trapped getppid was told (0 for an error).
pub static GUEST_HANDLER_RESULT: AtomicU64 = AtomicU64::new(0);
/// Where guest_handler ran: its stack pointer.
pub static GUEST_HANDLER_RSP: AtomicU64 = AtomicU64::new(0);

/// A guest signal handler: guest code, so its own syscall is trapped.
pub extern "C" fn guest_handler(_: i32, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
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
pub struct KernelSigaction {
    pub handler: usize,
    pub flags: u64,
    pub restorer: usize,
    pub mask: u64,
}

/// rt_sigaction(signal, new, &old) made as guest code: its result and the
/// old action.
pub fn guest_rt_sigaction(
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

/// `stack_t`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stack {
    pub sp: u64,
    pub flags: i32,
    pub size: u64,
}

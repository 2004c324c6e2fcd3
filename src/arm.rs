//! Arming a thread: `prctl(PR_SET_SYSCALL_USER_DISPATCH)` with typed errors,
//! support detection, and the record of how a thread was armed, from which
//! the tasks its guest creates are armed again.

use crate::error::{Errno, Error};
use crate::sys::prctl_syscall_user_dispatch;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};
use linux_raw_sys::prctl::{
    PR_SYS_DISPATCH_EXCLUSIVE_ON, PR_SYS_DISPATCH_INCLUSIVE_ON, PR_SYS_DISPATCH_OFF,
};

/// What the running kernel offers, found by asking it, never assumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Support {
    /// `PR_SYS_DISPATCH_EXCLUSIVE_ON` (Linux 5.11).
    pub exclusive: bool,
    /// `PR_SYS_DISPATCH_INCLUSIVE_ON` (Linux 6.17).
    pub inclusive: bool,
}

/// Asks the kernel which dispatch modes it has, without arming or disarming
/// anything: each mode is probed with a valid range and a selector that is
/// not a user address, which a kernel that knows the mode refuses with
/// EFAULT (or EPERM where arming is forbidden), and one that does not with
/// EINVAL.
pub fn support() -> Support {
    let knows = |op: u32| {
        // SAFETY: the selector is a kernel address, so the kernel refuses
        // the call before it changes anything.
        let answer = unsafe { prctl_syscall_user_dispatch(op, 1, 1, usize::MAX) };
        matches!(answer, Err(Errno::EFAULT) | Err(Errno::EPERM) | Ok(_))
    };
    Support {
        exclusive: knows(PR_SYS_DISPATCH_EXCLUSIVE_ON),
        inclusive: knows(PR_SYS_DISPATCH_INCLUSIVE_ON),
    }
}

/// Refuses an inclusive range the runtime could not work with.
pub(crate) fn check_inclusive(range: &Range<usize>) -> Result<(), Error> {
    let region = crate::region::allowed_region();
    if range.is_empty() || (range.start < region.end && region.start < range.end) {
        return Err(Error::Os(Errno::EINVAL));
    }
    Ok(())
}

/// Turns dispatch off for the calling thread, and nothing else.
pub(crate) fn disarm_this_thread() -> Result<(), Error> {
    // SAFETY: turning dispatch off takes no memory.
    unsafe { set_syscall_user_dispatch(PR_SYS_DISPATCH_OFF, 0, 0, core::ptr::null()) }
}

/// The kernel's interface as it is: `prctl(PR_SET_SYSCALL_USER_DISPATCH, op,
/// offset, len, selector)` for the calling thread, with a typed error.  An
/// EINVAL from a kernel that lacks the mode asked for becomes
/// [`Error::NoSyscallUserDispatch`] or [`Error::NoInclusiveMode`].
///
/// # Safety
/// Whatever the arguments, the runtime's own syscalls must keep running:
/// with a range that does not exempt the [allowed region](crate::allowed_region)
/// (or, inclusive, that covers it) or with a null selector, they are
/// dispatched too.  The selector must stay mapped and hold 0 or 1 while the
/// thread is armed.
pub unsafe fn set_syscall_user_dispatch(
    op: u32,
    offset: usize,
    len: usize,
    selector: *const u8,
) -> Result<(), Error> {
    // SAFETY: the caller answers for the configuration.
    match unsafe { prctl_syscall_user_dispatch(op, offset, len, selector as usize) } {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            let support = support();
            Err(if !support.exclusive {
                Error::NoSyscallUserDispatch
            } else if op == PR_SYS_DISPATCH_INCLUSIVE_ON && !support.inclusive {
                Error::NoInclusiveMode
            } else {
                Error::Os(Errno::EINVAL)
            })
        }
        Err(errno) => Err(Error::Os(errno)),
    }
}

/// How a thread was armed: the prctl arguments, which the task stubs
/// (`asm/x86_64/tasks.s`) read at offsets Rust gives them to arm a child the
/// same way.  All zero (PR_SYS_DISPATCH_OFF) for a thread not armed by sud.
#[repr(C)]
pub(crate) struct Arming {
    pub op: AtomicU64,
    pub offset: AtomicU64,
    pub len: AtomicU64,
    pub selector: AtomicU64,
}

impl Arming {
    pub const fn new() -> Arming {
        Arming {
            op: AtomicU64::new(PR_SYS_DISPATCH_OFF as u64),
            offset: AtomicU64::new(0),
            len: AtomicU64::new(0),
            selector: AtomicU64::new(0),
        }
    }

    /// Records an arming.
    pub fn set(&self, op: u32, range: Range<usize>, selector: *const u8) {
        self.op.store(op as u64, Ordering::Relaxed);
        self.offset.store(range.start as u64, Ordering::Relaxed);
        self.len.store(range.len() as u64, Ordering::Relaxed);
        self.selector.store(selector as u64, Ordering::Relaxed);
    }

    /// The operation and range recorded (the selector is each thread's own).
    pub fn mode(&self) -> (u32, Range<usize>) {
        let offset = self.offset.load(Ordering::Relaxed) as usize;
        let len = self.len.load(Ordering::Relaxed) as usize;
        (self.op.load(Ordering::Relaxed) as u32, offset..offset + len)
    }
}

//! The selector byte, and arming a thread: `prctl(PR_SET_SYSCALL_USER_DISPATCH)`.

use crate::error::{Errno, Error};
use crate::syscalls::host;
use crate::thread::{GLOBAL, ThreadState};
use core::ops::Range;
use core::sync::atomic::{AtomicU8, Ordering};
use linux_raw_sys::general::__NR_prctl;
use linux_raw_sys::prctl::{
    PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_EXCLUSIVE_ON, PR_SYS_DISPATCH_INCLUSIVE_ON,
    PR_SYS_DISPATCH_OFF, SYSCALL_DISPATCH_FILTER_ALLOW, SYSCALL_DISPATCH_FILTER_BLOCK,
};

/// The one-byte switch the kernel reads on every syscall of a thread armed
/// with it: ALLOW (0) lets syscalls run, BLOCK (1) dispatches them as SIGSYS.
///
/// It can only ever hold 0 or 1 (the kernel kills a thread whose selector
/// holds anything else), and each flip is one byte store, with no syscall.
/// A selector must stay mapped for as long as any thread is armed with it.
#[repr(transparent)]
pub struct Selector(AtomicU8);

/// The process-wide default selector, exported to generated code under the
/// symbol **`sud_selector`**: `mov byte ptr [rip + sud_selector], 1` blocks,
/// `mov byte ptr [rip + sud_selector], 0` allows.
///
/// Every thread armed with it sees every flip: it suits one guest thread, or
/// threads that enter and leave guest code together.
#[unsafe(export_name = "sud_selector")]
pub static SELECTOR: Selector = Selector::new();

impl Selector {
    /// A selector that says ALLOW.
    pub const fn new() -> Selector {
        Selector(AtomicU8::new(SYSCALL_DISPATCH_FILTER_ALLOW as u8))
    }

    /// Let syscalls run: one byte store.
    #[inline(always)]
    pub fn allow(&self) {
        self.0
            .store(SYSCALL_DISPATCH_FILTER_ALLOW as u8, Ordering::Relaxed);
    }

    /// Dispatch syscalls: one byte store.  From now until [`allow`](Self::allow),
    /// every syscall that a thread armed with this selector makes outside the
    /// allowed region becomes a SIGSYS, and its result is what the SIGSYS
    /// callback decides.
    ///
    /// # Safety
    /// Code that runs on those threads in the meantime, normally guest code,
    /// must be able to live with the callback's answers: Rust code that asks
    /// for memory with `mmap` and gets an emulated answer is unsound.
    #[inline(always)]
    pub unsafe fn block(&self) {
        self.0
            .store(SYSCALL_DISPATCH_FILTER_BLOCK as u8, Ordering::Relaxed);
    }

    /// Whether the selector says BLOCK.
    #[inline(always)]
    pub fn is_blocked(&self) -> bool {
        self.0.load(Ordering::Relaxed) == SYSCALL_DISPATCH_FILTER_BLOCK as u8
    }

    /// The address of the byte, for the kernel and for generated code.
    #[inline(always)]
    pub const fn as_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }
}

impl Default for Selector {
    fn default() -> Selector {
        Selector::new()
    }
}

impl core::fmt::Debug for Selector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(if self.is_blocked() {
            "Selector(BLOCK)"
        } else {
            "Selector(ALLOW)"
        })
    }
}

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
        let answer = unsafe { prctl_dispatch(op as usize, 1, 1, usize::MAX) };
        matches!(answer, Err(Errno::EFAULT) | Err(Errno::EPERM) | Ok(_))
    };
    Support {
        exclusive: knows(PR_SYS_DISPATCH_EXCLUSIVE_ON),
        inclusive: knows(PR_SYS_DISPATCH_INCLUSIVE_ON),
    }
}

/// Arms the calling thread in exclusive mode over the [allowed region]
/// (crate::allowed_region) with the global selector, [`SELECTOR`]: while it
/// says BLOCK, every syscall the thread makes from anywhere else is
/// dispatched as SIGSYS.  For a selector of the thread's own, see
/// [`Thread`](crate::Thread).
///
/// Arming is per thread and is not inherited by threads, processes or exec'd
/// images the host creates; the tasks guest code creates while blocked
/// (clone, fork, vfork, clone3) are armed again by the runtime.  Install the
/// SIGSYS handler ([`install`](crate::install)) before the selector first
/// says BLOCK.
pub fn arm() -> Result<(), Error> {
    arm_state(
        &GLOBAL,
        PR_SYS_DISPATCH_EXCLUSIVE_ON,
        crate::allowed_region(),
    )
}

/// Arms the calling thread in inclusive mode (Linux 6.17) with the global
/// selector: while it says BLOCK, the syscalls made from inside `range` (a
/// JIT's code cache, a loaded guest image) are dispatched, and those from
/// anywhere else run.
///
/// The kernel tests the address *after* the `syscall` instruction, so a range
/// that should trap a syscall ending exactly at its end must reach one byte
/// further.  On a kernel without inclusive mode this returns
/// [`Error::NoInclusiveMode`]; the fallback is exclusive mode, [`arm`], with
/// host code making its syscalls through [`host`](crate::host).  A range that
/// is empty, wraps, or overlaps the allowed region is refused with
/// `Os(EINVAL)` before the kernel is asked.
pub fn arm_inclusive(range: Range<usize>) -> Result<(), Error> {
    check_inclusive(&range)?;
    arm_state(&GLOBAL, PR_SYS_DISPATCH_INCLUSIVE_ON, range)
}

/// Refuses an inclusive range the runtime could not work with.
pub(crate) fn check_inclusive(range: &Range<usize>) -> Result<(), Error> {
    let region = crate::allowed_region();
    if range.is_empty() || (range.start < region.end && region.start < range.end) {
        return Err(Error::Os(Errno::EINVAL));
    }
    Ok(())
}

/// Arms the calling thread with `state`'s selector, and records how, so
/// that the tasks its guest creates are armed the same way.
pub(crate) fn arm_state(state: &ThreadState, op: u32, range: Range<usize>) -> Result<(), Error> {
    let selector = state.selector().as_ptr();
    // SAFETY: the range exempts the runtime's region (exclusive) or avoids
    // it (inclusive, checked by the callers); the selector lives as long as
    // the state, which outlives the arming.
    unsafe { set_syscall_user_dispatch(op, range.start, range.len(), selector)? };
    state.set_arm(op, range.start, range.len(), selector);
    Ok(())
}

/// Disarms the calling thread.  Always allowed by the kernel, armed or not.
pub fn disarm() -> Result<(), Error> {
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
    match unsafe { prctl_dispatch(op as usize, offset, len, selector as usize) } {
        Ok(_) => Ok(()),
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

/// The raw prctl, through the allowed region so that it runs even while the
/// calling thread is armed and blocked.
///
/// # Safety
/// As for [`set_syscall_user_dispatch`].
unsafe fn prctl_dispatch(
    op: usize,
    offset: usize,
    len: usize,
    selector: usize,
) -> Result<usize, Errno> {
    // SAFETY: the caller answers for the configuration.
    unsafe {
        host::syscall5(
            __NR_prctl,
            PR_SET_SYSCALL_USER_DISPATCH as usize,
            op,
            offset,
            len,
            selector,
        )
    }
}

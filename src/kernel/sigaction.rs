//! `struct kernel_sigaction`, the argument of the raw `rt_sigaction`, and the
//! kernel's signal sets.

use core::mem::size_of;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use linux_raw_sys::general as sys;
use static_assertions::const_assert_eq;

/// `struct kernel_sigaction`.  The handler is a plain address so that
/// SIG_DFL (0) and SIG_IGN (1) fit, which linux-raw-sys's `Option<fn>` cannot
/// hold; the layout is asserted equal to linux-raw-sys's below.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct KernelSigaction {
    pub handler: usize,
    pub flags: u64,
    pub restorer: usize,
    pub mask: u64,
}

/// A `kernel_sigaction` that several threads read and write: its address
/// can be handed to `rt_sigaction` as it is (the task stubs do), and each
/// field is read and written whole.  Readers that need one consistent
/// action, never half of two, need a protocol on top (a lock, a sequence
/// count: see `dispositions`).
#[repr(C)]
pub(crate) struct AtomicSigaction {
    handler: AtomicUsize,
    flags: AtomicU64,
    restorer: AtomicUsize,
    mask: AtomicU64,
}

impl AtomicSigaction {
    /// SIG_DFL, no flags, no restorer, an empty mask: all zeros.
    pub const fn new() -> AtomicSigaction {
        AtomicSigaction {
            handler: AtomicUsize::new(SIG_DFL),
            flags: AtomicU64::new(0),
            restorer: AtomicUsize::new(0),
            mask: AtomicU64::new(0),
        }
    }

    /// Stores `action`, the handler last (with Release), so that a reader
    /// that sees the handler (with Acquire) sees the rest of it too.
    pub fn store(&self, action: &KernelSigaction) {
        self.flags.store(action.flags, Ordering::Relaxed);
        self.restorer.store(action.restorer, Ordering::Relaxed);
        self.mask.store(action.mask, Ordering::Relaxed);
        self.handler.store(action.handler, Ordering::Release);
    }

    /// The action, the handler first (with Acquire).
    pub fn load(&self) -> KernelSigaction {
        KernelSigaction {
            handler: self.handler.load(Ordering::Acquire),
            flags: self.flags.load(Ordering::Relaxed),
            restorer: self.restorer.load(Ordering::Relaxed),
            mask: self.mask.load(Ordering::Relaxed),
        }
    }
}

/// `SIG_DFL` as a handler address.
pub(crate) const SIG_DFL: usize = 0;
/// `SIG_IGN` as a handler address.
pub(crate) const SIG_IGN: usize = 1;
/// The size of the kernel's signal set, the last argument of rt_sigaction
/// and rt_sigprocmask.
pub(crate) const SIGSET_SIZE: usize = size_of::<u64>();
/// Signals 1 to 64; index 0 unused.
pub(crate) const NSIG: usize = 65;

/// The bit of a signal in a kernel signal set.
pub(crate) const fn sigmask(signal: u32) -> u64 {
    1 << (signal - 1)
}

/// SIGSYS's bit: the one signal a dispatching thread must never block.
pub(crate) const SIGSYS_BIT: u64 = sigmask(sys::SIGSYS);

/// Signals no mask can hold: the kernel drops them from every mask it is given.
pub(crate) const UNBLOCKABLE: u64 = sigmask(sys::SIGKILL) | sigmask(sys::SIGSTOP);

/// A signal set of every signal but SIGSYS: what the task stubs block across
/// a clone (a SIGSYS the kernel forces there must find it unblocked, or it
/// kills the process).
pub(crate) static ALL_BUT_SIGSYS: u64 = !SIGSYS_BIT;

// kernel_sigaction: the same layout as linux-raw-sys's, and so the atomic holder.
same_layout!(KernelSigaction = sys::kernel_sigaction {
    flags = sa_flags,
    restorer = sa_restorer,
    mask = sa_mask,
});
same_layout!(AtomicSigaction = KernelSigaction { flags = flags, restorer = restorer, mask = mask });
const_assert_eq!(SIGSET_SIZE, size_of::<sys::kernel_sigset_t>());

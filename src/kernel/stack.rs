//! Stacks: `stack_t` ([`SigStack`]), its atomic holder, and the red zone.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, Ordering};
use linux_raw_sys::general::{self as sys, SS_DISABLE, SS_ONSTACK};

/// `stack_t`: an alternate signal stack, as `sigaltstack` takes and gives
/// it and as a signal frame's [`uc_stack`](crate::UContext::uc_stack) holds it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigStack {
    /// Its lowest address.
    pub ss_sp: *mut core::ffi::c_void,
    /// `SS_ONSTACK` (the thread is running on it), `SS_DISABLE` (there is
    /// none), possibly or'ed with `SS_AUTODISARM`; or 0.
    pub ss_flags: i32,
    /// Its size in bytes.
    pub ss_size: u64,
}

/// The kernel's name for it, which the runtime uses.
#[allow(non_camel_case_types)]
pub(crate) type stack_t = SigStack;

/// The bytes below RSP that x86-64 code may use without moving RSP, and that
/// the kernel skips before it builds a signal frame.
pub(crate) const RED_ZONE: usize = 128;

/// A `stack_t` with no stack: SS_DISABLE.
pub(crate) const fn disabled_stack() -> stack_t {
    stack_t {
        ss_sp: null_mut(),
        ss_flags: SS_DISABLE as i32,
        ss_size: 0,
    }
}

/// Whether `sp` lies on `stack` as the kernel judges it (`on_sig_stack`:
/// above its base, at most its size above).
pub(crate) fn is_on(stack: &stack_t, sp: u64) -> bool {
    let base = stack.ss_sp as u64;
    sp > base && sp - base <= stack.ss_size
}

/// `stack_t`'s mode bits (SS_ONSTACK or SS_DISABLE) without the flags that
/// may be or'ed in (SS_AUTODISARM).
pub(crate) const SS_MODE: i32 = (SS_ONSTACK | SS_DISABLE) as i32;

/// A `stack_t` that several threads read and write, laid out as the kernel's,
/// so that its address can be handed to `sigaltstack` as it is (the task
/// stubs do).  Each field is read and written whole.
#[repr(C)]
pub(crate) struct AtomicStack {
    sp: AtomicPtr<core::ffi::c_void>,
    flags: AtomicI32,
    size: AtomicU64,
}

impl AtomicStack {
    /// A stack_t of all zeros: no stack, no flags.
    pub const fn new() -> AtomicStack {
        AtomicStack {
            sp: AtomicPtr::new(null_mut()),
            flags: AtomicI32::new(0),
            size: AtomicU64::new(0),
        }
    }

    /// A holder for `stack`.
    pub const fn holding(stack: stack_t) -> AtomicStack {
        AtomicStack {
            sp: AtomicPtr::new(stack.ss_sp),
            flags: AtomicI32::new(stack.ss_flags),
            size: AtomicU64::new(stack.ss_size),
        }
    }

    pub fn load(&self) -> stack_t {
        stack_t {
            ss_sp: self.sp.load(Ordering::Relaxed),
            ss_flags: self.flags.load(Ordering::Relaxed),
            ss_size: self.size.load(Ordering::Relaxed),
        }
    }

    pub fn store(&self, stack: &stack_t) {
        self.sp.store(stack.ss_sp, Ordering::Relaxed);
        self.flags.store(stack.ss_flags, Ordering::Relaxed);
        self.size.store(stack.ss_size, Ordering::Relaxed);
    }
}

same_layout!(SigStack = sys::stack_t { ss_sp = ss_sp, ss_flags = ss_flags, ss_size = ss_size });
same_layout!(AtomicStack = stack_t { sp = ss_sp, flags = ss_flags, size = ss_size });

//! The selector byte the kernel reads on every syscall of an armed thread.

use core::sync::atomic::{AtomicU8, Ordering};
use linux_raw_sys::prctl::{SYSCALL_DISPATCH_FILTER_ALLOW, SYSCALL_DISPATCH_FILTER_BLOCK};

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

/// Host code running on a thread whose guest may have been stopped under
/// BLOCK: the selector says ALLOW from [`enter`](HostScope::enter) until
/// [`leave`](HostScope::leave), which puts BLOCK back if the guest is to
/// resume under it.  Every stretch of host code the runtime runs in the
/// middle of guest code (the callback, host handlers, the application's
/// SIGSYS handler) is one of these.
pub(crate) struct HostScope<'a> {
    selector: &'a Selector,
    resume_blocked: bool,
}

impl<'a> HostScope<'a> {
    /// Allows syscalls on `selector`; `resume_blocked` says whether the
    /// guest goes on under BLOCK afterwards.
    #[inline(always)]
    pub fn enter(selector: &'a Selector, resume_blocked: bool) -> HostScope<'a> {
        selector.allow();
        HostScope {
            selector,
            resume_blocked,
        }
    }

    /// As [`enter`](Self::enter), the guest resuming in whatever state the
    /// selector says now.
    #[inline(always)]
    pub fn enter_as_found(selector: &'a Selector) -> HostScope<'a> {
        let blocked = selector.is_blocked();
        Self::enter(selector, blocked)
    }

    /// Whether the guest resumes under BLOCK.
    #[inline(always)]
    pub fn resumes_blocked(&self) -> bool {
        self.resume_blocked
    }

    /// Ends the host code: BLOCK again if the guest resumes under it.
    #[inline(always)]
    pub fn leave(self) {
        if self.resume_blocked {
            // SAFETY: this puts back the state the guest was stopped in.
            unsafe { self.selector.block() };
        }
    }

    /// Ends the host code with the selector left at ALLOW.
    #[inline(always)]
    pub fn leave_allowed(self) {}
}

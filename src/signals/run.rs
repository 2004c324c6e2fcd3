//! Calling an application's handler as the kernel would, and a guest's
//! handler as guest code.

use crate::kernel::sigaction::{KernelSigaction, SIGSYS_BIT, sigmask};
use crate::kernel::{SigInfo, UContext};
use crate::sys;
use crate::thread::state::ThreadState;
use core::sync::atomic::Ordering;

/// A handler with SA_SIGINFO's signature (one without SA_SIGINFO ignores
/// the last two arguments).
type SigInfoHandler = unsafe extern "C" fn(i32, *mut SigInfo, *mut UContext);

/// Calls an application's signal handler, as the kernel would.
///
/// # Safety
/// `handler` is a signal handler; the pointers are the live frame's.
pub(crate) unsafe fn call_handler(
    handler: usize,
    signal: i32,
    info: *mut SigInfo,
    uc: *mut UContext,
) {
    // SAFETY: with SA_SIGINFO the handler takes all three arguments; without
    // it takes one, and ignores the registers holding the other two, which
    // is how the kernel calls it too.
    unsafe {
        let f: SigInfoHandler = core::mem::transmute(handler);
        f(signal, info, uc);
    }
}

/// Runs a guest handler as guest code: selector BLOCK, its virtual mask in
/// `uc_sigmask`, and on return what its restorer's rt_sigreturn would do to
/// the virtual mask.
///
/// # Safety
/// As for [`call_handler`].
pub(crate) unsafe fn run_guest_handler(
    state: &ThreadState,
    guest: &KernelSigaction,
    signal: i32,
    info: *mut SigInfo,
    uc: *mut UContext,
) {
    let selector = state.selector();
    let was_blocked = selector.is_blocked();
    let blocks_sigsys = &state.guest.blocks_sigsys;
    let before = blocks_sigsys.load(Ordering::Relaxed);
    // SAFETY: the live frame's ucontext.
    unsafe {
        if before {
            (*uc).uc_sigmask |= SIGSYS_BIT;
        }
        blocks_sigsys.store(before || guest.mask & SIGSYS_BIT != 0, Ordering::Relaxed);
        // SAFETY: guest handlers are guest code.
        selector.block();
        call_handler(guest.handler, signal, info, uc);
        blocks_sigsys.store((*uc).uc_sigmask & SIGSYS_BIT != 0, Ordering::Relaxed);
        (*uc).uc_sigmask &= !SIGSYS_BIT;
    }
    if !was_blocked {
        selector.allow();
    }
}

/// The default action for a signal sud's handler took: the disposition is
/// reset and the same siginfo queued again to this thread; the signal is
/// blocked while the handler runs and is taken out of the mask rt_sigreturn
/// reinstalls, so it is delivered, with its default action, at that point.
/// For the signals that kill, the process dies of it as it would have.
pub(crate) fn default_action(signal: u32, info: &SigInfo, uc: &mut UContext) {
    let _ = sys::sigaction(signal, Some(&KernelSigaction::default()));
    uc.uc_sigmask &= !sigmask(signal);
    let _ = sys::queue_to_self(signal, info);
}

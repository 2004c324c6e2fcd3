//! Calling an application's handler as the kernel would, and a guest's
//! handler as guest code.

use super::guest_stack::call_guest_handler;
pub(crate) use super::guest_stack::call_handler;
use crate::kernel::sigaction::{KernelSigaction, SIGSYS_BIT, sigmask};
use crate::kernel::{SigInfo, UContext};
use crate::sys;
use crate::thread::pointers::enter_guest_handler;
use crate::thread::state::ThreadState;
use core::sync::atomic::Ordering;

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
    // Guest code runs under BLOCK: on a thread of its own, its selector says
    // so; the global one, which a thread with no state of its own shares
    // with others, is left as it is.
    let selector = state.selector();
    let managed = !state.is_global();
    let was_blocked = selector.is_blocked() || !managed;
    let guest_pointers = enter_guest_handler(state);
    let blocks_sigsys = &state.guest.blocks_sigsys;
    let before = blocks_sigsys.load(Ordering::Relaxed);
    // SAFETY: the live frame's ucontext.
    unsafe {
        if before {
            (*uc).uc_sigmask |= SIGSYS_BIT;
        }
        blocks_sigsys.store(before || guest.mask & SIGSYS_BIT != 0, Ordering::Relaxed);
        if managed {
            // SAFETY: guest handlers are guest code.
            selector.block();
        }
        call_guest_handler(state, guest, signal, info, uc);
        blocks_sigsys.store((*uc).uc_sigmask & SIGSYS_BIT != 0, Ordering::Relaxed);
        (*uc).uc_sigmask &= !SIGSYS_BIT;
    }
    guest_pointers.leave();
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

//! A SIGSYS that is not from dispatch (seccomp's SECCOMP_RET_TRAP, a
//! `kill`): it goes where the kernel would have sent it, and a trap of a
//! syscall sud reissued shows the guest's own call, not sud's stub.

use super::run::{call_handler, default_action, run_guest_handler};
use crate::dispositions::{
    PREVIOUS_SIGSYS, guest_sigsys_action, reset_by_delivery, reset_guest_action,
};
use crate::kernel::sigaction::{SIG_DFL, SIG_IGN, SIGSYS_BIT};
use crate::kernel::{SigInfo, UContext};
use crate::reissue::guest_view::guest_view;
use crate::selector::HostScope;
use crate::sys;
use crate::thread::pointers::enter_host;
use crate::thread::state::ThreadState;
use linux_raw_sys::general::{SA_RESETHAND, SIGSYS};

/// A SIGSYS that is not from dispatch: give it to the guest's own SIGSYS
/// disposition if it set one, else to the one [`install`] replaced, as the
/// kernel would have.  A seccomp trap in a reissue stub is first turned into
/// the guest's own (see [`guest_view`]): the handler sees, and changes, what
/// it would natively, and the guest resumes from the frame it leaves.
///
/// # Safety
/// `info` and `uc` are the live frame's.
pub(crate) unsafe fn forward(state: &ThreadState, info: *mut SigInfo, uc: *mut UContext) {
    // SAFETY: the live frame, of a SIGSYS that interrupted this thread.
    unsafe { guest_view(&mut *info, &mut *uc) };
    let guest = guest_sigsys_action();
    let previous = guest.unwrap_or_else(|| PREVIOUS_SIGSYS.load());
    // SAFETY: the live frame.
    let (info_ref, uc_ref) = unsafe { (&*info, &mut *uc) };
    // The kernel forces the SIGSYS it generates (si_code > 0): an ignored
    // one gets the default action.  One sent by a process may be ignored.
    let kernel_sent = info_ref.si_code > 0;
    match previous.handler {
        SIG_IGN if !kernel_sent => {}
        SIG_DFL | SIG_IGN => default_action(SIGSYS, info_ref, uc_ref),
        handler => {
            if previous.flags & SA_RESETHAND as u64 != 0 {
                match guest {
                    Some(guest) => reset_guest_action(SIGSYS, &guest),
                    None => PREVIOUS_SIGSYS.store(&reset_by_delivery(&previous)),
                }
            }
            if let Some(guest) = guest {
                // Guest code: under BLOCK, with SIGSYS deliverable so that its
                // own syscalls can be dispatched, and its own mask otherwise.
                let mask = (uc_ref.uc_sigmask | guest.mask) & !SIGSYS_BIT;
                sys::set_thread_mask(mask);
                // SAFETY: the guest's SIGSYS handler, given the frame.
                unsafe { run_guest_handler(state, &guest, SIGSYS as i32, info, uc) };
                sys::set_thread_mask(!0);
            } else {
                if state.is_global() {
                    // A thread with no state of its own: host code, and
                    // the global selector is not its to flip.
                    // SAFETY: the function the application installed for SIGSYS.
                    unsafe { call_handler(handler, SIGSYS as i32, info, uc) };
                } else {
                    let guest_pointers = enter_host(state, false);
                    let host_code = HostScope::enter_as_found(state.selector());
                    // SAFETY: as above.
                    unsafe { call_handler(handler, SIGSYS as i32, info, uc) };
                    host_code.leave();
                    guest_pointers.leave();
                }
            }
        }
    }
}

//! Host signal handlers, adopted handlers, and the guest's recorded
//! dispositions.  A C handler has [`sud::HostHandler`]'s type already.

use crate::error::{invalid, status};
use core::ffi::c_int;
use sud::HostHandler;

/// `struct sud_sigaction`: what [`sud::guest_action`] returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SudSigaction {
    /// The handler's address, or SIG_DFL (0) / SIG_IGN (1).
    pub handler: usize,
    /// Its `sa_flags`.
    pub flags: u64,
    /// Its `sa_mask`, a kernel signal set (bit `signal - 1`).
    pub mask: u64,
}

/// A signal number from C: negative ones become 0, which sud refuses.
fn signal_number(signal: c_int) -> u32 {
    u32::try_from(signal).unwrap_or(0)
}

/// `int sud_install_host_handler(int signal, sud_host_handler_fn handler,
/// uint64_t mask, uint64_t flags)`: [`sud::install_host_handler`].
#[unsafe(no_mangle)]
pub extern "C" fn sud_install_host_handler(
    signal: c_int,
    handler: Option<HostHandler>,
    mask: u64,
    flags: u64,
) -> c_int {
    let Some(handler) = handler else {
        return invalid();
    };
    status(sud::install_host_handler(
        signal_number(signal),
        handler,
        mask,
        flags,
    ))
}

/// `int sud_adopt_signal(int signal)`: [`sud::adopt_signal`].
#[unsafe(no_mangle)]
pub extern "C" fn sud_adopt_signal(signal: c_int) -> c_int {
    status(sud::adopt_signal(signal_number(signal)))
}

/// `int sud_guest_action(int signal, struct sud_sigaction *action)`:
/// [`sud::guest_action`]: 1 and `*action` filled in if the guest set a
/// disposition for `signal`, 0 if it did not.
///
/// # Safety
/// `action` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_guest_action(signal: c_int, action: *mut SudSigaction) -> c_int {
    match sud::guest_action(signal_number(signal)) {
        Some(guest) => {
            // SAFETY: the caller's promise.
            unsafe {
                action.write(SudSigaction {
                    handler: guest.handler,
                    flags: guest.flags,
                    mask: guest.mask,
                })
            };
            1
        }
        None => 0,
    }
}

//! Putting sud's handlers in place: the SIGSYS handler and the callback,
//! and the faults, which go to whoever's code faulted.

use crate::callback::{Handler, set_handler};
use crate::dispositions::{PREVIOUS_SIGSYS, our_sigsys_action};
use crate::error::Error;
use crate::region::addr;
use crate::{sys, xsave};
use linux_raw_sys::general::SIGSYS;

/// Installs `handler` as the callback for every trapped syscall, and sud's
/// SIGSYS handler for the process (raw `rt_sigaction`, SA_SIGINFO |
/// SA_RESTORER | SA_ONSTACK, every signal blocked while it runs, restorer in
/// the allowed region).
///
/// The disposition it replaces is kept: a SIGSYS that is not from dispatch
/// (seccomp's SECCOMP_RET_TRAP, a `kill`) goes to the previous handler, or
/// gets the default action if there was none.  Installing again only swaps
/// the callback.
///
/// The handlers the process already has for the synchronous faults
/// (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP: std's stack-overflow handler,
/// say) are adopted as host handlers ([`adopt_signal`](crate::adopt_signal)):
/// a fault in host code (selector ALLOW) goes to them, one in guest code
/// (selector BLOCK) to the guest's own handler, or the default action if it
/// has none, as natively.
pub fn install(handler: Handler) -> Result<(), Error> {
    xsave::init();
    set_handler(Some(handler));
    // Read the current disposition first, so that a foreign SIGSYS arriving
    // just after ours is in place already finds it.
    let current = sys::sigaction(SIGSYS, None)?;
    if current.handler != addr::sud_sigsys_entry() {
        PREVIOUS_SIGSYS.store(&current);
    }
    let replaced = sys::sigaction(SIGSYS, Some(&our_sigsys_action()))?;
    if replaced.handler != addr::sud_sigsys_entry() && replaced != current {
        PREVIOUS_SIGSYS.store(&replaced);
    }
    for signal in super::FAULTS {
        super::adopt_signal(signal)?;
    }
    Ok(())
}

/// Puts back the SIGSYS disposition [`install`] replaced.  Disarm first:
/// a trapped syscall without sud's handler kills the process.
pub fn uninstall() -> Result<(), Error> {
    sys::sigaction(SIGSYS, Some(&PREVIOUS_SIGSYS.load()))?;
    set_handler(None);
    Ok(())
}

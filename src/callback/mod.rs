//! The user's callback: installing it (with sud's SIGSYS handler) and the
//! redirect function, and running it on a trapped syscall.
//!
//! - [`syscall`]: the callback's view of a trapped syscall and its answer.

pub(crate) mod syscall;

use crate::dispositions::{PREVIOUS_SIGSYS, our_sigsys_action};
use crate::error::Error;
use crate::region::addr;
use crate::{sys, xsave};
use core::sync::atomic::{AtomicUsize, Ordering};
use linux_raw_sys::general::SIGSYS;
pub use syscall::{Action, Handler, Redirect, Syscall};

/// The user's callback, as an address (0: none installed).
static HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Installs `handler` as the callback for every trapped syscall, and sud's
/// SIGSYS handler for the process (raw `rt_sigaction`, SA_SIGINFO |
/// SA_RESTORER | SA_ONSTACK, every signal blocked while it runs, restorer in
/// the allowed region).
///
/// The disposition it replaces is kept: a SIGSYS that is not from dispatch
/// (seccomp's SECCOMP_RET_TRAP, a `kill`) goes to the previous handler, or
/// gets the default action if there was none.  Installing again only swaps
/// the callback.
pub fn install(handler: Handler) -> Result<(), Error> {
    xsave::init();
    HANDLER.store(handler as usize, Ordering::Release);
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
    Ok(())
}

/// Puts back the SIGSYS disposition [`install`] replaced.  Disarm first:
/// a trapped syscall without sud's handler kills the process.
pub fn uninstall() -> Result<(), Error> {
    sys::sigaction(SIGSYS, Some(&PREVIOUS_SIGSYS.load()))?;
    HANDLER.store(0, Ordering::Release);
    Ok(())
}

/// Runs the user's callback on a trapped syscall.  A `Redirect` without a
/// redirect function is `Deny(ENOSYS)`.
pub(crate) fn decide(mut call: Syscall<'_>) -> (Action, bool) {
    let handler = HANDLER.load(Ordering::Acquire);
    if handler == 0 {
        return (Action::default(), false);
    }
    // SAFETY: HANDLER only ever holds 0 or a `Handler` stored by install.
    let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
    let action = match handler(&mut call) {
        Action::Redirect if redirect().is_none() => Action::default(),
        action => action,
    };
    (action, call.resume_allowed)
}

/// The function for [`Action::Redirect`] (0: none).
static REDIRECT: AtomicUsize = AtomicUsize::new(0);

/// Installs the function that carries out the syscalls the callback answers
/// with [`Action::Redirect`].  Installing again replaces it.  It cannot fail
/// today; the `Result` is [`install`]'s, so that both are used alike.
pub fn install_redirect(redirect: Redirect) -> Result<(), Error> {
    xsave::init();
    REDIRECT.store(redirect as usize, Ordering::Release);
    Ok(())
}

/// The installed redirect function, if any.
#[inline]
pub(crate) fn redirect() -> Option<Redirect> {
    let redirect = REDIRECT.load(Ordering::Acquire);
    // SAFETY: REDIRECT only ever holds 0 or a `Redirect` stored by install_redirect.
    (redirect != 0).then(|| unsafe { core::mem::transmute::<usize, Redirect>(redirect) })
}

//! The user's callback and redirect function, and running the callback on
//! a trapped syscall.  (`signals::install` puts sud's handlers in place.)
//!
//! - [`syscall`]: the callback's view of a trapped syscall and its answer.

pub(crate) mod syscall;

use crate::error::Error;
use crate::xsave;
use core::sync::atomic::{AtomicUsize, Ordering};
pub use syscall::{Action, Handler, Redirect, Syscall};

/// The user's callback, as an address (0: none installed).
static HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Makes `handler` the callback for every trapped syscall (`None`: none,
/// every trapped syscall gets `Deny(ENOSYS)`).
pub(crate) fn set_handler(handler: Option<Handler>) {
    HANDLER.store(
        handler.map_or(0, |handler| handler as usize),
        Ordering::Release,
    );
}

/// Runs the user's callback on a trapped syscall.  A `Redirect` without a
/// redirect function is `Deny(ENOSYS)`.
#[inline]
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
/// today; the `Result` is [`install`](crate::install)'s, so that both are used alike.
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

//! What the callback's decision comes to, the same on the signal path and
//! the direct path: an answer becomes the guest's RAX, a reissue a
//! continuation at a stub; a redirect is left to the path, which runs the
//! redirect function after rt_sigreturn or at once.

use crate::callback::Action;
use crate::reissue::{self, continuation::Interrupted};
use crate::selector::HostScope;
use crate::thread::state::ThreadState;

/// Where the guest goes once [`carry_out`] is done.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// As the registers now say: after its syscall with the answer in RAX,
    /// or to the stub that reissues it.
    AsRegistersSay,
    /// To the redirect function, which the path calls.
    Redirect,
}

/// Carries out `action` on the trapped syscall `at`.
pub(crate) fn carry_out(
    action: Action,
    state: &'static ThreadState,
    at: Interrupted<'_>,
) -> Settled {
    let Interrupted {
        regs,
        sigmask,
        altstack,
        blocked,
    } = at;
    if let Some(result) = action.answer() {
        regs.rax = result as u64;
        return Settled::AsRegistersSay;
    }
    match action {
        Action::Reissue => {
            let at = Interrupted {
                regs: &mut *regs,
                sigmask,
                altstack,
                blocked,
            };
            reissue::plan(state, at).apply(regs);
        }
        _ => return Settled::Redirect,
    }
    Settled::AsRegistersSay
}

/// Ends the host code around a decision: the guest resumes under BLOCK if
/// it was stopped under it, unless the callback asked to resume allowed,
/// which a reissue cannot (its stub returns to the guest directly).
pub(crate) fn leave_host_code(host_code: HostScope<'_>, action: Action, resume_allowed: bool) {
    if resume_allowed && action != Action::Reissue {
        host_code.leave_allowed();
    } else {
        host_code.leave();
    }
}

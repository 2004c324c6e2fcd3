//! Finding the calling thread's state from a rewritten site's thunk
//! (`rewrite/`), which is shared by every thread that runs the site.
//!
//! sud keeps the address of the thread's state in its GS base while the
//! guest leaves GS at 0 (a libc uses FS; a Windows environment uses GS, and
//! then keeps it): one `rdgsbase` in `sud_site_entry` finds the state.  (Not
//! the selector's address: threads armed with `sud::arm` share the global
//! selector, each with a state of its own.)  A GS base that is no state of
//! sud's (never set yet, or the guest's own) costs a `gettid` and a search
//! of the live slots; a thread that has no slot is on the global selector.
//! Host code runs with the host's own GS base, as with any guest value, so
//! threads it makes do not inherit the mark; a guest's new thread would,
//! so a thread's GS base is set back to 0 before its guest clones
//! ([`before_clone`]); the child, and the thread itself, look the state up
//! again once.

use super::arena;
use super::state::{GLOBAL, ThreadState};
use crate::{sys, tp};
use core::sync::atomic::Ordering;

/// The calling thread's state, given the GS base `sud_site_entry` found
/// (the guest's, as the site ran).  Puts the state's address in the GS
/// base if it was 0.
pub(crate) fn state_for_site(gs: u64) -> &'static ThreadState {
    if let Some(state) = arena::at_address(gs as usize) {
        return state;
    }
    let state = arena::find_live(sys::gettid()).unwrap_or(&GLOBAL);
    if gs == 0 && tp::cheap() {
        // SAFETY: the guest's GS base was 0, unused; the entry's host code
        // switches to the host's and back as for any guest value.
        unsafe { tp::write_gs(state.gs_mark()) };
    }
    state
}

/// Before the thread of `state` creates a task: a GS base sud set is put
/// back to 0, the guest's as it was, so that no child inherits it.
pub(crate) fn before_clone(state: &ThreadState) {
    if !tp::cheap() {
        return;
    }
    let ours = state.gs_mark();
    let pointers = &state.pointers;
    if pointers.guest_gs.load(Ordering::Relaxed) == ours {
        pointers.guest_gs.store(0, Ordering::Relaxed);
    }
    if tp::read().gs == ours {
        // SAFETY: sud's own value, not the guest's.
        unsafe { tp::write_gs(0) };
    }
}

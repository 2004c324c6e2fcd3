//! Finding the calling thread's state from a rewritten site's thunk
//! (`rewrite/`), which is shared by every thread that runs the site.
//!
//! sud keeps the address of the thread's selector in its GS base while the
//! guest leaves GS at 0 (a libc uses FS; a Windows environment uses GS, and
//! then keeps it): one `rdgsbase` in `sud_site_entry` finds the state.  A
//! GS base that is no selector of sud's (never set yet, or the guest's own)
//! costs a `gettid` and a search of the live slots; a thread that has no
//! slot is on the global selector.  A new thread inherits its parent's GS
//! base, so a thread's GS base is set back to 0 before it clones
//! ([`before_clone`]); its child, and itself, look it up again once.

use super::arena;
use super::state::{GLOBAL, ThreadState};
use crate::selector::Selector;
use crate::{sys, tp};
use core::sync::atomic::Ordering;

/// The state whose selector is at `gs`, exactly: a slot's own, or GLOBAL
/// for `sud_selector`.
fn exact(gs: u64) -> Option<&'static ThreadState> {
    let state = arena::for_selector(gs as *const Selector);
    core::ptr::eq(state.selector().as_ptr(), gs as *const u8).then_some(state)
}

/// The calling thread's state, given the GS base `sud_site_entry` found
/// (the guest's, as the site ran).  Puts the state's selector in the GS
/// base if it was 0.
pub(crate) fn state_for_site(gs: u64) -> &'static ThreadState {
    if let Some(state) = exact(gs) {
        return state;
    }
    let state = arena::find_live(sys::gettid()).unwrap_or(&GLOBAL);
    if gs == 0 && tp::cheap() {
        // SAFETY: the guest's GS base was 0, unused; the entry's host code
        // switches to the host's and back as for any guest value.
        unsafe { tp::write_gs(state.selector().as_ptr() as u64) };
    }
    state
}

/// Before the thread of `state` creates a task: a GS base sud set is put
/// back to 0, the guest's as it was, so that no child inherits it.
pub(crate) fn before_clone(state: &ThreadState) {
    if !tp::cheap() {
        return;
    }
    let selector = state.selector().as_ptr() as u64;
    let pointers = &state.pointers;
    if pointers.guest_gs.load(Ordering::Relaxed) == selector {
        pointers.guest_gs.store(0, Ordering::Relaxed);
    }
    if tp::read().gs == selector {
        // SAFETY: sud's own value, not the guest's.
        unsafe { tp::write_gs(0) };
    }
}

//! The Rust half of `sud_site_entry`, where a rewritten site's thunk goes
//! (`rewrite/`): the same decision, outcomes and registers as the trap the
//! site replaced, with no signal.

use super::direct::{DirectFrame, dispatch_direct};
use crate::kernel::stack::RED_ZONE;
use crate::thread::site::state_for_site;

/// Where `sud_site_entry` finds the address it goes on at: this far below
/// the guest's RSP, in the slot the thunk's `call` pushed below the red zone.
pub(crate) const SITE_CONTINUE_SLOT: u64 = RED_ZONE as u64 + 8;

/// Called by `sud_site_entry` with its frame: the guest's registers as a
/// trap of the site's `syscall` would show them, and its GS base.
///
/// # Safety
/// Only `sud_site_entry` calls it, with the frame it built.
pub(crate) unsafe extern "C" fn site_dispatch(frame: &mut DirectFrame) {
    let state = state_for_site(frame.word);
    // SAFETY: the thunk's return-address slot, below the guest's red zone.
    unsafe { dispatch_direct(frame, state, SITE_CONTINUE_SLOT) }
}

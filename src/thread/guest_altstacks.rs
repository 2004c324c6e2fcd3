//! Guest alternate stacks: while a guest's own alternate stack is installed,
//! signal frames land on it; this table maps its range back to the thread's
//! state.  A thread keeps its two latest stacks here (the one it leaves may
//! still take a frame before the switch), until its state is released.
//! The table grows with the threads that install one: two entries each.

use super::state::ThreadState;
use crate::table::{Table, ZeroIsFree, per_page};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

struct GuestAltstack {
    low: AtomicUsize,
    high: AtomicUsize,
    state: AtomicPtr<ThreadState>,
    /// Which of the state's stacks it is: the larger, the later.
    order: AtomicU64,
}

// SAFETY: all zeros is a free entry (no state) of plain atomics.
unsafe impl ZeroIsFree for GuestAltstack {}

static GUEST_ALTSTACK: Table<GuestAltstack, { per_page::<GuestAltstack>() }> = Table::new();
static GUEST_ALTSTACK_ORDER: AtomicU64 = AtomicU64::new(1);

/// Records `low..high`, a guest's alternate stack about to be installed for
/// real, as `state`'s: it replaces the older of the state's two latest, and
/// any other thread's record it overlaps (that memory is no longer theirs).
/// False if the kernel has no memory for the table to grow.
pub(crate) fn remember_guest_altstack(state: &ThreadState, low: usize, high: usize) -> bool {
    let me = state as *const ThreadState as *mut ThreadState;
    let mut mine = 0;
    let mut oldest: Option<(u64, &GuestAltstack)> = None;
    for entry in GUEST_ALTSTACK.entries() {
        let owner = entry.state.load(Ordering::Acquire);
        if owner.is_null() {
            continue;
        }
        let (l, h) = (
            entry.low.load(Ordering::Relaxed),
            entry.high.load(Ordering::Relaxed),
        );
        if owner == me {
            mine += 1;
            let order = entry.order.load(Ordering::Relaxed);
            if oldest.is_none_or(|(o, _)| order < o) {
                oldest = Some((order, entry));
            }
        } else if l < high && low < h {
            entry.state.store(null_mut(), Ordering::Release);
        }
    }
    if let (2.., Some((_, entry))) = (mine, oldest) {
        entry.state.store(null_mut(), Ordering::Release);
    }
    // A free entry: one released, or one never used.
    let take = |entry: &GuestAltstack| {
        entry
            .state
            .compare_exchange(null_mut(), me, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    };
    let Ok(entry) = GUEST_ALTSTACK.claim(take) else {
        return false;
    };
    entry.low.store(low, Ordering::Relaxed);
    entry.high.store(high, Ordering::Relaxed);
    entry.order.store(
        GUEST_ALTSTACK_ORDER.fetch_add(1, Ordering::Relaxed),
        Ordering::Relaxed,
    );
    true
}

/// Drops every record of `state`'s guest alternate stacks.
pub(crate) fn forget_guest_altstacks(state: &ThreadState) {
    let me = state as *const ThreadState as *mut ThreadState;
    for entry in GUEST_ALTSTACK.entries() {
        let _ = entry
            .state
            .compare_exchange(me, null_mut(), Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// The state whose guest alternate stack holds `frame`, if any.
pub(crate) fn owner_of(frame: usize) -> Option<&'static ThreadState> {
    for entry in GUEST_ALTSTACK.entries() {
        let state = entry.state.load(Ordering::Acquire);
        if !state.is_null()
            && (entry.low.load(Ordering::Relaxed)..entry.high.load(Ordering::Relaxed))
                .contains(&frame)
        {
            // SAFETY: records point at slot states, which are never unmapped.
            return Some(unsafe { &*state });
        }
    }
    None
}

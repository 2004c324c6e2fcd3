//! Host and guest thread pointers.  A guest sets FS (a libc, at start-up)
//! or GS (a Windows environment) to its own thread data; host code reached
//! from guest code (the callback, redirect functions, host handlers) must
//! find the host's instead, or its thread-locals (`println!`'s lock, the
//! allocator's cache, a panic's count) land in the guest's memory.  So
//! every entry into host code switches to the pointers the thread had when
//! it was set up, and the way back to the guest switches back.  A guest
//! that never moves them costs a read and a compare (FSGSBASE), or nothing
//! at all (without it, they are read only after a trapped arch_prctl).

use super::state::ThreadState;
use crate::tp::{self, ThreadPointers};
use core::sync::atomic::Ordering;

/// Records the calling thread's current thread pointers as its host's.
pub(crate) fn record_host(state: &ThreadState) {
    tp::init();
    let now = tp::read();
    let pointers = &state.pointers;
    pointers.host_fs.store(now.fs, Ordering::Relaxed);
    pointers.host_gs.store(now.gs, Ordering::Relaxed);
    pointers.recorded.store(true, Ordering::Release);
}

/// Host code running with the host's thread pointers; the guest's, kept in
/// the state, are put back by [`leave`](GuestPointers::leave).
#[must_use]
pub(crate) struct GuestPointers<'a> {
    state: &'a ThreadState,
    fs: bool,
    gs: bool,
}

/// The host's thread pointers recorded for `state`, if it has them.
fn host_of(state: &ThreadState) -> Option<ThreadPointers> {
    let pointers = &state.pointers;
    pointers
        .recorded
        .load(Ordering::Acquire)
        .then(|| ThreadPointers {
            fs: pointers.host_fs.load(Ordering::Relaxed),
            gs: pointers.host_gs.load(Ordering::Relaxed),
        })
}

/// Keeps `guest` as the guest's thread pointers.
fn record_guest(state: &ThreadState, guest: ThreadPointers) {
    let pointers = &state.pointers;
    pointers.guest_fs.store(guest.fs, Ordering::Relaxed);
    pointers.guest_gs.store(guest.gs, Ordering::Relaxed);
    pointers.guest_known.store(true, Ordering::Relaxed);
}

/// Switches the calling thread to its host's thread pointers, if it has
/// recorded ones and they are not in place.  `from_guest`: host code is
/// entered from guest code for sure (a trap, `sud_entry`, a redirect), so
/// the pointers found are the guest's, even where they equal the host's.
/// A state with no recorded pointers (the process-wide one) costs one load.
#[inline(always)]
pub(crate) fn enter_host(state: &ThreadState, from_guest: bool) -> GuestPointers<'_> {
    if !state.pointers.recorded.load(Ordering::Acquire) {
        return GuestPointers {
            state,
            fs: false,
            gs: false,
        };
    }
    switch_to_host(state, from_guest)
}

/// [`enter_host`] for a state with recorded pointers.
#[inline(never)]
fn switch_to_host(state: &ThreadState, from_guest: bool) -> GuestPointers<'_> {
    let mut guest = GuestPointers {
        state,
        fs: false,
        gs: false,
    };
    let pointers = &state.pointers;
    if !(tp::cheap() || pointers.guest_moved.load(Ordering::Relaxed)) {
        return guest;
    }
    let Some(host) = host_of(state) else {
        return guest;
    };
    let now = tp::read();
    if now != host || from_guest {
        record_guest(state, now);
    }
    if now.fs != host.fs {
        // SAFETY: the host's own pointer, recorded on this thread.
        unsafe { tp::write_fs(host.fs) };
        guest.fs = true;
    }
    if now.gs != host.gs {
        // SAFETY: as above.
        unsafe { tp::write_gs(host.gs) };
        guest.gs = true;
    }
    guest
}

impl GuestPointers<'_> {
    /// Puts the guest's thread pointers back: the latest the state knows
    /// (a guest handler that ran meanwhile may have moved them).
    #[inline]
    pub fn leave(self) {
        let pointers = &self.state.pointers;
        if self.fs {
            // SAFETY: the guest's own pointer.
            unsafe { tp::write_fs(pointers.guest_fs.load(Ordering::Relaxed)) };
        }
        if self.gs {
            // SAFETY: as above.
            unsafe { tp::write_gs(pointers.guest_gs.load(Ordering::Relaxed)) };
        }
    }
}

/// A guest handler running where host code was interrupted: the host's
/// thread pointers, put back by [`leave`](HostPointers::leave).
#[must_use]
pub(crate) struct HostPointers<'a> {
    state: &'a ThreadState,
    host: Option<ThreadPointers>,
}

/// Gives a guest handler the guest's thread pointers if the signal found
/// the host's in place (it interrupted host code: a callback, a redirect
/// function) and the guest's differ, as natively the handler runs with the
/// guest's.
pub(crate) fn enter_guest_handler(state: &ThreadState) -> HostPointers<'_> {
    let mut host_pointers = HostPointers { state, host: None };
    let pointers = &state.pointers;
    let Some(host) = host_of(state) else {
        return host_pointers;
    };
    if !pointers.guest_known.load(Ordering::Relaxed) {
        return host_pointers;
    }
    let guest = ThreadPointers {
        fs: pointers.guest_fs.load(Ordering::Relaxed),
        gs: pointers.guest_gs.load(Ordering::Relaxed),
    };
    if guest == host || tp::read() != host {
        return host_pointers;
    }
    // SAFETY: the guest's own pointers, for the guest's handler.
    unsafe {
        tp::write_fs(guest.fs);
        tp::write_gs(guest.gs);
    }
    host_pointers.host = Some(host);
    host_pointers
}

impl HostPointers<'_> {
    /// Back to the host's thread pointers, keeping the guest's as the
    /// handler left them (natively they stay moved after it returns).
    pub fn leave(self) {
        if let Some(host) = self.host {
            record_guest(self.state, tp::read());
            // SAFETY: the host's own pointers, recorded on this thread.
            unsafe {
                tp::write_fs(host.fs);
                tp::write_gs(host.gs);
            }
        }
    }
}

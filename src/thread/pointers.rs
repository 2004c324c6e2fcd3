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

/// The guest's thread pointers, where host code runs with the host's; to
/// be put back with [`leave`](GuestPointers::leave).
#[must_use]
pub(crate) struct GuestPointers {
    fs: Option<u64>,
    gs: Option<u64>,
}

/// Switches the calling thread to its host's thread pointers, if it has
/// recorded ones and the guest moved them.
#[inline]
pub(crate) fn enter_host(state: &ThreadState) -> GuestPointers {
    let mut guest = GuestPointers { fs: None, gs: None };
    let pointers = &state.pointers;
    if !pointers.recorded.load(Ordering::Acquire)
        || !(tp::cheap() || pointers.guest_moved.load(Ordering::Relaxed))
    {
        return guest;
    }
    let now = tp::read();
    let host = ThreadPointers {
        fs: pointers.host_fs.load(Ordering::Relaxed),
        gs: pointers.host_gs.load(Ordering::Relaxed),
    };
    if now.fs != host.fs {
        // SAFETY: the host's own pointer, recorded on this thread.
        unsafe { tp::write_fs(host.fs) };
        guest.fs = Some(now.fs);
    }
    if now.gs != host.gs {
        // SAFETY: as above.
        unsafe { tp::write_gs(host.gs) };
        guest.gs = Some(now.gs);
    }
    guest
}

impl GuestPointers {
    /// Puts the guest's thread pointers back.
    #[inline]
    pub fn leave(self) {
        if let Some(fs) = self.fs {
            // SAFETY: the guest's own pointer, as it left it.
            unsafe { tp::write_fs(fs) };
        }
        if let Some(gs) = self.gs {
            // SAFETY: as above.
            unsafe { tp::write_gs(gs) };
        }
    }
}

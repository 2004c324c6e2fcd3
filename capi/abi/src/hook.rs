//! A C function and its user pointer, changed as one.
//!
//! sud keeps a Rust callback as one word; a C callback comes with a user
//! pointer, and a trap on another thread must see the old pair or the new
//! one, never the new function with the old pointer.  Two slots and a
//! version: a change fills the slot not in use and then publishes it by
//! bumping the version, so a reader never waits for a writer (a SIGSYS
//! handler may interrupt one), and a reader whose slot was rewritten while
//! it read (two changes meanwhile) sees the version move and reads again.

use core::hint::spin_loop;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

pub(crate) struct Hook {
    /// (function, user pointer); the current one is `slots[version % 2]`.
    slots: [[AtomicUsize; 2]; 2],
    version: AtomicUsize,
    /// Held by the one change in progress.
    writing: AtomicBool,
}

impl Hook {
    /// No function (0) and a null user pointer.
    pub(crate) const fn new() -> Hook {
        Hook {
            slots: [const { [AtomicUsize::new(0), AtomicUsize::new(0)] }; 2],
            version: AtomicUsize::new(0),
            writing: AtomicBool::new(false),
        }
    }

    /// Makes `(function, user)` the pair every later [`get`](Self::get) sees.
    /// Changes are serialised by a spin lock: not for a signal handler that
    /// may interrupt a change on its own thread.
    pub(crate) fn set(&self, function: usize, user: usize) {
        while self
            .writing
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spin_loop();
        }
        let next = self.version.load(Ordering::Relaxed).wrapping_add(1);
        let slot = &self.slots[next % 2];
        // Readers still on the version before the current one read this
        // slot: whoever sees one of the stores below also sees the current
        // version (stored before this fence), and reads again.
        fence(Ordering::Release);
        slot[0].store(function, Ordering::Relaxed);
        slot[1].store(user, Ordering::Relaxed);
        self.version.store(next, Ordering::Release);
        self.writing.store(false, Ordering::Release);
    }

    /// The current `(function, user)`.
    #[inline]
    pub(crate) fn get(&self) -> (usize, usize) {
        loop {
            let version = self.version.load(Ordering::Acquire);
            let slot = &self.slots[version % 2];
            let pair = (
                slot[0].load(Ordering::Relaxed),
                slot[1].load(Ordering::Relaxed),
            );
            fence(Ordering::Acquire);
            if self.version.load(Ordering::Relaxed) == version {
                return pair;
            }
        }
    }
}

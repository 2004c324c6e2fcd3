//! One signal's disposition in atomics, for tables read in signal context.

use super::lock::{HolderLock, Wait};
use crate::kernel::sigaction::{AtomicSigaction, KernelSigaction};
use core::sync::atomic::{AtomicU64, Ordering, fence};

/// A kernel_sigaction in atomics, for tables read in signal context: a
/// sequence count makes every read see one whole action, never half of two.
/// Written only under its signal's [`HolderLock`].
pub(crate) struct ActionCell {
    /// Odd while a write is under way.
    sequence: AtomicU64,
    action: AtomicSigaction,
    /// Whether the cell holds an action at all.
    set: AtomicU64,
}

impl ActionCell {
    pub const fn new() -> ActionCell {
        ActionCell {
            sequence: AtomicU64::new(0),
            action: AtomicSigaction::new(),
            set: AtomicU64::new(0),
        }
    }

    /// The action; `lock` is the one its writers hold.
    pub fn get(&self, lock: &HolderLock) -> Option<KernelSigaction> {
        let mut wait = Wait::new();
        loop {
            let before = self.sequence.load(Ordering::Acquire);
            if before & 1 == 0 {
                let set = self.set.load(Ordering::Relaxed) != 0;
                let action = self.action.load();
                fence(Ordering::Acquire);
                if self.sequence.load(Ordering::Relaxed) == before {
                    return set.then_some(action);
                }
            } else if wait.long() && lock.holder_is_gone() {
                // Forked while a thread of the parent was writing: that
                // write will never end here.  The cell is taken as it is.
                let _ = self.sequence.compare_exchange(
                    before,
                    before + 1,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Writes `action` (or clears the cell).  The caller holds the
    /// signal's lock, so no other write is under way (but one abandoned by
    /// a thread the process was forked from).
    pub fn write(&self, action: Option<&KernelSigaction>) {
        let sequence = self.sequence.load(Ordering::Relaxed);
        let before = sequence + (sequence & 1);
        self.sequence.store(before + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        if let Some(action) = action {
            self.action.store(action);
        }
        self.set.store(action.is_some() as u64, Ordering::Relaxed);
        self.sequence.store(before + 2, Ordering::Release);
    }
}

//! The ranges of guest code the host asked to have rewritten, each with
//! its policy: up to [`MAX_RANGES`] at a time.  Changed only under the
//! rewrite lock (`WRITING`), read without it: a slot is live while its
//! `end` is not 0, which is stored last when a slot is filled and first
//! when it is emptied; a change of one bound leaves a reader the old or the
//! new range, both of which the writer then deals with under the lock.

use crate::error::Errno;
use core::ops::Range;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// At most this many ranges at a time.
pub(crate) const MAX_RANGES: usize = 16;

struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    /// The trap at which a site here is rewritten (1: the first).
    traps: AtomicU32,
}

static SLOTS: [Slot; MAX_RANGES] = [const {
    Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        traps: AtomicU32::new(1),
    }
}; MAX_RANGES];

/// The policy of the range holding `at` (the trap at which its sites are
/// rewritten), if a range holds it.
pub(crate) fn traps_at(at: usize) -> Option<u32> {
    SLOTS.iter().find_map(|slot| {
        let end = slot.end.load(Ordering::Acquire);
        let start = slot.start.load(Ordering::Relaxed);
        (end != 0 && (start..end).contains(&at)).then(|| slot.traps.load(Ordering::Relaxed))
    })
}

/// Whether a range holds every byte of `at..end`.
pub(crate) fn hold(at: usize, end: usize) -> bool {
    traps_at(at).is_some() && traps_at(end - 1).is_some()
}

/// Adds `range` with its policy; `ENOSPC` if every slot is taken.  Under
/// the rewrite lock.
pub(crate) fn add(range: Range<usize>, traps: u32) -> Result<(), Errno> {
    let slot = free_slot().ok_or(Errno::ENOSPC)?;
    slot.start.store(range.start, Ordering::Relaxed);
    slot.traps.store(traps, Ordering::Relaxed);
    slot.end.store(range.end, Ordering::Release);
    Ok(())
}

/// Takes `range` out of every range: what is left of one on each side of
/// it stays (the right side needs a slot of its own; with none free, it
/// is dropped too: its sites then stay trapped).  Under the rewrite lock.
pub(crate) fn remove(range: Range<usize>) {
    for slot in &SLOTS {
        let (start, end) = (
            slot.start.load(Ordering::Relaxed),
            slot.end.load(Ordering::Relaxed),
        );
        if end == 0 || end <= range.start || range.end <= start {
            continue;
        }
        let traps = slot.traps.load(Ordering::Relaxed);
        if start < range.start {
            slot.end.store(range.start, Ordering::Release);
        } else {
            slot.end.store(0, Ordering::Release);
            slot.start.store(0, Ordering::Relaxed);
        }
        if range.end < end {
            // Best effort: a range that cannot be kept is no longer
            // rewritten, which is always safe.
            let _ = add(range.end..end, traps);
        }
    }
}

fn free_slot() -> Option<&'static Slot> {
    SLOTS
        .iter()
        .find(|slot| slot.end.load(Ordering::Relaxed) == 0)
}

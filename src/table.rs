//! Tables that grow on demand, for records sud keeps per thread (a vfork
//! under way, a guest's alternate stack): chunks of entries, each a page
//! mapped when every entry before it is taken, linked and never freed.  An
//! entry's address stays valid for the life of the process (asm may carry
//! it), and any number of threads, in signal context too, search and claim
//! entries with no lock: an entry is claimed by compare-and-swap on a word
//! of its own that is zero while it is free.

use crate::error::Errno;
use crate::sys;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

const PAGE: usize = 4096;

/// How many `T` a chunk of one page holds.
pub(crate) const fn per_page<T>() -> usize {
    (PAGE - size_of::<usize>()) / size_of::<T>()
}

/// An entry type whose all-zero bytes are a valid, free entry (a chunk is
/// fresh zeroed memory).
///
/// # Safety
/// All-zero bytes must be a valid `Self`.
pub(crate) unsafe trait ZeroIsFree: Sync {}

#[repr(C)]
struct Chunk<T, const N: usize> {
    next: AtomicPtr<Chunk<T, N>>,
    entries: [T; N],
}

/// A table of `T`, `N` to a chunk.
pub(crate) struct Table<T, const N: usize> {
    first: AtomicPtr<Chunk<T, N>>,
    /// Entries ever claimed, counted to the last one: lookups go no further.
    used: AtomicUsize,
}

impl<T: ZeroIsFree + 'static, const N: usize> Table<T, N> {
    /// An empty table: its first chunk is made on first claim.
    pub(crate) const fn new() -> Self {
        Table {
            first: AtomicPtr::new(null_mut()),
            used: AtomicUsize::new(0),
        }
    }

    /// The chunks made so far, in order.
    fn chunks(&'static self) -> impl Iterator<Item = &'static Chunk<T, N>> {
        let mut next = self.first.load(Ordering::Acquire);
        core::iter::from_fn(move || {
            // SAFETY: null, or a chunk published by `grow`, never freed.
            let chunk = unsafe { next.as_ref() }?;
            next = chunk.next.load(Ordering::Acquire);
            Some(chunk)
        })
    }

    /// Every entry up to the last one ever claimed, free ones included.
    pub(crate) fn entries(&'static self) -> impl Iterator<Item = &'static T> {
        let used = self.used.load(Ordering::Acquire);
        self.chunks()
            .flat_map(|chunk| chunk.entries.iter())
            .take(used)
    }

    /// The first entry `take` takes (it returns whether it claimed the entry
    /// it is shown, by compare-and-swap) in the chunks made so far.
    pub(crate) fn claim_existing(&'static self, take: impl Fn(&T) -> bool) -> Option<&'static T> {
        self.claim_in(take, false).ok().flatten()
    }

    /// The first entry `take` takes, adding a chunk when no entry is left;
    /// the kernel's errno if it refuses the memory.
    pub(crate) fn claim(&'static self, take: impl Fn(&T) -> bool) -> Result<&'static T, Errno> {
        self.claim_in(take, true)
            .map(|entry| entry.expect("a claim that may grow finds an entry"))
    }

    fn claim_in(
        &'static self,
        take: impl Fn(&T) -> bool,
        grow: bool,
    ) -> Result<Option<&'static T>, Errno> {
        let mut index = 0;
        let mut link = &self.first;
        loop {
            let mut chunk = link.load(Ordering::Acquire);
            if chunk.is_null() {
                if !grow {
                    return Ok(None);
                }
                chunk = Self::grow(link)?;
            }
            // SAFETY: a chunk published by `grow`, never freed.
            let chunk = unsafe { &*chunk };
            for entry in &chunk.entries {
                index += 1;
                if take(entry) {
                    self.used.fetch_max(index, Ordering::AcqRel);
                    return Ok(Some(entry));
                }
            }
            link = &chunk.next;
        }
    }

    /// A fresh chunk, linked at `link` (null so far); or the chunk another
    /// thread linked there first.
    fn grow(link: &AtomicPtr<Chunk<T, N>>) -> Result<*mut Chunk<T, N>, Errno> {
        let fresh = sys::mmap_read_write(size_of::<Chunk<T, N>>())? as *mut Chunk<T, N>;
        match link.compare_exchange(null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(fresh),
            Err(winner) => {
                // SAFETY: our own mapping, never published.
                let _ = unsafe { sys::munmap(fresh as usize, size_of::<Chunk<T, N>>()) };
                Ok(winner)
            }
        }
    }
}

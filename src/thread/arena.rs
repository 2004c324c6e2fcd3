//! The slot arena: every thread sud manages gets a slot in one reserved
//! arena, holding its alternate signal stack and, right above it, its
//! [`ThreadState`].  Every handler sud installs runs on the alternate stack,
//! so a signal frame lies in the thread's slot and the state is found from
//! the frame's address by arithmetic: no syscall, no FS or GS, no memory
//! sud does not own.  A guest's own alternate stack is virtual, never
//! installed, so no frame lands elsewhere.

use super::state::{CLAIMED, DEAD, GENERATION, GLOBAL, LIVE, STATUS, ThreadState};
use crate::error::{Errno, Error};
use crate::kernel::UContext;
use crate::kernel::stack::stack_t;
use crate::selector::Selector;
use crate::sys;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use linux_raw_sys::general::SS_AUTODISARM;

// The arena: up to MAX_SLOTS slots of SLOT_SIZE bytes, reserved once
// (PROT_NONE, MAP_NORESERVE: address space only, 128 GiB of the 128 TiB a
// process has) and made usable slot by slot, so that sud never caps the
// threads a process may have below what the kernel allows.  A slot is
// [guard page][alternate signal stack][ThreadState page].
const SLOT_SIZE: usize = 128 * 1024;
const MAX_SLOTS: usize = 1 << 20;
/// Where an address-space limit (RLIMIT_AS) refuses the whole reservation,
/// smaller ones are tried, down to this many slots.
const MIN_SLOTS: usize = 64;
const PAGE: usize = 4096;
/// The alternate signal stack of a slot: room for the largest XSAVE frame
/// (AVX-512: 3.5 KB, AMX: 11 KB) many times over, and for the callback.
pub(crate) const ALTSTACK_SIZE: usize = SLOT_SIZE - 2 * PAGE;

/// The arena, once reserved: its base, page-aligned, with log2 of its
/// number of slots in the low bits, so that one load finds both.
static ARENA: AtomicUsize = AtomicUsize::new(0);
const LOG2_SLOTS: usize = 0x3f;
/// Slots handed out at least once.
static SLOT_TAKEN: [AtomicU64; MAX_SLOTS / 64] = [const { AtomicU64::new(0) }; MAX_SLOTS / 64];
/// Slots whose memory is usable and whose state is initialised: only these
/// are looked at for reuse.
static SLOT_USABLE: [AtomicU64; MAX_SLOTS / 64] = [const { AtomicU64::new(0) }; MAX_SLOTS / 64];
/// Words of SLOT_USABLE with a slot ever made usable: scans go no further,
/// so a program with few threads never pays for the arena's size.
static USABLE_WORDS: AtomicUsize = AtomicUsize::new(0);
/// Once this many slots have been made usable, a new thread first looks
/// for a slot whose thread is gone without giving it back (a syscall per
/// slot); each search that finds none doubles it, so the searches cost a
/// syscall or two per thread ever made, however many run at once.
static NEXT_ABANDONED_SEARCH: AtomicUsize = AtomicUsize::new(4096);
/// Bumped each time a slot may have become reusable (released, or its
/// creator done with it: by `release`, by the stubs in asm): while it has not
/// moved since a search found no reusable slot, none is searched for again,
/// so a new thread among many live ones costs no scan of them all.
pub(crate) static SLOTS_RETURNED: AtomicU64 = AtomicU64::new(0);
/// SLOTS_RETURNED as it was when a search last found no reusable slot.
static SEARCHED_AT: AtomicU64 = AtomicU64::new(u64::MAX);
/// Slots made usable so far.
static SLOTS_USABLE: AtomicUsize = AtomicUsize::new(0);

/// The arena's base and number of slots, reserving it on first use.
fn arena() -> Result<(usize, usize), Error> {
    let word = ARENA.load(Ordering::Acquire);
    if word != 0 {
        return Ok(unpack(word));
    }
    let mut slots = MAX_SLOTS;
    let fresh = loop {
        match sys::mmap_reserve(slots * SLOT_SIZE) {
            Ok(fresh) => break fresh,
            Err(Errno::ENOMEM) if slots > MIN_SLOTS => slots /= 2,
            Err(Errno::ENOMEM) => return Err(Error::OutOfMemory),
            Err(errno) => return Err(errno.into()),
        }
    };
    let packed = fresh | slots.trailing_zeros() as usize;
    match ARENA.compare_exchange(0, packed, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok((fresh, slots)),
        Err(winner) => {
            // Another thread reserved it first: give ours back.
            // SAFETY: our own reservation, never published.
            let _ = unsafe { sys::munmap(fresh, slots * SLOT_SIZE) };
            Ok(unpack(winner))
        }
    }
}

/// An ARENA word as base and number of slots.
fn unpack(word: usize) -> (usize, usize) {
    (word & !LOG2_SLOTS, 1 << (word & LOG2_SLOTS))
}

/// SLOT_USABLE up to the last word ever used.
fn usable_words() -> impl Iterator<Item = (usize, &'static AtomicU64)> {
    SLOT_USABLE
        .iter()
        .enumerate()
        .take(USABLE_WORDS.load(Ordering::Acquire))
}

fn slot_base(arena: usize, index: usize) -> usize {
    arena + index * SLOT_SIZE
}

fn state_of_slot(base: usize) -> &'static ThreadState {
    // SAFETY: the last page of a usable slot holds its ThreadState.
    unsafe { &*((base + SLOT_SIZE - PAGE) as *const ThreadState) }
}

/// Whether a taken slot's thread is gone for good.  Never before its
/// creator is done with it (`clone_result` set: by the parent's stub for a
/// guest's thread, at once by `Thread::new`); then if the thread exited,
/// or the clone that was to create it failed, or it never used this memory
/// after the clone returned (a vfork child, or one with a memory of its own).
fn reusable(state: &ThreadState) -> bool {
    let claim = &state.claim;
    let result = claim.clone_result.load(Ordering::Acquire);
    result != 0
        && (claim.status.load(Ordering::Acquire) & STATUS == DEAD
            || Errno::result(result as usize).is_err()
            || claim.parent_releases.load(Ordering::Acquire))
}

/// Whether a LIVE slot's thread is gone without giving the slot back: it
/// exited natively (an exit not trapped, or one the callback let run) or
/// without disarming (`sud::arm` with no `disarm`).  Only when no task has
/// its tid, in any process: a fork child's copy of its parent's slots is
/// never taken from under a parent that still runs (a fork child records its
/// own tid in the slot it runs on).
fn abandoned(state: &ThreadState) -> bool {
    let claim = &state.claim;
    let tid = claim.tid.load(Ordering::Acquire);
    tid != 0
        && claim.clone_result.load(Ordering::Acquire) != 0
        && claim.status.load(Ordering::Acquire) & STATUS == LIVE
        && !claim.parent_releases.load(Ordering::Acquire)
        && !sys::task_exists(tid)
}

/// A slot for a new thread, its memory usable and its state fresh: a
/// reusable one if there is one, else (from time to time, see
/// NEXT_ABANDONED_SEARCH) one whose thread is gone without giving it back,
/// else a never-used one, else again one whose thread is gone.  Callable in
/// signal context and from any number of threads at once: a slot's state is
/// only looked at once its memory is usable, and claimed by
/// compare-and-swap.  [`Error::OutOfMemory`] when the kernel refuses the
/// memory or every slot is in use.
pub(crate) fn allocate() -> Result<&'static ThreadState, Error> {
    let (arena, slots) = arena()?;
    let returned = SLOTS_RETURNED.load(Ordering::Acquire);
    if returned != SEARCHED_AT.load(Ordering::Relaxed) {
        if let Some(state) = claim_usable(arena, reusable) {
            return Ok(state);
        }
        SEARCHED_AT.store(returned, Ordering::Relaxed);
    }
    let usable = SLOTS_USABLE.load(Ordering::Relaxed);
    if usable >= NEXT_ABANDONED_SEARCH.load(Ordering::Relaxed) {
        if let Some(state) = claim_usable(arena, abandoned) {
            return Ok(state);
        }
        NEXT_ABANDONED_SEARCH.fetch_max(usable * 2, Ordering::Relaxed);
    }
    match take_fresh(arena, slots) {
        Ok(Some(state)) => Ok(state),
        Ok(None) => claim_usable(arena, abandoned).ok_or(Error::OutOfMemory),
        Err(Errno::ENOMEM) => Err(Error::OutOfMemory),
        Err(errno) => Err(errno.into()),
    }
}

/// Claims the first usable slot that `may_take` says may be taken.
fn claim_usable(arena: usize, may_take: fn(&ThreadState) -> bool) -> Option<&'static ThreadState> {
    for (word_index, word) in usable_words() {
        let usable = word.load(Ordering::Acquire);
        for bit in (0..64).filter(|bit| usable & (1 << bit) != 0) {
            let base = slot_base(arena, word_index * 64 + bit);
            let state = state_of_slot(base);
            // The word first: `may_take` must judge this use of the slot or
            // a later one, never an earlier one the claim could then succeed on.
            let was = state.claim.status.load(Ordering::Acquire);
            let claimed = (was & !STATUS).wrapping_add(GENERATION) | CLAIMED;
            if was & STATUS != CLAIMED
                && may_take(state)
                && state
                    .claim
                    .status
                    .compare_exchange(was, claimed, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(prepare(state, base));
            }
        }
    }
    None
}

/// A never-used slot, made usable; `None` when every slot has been used.
fn take_fresh(arena: usize, slots: usize) -> Result<Option<&'static ThreadState>, Errno> {
    let mut word = 0;
    while word < slots / 64 {
        let taken = SLOT_TAKEN[word].load(Ordering::Acquire);
        if taken == !0 {
            word += 1;
            continue;
        }
        let bit = 1u64 << (!taken).trailing_zeros();
        if SLOT_TAKEN[word].fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            // Another thread took it first: look again.
            continue;
        }
        let index = word * 64 + bit.trailing_zeros() as usize;
        let base = slot_base(arena, index);
        // SAFETY: the slot is ours; its guard page stays PROT_NONE.
        if let Err(errno) = unsafe { sys::mprotect_read_write(base + PAGE, SLOT_SIZE - PAGE) } {
            SLOT_TAKEN[word].fetch_and(!bit, Ordering::AcqRel);
            return Err(errno);
        }
        let state = prepare(state_of_slot(base), base);
        // Only now may other threads look at the slot.
        SLOT_USABLE[word].fetch_or(bit, Ordering::AcqRel);
        USABLE_WORDS.fetch_max(word + 1, Ordering::AcqRel);
        SLOTS_USABLE.fetch_add(1, Ordering::Relaxed);
        return Ok(Some(state));
    }
    Ok(None)
}

/// Resets a slot's state for a new thread: LIVE, its own selector at
/// ALLOW, its alternate stack the slot's.  Sub-struct by sub-struct, with
/// atomic stores: other threads may be looking at the state while they
/// search for a free slot.
fn prepare(state: &'static ThreadState, base: usize) -> &'static ThreadState {
    state.task.reset();
    state.guest.reset();
    state.pointers.reset();
    state.host.reset();
    let claim = &state.claim;
    claim.clone_result.store(0, Ordering::Relaxed);
    claim.tid.store(0, Ordering::Relaxed);
    claim.parent_releases.store(false, Ordering::Relaxed);
    state.use_own_selector();
    state.task.altstack.store(&stack_t {
        ss_sp: (base + PAGE) as *mut core::ffi::c_void,
        // Disarmed as each signal is delivered and put back by its
        // rt_sigreturn: sud may move it while it runs on it (`signals`).
        ss_flags: SS_AUTODISARM as i32,
        ss_size: ALTSTACK_SIZE as u64,
    });
    set_status(state, LIVE);
    state
}

/// Sets the status byte, keeping the generation.
fn set_status(state: &ThreadState, status: u64) {
    let word = state.claim.status.load(Ordering::Relaxed);
    state
        .claim
        .status
        .store(word & !STATUS | status, Ordering::Release);
}

/// Gives a slot back (its thread no longer uses it).  Only its owner
/// calls it, while the slot cannot be claimed (its status LIVE, and an error
/// `clone_result` not yet stored).
pub(crate) fn release(state: &ThreadState) {
    set_status(state, DEAD);
    slot_returned();
}

/// Tells allocations that a slot may have become reusable: after its
/// status or `clone_result` says so.
pub(crate) fn slot_returned() {
    SLOTS_RETURNED.fetch_add(1, Ordering::AcqRel);
}

/// The live slot of the thread `tid`, if it has one: for a thread whose
/// state was not found from its signal frame or selector.
pub(crate) fn find_live(tid: i32) -> Option<&'static ThreadState> {
    let (arena, _) = unpack(ARENA.load(Ordering::Acquire));
    for (word_index, word) in usable_words() {
        let usable = word.load(Ordering::Acquire);
        for bit in (0..64).filter(|bit| usable & (1 << bit) != 0) {
            let state = state_of_slot(slot_base(arena, word_index * 64 + bit));
            let claim = &state.claim;
            // Not a slot its parent gave up on: its tid may be reused.
            if claim.status.load(Ordering::Acquire) & STATUS == LIVE
                && !claim.parent_releases.load(Ordering::Relaxed)
                && claim.tid.load(Ordering::Relaxed) == tid
            {
                return Some(state);
            }
        }
    }
    None
}

/// The slots' address range, once the arena exists.
#[inline]
fn arena_range() -> Range<usize> {
    let (base, slots) = unpack(ARENA.load(Ordering::Acquire));
    base..base + if base == 0 { 0 } else { slots * SLOT_SIZE }
}

/// The state whose selector is `selector`: a slot's own, or GLOBAL for
/// `sud_selector`, null, or any selector sud does not manage.
#[inline]
pub(crate) fn for_selector(selector: *const Selector) -> &'static ThreadState {
    if selector.is_null() {
        // `sud_entry`'s documented 0: the process-wide state, at once.
        return &GLOBAL;
    }
    let arena = arena_range();
    let at = selector as usize;
    if arena.contains(&at) {
        let state = state_of_slot(arena.start + (at - arena.start) / SLOT_SIZE * SLOT_SIZE);
        if core::ptr::eq(state.selector(), selector) {
            return state;
        }
    }
    &GLOBAL
}

/// The state at address `addr` exactly: a slot's, or GLOBAL; `None` for
/// any other address.
#[inline]
pub(crate) fn at_address(addr: usize) -> Option<&'static ThreadState> {
    if addr == &GLOBAL as *const ThreadState as usize {
        return Some(&GLOBAL);
    }
    let arena = arena_range();
    if !arena.contains(&addr) {
        return None;
    }
    let state = state_of_slot(arena.start + (addr - arena.start) / SLOT_SIZE * SLOT_SIZE);
    (state as *const ThreadState as usize == addr).then_some(state)
}

/// The state of the thread whose signal frame is `uc`: found from where
/// the frame lies, the thread's alternate stack.
#[inline]
pub(crate) fn current(uc: &mut UContext) -> &'static ThreadState {
    let frame = uc as *const UContext as usize;
    let arena = arena_range();
    if arena.contains(&frame) {
        return state_of_slot(arena.start + (frame - arena.start) / SLOT_SIZE * SLOT_SIZE);
    }
    outside_the_arena(uc)
}

/// A frame outside every slot's stack: a thread with no state of its own,
/// or one whose stack a handler took and never gave back.  The kernel
/// disarms an SS_AUTODISARM stack for each delivery and only the frame's
/// rt_sigreturn puts it back: a handler left by siglongjmp (natively fine)
/// leaves the thread with none, and this frame on the interrupted stack.
/// Found by its tid, the thread gets its stack back at this frame's
/// rt_sigreturn.  Not a frame on the thread's redirect stack: a redirect
/// that a handler running on sud's stack made runs with the stack still
/// disarmed, as it must stay until that handler returns.
#[cold]
fn outside_the_arena(uc: &mut UContext) -> &'static ThreadState {
    if ARENA.load(Ordering::Acquire) == 0 {
        return &GLOBAL;
    }
    let frame = uc as *const UContext as u64;
    match find_live(sys::gettid()) {
        Some(state) => {
            let on_redirect_stack = state
                .redirect_stack()
                .is_some_and(|(low, high)| (low..high).contains(&frame));
            if !on_redirect_stack {
                uc.uc_stack = state.task.altstack.load();
            }
            state
        }
        None => &GLOBAL,
    }
}

// A state fits the page its slot gives it.
static_assertions::const_assert!(core::mem::size_of::<ThreadState>() <= PAGE);

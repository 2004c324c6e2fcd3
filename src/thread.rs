//! Per-thread state, found without TLS: every thread sud manages gets a slot
//! in one reserved arena, holding its alternate signal stack and, right above
//! it, its [`ThreadState`] (selector, arming, virtual signal state).  Every
//! handler sud installs runs on the alternate stack, so the signal frame
//! itself lies in the thread's slot, and the dispatcher finds the state from
//! the frame's address by arithmetic: no syscall, no FS or GS, no memory it
//! does not own.  While a guest's own alternate stack is installed, frames
//! land on it instead; its range is recorded against the thread's state in a
//! small table.  Threads sud does not manage share one process-wide state,
//! [`GLOBAL`], whose selector is `sud_selector`.

use crate::arm::{SELECTOR, Selector};
use crate::error::{Errno, Error};
use crate::kernel::UContext;
use crate::syscalls::host;
use core::marker::PhantomData;
use core::ops::Range;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use linux_raw_sys::general::{
    __NR_gettid, __NR_mmap, __NR_mprotect, __NR_sigaltstack, MAP_ANONYMOUS, MAP_NORESERVE,
    MAP_PRIVATE, PROT_READ, PROT_WRITE,
};
use linux_raw_sys::prctl::{PR_SYS_DISPATCH_EXCLUSIVE_ON, PR_SYS_DISPATCH_INCLUSIVE_ON};

/// One thread's state.  The task stubs (`asm/x86_64/tasks.s`) read some
/// fields at offsets Rust gives them; the sizes they assume are asserted
/// at the end of this file.
#[repr(C, align(64))]
pub(crate) struct ThreadState {
    /// The prctl arguments the thread was armed with (op, offset, len,
    /// selector), to arm a child the same way.
    pub arm: [AtomicU64; 4],
    /// Where a new thread resumes the guest: the address after its clone.
    pub resume: AtomicU64,
    /// The alternate signal stack a new thread installs (a `stack_t`).
    pub altstack: [AtomicU64; 3],
    /// What the creating clone returned in the parent (tid or -errno); 0
    /// until the parent is back.
    pub clone_result: AtomicU64,
    /// The signal mask the guest made the creating clone under, which the
    /// new thread takes once it is set up (a sigset).
    pub clone_mask: AtomicU64,
    /// The slot's status (LIVE, DEAD once the thread has exited: the exit
    /// stub stores that low byte alone, CLAIMED while a new thread takes
    /// it) and above it a generation, counting the claims: a claim is a
    /// compare-and-swap of the whole word, so one that looked at an older
    /// use of the slot fails.
    pub state: AtomicU64,
    /// sud's SIGSYS action (a kernel_sigaction) for a child whose clone
    /// cleared every handler (CLONE_CLEAR_SIGHAND); zero otherwise.
    pub sigsys_action: [AtomicU64; 4],
    /// The thread's id, once known (set by the thread itself).
    pub tid: AtomicI32,

    /// The selector the kernel reads for this thread.
    pub selector: AtomicPtr<Selector>,
    own_selector: Selector,
    /// The guest believes it blocked SIGSYS (it never really is).
    pub guest_blocks_sigsys: AtomicBool,
    /// The guest's own alternate signal stack (ss_sp, ss_size, ss_flags), as
    /// it set it; ss_size 0 when it has none.
    pub guest_altstack: [AtomicU64; 3],
    /// Of no use to this process once the creating clone returned: a vfork
    /// child (it exec'd or exited by then) or one with a memory of its own.
    pub parent_releases: AtomicBool,
    /// The alternate stack `sud_reissue_set_altstack` installs (a `stack_t`).
    pub pending_altstack: [AtomicU64; 3],
    /// The user's per-thread pointer.
    pub data: AtomicPtr<()>,
    /// The stack redirect functions run on (low, high); 0, 0 for the guest's.
    pub redirect_stack: [AtomicU64; 2],
}

/// Values of the status byte of `ThreadState::state`.
pub(crate) const LIVE: u64 = 1;
pub(crate) const DEAD: u64 = 2;
/// Being taken for a new thread.
const CLAIMED: u64 = 3;
const STATUS: u64 = 0xff;
const GENERATION: u64 = STATUS + 1;

impl ThreadState {
    const fn new(selector: *mut Selector) -> ThreadState {
        ThreadState {
            arm: [const { AtomicU64::new(0) }; 4],
            resume: AtomicU64::new(0),
            altstack: [const { AtomicU64::new(0) }; 3],
            clone_result: AtomicU64::new(0),
            clone_mask: AtomicU64::new(0),
            state: AtomicU64::new(LIVE),
            sigsys_action: [const { AtomicU64::new(0) }; 4],
            tid: AtomicI32::new(0),
            selector: AtomicPtr::new(selector),
            own_selector: Selector::new(),
            guest_blocks_sigsys: AtomicBool::new(false),
            guest_altstack: [const { AtomicU64::new(0) }; 3],
            parent_releases: AtomicBool::new(false),
            pending_altstack: [const { AtomicU64::new(0) }; 3],
            data: AtomicPtr::new(null_mut()),
            redirect_stack: [const { AtomicU64::new(0) }; 2],
        }
    }

    /// The selector the kernel reads for this thread.
    #[inline(always)]
    pub fn selector(&self) -> &Selector {
        // SAFETY: it points at `own_selector` of a live state, or at SELECTOR.
        unsafe { &*self.selector.load(Ordering::Relaxed) }
    }

    /// Whether this is the process-wide state of unmanaged threads.
    pub fn is_global(&self) -> bool {
        core::ptr::eq(self, &GLOBAL)
    }

    /// Records the arming, for children.
    pub fn set_arm(&self, op: u32, offset: usize, len: usize, selector: *const u8) {
        for (field, value) in
            self.arm
                .iter()
                .zip([op as u64, offset as u64, len as u64, selector as u64])
        {
            field.store(value, Ordering::Relaxed);
        }
    }
}

/// The state of every thread that has no slot: `sud::arm` and friends.
pub(crate) static GLOBAL: ThreadState =
    ThreadState::new(&SELECTOR as *const Selector as *mut Selector);

// The arena: SLOTS slots of SLOT_SIZE bytes, reserved once (PROT_NONE,
// MAP_NORESERVE: address space only) and made usable slot by slot.  A slot
// is [guard page][alternate signal stack][ThreadState page].
const SLOT_SIZE: usize = 128 * 1024;
const SLOTS: usize = 4096;
const PAGE: usize = 4096;
/// The alternate signal stack of a slot: room for the largest XSAVE frame
/// (AVX-512: 3.5 KB, AMX: 11 KB) many times over, and for the callback.
pub(crate) const ALTSTACK_SIZE: usize = SLOT_SIZE - 2 * PAGE;

static ARENA: AtomicUsize = AtomicUsize::new(0);
/// Slots handed out at least once.
static SLOT_TAKEN: [AtomicU64; SLOTS / 64] = [const { AtomicU64::new(0) }; SLOTS / 64];
/// Slots whose memory is usable and whose state is initialised: only these
/// are looked at for reuse.
static SLOT_USABLE: [AtomicU64; SLOTS / 64] = [const { AtomicU64::new(0) }; SLOTS / 64];

fn arena() -> Result<usize, Errno> {
    let base = ARENA.load(Ordering::Acquire);
    if base != 0 {
        return Ok(base);
    }
    // SAFETY: a fresh anonymous reservation, touched by nobody else.
    let fresh = unsafe {
        host::syscall6(
            __NR_mmap,
            0,
            SLOTS * SLOT_SIZE,
            0,
            (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE) as usize,
            usize::MAX,
            0,
        )?
    };
    match ARENA.compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(fresh),
        Err(winner) => {
            // Another thread reserved it first: give ours back.
            // SAFETY: our own reservation, never published.
            let _ = unsafe {
                host::syscall2(
                    linux_raw_sys::general::__NR_munmap,
                    fresh,
                    SLOTS * SLOT_SIZE,
                )
            };
            Ok(winner)
        }
    }
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
/// guest's thread, at once by [`Thread::new`]); then if the thread exited,
/// or the clone that was to create it failed, or it never used this memory
/// after the clone returned (a vfork child, or one with a memory of its own).
fn reusable(state: &ThreadState) -> bool {
    let result = state.clone_result.load(Ordering::Acquire);
    result != 0
        && (state.state.load(Ordering::Acquire) & STATUS == DEAD
            || Errno::result(result as usize).is_err()
            || state.parent_releases.load(Ordering::Acquire))
}

/// A slot for a new thread, its memory usable and its state fresh: a
/// reusable one if there is one, else a never-used one.  Callable in signal
/// context and from any number of threads at once: a slot's state is only
/// looked at once its memory is usable, and claimed by compare-and-swap.
pub(crate) fn allocate() -> Result<&'static ThreadState, Errno> {
    let arena = arena()?;
    for (word_index, word) in SLOT_USABLE.iter().enumerate() {
        let usable = word.load(Ordering::Acquire);
        for bit in (0..64).filter(|bit| usable & (1 << bit) != 0) {
            let base = slot_base(arena, word_index * 64 + bit);
            let state = state_of_slot(base);
            // The word first: `reusable` must judge this use of the slot or
            // a later one, never an earlier one the claim could then succeed on.
            let was = state.state.load(Ordering::Acquire);
            let claimed = (was & !STATUS).wrapping_add(GENERATION) | CLAIMED;
            if was & STATUS != CLAIMED
                && reusable(state)
                && state
                    .state
                    .compare_exchange(was, claimed, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return Ok(prepare(state, base));
            }
        }
    }
    for index in 0..SLOTS {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if SLOT_TAKEN[word].fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            continue;
        }
        let base = slot_base(arena, index);
        // SAFETY: the slot is ours; its guard page stays PROT_NONE.
        let made = unsafe {
            host::syscall3(
                __NR_mprotect,
                base + PAGE,
                SLOT_SIZE - PAGE,
                (PROT_READ | PROT_WRITE) as usize,
            )
        };
        if let Err(errno) = made {
            SLOT_TAKEN[word].fetch_and(!bit, Ordering::AcqRel);
            return Err(errno);
        }
        let state = prepare(state_of_slot(base), base);
        // Only now may other threads look at the slot.
        SLOT_USABLE[word].fetch_or(bit, Ordering::AcqRel);
        return Ok(state);
    }
    Err(Errno::EAGAIN)
}

/// Resets a slot's state for a new thread: LIVE, its own selector at
/// ALLOW, its alternate stack the slot's.  Field by field, atomically: other
/// threads may be looking at the state while they search for a free slot.
fn prepare(state: &'static ThreadState, base: usize) -> &'static ThreadState {
    forget_guest_altstacks(state);
    let zero = |fields: &[AtomicU64]| fields.iter().for_each(|f| f.store(0, Ordering::Relaxed));
    zero(&state.arm);
    zero(&state.altstack);
    zero(&state.sigsys_action);
    zero(&state.guest_altstack);
    zero(&state.pending_altstack);
    zero(&state.redirect_stack);
    state.resume.store(0, Ordering::Relaxed);
    state.clone_result.store(0, Ordering::Relaxed);
    state.clone_mask.store(0, Ordering::Relaxed);
    state.tid.store(0, Ordering::Relaxed);
    state.guest_blocks_sigsys.store(false, Ordering::Relaxed);
    state.parent_releases.store(false, Ordering::Relaxed);
    state.data.store(null_mut(), Ordering::Relaxed);
    state.own_selector.allow();
    state.selector.store(
        &state.own_selector as *const Selector as *mut Selector,
        Ordering::Relaxed,
    );
    state.altstack[0].store((base + PAGE) as u64, Ordering::Relaxed);
    state.altstack[2].store(ALTSTACK_SIZE as u64, Ordering::Relaxed);
    set_status(state, LIVE);
    state
}

/// Sets the status byte, keeping the generation.
fn set_status(state: &ThreadState, status: u64) {
    let word = state.state.load(Ordering::Relaxed);
    state
        .state
        .store(word & !STATUS | status, Ordering::Release);
}

/// Gives a slot back (its thread no longer uses it).  Only its owner
/// calls it, while the slot cannot be claimed (its status LIVE, and an error
/// `clone_result` not yet stored).
pub(crate) fn release(state: &ThreadState) {
    forget_guest_altstacks(state);
    set_status(state, DEAD);
}

/// The live slot of the thread `tid`, if it has one: for a thread whose
/// state was not found from its signal frame or selector.
pub(crate) fn find_live(tid: i32) -> Option<&'static ThreadState> {
    let arena = ARENA.load(Ordering::Acquire);
    if arena == 0 {
        return None;
    }
    for (word_index, word) in SLOT_USABLE.iter().enumerate() {
        let usable = word.load(Ordering::Acquire);
        for bit in (0..64).filter(|bit| usable & (1 << bit) != 0) {
            let state = state_of_slot(slot_base(arena, word_index * 64 + bit));
            // Not a slot its parent gave up on: its tid may be reused.
            if state.state.load(Ordering::Acquire) & STATUS == LIVE
                && !state.parent_releases.load(Ordering::Relaxed)
                && state.tid.load(Ordering::Relaxed) == tid
            {
                return Some(state);
            }
        }
    }
    None
}

/// The slots' address range, once the arena exists.
fn arena_range() -> Range<usize> {
    let base = ARENA.load(Ordering::Acquire);
    base..base + if base == 0 { 0 } else { SLOTS * SLOT_SIZE }
}

// Guest alternate stacks: while a guest's own alternate stack is installed,
// signal frames land on it; this table maps its range back to the thread's
// state.  A thread keeps its two latest stacks here (the one it leaves may
// still take a frame before the switch), until its state is released.
const GUEST_ALTSTACKS: usize = 256;

struct GuestAltstack {
    low: AtomicUsize,
    high: AtomicUsize,
    state: AtomicPtr<ThreadState>,
    /// Which of the state's stacks it is: the larger, the later.
    order: AtomicU64,
}

static GUEST_ALTSTACK: [GuestAltstack; GUEST_ALTSTACKS] = [const {
    GuestAltstack {
        low: AtomicUsize::new(0),
        high: AtomicUsize::new(0),
        state: AtomicPtr::new(null_mut()),
        order: AtomicU64::new(0),
    }
}; GUEST_ALTSTACKS];
/// Entries ever used: lookups scan no further.
static GUEST_ALTSTACKS_USED: AtomicUsize = AtomicUsize::new(0);
static GUEST_ALTSTACK_ORDER: AtomicU64 = AtomicU64::new(1);

/// Records `low..high`, a guest's alternate stack about to be installed for
/// real, as `state`'s: it replaces the older of the state's two latest, and
/// any other thread's record it overlaps (that memory is no longer theirs).
/// False if the table is full.
pub(crate) fn remember_guest_altstack(state: &ThreadState, low: usize, high: usize) -> bool {
    let me = state as *const ThreadState as *mut ThreadState;
    let used = GUEST_ALTSTACKS_USED.load(Ordering::Acquire);
    let mut mine = 0;
    let mut oldest: Option<(u64, usize)> = None;
    for (i, entry) in GUEST_ALTSTACK.iter().enumerate().take(used) {
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
                oldest = Some((order, i));
            }
        } else if l < high && low < h {
            entry.state.store(null_mut(), Ordering::Release);
        }
    }
    if let (2.., Some((_, i))) = (mine, oldest) {
        GUEST_ALTSTACK[i].state.store(null_mut(), Ordering::Release);
    }
    // A free entry: one released, or one never used.
    for (i, entry) in GUEST_ALTSTACK.iter().enumerate() {
        if entry
            .state
            .compare_exchange(null_mut(), me, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            entry.low.store(low, Ordering::Relaxed);
            entry.high.store(high, Ordering::Relaxed);
            entry.order.store(
                GUEST_ALTSTACK_ORDER.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            );
            GUEST_ALTSTACKS_USED.fetch_max(i + 1, Ordering::AcqRel);
            return true;
        }
    }
    false
}

/// Drops every record of `state`'s guest alternate stacks.
pub(crate) fn forget_guest_altstacks(state: &ThreadState) {
    let me = state as *const ThreadState as *mut ThreadState;
    for entry in GUEST_ALTSTACK
        .iter()
        .take(GUEST_ALTSTACKS_USED.load(Ordering::Acquire))
    {
        let _ = entry
            .state
            .compare_exchange(me, null_mut(), Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// The state whose selector is `selector`: a slot's own, or GLOBAL for
/// `sud_selector`, null, or any selector sud does not manage.
pub(crate) fn for_selector(selector: *const Selector) -> &'static ThreadState {
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

/// The state of the thread whose signal frame is `uc`: found from where
/// the frame lies, the thread's alternate stack.
#[inline]
pub(crate) fn current(uc: &UContext) -> &'static ThreadState {
    let frame = uc as *const UContext as usize;
    let arena = arena_range();
    if arena.contains(&frame) {
        return state_of_slot(arena.start + (frame - arena.start) / SLOT_SIZE * SLOT_SIZE);
    }
    for entry in GUEST_ALTSTACK
        .iter()
        .take(GUEST_ALTSTACKS_USED.load(Ordering::Acquire))
    {
        let state = entry.state.load(Ordering::Acquire);
        if !state.is_null()
            && (entry.low.load(Ordering::Relaxed)..entry.high.load(Ordering::Relaxed))
                .contains(&frame)
        {
            // SAFETY: records point at slot states, which are never unmapped.
            return unsafe { &*state };
        }
    }
    &GLOBAL
}

/// The calling thread's own dispatch state: a selector of its own, so that
/// its flips, and its time in the SIGSYS callback, never let another
/// thread's guest syscalls through; an alternate signal stack, on which
/// sud's handlers run however small or broken the guest's stack is; and the
/// virtual signal state the runtime keeps for its guest.
///
/// Generated code reaches the thread's selector through
/// [`selector`](Thread::selector)`().as_ptr()`: store that address where the
/// thread's code can find it (its context structure, or the code itself).
/// In the SIGSYS callback, [`Syscall::selector`](crate::Syscall::selector)
/// is the trapped thread's.  Threads the guest creates (clone, clone3) get a
/// state of their own automatically, freed when they exit.
///
/// Dropping it disarms the thread, puts its previous alternate stack back
/// and releases the state; it must be dropped on the thread that made it.
pub struct Thread {
    state: &'static ThreadState,
    previous_altstack: [u64; 3],
    _not_send: PhantomData<*mut ()>,
}

impl Thread {
    /// Sets up the calling thread: allocates its state and installs its
    /// alternate signal stack (keeping the one it had, for [`Drop`]).
    pub fn new() -> Result<Thread, Error> {
        let state = allocate()?;
        // SAFETY: gettid has no arguments.
        let tid = unsafe { host::syscall0(__NR_gettid) }? as i32;
        state.tid.store(tid, Ordering::Relaxed);
        // Its creator (this very call) is done with it: once released, it may be reused.
        state.clone_result.store(tid as u64, Ordering::Release);
        let mut previous = [0u64; 3];
        let ours = [
            state.altstack[0].load(Ordering::Relaxed),
            0,
            ALTSTACK_SIZE as u64,
        ];
        // SAFETY: both are valid stack_t; the new one is the slot's stack.
        let installed = unsafe {
            host::syscall2(
                __NR_sigaltstack,
                ours.as_ptr() as usize,
                previous.as_mut_ptr() as usize,
            )
        };
        if let Err(errno) = installed {
            release(state);
            return Err(errno.into());
        }
        Ok(Thread {
            state,
            previous_altstack: previous,
            _not_send: PhantomData,
        })
    }

    /// Arms the thread in exclusive mode over the allowed region with its
    /// own selector.
    pub fn arm(&self) -> Result<(), Error> {
        crate::arm::arm_state(
            self.state,
            PR_SYS_DISPATCH_EXCLUSIVE_ON,
            crate::allowed_region(),
        )
    }

    /// Arms the thread in inclusive mode over `range` with its own selector;
    /// see [`arm_inclusive`](crate::arm_inclusive).
    pub fn arm_inclusive(&self, range: Range<usize>) -> Result<(), Error> {
        crate::arm::check_inclusive(&range)?;
        crate::arm::arm_state(self.state, PR_SYS_DISPATCH_INCLUSIVE_ON, range)
    }

    /// Disarms the thread.
    pub fn disarm(&self) -> Result<(), Error> {
        self.state.selector().allow();
        self.state.set_arm(0, 0, 0, core::ptr::null());
        crate::disarm()
    }

    /// This thread's selector.
    pub fn selector(&self) -> &Selector {
        self.state.selector()
    }

    /// Gives [`Action::Redirect`](crate::Action::Redirect) functions a
    /// stack of their own on this thread, instead of the guest's (below its
    /// red zone).  A redirect interrupted by a signal whose handler's syscall
    /// is redirected again continues below it on the same stack.
    ///
    /// # Safety
    /// `base..base + len` is writable memory that nothing else uses, and
    /// stays so while the thread can redirect.
    pub unsafe fn set_redirect_stack(&self, base: *mut u8, len: usize) {
        let (low, high) = (base as u64, base as u64 + len as u64);
        self.state.redirect_stack[0].store(low, Ordering::Relaxed);
        self.state.redirect_stack[1].store(high, Ordering::Relaxed);
    }

    /// Stores a pointer for the SIGSYS callback ([`Syscall::thread_data`](crate::Syscall::thread_data)).
    /// Threads the guest creates inherit their creator's.
    pub fn set_data(&self, data: *mut ()) {
        self.state.data.store(data, Ordering::Relaxed);
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        let _ = self.disarm();
        // SAFETY: puts back the stack_t sigaltstack returned in new().
        let _ = unsafe {
            host::syscall2(
                __NR_sigaltstack,
                self.previous_altstack.as_ptr() as usize,
                0,
            )
        };
        release(self.state);
    }
}

// What the task stubs read from a ThreadState: `altstack` and
// `pending_altstack` as a kernel stack_t, `sigsys_action` as a
// kernel_sigaction; and a state fits the page its slot gives it.
static_assertions::const_assert_eq!(
    core::mem::size_of::<[AtomicU64; 3]>(),
    core::mem::size_of::<linux_raw_sys::general::stack_t>()
);
static_assertions::const_assert_eq!(
    core::mem::size_of::<[AtomicU64; 4]>(),
    core::mem::size_of::<crate::kernel::KernelSigaction>()
);
static_assertions::const_assert!(core::mem::size_of::<ThreadState>() <= PAGE);
// `clone_mask` is a kernel sigset; the exit stub's byte store of DEAD is the
// status byte (the lowest, on little-endian x86-64).
static_assertions::const_assert_eq!(
    core::mem::size_of::<AtomicU64>(),
    crate::kernel::SIGSET_SIZE
);
static_assertions::const_assert!(DEAD <= STATUS && LIVE <= STATUS && CLAIMED <= STATUS);

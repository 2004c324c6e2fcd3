//! Per-thread state, found without TLS, and the public face of it:
//! [`Thread`], and arming with the global state ([`arm`], [`arm_inclusive`]).
//!
//! - [`state`]: one thread's state; [`GLOBAL`](state::GLOBAL), shared by
//!   every thread sud does not manage, whose selector is `sud_selector`;
//! - [`arena`]: the slots that hold each managed thread's state and
//!   alternate signal stack, and finding a state from a signal frame;
//! - [`pointers`]: host code runs with the host's thread pointers;
//! - [`spawn`]: host threads for guest threads, opt-in.
//!
//! Every thread sud arms, with [`arm`] as with a [`Thread`], gets a state
//! of its own and sud's alternate stack: its callbacks run on 120 KiB of
//! sud's stack with its host's thread pointers.  Only the selector differs:
//! `sud::arm` uses the global one.

pub(crate) mod arena;
pub(crate) mod pointers;
pub(crate) mod site;
pub(crate) mod spawn;
pub(crate) mod state;

use crate::arm::{check_inclusive, disarm_this_thread, set_syscall_user_dispatch};
use crate::error::Error;
use crate::kernel::sigaction::SIGSYS_BIT;
use crate::kernel::stack::is_on;
use crate::region::{addr, allowed_region};
use crate::selector::Selector;
use crate::sys;
use crate::sys::guest_memory;
use crate::tp;
use core::marker::PhantomData;
use core::ops::Range;
use core::sync::atomic::Ordering;
use linux_raw_sys::general::SIGSYS;
use linux_raw_sys::prctl::{
    PR_SYS_DISPATCH_EXCLUSIVE_ON, PR_SYS_DISPATCH_INCLUSIVE_ON, PR_SYS_DISPATCH_OFF,
};
use spawn::GuestThread;
use state::{GLOBAL, ThreadState};

/// Arms the calling thread in exclusive mode over the [allowed region]
/// (crate::allowed_region) with the global selector,
/// [`SELECTOR`](crate::SELECTOR): while it says BLOCK, every syscall the
/// thread makes from anywhere else is dispatched as SIGSYS.  For a selector
/// of the thread's own, see [`Thread`].
///
/// The thread gets a state of its own, as a [`Thread`] does (sud's
/// alternate stack, on which its callbacks run, and its host's thread
/// pointers, recorded now), until [`disarm`].  Arming is per thread and is
/// not inherited by threads, processes or exec'd images the host creates;
/// the tasks guest code creates while blocked (clone, fork, vfork, clone3)
/// are armed again by the runtime.
///
/// Errors: [`Error::NotInstalled`] before [`install`](crate::install) (a
/// trapped syscall would kill the process), [`Error::AlreadyManaged`] on a
/// thread that has a [`Thread`], [`Error::OutOfMemory`] if the kernel
/// refuses the memory for the thread's state.
pub fn arm() -> Result<(), Error> {
    arm_on_global_selector(PR_SYS_DISPATCH_EXCLUSIVE_ON, allowed_region())
}

/// Arms the calling thread in inclusive mode (Linux 6.17) with the global
/// selector: while it says BLOCK, the syscalls made from inside `range` (a
/// JIT's code cache, a loaded guest image) are dispatched, and those from
/// anywhere else run.
///
/// The kernel tests the address *after* the `syscall` instruction, so a range
/// that should trap a syscall ending exactly at its end must reach one byte
/// further.  On a kernel without inclusive mode this returns
/// [`Error::NoInclusiveMode`]; the fallback is exclusive mode, [`arm`], with
/// host code making its syscalls through [`host`](crate::host).  A range that
/// is empty, wraps, or overlaps the allowed region is refused with
/// `Os(EINVAL)` before the kernel is asked.  Otherwise as [`arm`].
pub fn arm_inclusive(range: Range<usize>) -> Result<(), Error> {
    check_inclusive(&range)?;
    arm_on_global_selector(PR_SYS_DISPATCH_INCLUSIVE_ON, range)
}

/// Disarms the calling thread.  A thread armed with [`arm`] gives its state
/// back and gets its previous alternate stack again (unless it is running
/// on sud's right now: in a callback, where the state stays until the
/// thread exits).  Always allowed by the kernel, armed or not.
pub fn disarm() -> Result<(), Error> {
    disarm_this_thread()?;
    if let Some(state) = own_state().filter(|state| state.on_global_selector()) {
        state
            .task
            .arming
            .set(PR_SYS_DISPATCH_OFF, 0..0, core::ptr::null());
        give_up(state);
    }
    Ok(())
}

/// Arms the calling thread with the global selector and a state of its own.
fn arm_on_global_selector(op: u32, range: Range<usize>) -> Result<(), Error> {
    let (state, fresh) = match own_state() {
        Some(state) if state.on_global_selector() => (state, false),
        Some(_) => return Err(Error::AlreadyManaged),
        None => {
            let state = set_up_this_thread()?;
            state.use_global_selector();
            (state, true)
        }
    };
    if let Err(error) = arm_installed(state, op, range.clone()) {
        if fresh {
            give_up(state);
        }
        return Err(error);
    }
    // The tasks created through `sud_entry` with the global selector (0 in
    // R11) are armed from the global state, as this thread is.
    GLOBAL
        .task
        .arming
        .set(op, range, GLOBAL.selector().as_ptr());
    Ok(())
}

/// [`arm_state`], refused ([`Error::NotInstalled`], disarmed again) where
/// a trapped syscall would kill the process: sud's SIGSYS handler is not
/// installed.  The kernel's own refusals come first, as they would without
/// sud.
fn arm_installed(state: &ThreadState, op: u32, range: Range<usize>) -> Result<(), Error> {
    arm_state(state, op, range)?;
    if sys::sigaction(SIGSYS, None)?.handler != addr::sud_sigsys_entry() {
        state
            .task
            .arming
            .set(PR_SYS_DISPATCH_OFF, 0..0, core::ptr::null());
        disarm_this_thread()?;
        return Err(Error::NotInstalled);
    }
    Ok(())
}

/// The calling thread's state, if it has one: the live slot with its tid.
/// (A slot is never given back from here: only its owner, or `allocate`
/// once no task has the slot's tid, gives it back.)
fn own_state() -> Option<&'static ThreadState> {
    arena::find_live(sys::gettid())
}

/// Gives the calling thread a state of its own: a slot, sud's alternate
/// stack installed (the previous one kept), its host's thread pointers.
fn set_up_this_thread() -> Result<&'static ThreadState, Error> {
    let state = arena::allocate()?;
    let tid = sys::gettid();
    state.claim.tid.store(tid, Ordering::Relaxed);
    // Its creator (this very call) is done with it: once released, it may be reused.
    state
        .claim
        .clone_result
        .store(tid as u64, Ordering::Release);
    match sys::sigaltstack(Some(&state.task.altstack.load())) {
        Ok(previous) => state.host.previous_altstack.store(&previous),
        Err(errno) => {
            arena::release(state);
            return Err(errno.into());
        }
    }
    pointers::record_host(state);
    Ok(state)
}

/// Gives the calling thread's state back: its previous alternate stack
/// again, the slot free.  Not while the thread runs on sud's stack.
fn give_up(state: &'static ThreadState) {
    let ours = state.task.altstack.load();
    let here = &ours as *const _ as u64;
    if is_on(&ours, here) {
        return;
    }
    let _ = sys::sigaltstack(Some(&state.host.previous_altstack.load()));
    arena::release(state);
}

/// Arms the calling thread with `state`'s selector, and records how, so
/// that the tasks its guest creates are armed the same way.
pub(crate) fn arm_state(state: &ThreadState, op: u32, range: Range<usize>) -> Result<(), Error> {
    let selector = state.selector().as_ptr();
    // SAFETY: the range exempts the runtime's region (exclusive) or avoids
    // it (inclusive, checked by the callers); the selector lives as long as
    // the state, which outlives the arming.
    unsafe { set_syscall_user_dispatch(op, range.start, range.len(), selector)? };
    state.task.arming.set(op, range, selector);
    Ok(())
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
    _not_send: PhantomData<*mut ()>,
}

impl Thread {
    /// Sets up the calling thread: allocates its state and installs its
    /// alternate signal stack (keeping the one it had, for [`Drop`]).
    ///
    /// Errors: [`Error::AlreadyManaged`] if the thread has a state already
    /// (another `Thread`, or [`arm`]); [`Error::OutOfMemory`] if the kernel
    /// refuses the memory for it.
    pub fn new() -> Result<Thread, Error> {
        if own_state().is_some() {
            return Err(Error::AlreadyManaged);
        }
        Ok(Thread {
            state: set_up_this_thread()?,
            _not_send: PhantomData,
        })
    }

    /// Arms the thread in exclusive mode over the allowed region with its
    /// own selector.  [`Error::NotInstalled`] before
    /// [`install`](crate::install).
    pub fn arm(&self) -> Result<(), Error> {
        arm_installed(self.state, PR_SYS_DISPATCH_EXCLUSIVE_ON, allowed_region())
    }

    /// Arms the thread in inclusive mode over `range` with its own selector;
    /// see [`arm_inclusive`](crate::arm_inclusive).
    pub fn arm_inclusive(&self, range: Range<usize>) -> Result<(), Error> {
        check_inclusive(&range)?;
        arm_installed(self.state, PR_SYS_DISPATCH_INCLUSIVE_ON, range)
    }

    /// Disarms the thread.
    pub fn disarm(&self) -> Result<(), Error> {
        self.state.selector().allow();
        self.state
            .task
            .arming
            .set(PR_SYS_DISPATCH_OFF, 0..0, core::ptr::null());
        disarm_this_thread()
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
        let host = &self.state.host;
        host.redirect_low.store(low, Ordering::Relaxed);
        host.redirect_high.store(high, Ordering::Relaxed);
    }

    /// Runs the guest thread `start` on the calling thread, which the
    /// [`SpawnHook`](crate::SpawnHook) made for it, until the guest thread
    /// exits: its exit status.  Its creator's clone returns once this has
    /// begun (the tid; CLONE_PARENT_SETTID and CLONE_CHILD_SETTID written);
    /// the thread is armed as its creator was, with its own selector at
    /// BLOCK, its creator's signal mask, thread data and, with
    /// CLONE_SETTLS, its own thread pointer, while the callback and host
    /// handlers on it find this thread's (recorded by [`Thread::new`]).
    /// When it exits (an `exit` the callback reissues), its CLONE_CHILD_CLEARTID
    /// word is cleared and woken, and the thread comes back here disarmed,
    /// with the signal mask it had, to go on as host code.
    ///
    /// Errors: arming fails (the guest's clone then fails with its errno).
    pub fn run_guest(&self, mut start: GuestThread) -> Result<i32, Error> {
        let state = self.state;
        let (op, range) = start.arming.clone();
        let armed = match op {
            PR_SYS_DISPATCH_INCLUSIVE_ON => arm_installed(state, op, range),
            _ => arm_installed(state, PR_SYS_DISPATCH_EXCLUSIVE_ON, allowed_region()),
        };
        if let Err(error) = armed {
            start.report(error.guest_errno().to_syscall_result() as i32);
            return Err(error);
        }
        let tid = sys::gettid();
        // Before the creator's clone returns, as the kernel writes them
        // before the child can run.
        if let Some(at) = start.set_parent_tid {
            let _ = guest_memory::write(at, &tid);
        }
        if let Some(at) = start.set_child_tid {
            let _ = guest_memory::write(at, &tid);
        }
        state.host.data.store(start.data, Ordering::Relaxed);
        state
            .guest
            .blocks_sigsys
            .store(start.blocks_sigsys, Ordering::Relaxed);
        let mut leave = spawn::HostContext::default();
        state
            .task
            .leave_to
            .store(&raw mut leave as u64, Ordering::Relaxed);
        let host_mask = sys::block_all_signals();
        start.report(tid);
        // From here until the guest is left, no thread-local data: the
        // thread pointer may be the guest's.
        if let Some(tls) = start.tls {
            // Where reading FS costs a syscall, host code reads it only once
            // the guest has moved it.
            state.pointers.guest_moved.store(true, Ordering::Relaxed);
            // SAFETY: the guest's own thread pointer, for its own code.
            unsafe { tp::write_fs(tls) };
        }
        sys::set_thread_mask(start.sigmask & !SIGSYS_BIT);
        // SAFETY: guest code runs from here on.
        unsafe { self.selector().block() };
        // SAFETY: the registers a native clone would have given the child;
        // the guest's exit comes back through `leave`, which lives until then.
        let status = unsafe { spawn::sud_run_guest(&start.regs, &raw mut leave) };
        let pointers = &state.pointers;
        // SAFETY: the host's own pointers, recorded on this thread.
        unsafe {
            tp::write_fs(pointers.host_fs.load(Ordering::Relaxed));
            tp::write_gs(pointers.host_gs.load(Ordering::Relaxed));
        }
        self.selector().allow();
        state.task.leave_to.store(0, Ordering::Relaxed);
        let _ = self.disarm();
        sys::set_thread_mask(host_mask);
        if let Some(at) = start.clear_child_tid {
            // As the kernel does for an exiting thread: cleared, and woken.
            let _ = guest_memory::write(at, &0u32);
            sys::futex_wake_shared(at, 1);
        }
        Ok(status)
    }

    /// Stores a pointer for the SIGSYS callback ([`Syscall::thread_data`](crate::Syscall::thread_data)).
    /// Threads the guest creates inherit their creator's.
    pub fn set_data(&self, data: *mut ()) {
        self.state.host.data.store(data, Ordering::Relaxed);
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        let _ = self.disarm();
        give_up(self.state);
    }
}

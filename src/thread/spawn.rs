//! Host threads for guest threads (opt-in).  A guest thread made by a raw
//! clone has no host thread data: a callback of std code in it has nowhere
//! safe to run.  With a [`SpawnHook`] set, sud hands each new guest thread
//! (clone or clone3 with CLONE_VM and CLONE_THREAD, and a stack of its own)
//! to the host, which runs it on a host thread it made itself (with its own
//! TLS) through [`Thread::run_guest`](crate::Thread::run_guest).  The guest
//! sees native clone semantics: the new thread's tid (its clone's result,
//! CLONE_PARENT_SETTID, CLONE_CHILD_SETTID), its thread pointer
//! (CLONE_SETTLS), its creator's signal mask, CLONE_CHILD_CLEARTID's clear
//! and futex wake when it exits, and signals sent to that tid.

use crate::error::Errno;
use crate::kernel::Registers;
use crate::sys;
use core::ops::Range;
use core::ptr::null;
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// A guest thread about to start, as its clone asked for it: what a
/// [`SpawnHook`] gets, to pass to [`Thread::run_guest`](crate::Thread::run_guest)
/// on the host thread it makes for it.
///
/// Its creator waits until the new thread has started (its clone returns
/// the new thread's tid): dropped without being run, it makes that clone
/// fail with EAGAIN.
pub struct GuestThread {
    pub(crate) regs: Registers,
    pub(crate) tls: Option<u64>,
    pub(crate) set_child_tid: Option<usize>,
    pub(crate) clear_child_tid: Option<usize>,
    pub(crate) sigmask: u64,
    pub(crate) blocks_sigsys: bool,
    pub(crate) arming: (u32, Range<usize>),
    pub(crate) data: *mut (),
    /// Where the creator waits for the new thread's tid (or -errno); null
    /// once told.
    pub(crate) started: *const AtomicI32,
}

// SAFETY: made to be sent to the host thread that runs it; `started`
// points at a word its creator keeps until it is told, and `data` is the
// user's per-thread pointer, whose use the user answers for.
unsafe impl Send for GuestThread {}

impl GuestThread {
    /// The registers the guest thread starts with: its creator's at the
    /// clone, RAX = 0, RSP = its new stack, RIP = after the clone, RCX and
    /// R11 as a native clone leaves them.
    pub fn registers(&self) -> &Registers {
        &self.regs
    }

    /// The thread pointer its clone gave it (CLONE_SETTLS), if any.
    pub fn tls(&self) -> Option<u64> {
        self.tls
    }

    /// The pointer given to [`Thread::set_data`](crate::Thread::set_data)
    /// on its creator's thread.
    pub fn data(&self) -> *mut () {
        self.data
    }

    /// Tells the creator the thread has started, as `tid`, or failed, as a
    /// negative errno.
    pub(crate) fn report(&mut self, tid_or_error: i32) {
        let started = core::mem::replace(&mut self.started, null());
        // SAFETY: null, or the creator's word, which it keeps until told.
        if let Some(started) = unsafe { started.as_ref() } {
            started.store(tid_or_error, Ordering::Release);
            sys::futex_wake_private(started);
        }
    }
}

impl Drop for GuestThread {
    fn drop(&mut self) {
        self.report(Errno::EAGAIN.to_syscall_result() as i32);
    }
}

/// The host's way to start a guest thread: make a host thread (a
/// `std::thread`, a pthread) that calls
/// [`Thread::new`](crate::Thread::new) and
/// [`run_guest`](crate::Thread::run_guest) with this, and return.  Called
/// in signal context on the creating thread, selector ALLOW, with the
/// host's thread pointers; an `Err` is the guest's clone's errno.
pub type SpawnHook = fn(GuestThread) -> Result<(), Errno>;

/// The hook, as an address (0: none).
static HOOK: AtomicUsize = AtomicUsize::new(0);

/// Sets the hook that runs the guest's new threads on host threads (`None`:
/// none, the default: guest threads are made by the guest's own clone, as
/// it asked, and have no host thread data).
pub fn set_spawn_hook(hook: Option<SpawnHook>) {
    HOOK.store(hook.map_or(0, |hook| hook as usize), Ordering::Release);
}

/// The hook, if one is set.
pub(crate) fn hook() -> Option<SpawnHook> {
    let hook = HOOK.load(Ordering::Acquire);
    // SAFETY: HOOK only ever holds 0 or a `SpawnHook`.
    (hook != 0).then(|| unsafe { core::mem::transmute::<usize, SpawnHook>(hook) })
}

/// Waits until the guest thread whose creator keeps `started` has started:
/// its tid, or a negative errno.
pub(crate) fn wait_started(started: &AtomicI32) -> i32 {
    loop {
        match started.load(Ordering::Acquire) {
            0 => sys::futex_wait(started, 0),
            told => return told,
        }
    }
}

unsafe extern "C" {
    /// Enters guest code at `regs`, keeping the host's callee-saved
    /// registers in `host`; returns the guest thread's exit status when
    /// its exit reaches `sud_leave_guest` (`asm/x86_64/guest_thread.s`).
    pub(crate) fn sud_run_guest(regs: *const Registers, host: *mut HostContext) -> i32;
}

/// The callee-saved registers and RSP of a host thread running a guest
/// thread, kept by `sud_run_guest` for `sud_leave_guest` (offsets HOST_*).
#[repr(C)]
#[derive(Default)]
pub(crate) struct HostContext {
    pub rsp: u64,
    pub rbx: u64,
    pub rbp: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

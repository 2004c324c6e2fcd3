//! The signal dispositions sud keeps: for each signal, the guest's (as it
//! set it with a trapped rt_sigaction) and the host handler's, and the lock
//! every change to either, and to what is installed for the signal, is made
//! under; and the SIGSYS disposition [`install`](crate::install) replaced.
//!
//! - [`lock`]: the per-signal lock, which names its holder;
//! - [`cell`]: one disposition in atomics, read in signal context under a
//!   sequence count.

pub(crate) mod cell;
pub(crate) mod lock;

use crate::error::Errno;
use crate::kernel::sigaction::{
    AtomicSigaction, KernelSigaction, NSIG, SIG_IGN, SIGSYS_BIT, UNBLOCKABLE,
};
use crate::region::addr;
use crate::sys;
use cell::ActionCell;
use core::sync::atomic::{AtomicUsize, Ordering};
use linux_raw_sys::general::{SA_ONSTACK, SA_RESTORER, SA_SIGINFO, SIGSYS};
use lock::HolderLock;

/// The SIGSYS disposition that [`install`](crate::install) replaced, kept
/// for the SIGSYS that do not come from dispatch and for
/// [`uninstall`](crate::uninstall).
pub(crate) static PREVIOUS_SIGSYS: AtomicSigaction = AtomicSigaction::new();

/// sud's SIGSYS disposition: the asm entry, every signal blocked while it
/// runs, on the alternate signal stack, returning through sud's restorer.
pub(crate) fn our_sigsys_action() -> KernelSigaction {
    KernelSigaction {
        handler: addr::sud_sigsys_entry(),
        flags: (SA_SIGINFO | SA_RESTORER | SA_ONSTACK) as u64,
        restorer: addr::sud_restorer(),
        mask: !0,
    }
}

/// Whether `handler` is one of sud's own entries.
pub(crate) fn is_sud_entry(handler: usize) -> bool {
    handler == addr::sud_signal_entry() || handler == addr::sud_sigsys_entry()
}

/// One signal's dispositions, the guest's and the host's, and the lock
/// every change to either is made under, with what is installed for it.
pub(crate) struct SignalActions {
    pub lock: HolderLock,
    /// The guest's disposition, as it set it (SIGSYS's is never installed).
    pub guest: ActionCell,
    /// The host handler sud runs under ALLOW.
    pub host: ActionCell,
}

impl SignalActions {
    pub fn guest(&self) -> Option<KernelSigaction> {
        self.guest.get(&self.lock)
    }

    pub fn host(&self) -> Option<KernelSigaction> {
        self.host.get(&self.lock)
    }
}

pub(crate) static ACTIONS: [SignalActions; NSIG] = [const {
    SignalActions {
        lock: HolderLock::new(),
        guest: ActionCell::new(),
        host: ActionCell::new(),
    }
}; NSIG];

/// SA_RESETHAND: the kernel reset `signal`'s disposition as it delivered
/// it; the guest's record follows, unless the guest set another one since
/// (the record is no longer `delivered`).
pub(crate) fn reset_guest_action(signal: u32, delivered: &KernelSigaction) {
    let actions = &ACTIONS[signal as usize];
    actions.lock.with(|| {
        if actions.guest() == Some(*delivered) {
            actions.guest.write(Some(&KernelSigaction::default()));
        }
    });
}

/// The guest's SIGSYS disposition, if it set one.
pub(crate) fn guest_sigsys_action() -> Option<KernelSigaction> {
    ACTIONS[SIGSYS as usize].guest()
}

/// A signal disposition as the guest set it with `rt_sigaction`: what
/// [`guest_action`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GuestAction {
    /// `sa_handler`: `SIG_DFL` (0), `SIG_IGN` (1) or the handler's address
    /// (which takes three arguments if `flags` has `SA_SIGINFO`).
    pub handler: usize,
    /// `sa_flags`: `SA_SIGINFO`, `SA_ONSTACK`, `SA_RESTART`, `SA_NODEFER`,
    /// `SA_RESETHAND`, `SA_RESTORER` ...
    pub flags: u64,
    /// `sa_mask`: the signals blocked while the handler runs (bit `n - 1`
    /// for signal `n`), never SIGKILL or SIGSTOP.
    pub mask: u64,
    /// `sa_restorer`: the guest's restorer, if `flags` has `SA_RESTORER`.
    pub restorer: usize,
}

/// The disposition the guest last set for `signal` through a trapped
/// rt_sigaction (which, for a signal with a host handler, and for SIGSYS,
/// sud keeps to itself rather than install), so that a host handler can pass
/// a signal on to the guest.  `None` if the guest never set one.
pub fn guest_action(signal: u32) -> Option<GuestAction> {
    ACTIONS.get(signal as usize)?.guest().map(|a| GuestAction {
        handler: a.handler,
        flags: a.flags,
        mask: a.mask,
        restorer: a.restorer,
    })
}

/// What is really installed for a handler that sud runs: its entry, with
/// SA_SIGINFO, SA_RESTORER (sud's restorer) and SA_ONSTACK, and never SIGSYS
/// in the mask.
pub(crate) fn real_action(action: &KernelSigaction) -> KernelSigaction {
    KernelSigaction {
        handler: addr::sud_signal_entry(),
        flags: action.flags | (SA_SIGINFO | SA_RESTORER | SA_ONSTACK) as u64,
        restorer: addr::sud_restorer(),
        mask: action.mask & !SIGSYS_BIT,
    }
}

/// The process whose dispositions the records are (0 until the first
/// guest rt_sigaction): they describe its handler table, in its memory.
static RECORDS_PID: AtomicUsize = AtomicUsize::new(0);

/// Whether a guest rt_sigaction made here belongs in the records: in the
/// process they describe, or in one with a copy of them (a fork child, whose
/// copy they become), or in one that shares both the memory and the handler
/// table.  Not in a child that shares the memory but has a handler table of
/// its own (vfork, posix_spawn): what it sets (SIG_DFL for every handled
/// signal, before it execs) is its own, and recorded it would become its
/// parent's.  When the kernel cannot tell (no kcmp), they are.
pub(crate) fn records_are_mine() -> bool {
    let me = sys::getpid() as usize;
    let owner = match RECORDS_PID.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => return true,
        Err(owner) => owner,
    };
    if owner == me {
        return true;
    }
    let same = |what: u32| sys::kcmp(owner as i32, me as i32, what);
    match same(sys::KCMP_VM) {
        // Shared memory: the records are its too only with the handlers
        // (kcmp answers 1, 2 or 3 for two different ones).
        Ok(0) => !matches!(same(sys::KCMP_SIGHAND), Ok(1..)),
        Err(errno) if errno != Errno::ESRCH => true,
        // Memory of its own (or the owner is gone): the records are this
        // process's from now on.
        _ => {
            RECORDS_PID.store(me, Ordering::Release);
            true
        }
    }
}

/// rt_sigaction's work, under the signal's lock: the guest's previous
/// disposition, and `new` installed and, if `record`, recorded.
pub(crate) fn record_and_install(
    signal: u32,
    new: Option<KernelSigaction>,
    record: bool,
) -> Result<KernelSigaction, Errno> {
    let actions = &ACTIONS[signal as usize];
    let recorded = actions.guest();
    let old = match recorded {
        Some(old) => old,
        None => {
            let real = sys::sigaction(signal, None)?;
            if is_sud_entry(real.handler) {
                KernelSigaction::default()
            } else {
                real
            }
        }
    };
    if let Some(mut new) = new {
        new.mask &= !UNBLOCKABLE;
        // Recorded first: the signal may come the moment it is installed.
        if record {
            actions.guest.write(Some(&new));
        }
        let keep_to_ourselves = signal == SIGSYS || actions.host().is_some();
        if !keep_to_ourselves {
            let real = if new.handler <= SIG_IGN {
                KernelSigaction {
                    mask: new.mask & !SIGSYS_BIT,
                    ..new
                }
            } else {
                real_action(&KernelSigaction {
                    flags: new.flags & !(SA_RESTORER as u64),
                    ..new
                })
            };
            if let Err(errno) = sys::sigaction(signal, Some(&real)) {
                if record {
                    actions.guest.write(recorded.as_ref());
                }
                return Err(errno);
            }
        }
    }
    Ok(old)
}

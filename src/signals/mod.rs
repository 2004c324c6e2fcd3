//! Signals around dispatch, on the host's side and the guest's.
//!
//! - **Host handlers** ([`install_host_handler`], [`adopt_signal`]) run with
//!   the interrupted thread's selector at ALLOW, whatever it was, and put it
//!   back on return.
//! - **Guest handlers** (installed by a trapped rt_sigaction) are entered
//!   through sud: they run as guest code (selector BLOCK), see their virtual
//!   mask, and return through sud's restorer ([`run`]).
//! - **Faults** (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP) go to whoever's
//!   code faulted: in guest code (selector BLOCK) to the guest's handler or
//!   the default action, as natively; in host code (ALLOW) to the host's
//!   handler (std's stack-overflow handler, adopted by [`install`]).
//! - **Foreign SIGSYS** (seccomp's, a `kill`'s) go to the guest's SIGSYS
//!   handler or the one sud replaced, as the kernel would ([`foreign_sigsys`]).
//!
//! Every handler sud installs runs on the thread's alternate signal stack
//! when it has one (SA_ONSTACK); guest handlers go on the guest's own,
//! virtual, alternate stack from there ([`guest_stack`]).

pub(crate) mod foreign_sigsys;
pub(crate) mod guest_stack;
pub(crate) mod install;
pub(crate) mod run;

use crate::dispositions::{ACTIONS, real_action, reset_guest_action};
use crate::error::{Errno, Error};
use crate::kernel::sigaction::{KernelSigaction, NSIG, SIG_IGN};
use crate::kernel::{SigInfo, UContext};
use crate::region::addr;
use crate::selector::HostScope;
use crate::sys;
use crate::thread::arena;
use crate::thread::pointers::enter_host;
use linux_raw_sys::general::{
    SA_RESETHAND, SA_RESTORER, SA_SIGINFO, SIGBUS, SIGFPE, SIGILL, SIGKILL, SIGSEGV, SIGSTOP,
    SIGSYS, SIGTRAP,
};
use run::{call_handler, default_action, run_guest_handler};

/// The synchronous faults: they go to whoever's code faulted.
pub(crate) const FAULTS: [u32; 5] = [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP];

/// A host signal handler: `(signal, siginfo, ucontext)`.
pub type HostHandler = unsafe extern "C" fn(i32, *mut SigInfo, *mut UContext);

/// Installs `handler` for `signal` (not SIGSYS, SIGKILL or SIGSTOP), to run
/// with the interrupted thread's selector at ALLOW whatever it was, on the
/// thread's alternate signal stack when it has one, and return through the
/// allowed restorer with the selector put back.  `mask` are the signals
/// blocked while it runs (never SIGSYS); `flags` may add SA_RESTART,
/// SA_NODEFER or SA_RESETHAND.
pub fn install_host_handler(
    signal: u32,
    handler: HostHandler,
    mask: u64,
    flags: u64,
) -> Result<(), Error> {
    if signal == SIGSYS
        || signal == SIGKILL
        || signal == SIGSTOP
        || signal == 0
        || signal as usize >= NSIG
    {
        return Err(Error::Os(Errno::EINVAL));
    }
    let action = KernelSigaction {
        handler: handler as usize,
        flags: flags | SA_SIGINFO as u64,
        restorer: 0,
        mask,
    };
    // Under the signal's lock: a guest's rt_sigaction for it at the same
    // time cannot install over this.
    let actions = &ACTIONS[signal as usize];
    actions.lock.with(|| {
        let previous = actions.host();
        actions.host.write(Some(&action));
        let real = real_action(&action);
        if let Err(errno) = sys::sigaction(signal, Some(&real)) {
            actions.host.write(previous.as_ref());
            return Err(errno.into());
        }
        Ok(())
    })
}

/// Takes the handler someone else installed for `signal` (std, glibc, a
/// library) and runs it as a host handler from now on: under ALLOW, with
/// its own mask and flags.  Nothing changes for a signal whose disposition
/// is SIG_DFL or SIG_IGN, or already sud's.
pub fn adopt_signal(signal: u32) -> Result<(), Error> {
    if signal == SIGSYS || signal == 0 || signal as usize >= NSIG {
        return Err(Error::Os(Errno::EINVAL));
    }
    let current = sys::sigaction(signal, None)?;
    if current.handler <= SIG_IGN || current.handler == addr::sud_signal_entry() {
        return Ok(());
    }
    // SAFETY: it was installed as this signal's handler, so it has one of
    // the two handler signatures; with SA_SIGINFO it takes all three
    // arguments, without it ignores the two it is not given.
    let handler: HostHandler = unsafe { core::mem::transmute(current.handler) };
    install_host_handler(
        signal,
        handler,
        current.mask,
        current.flags & !(SA_RESTORER as u64),
    )
}

/// The Rust half of `sud_signal_entry`, the entry of every handler sud
/// installs but SIGSYS's: host handlers and guest handlers.
///
/// # Safety
/// Only the kernel calls it, through `sud_signal_entry`, as an SA_SIGINFO
/// handler: `info` and `uc` point into the live signal frame.
pub(crate) unsafe extern "C" fn on_signal(signal: i32, info: *mut SigInfo, uc: *mut UContext) {
    // SAFETY: the kernel passes the live frame's siginfo and ucontext.
    let (info_ref, uc_ref) = unsafe { (&*info, &mut *uc) };
    let state = arena::current(uc_ref);
    let actions = &ACTIONS[signal as usize];
    let fault = FAULTS.contains(&(signal as u32));
    // A thread with no state of its own (never armed by sud, or armed
    // around it) runs host code: its faults are the host's, and the global
    // selector, which other threads' guests run under, is not its to flip.
    let managed = !state.is_global();
    let guest_faulted = fault && managed && state.selector().is_blocked();
    match actions.host() {
        Some(host) if !guest_faulted => {
            if host.flags & SA_RESETHAND as u64 != 0 {
                // The kernel reset the real disposition as it delivered this:
                // the host handler is gone, unless another was installed since.
                actions.lock.with(|| {
                    if actions.host() == Some(host) {
                        actions.host.write(None);
                    }
                });
            }
            if managed {
                let guest_pointers = enter_host(state, false);
                let host_code = HostScope::enter_as_found(state.selector());
                // SAFETY: an application handler, given what the kernel gave us.
                unsafe { call_handler(host.handler, signal, info, uc) };
                host_code.leave();
                guest_pointers.leave();
            } else {
                // SAFETY: as above.
                unsafe { call_handler(host.handler, signal, info, uc) };
            }
        }
        // Host code faulted, and the host has no handler for it.
        _ if fault && !guest_faulted => default_action(signal as u32, info_ref, uc_ref),
        _ => match actions.guest() {
            Some(guest) if guest.handler > SIG_IGN => {
                if guest.flags & SA_RESETHAND as u64 != 0 {
                    reset_guest_action(signal as u32, &guest);
                }
                // SAFETY: the guest's handler, entered as the kernel would.
                unsafe { run_guest_handler(state, &guest, signal, info, uc) };
            }
            // A guest fault it has no handler for: the default action, as
            // natively (which ignoring a fault the kernel raised does not
            // prevent).
            _ if fault => default_action(signal as u32, info_ref, uc_ref),
            _ => {}
        },
    }
}

//! What a reissue must take care of: most trapped syscalls the callback
//! reissues run as they are, from `sud_reissue`; a few would break the
//! runtime or the guest's native semantics if they did, and [`plan`], the one
//! router over syscall numbers, sends each of those where it is handled:
//!
//! - [`tasks`]: fork, vfork, clone, clone3 and a managed thread's exit, run
//!   from stubs that arm every child and give a new thread its own state;
//! - [`sigstate`]: rt_sigprocmask, rt_sigaction and a guest's own
//!   rt_sigreturn, whose masks must never really block SIGSYS;
//! - [`altstack`]: sigaltstack, virtual: sud's own alternate stack stays
//!   installed;
//! - [`masked_waits`]: the waits that take a signal mask of their own;
//! - [`continuation`]: what these work on, and how the guest goes on;
//! - [`guest_view`]: a seccomp trap of a syscall a stub runs, as the guest
//!   would have seen it.

pub(crate) mod altstack;
pub(crate) mod continuation;
pub(crate) mod guest_view;
pub(crate) mod masked_waits;
pub(crate) mod sigstate;
pub(crate) mod tasks;

use crate::region::addr;
use crate::thread::state::ThreadState;
use continuation::{Continuation, Interrupted};
use linux_raw_sys::general::{
    __NR_clone, __NR_clone3, __NR_epoll_pwait, __NR_epoll_pwait2, __NR_exit, __NR_fork,
    __NR_io_pgetevents, __NR_io_uring_enter, __NR_ppoll, __NR_pselect6, __NR_rt_sigaction,
    __NR_rt_sigprocmask, __NR_rt_sigreturn, __NR_rt_sigsuspend, __NR_sigaltstack, __NR_vfork,
};
use masked_waits::Arg;

/// The guest's SIGSYS bit as it believes it (never really set).
fn virtual_sigsys(state: &ThreadState) -> u64 {
    if state
        .guest
        .blocks_sigsys
        .load(core::sync::atomic::Ordering::Relaxed)
    {
        crate::kernel::sigaction::SIGSYS_BIT
    } else {
        0
    }
}

/// How to reissue the syscall in `at.regs`, by its number.
pub(crate) fn plan(state: &'static ThreadState, mut at: Interrupted<'_>) -> Continuation {
    match at.regs.rax as u32 {
        __NR_rt_sigreturn => {
            // The callback turned this into an rt_sigreturn: it needs RSP as is.
            sigstate::guest_sigreturn(state, at.regs, at.altstack);
            Continuation::Stub {
                entry: addr::sud_reissue_sigreturn(),
                r11: at.regs.r11,
            }
        }
        __NR_fork | __NR_vfork | __NR_clone | __NR_clone3 => {
            let sigmask = *at.sigmask | virtual_sigsys(state);
            tasks::clone(state, at.regs, at.blocked, sigmask)
        }
        __NR_exit => tasks::exit(state),
        __NR_rt_sigprocmask => {
            Continuation::Done(sigstate::result(sigstate::rt_sigprocmask(state, &mut at)))
        }
        __NR_rt_sigaction => Continuation::Done(sigstate::result(sigstate::rt_sigaction(at.regs))),
        __NR_sigaltstack if !state.is_global() => altstack::sigaltstack(state, &mut at),
        // The syscalls that wait under a mask of their own.
        __NR_rt_sigsuspend => masked_waits::sanitise_mask(at.regs, Arg::Rdi),
        __NR_ppoll => masked_waits::sanitise_mask(at.regs, Arg::R10),
        __NR_epoll_pwait | __NR_epoll_pwait2 => masked_waits::sanitise_mask(at.regs, Arg::R8),
        // Their mask behind a (pointer, size) pair: pselect6's sixth argument,
        // io_pgetevents' struct __aio_sigset.
        __NR_pselect6 | __NR_io_pgetevents => masked_waits::sanitise_mask_pair(at.regs),
        __NR_io_uring_enter => masked_waits::sanitise_io_uring_enter(at.regs),
        _ => Continuation::Plain,
    }
}

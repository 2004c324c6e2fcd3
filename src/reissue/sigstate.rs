//! The guest's signal state, emulated where carrying it out as asked would
//! block SIGSYS: rt_sigprocmask and rt_sigaction are answered by the
//! runtime, which keeps SIGSYS out of what it installs and the guest's wish
//! as virtual state it reports back; a guest's own rt_sigreturn has SIGSYS
//! taken out of the mask its frame reinstalls.

use super::altstack;
use super::continuation::Interrupted;
use crate::dispositions::{ACTIONS, record_and_install, records_are_mine};
use crate::error::Errno;
use crate::kernel::sigaction::{KernelSigaction, NSIG, SIGSET_SIZE, SIGSYS_BIT, UNBLOCKABLE};
use crate::kernel::stack::stack_t;
use crate::kernel::{Registers, UContext};
use crate::sys::guest_memory;
use crate::thread::state::ThreadState;
use core::mem::offset_of;
use core::sync::atomic::Ordering;
use linux_raw_sys::general::{SIG_BLOCK, SIG_SETMASK, SIG_UNBLOCK, SIGKILL, SIGSTOP};

pub(crate) fn result(outcome: Result<(), Errno>) -> usize {
    match outcome {
        Ok(()) => 0,
        Err(errno) => errno.to_syscall_result(),
    }
}

/// rt_sigprocmask(how, set, oldset, sigsetsize), carried out on the mask
/// the thread resumes with (`uc_sigmask`, which rt_sigreturn reinstalls),
/// SIGSYS kept out of it and in the virtual mask instead.
pub(crate) fn rt_sigprocmask(state: &ThreadState, at: &mut Interrupted<'_>) -> Result<(), Errno> {
    let regs = &*at.regs;
    let (how, set, oldset, size) = (
        regs.rdi as u32,
        regs.rsi as usize,
        regs.rdx as usize,
        regs.r10,
    );
    if size != SIGSET_SIZE as u64 {
        return Err(Errno::EINVAL);
    }
    let virtual_bit = if state.guest.blocks_sigsys.load(Ordering::Relaxed) {
        SIGSYS_BIT
    } else {
        0
    };
    let old = *at.sigmask | virtual_bit;
    if set != 0 {
        let new: u64 = guest_memory::read(set)?;
        let mask = match how {
            SIG_BLOCK => old | new,
            SIG_UNBLOCK => old & !new,
            SIG_SETMASK => new,
            _ => return Err(Errno::EINVAL),
        } & !UNBLOCKABLE;
        state
            .guest
            .blocks_sigsys
            .store(mask & SIGSYS_BIT != 0, Ordering::Relaxed);
        *at.sigmask = mask & !SIGSYS_BIT;
    }
    if oldset != 0 {
        guest_memory::write(oldset, &old)?;
    }
    Ok(())
}

/// rt_sigaction(signal, act, oldact, sigsetsize): the guest's disposition is
/// recorded and reported back as the kernel would keep it (unknown flags
/// and SIGKILL, SIGSTOP dropped; the handler reset by an SA_RESETHAND
/// delivery: `dispositions`); what is installed keeps SIGSYS
/// deliverable (SIGSYS's own disposition, and those of signals with a host
/// handler, are not installed at all).
pub(crate) fn rt_sigaction(regs: &Registers) -> Result<(), Errno> {
    let (signal, act, oldact, size) = (
        regs.rdi as u32,
        regs.rsi as usize,
        regs.rdx as usize,
        regs.r10,
    );
    if size != SIGSET_SIZE as u64 || signal == 0 || signal as usize >= NSIG {
        return Err(Errno::EINVAL);
    }
    if act != 0 && (signal == SIGKILL || signal == SIGSTOP) {
        return Err(Errno::EINVAL);
    }
    let new: Option<KernelSigaction> = if act != 0 {
        Some(guest_memory::read(act)?)
    } else {
        None
    };
    let record = records_are_mine();
    let old = ACTIONS[signal as usize]
        .lock
        .with(|| record_and_install(signal, new, record))?;
    if oldact != 0 {
        guest_memory::write(oldact, &old)?;
    }
    Ok(())
}

/// A guest's own rt_sigreturn: its frame's mask is the one to reinstall,
/// so SIGSYS goes from it to the virtual mask; its alternate stack is the
/// guest's to have back (virtual), and `installed` (sud's, as the kernel
/// holds it now) what the kernel reinstalls.  RSP points at the frame's
/// ucontext (the handler's `ret` took the restorer address off the stack).
pub(crate) fn guest_sigreturn(state: &ThreadState, regs: &Registers, installed: &stack_t) {
    let frame = regs.rsp as usize;
    if !state.is_global() {
        let stack_at = frame + offset_of!(UContext, uc_stack);
        let rsp_at = frame + offset_of!(UContext, uc_mcontext.regs.rsp);
        if let (Ok(saved), Ok(rsp)) = (
            guest_memory::read::<stack_t>(stack_at),
            guest_memory::read::<u64>(rsp_at),
        ) {
            altstack::restore(state, &saved, rsp);
            let _ = guest_memory::write(stack_at, &altstack::as_installed(installed));
        }
    }
    let mask_at = frame + offset_of!(UContext, uc_sigmask);
    // An unreadable frame is for rt_sigreturn itself to fail on.
    if let Ok(mask) = guest_memory::read::<u64>(mask_at) {
        state
            .guest
            .blocks_sigsys
            .store(mask & SIGSYS_BIT != 0, Ordering::Relaxed);
        if mask & SIGSYS_BIT != 0 {
            let _ = guest_memory::write(mask_at, &(mask & !SIGSYS_BIT));
        }
    }
}

//! A guest's sigaltstack on a managed thread, virtual: sud's own alternate
//! stack stays installed in the kernel (every signal frame lands on it, so
//! the thread's state is always found from the frame), and the guest's is
//! kept in its state, where `signals` runs its SA_ONSTACK handlers on it.
//! What the kernel's `do_sigaltstack` checks and answers is done here, on
//! the guest's stack pointer: SS_ONSTACK, EPERM while on it, SS_AUTODISARM.

use super::continuation::{Continuation, Interrupted};
use crate::error::Errno;
use crate::kernel::stack::{SS_MODE, disabled_stack, is_on, stack_t};
use crate::sys::{self, guest_memory};
use crate::thread::state::ThreadState;
use core::sync::atomic::{AtomicUsize, Ordering};
use linux_raw_sys::auxvec::AT_MINSIGSTKSZ;
use linux_raw_sys::general::{MINSIGSTKSZ, SS_AUTODISARM, SS_DISABLE, SS_ONSTACK};

const AUTODISARM: i32 = SS_AUTODISARM as i32;

/// The guest's alternate stack as the kernel would hold it (`sas_ss_*`):
/// size 0 when it has none.
pub(crate) fn guest_altstack(state: &ThreadState) -> stack_t {
    let stack = state.guest.altstack.load();
    if stack.ss_size == 0 && stack.ss_flags == 0 {
        disabled_stack()
    } else {
        stack
    }
}

/// The kernel's `on_sig_stack`: never with SS_AUTODISARM.
pub(crate) fn on_guest_altstack(stack: &stack_t, sp: u64) -> bool {
    stack.ss_flags & AUTODISARM == 0 && stack.ss_size != 0 && is_on(stack, sp)
}

/// What sigaltstack reads back at `sp` (`sas_ss_flags` and SS_AUTODISARM).
fn read_back(stack: &stack_t, sp: u64) -> stack_t {
    let mode = if stack.ss_size == 0 {
        SS_DISABLE as i32
    } else if on_guest_altstack(stack, sp) {
        SS_ONSTACK as i32
    } else {
        0
    };
    stack_t {
        ss_flags: mode | (stack.ss_flags & AUTODISARM),
        ..*stack
    }
}

/// The kernel's `do_sigaltstack(new, sp)` on the guest's virtual stack:
/// for a trapped sigaltstack, and for what a guest handler's return (its
/// frame's `uc_stack`) puts back.
pub(crate) fn set_guest_altstack(state: &ThreadState, new: &stack_t, sp: u64) -> Result<(), Errno> {
    let current = guest_altstack(state);
    if on_guest_altstack(&current, sp) {
        return Err(Errno::EPERM);
    }
    let mode = new.ss_flags & !AUTODISARM;
    if mode != 0 && mode != SS_ONSTACK as i32 && mode != SS_DISABLE as i32 {
        return Err(Errno::EINVAL);
    }
    if *new == current {
        return Ok(());
    }
    let stored = if mode == SS_DISABLE as i32 {
        stack_t {
            ss_sp: core::ptr::null_mut(),
            ss_flags: new.ss_flags,
            ss_size: 0,
        }
    } else if (new.ss_size as usize) < min_altstack_size() {
        return Err(Errno::ENOMEM);
    } else {
        *new
    };
    state.guest.altstack.store(&stored);
    Ok(())
}

/// What a signal's delivery does to the guest's alternate stack: gives the
/// one to save in the frame's `uc_stack`, and disarms it (SS_AUTODISARM).
pub(crate) fn deliver(state: &ThreadState) -> stack_t {
    let saved = guest_altstack(state);
    if saved.ss_flags & AUTODISARM != 0 {
        state.guest.altstack.store(&disabled_stack());
    }
    saved
}

/// What rt_sigreturn does with a frame's `uc_stack`, `sp` the stack pointer
/// it resumes with: as `restore_altstack`, errors ignored.
pub(crate) fn restore(state: &ThreadState, saved: &stack_t, sp: u64) {
    let _ = set_guest_altstack(state, saved, sp);
}

/// sigaltstack(ss, old_ss) for a managed thread: answered on the virtual
/// stack, at the guest's RSP.
pub(crate) fn sigaltstack(state: &ThreadState, at: &mut Interrupted<'_>) -> Continuation {
    let regs = &*at.regs;
    let (ss, old_ss, rsp) = (regs.rdi as usize, regs.rsi as usize, regs.rsp);
    let old = read_back(&guest_altstack(state), rsp);
    if ss != 0 {
        let new: stack_t = match guest_memory::read(ss) {
            Ok(new) => new,
            Err(errno) => return Continuation::Done(errno.to_syscall_result()),
        };
        if let Err(errno) = set_guest_altstack(state, &new, rsp) {
            return Continuation::Done(errno.to_syscall_result());
        }
    }
    if old_ss != 0 && guest_memory::write(old_ss, &old).is_err() {
        return Continuation::Done(Errno::EFAULT.to_syscall_result());
    }
    Continuation::Done(0)
}

/// The stack to put in a frame the kernel will reinstall from: `real`
/// (what the kernel saved), its mode bits dropped.
pub(crate) fn as_installed(real: &stack_t) -> stack_t {
    stack_t {
        ss_flags: real.ss_flags & !SS_MODE,
        ..*real
    }
}

/// The smallest alternate stack the kernel accepts: MINSIGSTKSZ, or the
/// size of this machine's signal frame (AT_MINSIGSTKSZ) if larger.
fn min_altstack_size() -> usize {
    static CACHED: AtomicUsize = AtomicUsize::new(0);
    let cached = CACHED.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    let from_kernel = sys::auxv(AT_MINSIGSTKSZ).unwrap_or(0) as usize;
    let size = from_kernel.max(MINSIGSTKSZ as usize);
    CACHED.store(size, Ordering::Relaxed);
    size
}

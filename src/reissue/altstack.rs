//! A guest's sigaltstack on a managed thread: answered by the runtime, which
//! must keep finding the thread's state from its signal frames, and
//! installed by `sud_reissue_set_altstack` once the handler is off the
//! stack in use.

use super::continuation::{Continuation, Interrupted};
use crate::error::Errno;
use crate::kernel::stack::{AtomicStack, RED_ZONE, SS_MODE, disabled_stack, is_on, stack_t};
use crate::region::addr;
use crate::sys::{self, guest_memory};
use crate::thread::guest_altstacks::remember_guest_altstack;
use crate::thread::state::ThreadState;
use core::sync::atomic::{AtomicUsize, Ordering};
use linux_raw_sys::auxvec::AT_MINSIGSTKSZ;
use linux_raw_sys::general::{MINSIGSTKSZ, SS_AUTODISARM, SS_DISABLE, SS_ONSTACK};

/// How far below the guest's RSP `sud_reissue_set_altstack` makes its
/// sigaltstack: the red zone, then its frame (the return address and three
/// registers), which it makes with this one number.
pub(crate) const SET_ALTSTACK_STUB_DEPTH: u64 = RED_ZONE as u64 + 4 * 8;

/// sigaltstack(ss, old_ss) for a managed thread.  The guest's own stack is
/// honoured: installed for real, so its handlers and sud's run on it, and
/// recorded so that the runtime still finds the thread's state.  Without
/// one, the thread's own stack is installed and the guest sees none.  The
/// dispatcher answers (every check the kernel makes, against the alternate
/// stack really in use); `sud_reissue_set_altstack` installs the new stack
/// once the handler is off the current one.
pub(crate) fn sigaltstack(state: &ThreadState, at: &mut Interrupted<'_>) -> Continuation {
    let regs = &*at.regs;
    let (ss, old_ss, rsp) = (regs.rdi as usize, regs.rsi as usize, regs.rsp);
    let guest = state.guest.altstack.load();
    let old = if guest.ss_size == 0 {
        disabled_stack()
    } else {
        let onstack = if is_on(&guest, rsp) {
            SS_ONSTACK as i32
        } else {
            0
        };
        stack_t {
            ss_flags: onstack | (guest.ss_flags & SS_AUTODISARM as i32),
            ..guest
        }
    };
    let mut install = None;
    if ss != 0 {
        let new: stack_t = match guest_memory::read(ss) {
            Ok(new) => new,
            Err(errno) => return Continuation::Done(errno.to_syscall_result()),
        };
        // The stack really in use, as the kernel will judge it.
        let real = at.altstack;
        let autodisarm = real.ss_flags & SS_AUTODISARM as i32 != 0;
        // The stub's own RSP too, where the kernel will look: a guest just
        // above the stack gets EPERM rather than a stack never installed.
        let stub_rsp = rsp.wrapping_sub(SET_ALTSTACK_STUB_DEPTH);
        if !autodisarm && (is_on(real, rsp) || is_on(real, stub_rsp)) {
            return Continuation::Done(Errno::EPERM.to_syscall_result());
        }
        let mode = new.ss_flags & !(SS_AUTODISARM as i32);
        if mode != 0 && mode != SS_ONSTACK as i32 && mode != SS_DISABLE as i32 {
            return Continuation::Done(Errno::EINVAL.to_syscall_result());
        }
        if mode != SS_DISABLE as i32 && (new.ss_size as usize) < min_altstack_size() {
            return Continuation::Done(Errno::ENOMEM.to_syscall_result());
        }
        install = Some(new);
    }
    if old_ss != 0 && guest_memory::write(old_ss, &old).is_err() {
        return Continuation::Done(Errno::EFAULT.to_syscall_result());
    }
    let Some(new) = install else {
        return Continuation::Done(0);
    };
    let real = if new.ss_flags & SS_MODE == SS_DISABLE as i32 {
        // The guest's stack stays on record until a later one replaces it:
        // a frame may still land on it before the stub switches.
        state.guest.altstack.store(&AtomicStack::new().load());
        state.task.altstack.load()
    } else {
        let (low, high) = (
            new.ss_sp as usize,
            new.ss_sp as usize + new.ss_size as usize,
        );
        if !remember_guest_altstack(state, low, high) {
            return Continuation::Done(Errno::ENOMEM.to_syscall_result());
        }
        let new = stack_t {
            ss_flags: new.ss_flags & SS_AUTODISARM as i32,
            ..new
        };
        state.guest.altstack.store(&new);
        new
    };
    state.task.pending_altstack.store(&real);
    at.regs.rax = 0;
    Continuation::Stub {
        entry: addr::sud_reissue_set_altstack(),
        r11: state.task.pending_altstack.as_ptr() as u64,
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

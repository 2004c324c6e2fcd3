//! The signal path: a trapped syscall travels guest `syscall` -> kernel
//! (selector BLOCK) -> SIGSYS frame -> `sud_sigsys_entry` (asm) ->
//! [`dispatch`] -> the user's callback -> back through `sud_restorer`
//! (rt_sigreturn, in the allowed region) -> the guest after its `syscall`,
//! or a reissue or redirect stub first.

use super::outcome::{Settled, carry_out, leave_host_code};
use crate::callback::{Syscall, decide};
use crate::kernel::stack::RED_ZONE;
use crate::kernel::{Registers, SigInfo, UContext};
use crate::region::addr;
use crate::reissue::continuation::Interrupted;
use crate::reissue::sigstate::guest_sigreturn;
use crate::selector::HostScope;
use crate::signals::foreign_sigsys::forward;
use crate::thread::arena;
use crate::thread::pointers::enter_host;
use crate::thread::state::{ThreadState, redirect_stack_slot};
use core::sync::atomic::Ordering;
use linux_raw_sys::general::{__NR_arch_prctl, __NR_rt_sigreturn, SYS_USER_DISPATCH};

/// The Rust half of the SIGSYS entry: `sud_sigsys_entry` calls it with the
/// frame's siginfo and ucontext, and then jumps to `sud_restorer`.
///
/// # Safety
/// Only the kernel, through `sud_sigsys_entry`, calls it: `info` and `uc`
/// point into the live SIGSYS frame.
pub(crate) unsafe extern "C" fn dispatch(info: *mut SigInfo, uc: *mut UContext) {
    // SAFETY: the kernel built both in the frame, and nothing else refers to
    // them while the handler runs.
    let (info_ref, uc_ref) = unsafe { (&*info, &mut *uc) };
    let state = arena::current(uc_ref);
    if info_ref.si_code != SYS_USER_DISPATCH as i32 {
        // SAFETY: the live frame, as above.
        return unsafe { forward(state, info, uc) };
    }
    if uc_ref.uc_mcontext.regs.rax as u32 == __NR_rt_sigreturn {
        // A guest's own restorer, outside the region: run it natively with
        // the guest's RSP, where its frame lies.  No callback can do better.
        guest_sigreturn(state, &uc_ref.uc_mcontext.regs, &uc_ref.uc_stack);
        uc_ref.uc_mcontext.regs.rip = addr::sud_reissue_sigreturn() as u64;
        return;
    }
    crate::rewrite::on_trap(info_ref.si_call_addr as usize, uc_ref.uc_mcontext.regs.rax);
    if uc_ref.uc_mcontext.regs.rax as u32 == __NR_arch_prctl {
        state.pointers.guest_moved.store(true, Ordering::Relaxed);
    }
    // The callback gets a thread on which ordinary syscalls run, with the
    // host's thread pointers; the trap happened under BLOCK, and the guest
    // resumes under BLOCK, with its own.
    let guest_pointers = enter_host(state, true);
    let host_code = HostScope::enter(state.selector(), true);
    let (action, resume_allowed) = decide(Syscall::from_signal(uc_ref, info_ref, state));
    // SAFETY: the live frame, as above; the callback's view of it is gone.
    let UContext {
        uc_mcontext,
        uc_sigmask,
        uc_stack,
        ..
    } = unsafe { &mut *uc };
    let regs = &mut uc_mcontext.regs;
    let at = Interrupted {
        regs: &mut *regs,
        sigmask: uc_sigmask,
        altstack: uc_stack,
        blocked: true,
    };
    match carry_out(action, state, at) {
        Settled::AsRegistersSay => leave_host_code(host_code, action, resume_allowed),
        Settled::Redirect => {
            // The thread stays at ALLOW: the redirect function runs as host
            // code, and its stub puts BLOCK back before the guest resumes.
            redirect_after_sigreturn(state, regs);
            host_code.leave_allowed();
        }
    }
    guest_pointers.leave();
}

/// Sends the guest, after rt_sigreturn, to `sud_redirect` (on its own stack,
/// below the red zone) or `sud_redirect_on_stack` (on the thread's redirect
/// stack, unless the guest is already on it: a redirect interrupted by a
/// signal whose handler's syscall is redirected again).
fn redirect_after_sigreturn(state: &'static ThreadState, regs: &mut Registers) {
    regs.rcx = regs.rip;
    regs.r11 = state as *const ThreadState as u64;
    match state.redirect_stack() {
        Some((low, high)) if !(low..high).contains(&regs.rsp) => {
            let slot = redirect_stack_slot(high);
            // SAFETY: the redirect stack is the thread's, given for this
            // (Thread::set_redirect_stack), and not in use: the guest is not on it.
            unsafe { (slot as *mut u64).write(regs.rsp) };
            regs.rsp = slot;
            regs.rip = addr::sud_redirect_on_stack() as u64;
        }
        _ => {
            regs.rsp -= RED_ZONE as u64;
            regs.rip = addr::sud_redirect() as u64;
        }
    }
}

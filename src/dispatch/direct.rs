//! The direct paths: calls into Rust outside signal context, from
//! `asm/x86_64/direct.s`, with the guest's whole state kept.
//!
//! - `sud_entry`, the signal-free entry generated code calls in place of
//!   `syscall`: [`entry_dispatch`];
//! - `sud_redirect*`, where rt_sigreturn sends a syscall the callback
//!   redirected: [`redirect_run`].

use super::outcome::{Settled, carry_out, leave_host_code};
use crate::callback::{Action, Syscall, decide, redirect};
use crate::kernel::Registers;
use crate::kernel::stack::{disabled_stack, stack_t};
use crate::region::sud_call_on_stack;
use crate::reissue::continuation::Interrupted;
use crate::selector::{HostScope, Selector};
use crate::sys;
use crate::thread::arena;
use crate::thread::pointers::enter_host;
use crate::thread::state::ThreadState;
use core::ffi::c_void;
use core::sync::atomic::Ordering;
use linux_raw_sys::general::{
    __NR_arch_prctl, __NR_clone, __NR_clone3, __NR_rt_sigprocmask, __NR_rt_sigreturn,
};

/// The frame `sud_entry` and the redirect stubs build: the guest's
/// registers, then the thread's selector (entry) or state (redirect).
#[repr(C)]
pub(crate) struct DirectFrame {
    pub regs: Registers,
    pub word: u64,
}

/// Where `sud_entry` finds the address it goes on at when Rust is done:
/// this far below the caller's RSP, in the slot its `call` pushed the
/// return address into.
pub(crate) const ENTRY_CONTINUE_SLOT: u64 = 8;

/// Called by the redirect stubs with their frame: runs the redirect
/// function as ordinary code, then lets the guest resume under BLOCK with
/// RAX = its result and RCX, R11 as after a native syscall.
///
/// # Safety
/// Only `sud_redirect*` call it, with the frame they built: its word is the
/// live ThreadState the dispatcher gave them, and a redirect function is
/// installed (the dispatcher redirects only then).
pub(crate) unsafe extern "C" fn redirect_run(frame: &mut DirectFrame) {
    // SAFETY: the dispatcher passed a live ThreadState.
    let state: &'static ThreadState = unsafe { &*(frame.word as *const ThreadState) };
    let guest_pointers = enter_host(state, true);
    let result = run_redirect(&mut frame.regs, state);
    frame.regs.finish_syscall(result);
    guest_pointers.leave();
    // SAFETY: the guest resumes, as it was trapped, under BLOCK.
    unsafe { state.selector().block() };
}

/// Runs the redirect function on the syscall in `regs`.
fn run_redirect(regs: &mut Registers, state: &'static ThreadState) -> usize {
    // The callback answers Redirect only when one is installed (`decide`).
    let redirect = redirect().expect("a redirect function is installed");
    redirect(&mut Syscall::direct(regs, state))
}

/// What [`redirect_on_stack`] is given across the stack switch.
struct RedirectCall<'a> {
    regs: &'a mut Registers,
    state: &'static ThreadState,
    result: usize,
}

/// The redirect function, run on the redirect stack.
///
/// # Safety
/// `call` is a live [`RedirectCall`] that nothing else refers to.
unsafe extern "C" fn redirect_on_stack(call: *mut c_void) {
    // SAFETY: as the caller promises.
    let call = unsafe { &mut *call.cast::<RedirectCall<'_>>() };
    call.result = run_redirect(call.regs, call.state);
}

/// Runs the redirect function for a `sud_entry` call: on the thread's
/// redirect stack, as the signal path does (`sud_redirect_on_stack`),
/// unless the caller is on it already (a handler of a signal that
/// interrupted a redirect: it goes on below, on the same stack); on this
/// stack if the thread has none.
fn run_entry_redirect(regs: &mut Registers, state: &'static ThreadState) -> usize {
    match state.redirect_stack() {
        Some((low, high)) if !(low..high).contains(&regs.rsp) => {
            let mut call = RedirectCall {
                regs,
                state,
                result: 0,
            };
            // SAFETY: the redirect stack is the thread's, given for this
            // (Thread::set_redirect_stack), and not in use: the caller is
            // not on it.  `call` outlives the call.
            unsafe { sud_call_on_stack((&raw mut call).cast(), redirect_on_stack, high) };
            call.result
        }
        _ => run_redirect(regs, state),
    }
}

/// Called by `sud_entry` with its frame: the callback decides, as for a
/// trapped syscall, and `sud_entry` goes on at the address left
/// [`ENTRY_CONTINUE_SLOT`] below `frame.regs.rsp`: the return address, or the
/// stub that reissues.
///
/// # Safety
/// Only `sud_entry` calls it, with the frame it built: the word
/// [`ENTRY_CONTINUE_SLOT`] below `frame.regs.rsp` is its caller's
/// return-address slot.
pub(crate) unsafe extern "C" fn entry_dispatch(frame: &mut DirectFrame) {
    let state = arena::for_selector(frame.word as *const Selector);
    // SAFETY: as our caller promises.
    unsafe { dispatch_direct(frame, state, ENTRY_CONTINUE_SLOT) }
}

/// The callback decides on the syscall in `frame`, made by the thread of
/// `state`, and where to go on is left `continue_slot` bytes below the
/// guest's RSP: `sud_entry`'s and `sud_site_entry`'s shared Rust half.
///
/// # Safety
/// The word `continue_slot` below `frame.regs.rsp` is the entry's to write.
#[inline(always)]
pub(crate) unsafe fn dispatch_direct(
    frame: &mut DirectFrame,
    state: &'static ThreadState,
    continue_slot: u64,
) {
    // The process-wide state has no thread pointers to switch.
    if !state.is_global() && frame.regs.rax as u32 == __NR_arch_prctl {
        state.pointers.guest_moved.store(true, Ordering::Relaxed);
    }
    let guest_pointers = enter_host(state, true);
    let host_code = HostScope::enter_as_found(state.selector());
    let (action, resume_allowed) = decide(Syscall::direct(&mut frame.regs, state));
    let regs = &mut frame.regs;
    let return_address = regs.rip;
    let go_on_at = match action.answer() {
        Some(result) => {
            regs.finish_syscall(result);
            return_address
        }
        None => run_or_reissue(action, state, regs, host_code.resumes_blocked()),
    };
    // SAFETY: that word is the caller's return-address slot, ours until we return.
    unsafe { ((regs.rsp - continue_slot) as *mut u64).write(go_on_at) };
    leave_host_code(host_code, action, resume_allowed);
    guest_pointers.leave();
}

/// A syscall the callback wants run: reissued (the stub to go on at, the
/// guest's return address left in RIP, where the stub finds it in RCX) or
/// redirected (the function runs now; the return address).  Out of line:
/// the answers' path stays short.
#[inline(never)]
fn run_or_reissue(
    action: Action,
    state: &'static ThreadState,
    regs: &mut Registers,
    blocked: bool,
) -> u64 {
    let return_address = regs.rip;
    // The mask and alternate stack a reissue may consult or change, asked
    // of the kernel only for the syscalls that need them.
    let nr = regs.rax as u32;
    let reissue = action == Action::Reissue;
    let mut sigmask = if reissue && matches!(nr, __NR_rt_sigprocmask | __NR_clone | __NR_clone3) {
        sys::thread_mask()
    } else {
        0
    };
    let altstack: stack_t = if reissue && nr == __NR_rt_sigreturn {
        sys::sigaltstack(None).unwrap_or(disabled_stack())
    } else {
        disabled_stack()
    };
    let mask_before = sigmask;
    let at = Interrupted {
        regs: &mut *regs,
        sigmask: &mut sigmask,
        altstack: &altstack,
        blocked,
    };
    match carry_out(action, state, at) {
        Settled::Redirect => {
            let result = run_entry_redirect(regs, state);
            // sud_entry returns to its caller, whatever the function did to RIP.
            regs.rip = return_address;
            regs.finish_syscall(result);
            return_address
        }
        Settled::AsRegistersSay => {
            if sigmask != mask_before {
                sys::set_thread_mask(sigmask);
            }
            // The stub the continuation chose, with the guest's return
            // address in RIP, where the stub finds it (in RCX) either way.
            let stub = regs.rip;
            regs.rip = return_address;
            stub
        }
    }
}

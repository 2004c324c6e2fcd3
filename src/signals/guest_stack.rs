//! Guest handlers on the guest's own alternate stack, which is virtual
//! (`reissue::altstack`): the kernel delivers every signal on sud's stack,
//! and sud runs an SA_ONSTACK guest handler where the kernel would have:
//! at the top of the guest's stack, or below the interrupted RSP when that
//! is on it already.  Only copies of the siginfo and ucontext go there (the
//! ucontext's `fpstate` still points into sud's frame), so whatever fits
//! the guest's stack natively fits under sud; the handler's changes to the
//! ucontext are copied back into the real frame.
//!
//! Meanwhile the frames of the signals the handler takes (its own trapped
//! syscalls first) must not land on sud's live frames: sud's stack carries
//! SS_AUTODISARM, so sud may move it while it runs on it, and moves it to
//! where nothing lives for the handler's time: the other half of sud's
//! stack for an outermost handler (a frame whose interrupted code ran on
//! neither sud's stack nor a guest stack sud runs a handler on), else
//! what lies below the current frames of the half sud runs on.

use crate::kernel::sigaction::KernelSigaction;
use crate::kernel::stack::{RED_ZONE, is_on, stack_t};
use crate::kernel::{SigInfo, UContext};
use crate::region::sud_call_on_stack;
use crate::reissue::altstack::{deliver, on_guest_altstack, restore};
use crate::sys;
use crate::thread::state::ThreadState;
use core::ffi::c_void;
use core::mem::size_of;
use linux_raw_sys::general::{SA_ONSTACK, SS_AUTODISARM, SS_ONSTACK};

/// A handler with SA_SIGINFO's signature (one without SA_SIGINFO ignores
/// the last two arguments).
type SigInfoHandler = unsafe extern "C" fn(i32, *mut SigInfo, *mut UContext);

/// Calls an application's signal handler, as the kernel would.
///
/// # Safety
/// `handler` is a signal handler; the pointers are the live frame's.
pub(crate) unsafe fn call_handler(
    handler: usize,
    signal: i32,
    info: *mut SigInfo,
    uc: *mut UContext,
) {
    // SAFETY: with SA_SIGINFO the handler takes all three arguments; without
    // it takes one, and ignores the registers holding the other two, which
    // is how the kernel calls it too.
    unsafe {
        let f: SigInfoHandler = core::mem::transmute(handler);
        f(signal, info, uc);
    }
}

/// What sud's code may still use below its RSP when it moves its stack:
/// the calls that move it and come back, the kernel's frames go below this.
const SUD_STACK_MARGIN: u64 = 4096;
/// The least room sud moves its stack to: a few frames and a callback.
const MIN_SUD_STACK: u64 = 16 * 1024;

/// Runs the guest's handler for `signal` as the kernel would have entered
/// it with the guest's virtual alternate stack, `uc_stack` the guest's, and
/// applies what it left in `uc_stack` on return, as rt_sigreturn does.
///
/// # Safety
/// `action.handler` is the guest's handler; `info` and `uc` the live frame's.
pub(crate) unsafe fn call_guest_handler(
    state: &ThreadState,
    action: &KernelSigaction,
    signal: i32,
    info: *mut SigInfo,
    uc: *mut UContext,
) {
    if state.is_global() {
        // A thread sud does not manage: its sigaltstack is its own.
        // SAFETY: as the caller's.
        return unsafe { call_handler(action.handler, signal, info, uc) };
    }
    // SAFETY: the live frame.
    let rsp = state.guest_rsp(unsafe { (*uc).uc_mcontext.regs.rsp });
    let guest = deliver(state);
    let running_on = state.guest.running_on.load();
    let onstack = action.flags & SA_ONSTACK as u64 != 0;
    // Where the kernel would have built the frame: the guest's stack's top,
    // below the interrupted RSP on it, or elsewhere (sud's stack will do).
    let (top, fresh) = if onstack && guest.ss_size != 0 && !on_guest_altstack(&guest, rsp) {
        (Some(guest.ss_sp as u64 + guest.ss_size), true)
    } else if is_on(&running_on, rsp) || (guest.ss_size != 0 && is_on(&guest, rsp)) {
        (Some(rsp - RED_ZONE as u64), false)
    } else {
        (None, false)
    };
    let ours = state.task.altstack.load();
    let outermost = !is_on(&ours, rsp) && !is_on(&running_on, rsp);
    if fresh {
        state.guest.running_on.store(&guest);
    }
    // SAFETY: as the caller's.
    let wanted = top.and_then(|top| unsafe {
        on_guest_stack(action, signal, info, uc, &guest, top, &ours, outermost)
    });
    if fresh {
        state.guest.running_on.store(&running_on);
    }
    let wanted = wanted.unwrap_or_else(|| {
        // SAFETY: the live frame, which keeps sud's stack in `uc_stack`.
        unsafe {
            let sud_stack = core::mem::replace(&mut (*uc).uc_stack, guest);
            call_handler(action.handler, signal, info, uc);
            core::mem::replace(&mut (*uc).uc_stack, sud_stack)
        }
    });
    // SAFETY: the live frame.
    restore(
        state,
        &wanted,
        state.guest_rsp(unsafe { (*uc).uc_mcontext.regs.rsp }),
    );
}

/// What `run_on_guest_stack` is given across the stack switch.
struct GuestCall {
    handler: usize,
    signal: i32,
    info: *mut SigInfo,
    uc: *mut UContext,
}

/// Runs on the guest's stack: the handler, given the copies.
///
/// # Safety
/// Only `on_guest_stack` calls it, with a live `GuestCall`.
unsafe extern "C" fn run_on_guest_stack(arg: *mut c_void) {
    // SAFETY: `on_guest_stack`'s GuestCall, live across the call.
    let call = unsafe { &*(arg as *const GuestCall) };
    // SAFETY: the guest's handler, given copies of the frame.
    unsafe { call_handler(call.handler, call.signal, call.info, call.uc) };
}

/// Runs the handler below `top` on the guest's stack with copies of the
/// frame, `uc_stack` the guest's `guest`, sud's stack `ours` moved out of
/// the way meanwhile; copies back what the handler changed but `uc_stack`,
/// and gives that.  None if sud's stack has no room to move to: nothing ran.
///
/// # Safety
/// As [`call_guest_handler`]; `top` lies on the guest's stack.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn on_guest_stack(
    action: &KernelSigaction,
    signal: i32,
    info: *mut SigInfo,
    uc: *mut UContext,
    guest: &stack_t,
    top: u64,
    ours: &stack_t,
    outermost: bool,
) -> Option<stack_t> {
    let here: u64;
    // SAFETY: reads RSP: below it, nothing of this thread's is live.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) here, options(nomem, nostack, preserves_flags))
    };
    let free = free_part(ours, here, outermost)?;
    // Laid out as the kernel's rt_sigframe (the ucontext, then the
    // siginfo): a handler that writes a libc-sized `uc_sigmask` overruns
    // into the siginfo, as natively.
    let uc_at = (top - (size_of::<UContext>() + size_of::<SigInfo>()) as u64) & !15;
    let info_at = uc_at + size_of::<UContext>() as u64;
    // SAFETY: the live frame, copied below `top` on the guest's stack,
    // where the kernel would have built the frame; a guest stack that is
    // not writable faults here, as the kernel's frame would.
    unsafe {
        let mut copy = *uc;
        copy.uc_stack = *guest;
        (uc_at as *mut UContext).write(copy);
        (info_at as *mut SigInfo).write(*info);
    }
    let previous = sys::sigaltstack(Some(&free)).ok()?;
    let mut call = GuestCall {
        handler: action.handler,
        signal,
        info: info_at as *mut SigInfo,
        uc: uc_at as *mut UContext,
    };
    // SAFETY: below the copies, the guest's stack is free (the kernel's
    // frame would have gone there); `call` outlives the call.
    unsafe { sud_call_on_stack((&raw mut call).cast(), run_on_guest_stack, uc_at) };
    let _ = sys::sigaltstack(Some(&stack_t {
        ss_flags: previous.ss_flags & !(SS_ONSTACK as i32),
        ..previous
    }));
    // SAFETY: the copy the handler had, and the live frame: its registers
    // and mask are the handler's, its fpstate (which the copy points at)
    // and alternate stack sud's.
    unsafe {
        let back = (uc_at as *const UContext).read();
        let fpstate = (*uc).uc_mcontext.fpstate;
        (*uc).uc_mcontext = back.uc_mcontext;
        (*uc).uc_mcontext.fpstate = fpstate;
        (*uc).uc_sigmask = back.uc_sigmask;
        if outermost {
            // Nothing of sud's outlives this frame: its rt_sigreturn puts
            // sud's whole stack back, however it was moved before.
            (*uc).uc_stack = *ours;
        }
        Some(back.uc_stack)
    }
}

/// Where in sud's stack `ours` nothing lives while sud, at `here`, runs a
/// handler on the guest's stack: for an outermost frame, the half it is
/// not in; else the part of its half below it.
fn free_part(ours: &stack_t, here: u64, outermost: bool) -> Option<stack_t> {
    let low = ours.ss_sp as u64;
    let high = low + ours.ss_size;
    let mid = (low + ours.ss_size / 2) & !15;
    let (from, to) = match (outermost, here >= mid) {
        (true, true) => (low, mid),
        (true, false) => (mid, high),
        (false, true) => (mid, here.saturating_sub(SUD_STACK_MARGIN) & !15),
        (false, false) => (low, here.saturating_sub(SUD_STACK_MARGIN) & !15),
    };
    (to > from && to - from >= MIN_SUD_STACK).then_some(stack_t {
        ss_sp: from as *mut c_void,
        ss_flags: SS_AUTODISARM as i32,
        ss_size: to - from,
    })
}

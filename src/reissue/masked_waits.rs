//! The syscalls that wait under a signal mask of their own (rt_sigsuspend,
//! ppoll, pselect6, epoll_pwait(2), io_pgetevents, io_uring_enter): a mask
//! that holds SIGSYS would block it while they wait, so they run from a stub
//! that gives the kernel a copy without it, on the stub's own stack, and the
//! guest its own pointer back.

use super::continuation::Continuation;
use crate::kernel::Registers;
use crate::kernel::sigaction::{SIGSET_SIZE, SIGSYS_BIT};
use crate::region::addr;
use crate::sys::guest_memory;
use core::mem::{offset_of, size_of};
use linux_raw_sys::io_uring::{
    IORING_ENTER_EXT_ARG, IORING_ENTER_EXT_ARG_REG, IORING_ENTER_GETEVENTS, io_uring_getevents_arg,
};

/// An argument register.
#[derive(Clone, Copy)]
pub(crate) enum Arg {
    Rdi,
    R10,
    R8,
}

/// The mask at `pointer`, if it holds SIGSYS; `None` for a null or
/// unreadable pointer (the kernel's to refuse, with EFAULT) or a mask
/// without SIGSYS (nothing to change).
fn mask_holding_sigsys(pointer: u64) -> Option<u64> {
    let mask = guest_memory::read::<u64>(pointer as usize).ok()?;
    (pointer != 0 && mask & SIGSYS_BIT != 0).then_some(mask)
}

/// A syscall taking a signal mask through the pointer in `arg`: if the mask
/// holds SIGSYS, the syscall runs from `sud_reissue_mask_*` with a copy
/// without it on the stub's own stack, and the register as the guest left it.
pub(crate) fn sanitise_mask(regs: &Registers, arg: Arg) -> Continuation {
    let (pointer, entry) = match arg {
        Arg::Rdi => (regs.rdi, addr::sud_reissue_mask_rdi()),
        Arg::R10 => (regs.r10, addr::sud_reissue_mask_r10()),
        Arg::R8 => (regs.r8, addr::sud_reissue_mask_r8()),
    };
    match mask_holding_sigsys(pointer) {
        Some(mask) => Continuation::Stub {
            entry,
            r11: mask & !SIGSYS_BIT,
        },
        None => Continuation::Plain,
    }
}

/// pselect6 and io_pgetevents: their sixth argument points to a (mask
/// pointer, size) pair.  A size other than the kernel's sigset is for the
/// kernel to refuse (EINVAL), as it is.
pub(crate) fn sanitise_mask_pair(regs: &Registers) -> Continuation {
    let Ok([mask_pointer, size]) = guest_memory::read::<[u64; 2]>(regs.r9 as usize) else {
        return Continuation::Plain;
    };
    match mask_holding_sigsys(mask_pointer) {
        Some(mask) if regs.r9 != 0 && size == SIGSET_SIZE as u64 => Continuation::Stub {
            entry: addr::sud_reissue_mask_pair(),
            r11: mask & !SIGSYS_BIT,
        },
        _ => Continuation::Plain,
    }
}

/// io_uring_enter(fd, to_submit, min_complete, flags, argp, argsz): while it
/// waits for completions it applies a mask, given by `argp` (with
/// IORING_ENTER_GETEVENTS): the mask itself, or with IORING_ENTER_EXT_ARG a
/// `struct io_uring_getevents_arg` whose first field points to it.
pub(crate) fn sanitise_io_uring_enter(regs: &Registers) -> Continuation {
    let flags = regs.r10 as u32;
    // Without GETEVENTS it does not wait; with EXT_ARG_REG, argp is an
    // offset into a registered region, which keeps no mask.
    if flags & IORING_ENTER_GETEVENTS == 0 || flags & IORING_ENTER_EXT_ARG_REG != 0 {
        return Continuation::Plain;
    }
    if flags & IORING_ENTER_EXT_ARG == 0 {
        return sanitise_mask(regs, Arg::R8);
    }
    // Any other size the kernel refuses (EINVAL), as it is.
    if regs.r9 != size_of::<io_uring_getevents_arg>() as u64 {
        return Continuation::Plain;
    }
    let Ok(arg) = guest_memory::read::<io_uring_getevents_arg>(regs.r8 as usize) else {
        return Continuation::Plain;
    };
    match mask_holding_sigsys(arg.sigmask) {
        Some(mask) if regs.r8 != 0 => Continuation::Stub {
            entry: addr::sud_reissue_mask_uring_arg(),
            r11: mask & !SIGSYS_BIT,
        },
        _ => Continuation::Plain,
    }
}

// `sud_reissue_mask_uring_arg` copies the struct as three quadwords, the
// first of them `sigmask`.
static_assertions::const_assert_eq!(offset_of!(io_uring_getevents_arg, sigmask), 0);
static_assertions::const_assert_eq!(
    offset_of!(io_uring_getevents_arg, sigmask_sz) + 8,
    offset_of!(io_uring_getevents_arg, ts)
);
static_assertions::const_assert_eq!(size_of::<io_uring_getevents_arg>(), 3 * 8);

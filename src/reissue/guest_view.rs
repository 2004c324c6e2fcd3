//! A seccomp trap (`SECCOMP_RET_TRAP`) of a syscall that a stub reissues
//! for the guest: the kernel reports it at the stub, in the allowed region,
//! with the stub's RSP and the registers the stub substituted, where natively
//! it would have reported it at the guest's own `syscall`.  [`guest_view`]
//! turns the signal frame into the one the guest would have had, before any
//! handler sees it; rt_sigreturn then resumes the guest itself, past the
//! stub, with whatever the handler left in the frame.  What the stub had
//! left to do after its syscall (give the guest back its registers, RSP and
//! mask, and jump to its return address) is exactly that view.
//!
//! A stub is recognised by the address after its guest syscall, each named
//! here as an offset from the stub's entry (and checked by a test), and its
//! frame there is read by the offsets named here, which the stubs' asm takes
//! too.

use super::tasks::{VforkParent, clone_never_ran};
use crate::kernel::stack::RED_ZONE;
use crate::kernel::{Registers, SigInfo, UContext};
use crate::region::addr;
use crate::thread::state::ThreadState;
use core::sync::atomic::Ordering;
use linux_raw_sys::general::SYS_SECCOMP;

/// Where each stub's guest syscall ends, from the stub's entry: the address
/// a trap of it is reported at (the test below checks each against the
/// code; the assembler cannot, as it does not know them in every pass).
pub(crate) const REISSUE_END: usize = 8;
pub(crate) const MASK_RDI_END: usize = 14;
pub(crate) const MASK_R10_END: usize = 15;
pub(crate) const MASK_R8_END: usize = 15;
pub(crate) const PAIR_END: usize = 22;
pub(crate) const URING_END: usize = 28;
pub(crate) const FORK_END: usize = 89;
pub(crate) const VFORK_END: usize = 66;
pub(crate) const THREAD_END: usize = 71;

/// Where the guest's return address lies above the stub's RSP at its guest
/// syscall, in the mask stubs (`sud_reissue_mask_REG`, `_pair`,
/// `_uring_arg`); the guest's own value of the register the stub pointed at
/// its copy lies just below it.  (In `sud_reissue`: at RSP.)
pub(crate) const MASK_RETURN: usize = 16;
pub(crate) const PAIR_RETURN: usize = 32;
pub(crate) const URING_RETURN: usize = 40;

/// The task stubs' frame at the guest's syscall: the guest's signal mask
/// at RSP, the state the child is armed from `TASK_STATE` above it, the
/// return address `TASK_RETURN` above it.
pub(crate) const TASK_STATE: usize = 8;
pub(crate) const TASK_RETURN: usize = 16;

/// The register a mask stub points at its copy, in the frame.
type Substituted = fn(&mut Registers) -> &mut u64;

/// What a stub keeps at its guest syscall, beyond the return address.
#[derive(Clone, Copy)]
enum Stub {
    /// `sud_reissue`: nothing.
    Plain,
    /// The mask stubs: the guest's own value of one register.
    Mask(Substituted, usize),
    /// `sud_reissue_fork`: the guest's mask.
    Fork,
    /// `sud_reissue_vfork`: the guest's mask, and its RBX in the vfork
    /// table's entry, whose address RBX holds.
    Vfork,
    /// `sud_reissue_thread`: the guest's mask, and the state prepared for a
    /// thread that now never exists.
    Thread,
}

/// Where each stub's guest syscall ends, and the stub.
fn stubs() -> [(usize, Stub); 9] {
    [
        (addr::sud_reissue() + REISSUE_END, Stub::Plain),
        (
            addr::sud_reissue_mask_rdi() + MASK_RDI_END,
            Stub::Mask(|regs| &mut regs.rdi, MASK_RETURN),
        ),
        (
            addr::sud_reissue_mask_r10() + MASK_R10_END,
            Stub::Mask(|regs| &mut regs.r10, MASK_RETURN),
        ),
        (
            addr::sud_reissue_mask_r8() + MASK_R8_END,
            Stub::Mask(|regs| &mut regs.r8, MASK_RETURN),
        ),
        (
            addr::sud_reissue_mask_pair() + PAIR_END,
            Stub::Mask(|regs| &mut regs.r9, PAIR_RETURN),
        ),
        (
            addr::sud_reissue_mask_uring_arg() + URING_END,
            Stub::Mask(|regs| &mut regs.r8, URING_RETURN),
        ),
        (addr::sud_reissue_fork() + FORK_END, Stub::Fork),
        (addr::sud_reissue_vfork() + VFORK_END, Stub::Vfork),
        (addr::sud_reissue_thread() + THREAD_END, Stub::Thread),
    ]
}

/// The stub whose guest syscall ends at `rip`, if one does.
fn stub_ending_at(rip: u64) -> Option<Stub> {
    let rip = usize::try_from(rip).ok()?;
    stubs()
        .into_iter()
        .find(|(end, _)| *end == rip)
        .map(|(_, stub)| stub)
}

/// If `info` is a seccomp trap of a syscall that a stub was reissuing, turns
/// the frame into the guest's own at its `syscall`: RIP, RCX and
/// `si_call_addr` its return address, RSP its own, every register and the
/// signal mask its own.  The syscall never ran, so resuming the guest there
/// is all that was left of the stub's work (a vfork's table entry, a new
/// thread's state are given back here).
///
/// # Safety
/// `info` and `uc` are the live frame of a SIGSYS that interrupted this thread.
pub(crate) unsafe fn guest_view(info: &mut SigInfo, uc: &mut UContext) {
    // Only a trap says that the syscall did not run: a SIGSYS sent by a
    // process may come after a fork whose child has yet to be armed.
    if info.si_code != SYS_SECCOMP as i32 {
        return;
    }
    let regs = &mut uc.uc_mcontext.regs;
    let Some(stub) = stub_ending_at(regs.rip) else {
        return;
    };
    let sp = regs.rsp as usize;
    // SAFETY: the stub's frame, on this thread's stack above the signal
    // frame, laid out as the offsets above say.
    let word = |offset: usize| unsafe { ((sp + offset) as *const u64).read() };
    let return_slot = match stub {
        Stub::Plain => 0,
        Stub::Mask(register, return_slot) => {
            *register(regs) = word(return_slot - 8);
            return_slot
        }
        Stub::Fork => {
            uc.uc_sigmask = word(0);
            // The fork did not run: it is no longer on its way.
            crate::sys::code::FORKS_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
            TASK_RETURN
        }
        Stub::Vfork => {
            // SAFETY: the stub holds its entry of VFORK_PARENTS in RBX.
            let entry = unsafe { &*(regs.rbx as *const VforkParent) };
            regs.rbx = entry.rbx.load(Ordering::Relaxed);
            uc.uc_sigmask = entry.mask.load(Ordering::Relaxed);
            entry.tid.store(0, Ordering::Release);
            TASK_RETURN
        }
        Stub::Thread => {
            uc.uc_sigmask = word(0);
            // SAFETY: the stub keeps the new thread's state there.
            clone_never_ran(unsafe { &*(word(TASK_STATE) as *const ThreadState) });
            TASK_RETURN
        }
    };
    let resume = word(return_slot);
    regs.rip = resume;
    regs.rcx = resume;
    regs.rsp = (sp + return_slot + 8 + RED_ZONE) as u64;
    info.si_call_addr = resume;
}

#[cfg(test)]
mod tests {
    /// Each `*_END` follows a `syscall` instruction in its stub.
    #[test]
    fn each_end_follows_a_syscall() {
        for (end, _) in super::stubs() {
            // SAFETY: the two bytes before `end` lie inside a stub's code,
            // which is mapped readable.
            let bytes = unsafe { *((end - 2) as *const [u8; 2]) };
            assert_eq!(bytes, [0x0f, 0x05], "no syscall ends at {end:#x}");
        }
    }
}

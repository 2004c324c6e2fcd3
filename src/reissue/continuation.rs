//! What a reissue works on and what it comes to: the state a trapped
//! syscall interrupted, and how the guest goes on.

use crate::kernel::Registers;
use crate::kernel::stack::stack_t;
use crate::region::addr;

/// What a trapped syscall interrupted: the guest's registers, the signal
/// mask the thread resumes with, the alternate stack in use, and whether
/// the guest made the syscall under BLOCK.
pub(crate) struct Interrupted<'a> {
    pub regs: &'a mut Registers,
    pub sigmask: &'a mut u64,
    pub altstack: &'a stack_t,
    pub blocked: bool,
}

/// How a reissued syscall is carried out.
pub(crate) enum Continuation {
    /// From `sud_reissue`, as it is.
    Plain,
    /// From another stub, which takes a parameter in R11.
    Stub { entry: usize, r11: u64 },
    /// Already done by the runtime: this is its result.
    Done(usize),
}

impl Continuation {
    /// Turns the saved registers into a jump to the stub that runs the
    /// syscall, with RCX = the guest's return address (where a native
    /// syscall leaves RCX pointing too), or into the guest's return with the
    /// result.  Nothing is written to the guest's stack here: below its red
    /// zone may lie this very signal frame.
    pub fn apply(self, regs: &mut Registers) {
        match self {
            Continuation::Plain => {
                regs.rcx = regs.rip;
                regs.rip = addr::sud_reissue() as u64;
            }
            Continuation::Stub { entry, r11 } => {
                regs.rcx = regs.rip;
                regs.r11 = r11;
                regs.rip = entry as u64;
            }
            // As a native syscall leaves them (the SIGSYS frame has RCX and
            // R11 so already; sud_entry's caller does not).
            Continuation::Done(result) => regs.finish_syscall(result),
        }
    }
}

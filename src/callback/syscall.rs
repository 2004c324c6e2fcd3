//! What the user's callback sees of a trapped syscall ([`Syscall`]) and
//! what it decides ([`Action`]).

use crate::error::Errno;
use crate::kernel::{Registers, SigInfo, UContext};
use crate::selector::Selector;
use crate::thread::state::ThreadState;
use core::marker::PhantomData;
use core::ptr::{null, null_mut};
use core::sync::atomic::Ordering;

/// The user's decision for one trapped syscall.  Called in signal context with
/// every signal blocked and the thread's selector at ALLOW (so the callback
/// may make ordinary syscalls), or, through `sud_entry`, as an ordinary call;
/// the selector is BLOCK again when the guest resumes.  It must not unwind.
pub type Handler = fn(&mut Syscall<'_>) -> Action;

/// A function that carries out a trapped syscall as ordinary code, outside
/// signal context ([`Action::Redirect`]), and returns its result.
pub type Redirect = fn(&mut Syscall<'_>) -> usize;

/// What happens to a trapped syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// The syscall does not run: the guest resumes after its `syscall` with
    /// RAX = this value (a negative errno included, as the kernel would
    /// return it) and every other register as the callback left it.
    Emulate(usize),
    /// The syscall runs natively, with the registers as the callback left
    /// them, outside signal context: after rt_sigreturn, from a stub in the
    /// allowed region, under the guest's signal mask.  It can block, fail with
    /// EINTR or be restarted by SA_RESTART as a native call.  The guest then
    /// resumes with RAX = the result, RCX = its return address, R11 = its
    /// RFLAGS, and nothing else changed; no byte of its red zone is written.
    Reissue,
    /// The syscall does not run: the guest sees `-errno`.
    Deny(Errno),
    /// The function given to [`install_redirect`](crate::install_redirect)
    /// carries the syscall out as ordinary code, after rt_sigreturn (or
    /// inside `sud_entry`, with no signal): on the guest's stack below its
    /// red zone, or on the thread's redirect stack
    /// ([`Thread::set_redirect_stack`](crate::Thread::set_redirect_stack)).
    /// It may block, take locks, allocate and be interrupted by signals; the
    /// thread's selector says ALLOW while it runs.  Its return value is the
    /// syscall's result: the guest resumes with RAX = that, RCX = its return
    /// address, R11 = its RFLAGS, and every other register, RFLAGS and all
    /// x87, SSE, AVX and AVX-512 state as they were.  Without a redirect
    /// function installed this is `Deny(ENOSYS)`.
    Redirect,
}

impl Action {
    /// The guest's result where the callback answered the syscall itself
    /// (Emulate, Deny); `None` where it is to run (Reissue, Redirect).
    #[inline(always)]
    pub(crate) fn answer(self) -> Option<usize> {
        match self {
            Action::Emulate(value) => Some(value),
            Action::Deny(errno) => Some(errno.to_syscall_result()),
            Action::Reissue | Action::Redirect => None,
        }
    }
}

impl Default for Action {
    /// `Deny(ENOSYS)`: what the kernel answers for a syscall it does not have.
    fn default() -> Action {
        Action::Deny(Errno::ENOSYS)
    }
}

/// A trapped syscall: what the guest asked for, and its saved registers.
pub struct Syscall<'a> {
    regs: *mut Registers,
    /// The signal frame, for a syscall trapped by the kernel; null for one
    /// made through `sud_entry` or carried out by a redirect function.
    uc: *mut UContext,
    info: *const SigInfo,
    call_addr: usize,
    state: &'static ThreadState,
    pub(crate) resume_allowed: bool,
    _frame: PhantomData<&'a mut Registers>,
}

impl<'a> Syscall<'a> {
    /// The view of a syscall the kernel trapped, from its signal frame.
    #[inline]
    pub(crate) fn from_signal(
        uc: &'a mut UContext,
        info: &'a SigInfo,
        state: &'static ThreadState,
    ) -> Self {
        Syscall {
            regs: &mut uc.uc_mcontext.regs,
            call_addr: info.si_call_addr as usize,
            uc,
            info,
            state,
            resume_allowed: false,
            _frame: PhantomData,
        }
    }

    /// The view of a syscall made through `sud_entry`, or carried out by a
    /// redirect function: its registers, no signal frame.
    #[inline]
    pub(crate) fn direct(regs: &'a mut Registers, state: &'static ThreadState) -> Self {
        Syscall {
            call_addr: regs.rip as usize,
            regs,
            uc: null_mut(),
            info: null(),
            state,
            resume_allowed: false,
            _frame: PhantomData,
        }
    }
}

impl Syscall<'_> {
    /// The syscall number: the low 32 bits of RAX, all the kernel looks at.
    #[inline]
    pub fn number(&self) -> u32 {
        self.regs().rax as u32
    }

    /// The six arguments: RDI, RSI, RDX, R10, R8, R9.
    #[inline]
    pub fn args(&self) -> [usize; 6] {
        let r = self.regs();
        [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9].map(|v| v as usize)
    }

    /// The address after the guest's `syscall` instruction (or its `call
    /// sud_entry`), where it resumes.
    #[inline]
    pub fn call_addr(&self) -> usize {
        self.call_addr
    }

    /// The guest's saved registers.
    #[inline]
    pub fn regs(&self) -> &Registers {
        // SAFETY: points into the frame this view borrows.
        unsafe { &*self.regs }
    }

    /// The guest's saved registers, to change: the guest resumes (or the
    /// reissued syscall runs) with whatever is here when the callback returns.
    #[inline]
    pub fn regs_mut(&mut self) -> &mut Registers {
        // SAFETY: as above, borrowed mutably through self.
        unsafe { &mut *self.regs }
    }

    /// The SIGSYS siginfo the kernel delivered (`si_code` SYS_USER_DISPATCH,
    /// `si_errno` 0, `si_call_addr`, `si_syscall`, `si_arch`); `None` for a
    /// syscall made through `sud_entry` or in a redirect function.
    #[inline]
    pub fn siginfo(&self) -> Option<&SigInfo> {
        // SAFETY: null or the live frame's siginfo.
        unsafe { self.info.as_ref() }
    }

    /// The whole signal frame's context: registers, the thread's real
    /// signal mask (`uc_sigmask`), its extended state (`uc_mcontext.fpstate`);
    /// `None` outside signal context.
    #[inline]
    pub fn ucontext(&mut self) -> Option<&mut UContext> {
        // SAFETY: null or the live frame's ucontext, borrowed through self.
        unsafe { self.uc.as_mut() }
    }

    /// The trapped thread's selector: its own for a [`Thread`](crate::Thread)
    /// or a thread the guest created, else the global `sud_selector`.
    #[inline]
    pub fn selector(&self) -> &Selector {
        self.state.selector()
    }

    /// The pointer given to [`Thread::set_data`](crate::Thread::set_data)
    /// for the trapped thread (inherited by the threads its guest creates);
    /// null if none.
    #[inline]
    pub fn thread_data(&self) -> *mut () {
        self.state.host.data.load(Ordering::Relaxed)
    }

    /// Resume with the selector at ALLOW rather than BLOCK: for a guest whose
    /// syscall hands control back to the host, or a thread armed (through
    /// [`set_syscall_user_dispatch`](crate::set_syscall_user_dispatch)) with a
    /// range that does not exempt the allowed region, whose restorer must then
    /// run under ALLOW.  Not combinable with [`Action::Reissue`], whose stub
    /// returns to the guest directly.
    #[inline]
    pub fn resume_allowed(&mut self) {
        self.resume_allowed = true;
    }
}

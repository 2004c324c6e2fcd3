//! The SIGSYS path: the handler sud installs, the dispatcher the asm entry
//! calls, and the callback's view of a trapped syscall and its answer.
//!
//! A trapped syscall travels: guest `syscall` -> kernel (selector BLOCK) ->
//! SIGSYS frame -> `sud_sigsys_entry` (asm) -> [`dispatch`] -> the user's
//! [`Handler`] -> back through `sud_restorer` (rt_sigreturn, in the allowed
//! region) -> the guest after its `syscall`, or `sud_reissue` first.

use crate::arm::SELECTOR;
use crate::asm::addr;
use crate::error::{Errno, Error};
use crate::kernel::{
    KernelSigaction, Registers, SIG_DFL, SIG_IGN, SIGSET_SIZE, SigInfo, UContext,
    sigmask,
};
use crate::syscalls::host;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use linux_raw_sys::general::{
    __NR_getpid, __NR_gettid, __NR_rt_sigaction, __NR_rt_sigreturn, __NR_rt_tgsigqueueinfo,
    SA_ONSTACK, SA_RESETHAND, SA_RESTORER, SA_SIGINFO, SIGSYS, SYS_USER_DISPATCH,
};

/// The user's decision for one trapped syscall.  Called in signal context with
/// every signal blocked and the thread's selector at ALLOW (so the callback
/// may make ordinary syscalls); the selector is BLOCK again when the guest
/// resumes.
pub type Handler = fn(&mut Syscall<'_>) -> Action;

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
}

impl Default for Action {
    /// `Deny(ENOSYS)`: what the kernel answers for a syscall it does not have.
    fn default() -> Action {
        Action::Deny(Errno::ENOSYS)
    }
}

/// A trapped syscall: what the guest asked for, and its saved registers.
pub struct Syscall<'a> {
    frame: &'a mut UContext,
    info: &'a SigInfo,
    resume_allowed: bool,
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

    /// The address after the guest's `syscall` instruction, where it resumes.
    #[inline]
    pub fn call_addr(&self) -> usize {
        self.info.si_call_addr as usize
    }

    /// The SIGSYS siginfo the kernel delivered (`si_code` SYS_USER_DISPATCH,
    /// `si_errno` 0, `si_call_addr`, `si_syscall`, `si_arch`).
    #[inline]
    pub fn siginfo(&self) -> &SigInfo {
        self.info
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

    /// The guest's saved registers.
    #[inline]
    pub fn regs(&self) -> &Registers {
        &self.frame.uc_mcontext.regs
    }

    /// The guest's saved registers, to change: the guest resumes (or the
    /// reissued syscall runs) with whatever is here when the callback returns.
    #[inline]
    pub fn regs_mut(&mut self) -> &mut Registers {
        &mut self.frame.uc_mcontext.regs
    }

    /// The whole signal frame's context: registers, the guest's signal mask
    /// (`uc_sigmask`), its extended state (`uc_mcontext.fpstate`).
    #[inline]
    pub fn ucontext(&mut self) -> &mut UContext {
        self.frame
    }
}

/// The user's callback, as an address (0: none installed).
static HANDLER: AtomicUsize = AtomicUsize::new(0);

/// The SIGSYS disposition that [`install`] replaced, kept for the SIGSYS
/// that do not come from dispatch and for [`uninstall`].
static PREVIOUS: SavedAction = SavedAction {
    handler: AtomicUsize::new(SIG_DFL),
    flags: AtomicU64::new(0),
    restorer: AtomicUsize::new(0),
    mask: AtomicU64::new(0),
};

struct SavedAction {
    handler: AtomicUsize,
    flags: AtomicU64,
    restorer: AtomicUsize,
    mask: AtomicU64,
}

impl SavedAction {
    fn store(&self, action: &KernelSigaction) {
        self.flags.store(action.flags, Ordering::Relaxed);
        self.restorer.store(action.restorer, Ordering::Relaxed);
        self.mask.store(action.mask, Ordering::Relaxed);
        self.handler.store(action.handler, Ordering::Release);
    }

    fn load(&self) -> KernelSigaction {
        KernelSigaction {
            handler: self.handler.load(Ordering::Acquire),
            flags: self.flags.load(Ordering::Relaxed),
            restorer: self.restorer.load(Ordering::Relaxed),
            mask: self.mask.load(Ordering::Relaxed),
        }
    }
}

/// Installs `handler` as the callback for every trapped syscall, and sud's
/// SIGSYS handler for the process (raw `rt_sigaction`, SA_SIGINFO |
/// SA_RESTORER | SA_ONSTACK, every signal blocked while it runs, restorer in
/// the allowed region).
///
/// The disposition it replaces is kept: a SIGSYS that is not from dispatch
/// (seccomp's SECCOMP_RET_TRAP, a `kill`) goes to the previous handler, or
/// gets the default action if there was none.  Installing again only swaps
/// the callback.
pub fn install(handler: Handler) -> Result<(), Error> {
    HANDLER.store(handler as usize, Ordering::Release);
    // Read the current disposition first, so that a foreign SIGSYS arriving
    // just after ours is in place already finds it.
    let current = sigaction(SIGSYS, None)?;
    if current.handler != addr::sud_sigsys_entry() {
        PREVIOUS.store(&current);
    }
    let ours = KernelSigaction {
        handler: addr::sud_sigsys_entry(),
        flags: (SA_SIGINFO | SA_RESTORER | SA_ONSTACK) as u64,
        restorer: addr::sud_restorer(),
        mask: !0,
    };
    let replaced = sigaction(SIGSYS, Some(&ours))?;
    if replaced.handler != addr::sud_sigsys_entry() && replaced != current {
        PREVIOUS.store(&replaced);
    }
    Ok(())
}

/// Puts back the SIGSYS disposition [`install`] replaced.  Disarm first:
/// a trapped syscall without sud's handler kills the process.
pub fn uninstall() -> Result<(), Error> {
    sigaction(SIGSYS, Some(&PREVIOUS.load()))?;
    HANDLER.store(0, Ordering::Release);
    Ok(())
}


/// Raw `rt_sigaction(signal, new, &old)` through the allowed region.
pub(crate) fn sigaction(signal: u32, new: Option<&KernelSigaction>) -> Result<KernelSigaction, Errno> {
    let mut old = KernelSigaction::default();
    let new = new.map_or(0, |new| new as *const KernelSigaction as usize);
    // SAFETY: both pointers are valid kernel_sigaction structs (or null);
    // the handler addresses in `new` are the caller's responsibility.
    unsafe {
        host::syscall4(
            __NR_rt_sigaction,
            signal as usize,
            new,
            &mut old as *mut KernelSigaction as usize,
            SIGSET_SIZE,
        )?;
    }
    Ok(old)
}

/// The Rust half of the SIGSYS entry: `sud_sigsys_entry` tail-calls it with
/// the frame's siginfo and ucontext, and its return goes to `sud_restorer`.
///
/// # Safety
/// Only the kernel, through `sud_sigsys_entry`, calls it: `info` and `uc`
/// point into the live SIGSYS frame.
pub(crate) unsafe extern "C" fn dispatch(info: *mut SigInfo, uc: *mut UContext) {
    // SAFETY: the kernel built both in the frame, and nothing else refers to
    // them while the handler runs.
    let (info, uc) = unsafe { (&*info, &mut *uc) };
    if info.si_code != SYS_USER_DISPATCH as i32 {
        return forward(info, uc);
    }
    let regs = &mut uc.uc_mcontext.regs;
    if regs.rax == __NR_rt_sigreturn as u64 {
        // A guest's own restorer, outside the region: run it natively with
        // the guest's RSP, where its frame lies.  No callback can do better.
        regs.rip = addr::sud_reissue_sigreturn() as u64;
        return;
    }
    // Give the callback a thread on which ordinary syscalls run.
    SELECTOR.allow();
    let handler = HANDLER.load(Ordering::Acquire);
    let mut resume_allowed = false;
    let action = if handler == 0 {
        Action::default()
    } else {
        // SAFETY: HANDLER only ever holds 0 or a `Handler` stored by install.
        let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
        let mut call = Syscall { frame: uc, info, resume_allowed: false };
        let action = handler(&mut call);
        resume_allowed = call.resume_allowed;
        action
    };
    let regs = &mut uc.uc_mcontext.regs;
    match action {
        Action::Emulate(value) => regs.rax = value as u64,
        Action::Deny(errno) => regs.rax = errno.to_syscall_result() as u64,
        Action::Reissue => prepare_reissue(regs),
    }
    if !resume_allowed || action == Action::Reissue {
        // The trap happened under BLOCK, and the guest resumes under BLOCK.
        // SAFETY: this restores the state the guest was trapped in.
        unsafe { SELECTOR.block() };
    }
}

/// Turns the saved registers into a return to `sud_reissue`, which runs the
/// syscall once rt_sigreturn has reinstalled them.  Nothing is written to the
/// guest's stack here: below its red zone lies this very signal frame.
fn prepare_reissue(regs: &mut Registers) {
    if regs.rax == __NR_rt_sigreturn as u64 {
        // The callback turned this into an rt_sigreturn: it needs RSP as is.
        regs.rip = addr::sud_reissue_sigreturn() as u64;
        return;
    }
    regs.rcx = regs.rip;
    regs.rip = addr::sud_reissue() as u64;
}

/// A SIGSYS that is not from dispatch: give it to the disposition [`install`]
/// replaced, as the kernel would have.
fn forward(info: &SigInfo, uc: &mut UContext) {
    let previous = PREVIOUS.load();
    let flags = previous.flags;
    // The kernel forces the SIGSYS it generates (si_code > 0): an ignored
    // one gets the default action.  One sent by a process may be ignored.
    let kernel_sent = info.si_code > 0;
    match previous.handler {
        SIG_IGN if !kernel_sent => {}
        SIG_DFL | SIG_IGN => default_action(info, uc),
        handler => {
            let was_blocked = SELECTOR.is_blocked();
            SELECTOR.allow();
            if flags & SA_RESETHAND as u64 != 0 {
                PREVIOUS.store(&KernelSigaction::default());
            }
            let info_ptr = info as *const SigInfo as *mut SigInfo;
            // SAFETY: `handler` is the function the application installed for
            // SIGSYS; it gets the arguments the kernel would have given it.
            unsafe {
                if flags & SA_SIGINFO as u64 != 0 {
                    let f: unsafe extern "C" fn(i32, *mut SigInfo, *mut UContext) =
                        core::mem::transmute(handler);
                    f(SIGSYS as i32, info_ptr, uc);
                } else {
                    let f: unsafe extern "C" fn(i32) = core::mem::transmute(handler);
                    f(SIGSYS as i32);
                }
            }
            if was_blocked {
                // SAFETY: puts back the state the thread was in.
                unsafe { SELECTOR.block() };
            }
        }
    }
}

/// The default action for a foreign SIGSYS: the process dies of it.  The
/// disposition is reset and the same siginfo queued again to this thread;
/// SIGSYS is blocked while the handler runs and is taken out of the mask
/// rt_sigreturn reinstalls, so it is delivered, fatally, at that point.
fn default_action(info: &SigInfo, uc: &mut UContext) {
    let default = KernelSigaction::default();
    let _ = sigaction(SIGSYS, Some(&default));
    uc.uc_sigmask &= !sigmask(SIGSYS);
    let mut requeued = *info;
    // SAFETY: a signal to this very thread, carrying the siginfo it came with.
    unsafe {
        let pid = host::syscall0(__NR_getpid).unwrap_or(0);
        let tid = host::syscall0(__NR_gettid).unwrap_or(0);
        let _ = host::syscall4(
            __NR_rt_tgsigqueueinfo,
            pid,
            tid,
            SIGSYS as usize,
            &mut requeued as *mut SigInfo as usize,
        );
    }
}

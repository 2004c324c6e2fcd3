//! The SIGSYS path: the handler sud installs, the dispatcher the asm entry
//! calls, and the callback's view of a trapped syscall and its answer.
//!
//! A trapped syscall travels: guest `syscall` -> kernel (selector BLOCK) ->
//! SIGSYS frame -> `sud_sigsys_entry` (asm) -> [`dispatch`] -> the user's
//! [`Handler`] -> back through `sud_restorer` (rt_sigreturn, in the allowed
//! region) -> the guest after its `syscall`, or `sud_reissue` first.

use crate::arm::Selector;
use crate::asm::addr;
use crate::error::{Errno, Error};
use crate::kernel::{
    KernelSigaction, Registers, SIG_DFL, SIG_IGN, SIGSET_SIZE, SigInfo, UContext, sigmask,
};
use crate::syscalls::host;
use crate::thread::{self, ThreadState};
use crate::{signals, tasks};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use linux_raw_sys::general::{
    __NR_clone, __NR_clone3, __NR_exit, __NR_fork, __NR_getpid, __NR_gettid, __NR_rt_sigaction,
    __NR_rt_sigprocmask, __NR_rt_sigreturn, __NR_rt_tgsigqueueinfo, __NR_vfork, SA_ONSTACK,
    SA_RESETHAND, SA_RESTORER, SA_SIGINFO, SIG_SETMASK, SIGSYS, SYS_USER_DISPATCH,
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
    state: &'static ThreadState,
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
        self.state.data.load(Ordering::Relaxed)
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
    let replaced = sigaction(SIGSYS, Some(&our_sigsys_action()))?;
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


/// sud's SIGSYS disposition: the asm entry, every signal blocked while it
/// runs, on the alternate signal stack, returning through sud's restorer.
pub(crate) fn our_sigsys_action() -> KernelSigaction {
    KernelSigaction {
        handler: addr::sud_sigsys_entry(),
        flags: (SA_SIGINFO | SA_RESTORER | SA_ONSTACK) as u64,
        restorer: addr::sud_restorer(),
        mask: !0,
    }
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
    let (info_ref, uc_ref) = unsafe { (&*info, &mut *uc) };
    let state = thread::current(uc_ref);
    if info_ref.si_code != SYS_USER_DISPATCH as i32 {
        // SAFETY: the live frame, as above.
        return unsafe { forward(state, info, uc) };
    }
    if uc_ref.uc_mcontext.regs.rax == __NR_rt_sigreturn as u64 {
        // A guest's own restorer, outside the region: run it natively with
        // the guest's RSP, where its frame lies.  No callback can do better.
        signals::guest_sigreturn(state, &uc_ref.uc_mcontext.regs);
        uc_ref.uc_mcontext.regs.rip = addr::sud_reissue_sigreturn() as u64;
        return;
    }
    // Give the callback a thread on which ordinary syscalls run.
    let selector = state.selector();
    selector.allow();
    let handler = HANDLER.load(Ordering::Acquire);
    let mut resume_allowed = false;
    let action = if handler == 0 {
        Action::default()
    } else {
        // SAFETY: HANDLER only ever holds 0 or a `Handler` stored by install.
        let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
        let mut call = Syscall { frame: uc_ref, info: info_ref, state, resume_allowed: false };
        let action = handler(&mut call);
        resume_allowed = call.resume_allowed;
        action
    };
    // SAFETY: the live frame, as above.
    let uc_ref = unsafe { &mut *uc };
    let regs = &mut uc_ref.uc_mcontext.regs;
    match action {
        Action::Emulate(value) => regs.rax = value as u64,
        Action::Deny(errno) => regs.rax = errno.to_syscall_result() as u64,
        Action::Reissue => reissue(state, uc_ref),
    }
    if !resume_allowed || action == Action::Reissue {
        // The trap happened under BLOCK, and the guest resumes under BLOCK.
        // SAFETY: this restores the state the guest was trapped in.
        unsafe { selector.block() };
    }
}

/// How a reissued syscall is carried out.
pub(crate) enum Reissue {
    /// From `sud_reissue`, as it is.
    Plain,
    /// From another stub, which takes a parameter in R11.
    Stub { entry: usize, r11: u64 },
    /// Already done by the runtime: this is its result.
    Done(usize),
}

/// Turns the saved registers into a return to the stub that runs the
/// syscall once rt_sigreturn has reinstalled them, with RCX = the guest's
/// return address (where a native syscall leaves RCX pointing too).
/// Nothing is written to the guest's stack here: below its red zone may lie
/// this very signal frame.
fn reissue(state: &'static ThreadState, uc: &mut UContext) {
    let nr = uc.uc_mcontext.regs.rax as u32;
    let how = match nr {
        __NR_rt_sigreturn => {
            // The callback turned this into an rt_sigreturn: it needs RSP as is.
            signals::guest_sigreturn(state, &uc.uc_mcontext.regs);
            Reissue::Stub { entry: addr::sud_reissue_sigreturn(), r11: uc.uc_mcontext.regs.r11 }
        }
        __NR_fork | __NR_vfork | __NR_clone | __NR_clone3 => tasks::clone(state, &uc.uc_mcontext.regs),
        __NR_exit => tasks::exit(state),
        _ => signals::reissue(state, uc),
    };
    let regs = &mut uc.uc_mcontext.regs;
    match how {
        Reissue::Plain => {
            regs.rcx = regs.rip;
            regs.rip = addr::sud_reissue() as u64;
        }
        Reissue::Stub { entry, r11 } => {
            regs.rcx = regs.rip;
            regs.r11 = r11;
            regs.rip = entry as u64;
        }
        Reissue::Done(result) => regs.rax = result as u64,
    }
}

/// A SIGSYS that is not from dispatch: give it to the guest's own SIGSYS
/// disposition if it set one, else to the one [`install`] replaced, as the
/// kernel would have.
///
/// # Safety
/// `info` and `uc` are the live frame's.
unsafe fn forward(state: &ThreadState, info: *mut SigInfo, uc: *mut UContext) {
    let guest = signals::guest_sigsys_action();
    let previous = guest.unwrap_or_else(|| PREVIOUS.load());
    // SAFETY: the live frame.
    let (info_ref, uc_ref) = unsafe { (&*info, &mut *uc) };
    // The kernel forces the SIGSYS it generates (si_code > 0): an ignored
    // one gets the default action.  One sent by a process may be ignored.
    let kernel_sent = info_ref.si_code > 0;
    match previous.handler {
        SIG_IGN if !kernel_sent => {}
        SIG_DFL | SIG_IGN => default_action(info_ref, uc_ref),
        handler => {
            if previous.flags & SA_RESETHAND as u64 != 0 {
                match guest {
                    Some(_) => signals::reset_guest_action(SIGSYS),
                    None => PREVIOUS.store(&KernelSigaction::default()),
                }
            }
            if let Some(guest) = guest {
                // Guest code: under BLOCK, with SIGSYS deliverable so that its
                // own syscalls can be dispatched, and its own mask otherwise.
                let mask = (uc_ref.uc_sigmask | guest.mask) & !sigmask(SIGSYS);
                set_thread_mask(mask);
                // SAFETY: the guest's SIGSYS handler, given the frame.
                unsafe { signals::run_guest_handler(state, &guest, SIGSYS as i32, info, uc) };
                set_thread_mask(!0);
            } else {
                let selector = state.selector();
                let was_blocked = selector.is_blocked();
                selector.allow();
                // SAFETY: the function the application installed for SIGSYS.
                unsafe { signals::call_handler(handler, SIGSYS as i32, info, uc) };
                if was_blocked {
                    // SAFETY: puts back the state the thread was in.
                    unsafe { selector.block() };
                }
            }
        }
    }
}

/// Sets the calling thread's real signal mask.
fn set_thread_mask(mask: u64) {
    // SAFETY: a valid sigset, no old set wanted.
    let _ = unsafe {
        host::syscall4(__NR_rt_sigprocmask, SIG_SETMASK as usize, &mask as *const u64 as usize, 0, SIGSET_SIZE)
    };
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

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
    KernelSigaction, RED_ZONE, Registers, SIG_DFL, SIG_IGN, SIGSET_SIZE, SigInfo, UContext, sigmask,
};
use crate::syscalls::host;
use crate::thread::{self, ThreadState};
use crate::{signals, tasks};
use core::marker::PhantomData;
use core::ptr::{null, null_mut};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use linux_raw_sys::general::{
    __NR_clone, __NR_clone3, __NR_exit, __NR_fork, __NR_getpid, __NR_gettid, __NR_rt_sigaction,
    __NR_rt_sigprocmask, __NR_rt_sigreturn, __NR_rt_tgsigqueueinfo, __NR_vfork, SA_ONSTACK,
    SA_RESETHAND, SA_RESTORER, SA_SIGINFO, SIG_SETMASK, SIGSYS, SYS_USER_DISPATCH,
};
use linux_raw_sys::general::{__NR_sigaltstack, stack_t};

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
    /// The function given to [`install_redirect`] carries the syscall out as
    /// ordinary code, after rt_sigreturn: on the guest's stack below its red
    /// zone, or on the thread's redirect stack
    /// ([`Thread::set_redirect_stack`](crate::Thread::set_redirect_stack)).
    /// It may block, take locks, allocate and be interrupted by signals; the
    /// thread's selector says ALLOW while it runs.  Its return value is the
    /// syscall's result: the guest resumes with RAX = that, RCX = its return
    /// address, R11 = its RFLAGS, and every other register, RFLAGS and all
    /// x87, SSE, AVX and AVX-512 state as they were.  Without a redirect
    /// function installed this is `Deny(ENOSYS)`.
    Redirect,
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
    resume_allowed: bool,
    _frame: PhantomData<&'a mut Registers>,
}

impl<'a> Syscall<'a> {
    fn from_signal(uc: &'a mut UContext, info: &'a SigInfo, state: &'static ThreadState) -> Self {
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

    fn direct(regs: &'a mut Registers, state: &'static ThreadState) -> Self {
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
    xsave::init();
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
pub(crate) fn sigaction(
    signal: u32,
    new: Option<&KernelSigaction>,
) -> Result<KernelSigaction, Errno> {
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
    if uc_ref.uc_mcontext.regs.rax as u32 == __NR_rt_sigreturn {
        // A guest's own restorer, outside the region: run it natively with
        // the guest's RSP, where its frame lies.  No callback can do better.
        signals::guest_sigreturn(state, &uc_ref.uc_mcontext.regs);
        uc_ref.uc_mcontext.regs.rip = addr::sud_reissue_sigreturn() as u64;
        return;
    }
    // Give the callback a thread on which ordinary syscalls run.
    let selector = state.selector();
    selector.allow();
    let (action, resume_allowed) = decide(Syscall::from_signal(uc_ref, info_ref, state));
    // SAFETY: the live frame, as above; the callback's view of it is gone.
    let uc_ref = unsafe { &mut *uc };
    let UContext {
        uc_mcontext,
        uc_sigmask,
        uc_stack,
        ..
    } = uc_ref;
    let regs = &mut uc_mcontext.regs;
    match action {
        Action::Emulate(value) => regs.rax = value as u64,
        Action::Deny(errno) => regs.rax = errno.to_syscall_result() as u64,
        Action::Reissue => {
            let at = Interrupted {
                regs,
                sigmask: uc_sigmask,
                altstack: uc_stack,
                blocked: true,
            };
            let how = plan_reissue(state, at);
            continue_at_stub(regs, how);
        }
        Action::Redirect => {
            // The thread stays at ALLOW: the redirect function runs as host
            // code, and its stub puts BLOCK back before the guest resumes.
            return redirect_after_sigreturn(state, regs);
        }
    }
    if !resume_allowed || action == Action::Reissue {
        // The trap happened under BLOCK, and the guest resumes under BLOCK.
        // SAFETY: this restores the state the guest was trapped in.
        unsafe { selector.block() };
    }
}

/// Runs the user's callback on a trapped syscall.  A `Redirect` without a
/// redirect function is `Deny(ENOSYS)`.
fn decide(mut call: Syscall<'_>) -> (Action, bool) {
    let handler = HANDLER.load(Ordering::Acquire);
    if handler == 0 {
        return (Action::default(), false);
    }
    // SAFETY: HANDLER only ever holds 0 or a `Handler` stored by install.
    let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
    let action = match handler(&mut call) {
        Action::Redirect if REDIRECT.load(Ordering::Acquire) == 0 => Action::default(),
        action => action,
    };
    (action, call.resume_allowed)
}

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
pub(crate) enum Reissue {
    /// From `sud_reissue`, as it is.
    Plain,
    /// From another stub, which takes a parameter in R11.
    Stub { entry: usize, r11: u64 },
    /// Already done by the runtime: this is its result.
    Done(usize),
}

/// Decides how to reissue the syscall in `at.regs`: most run as they are;
/// task creation and exit, rt_sigreturn, and the syscalls that could block
/// SIGSYS need more (`tasks`, `signals`).
fn plan_reissue(state: &'static ThreadState, mut at: Interrupted<'_>) -> Reissue {
    match at.regs.rax as u32 {
        __NR_rt_sigreturn => {
            // The callback turned this into an rt_sigreturn: it needs RSP as is.
            signals::guest_sigreturn(state, at.regs);
            Reissue::Stub {
                entry: addr::sud_reissue_sigreturn(),
                r11: at.regs.r11,
            }
        }
        __NR_fork | __NR_vfork | __NR_clone | __NR_clone3 => {
            tasks::clone(state, at.regs, at.blocked)
        }
        __NR_exit => tasks::exit(state),
        _ => signals::reissue(state, &mut at),
    }
}

/// Turns the saved registers into a jump to the stub that runs the syscall,
/// with RCX = the guest's return address (where a native syscall leaves
/// RCX pointing too).  Nothing is written to the guest's stack here: below
/// its red zone may lie this very signal frame.
fn continue_at_stub(regs: &mut Registers, how: Reissue) {
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
        Reissue::Done(result) => {
            // As a native syscall leaves them (the SIGSYS frame has them so
            // already; sud_entry's caller does not).
            regs.rax = result as u64;
            regs.rcx = regs.rip;
            regs.r11 = regs.rflags;
        }
    }
}

/// The function for [`Action::Redirect`] (0: none).
static REDIRECT: AtomicUsize = AtomicUsize::new(0);

/// Installs the function that carries out the syscalls the callback answers
/// with [`Action::Redirect`].
pub fn install_redirect(redirect: Redirect) {
    xsave::init();
    REDIRECT.store(redirect as usize, Ordering::Release);
}

/// Sends the guest, after rt_sigreturn, to `sud_redirect` (on its own stack,
/// below the red zone) or `sud_redirect_on_stack` (on the thread's redirect
/// stack, unless the guest is already on it: a redirect interrupted by a
/// signal whose handler's syscall is redirected again).
fn redirect_after_sigreturn(state: &'static ThreadState, regs: &mut Registers) {
    let (low, high) = (
        state.redirect_stack[0].load(Ordering::Relaxed),
        state.redirect_stack[1].load(Ordering::Relaxed),
    );
    regs.rcx = regs.rip;
    regs.r11 = state as *const ThreadState as u64;
    if high != 0 && !(low..high).contains(&regs.rsp) {
        let slot = (high - 8) & !15;
        // SAFETY: the redirect stack is the thread's, given for this
        // (Thread::set_redirect_stack), and not in use: the guest is not on it.
        unsafe { (slot as *mut u64).write(regs.rsp) };
        regs.rsp = slot;
        regs.rip = addr::sud_redirect_on_stack() as u64;
    } else {
        regs.rsp -= RED_ZONE as u64;
        regs.rip = addr::sud_redirect() as u64;
    }
}

/// The frame `sud_entry` and the redirect stubs build: the guest's
/// registers, then the thread's selector (entry) or state (redirect).
#[repr(C)]
pub(crate) struct DirectFrame {
    pub regs: Registers,
    pub word: u64,
}

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
    // SAFETY: REDIRECT holds a `Redirect`: the dispatcher only redirects then.
    let redirect: Redirect =
        unsafe { core::mem::transmute::<usize, Redirect>(REDIRECT.load(Ordering::Acquire)) };
    let result = redirect(&mut Syscall::direct(&mut frame.regs, state));
    let regs = &mut frame.regs;
    regs.rax = result as u64;
    regs.rcx = regs.rip;
    regs.r11 = regs.rflags;
    // SAFETY: the guest resumes, as it was trapped, under BLOCK.
    unsafe { state.selector().block() };
}

/// Called by `sud_entry` with its frame: the callback decides, as for a
/// trapped syscall, and `sud_entry` goes on at the address left just below
/// `frame.regs.rsp`: the return address, or the stub that reissues.
///
/// # Safety
/// Only `sud_entry` calls it, with the frame it built: the word below
/// `frame.regs.rsp` is its caller's return-address slot.
pub(crate) unsafe extern "C" fn entry_dispatch(frame: &mut DirectFrame) {
    let state = thread::for_selector(frame.word as *const Selector);
    let selector = state.selector();
    let was_blocked = selector.is_blocked();
    selector.allow();
    let (action, resume_allowed) = decide(Syscall::direct(&mut frame.regs, state));
    let regs = &mut frame.regs;
    let return_address = regs.rip;
    let mut go_on_at = return_address;
    match action {
        Action::Emulate(value) => regs.rax = value as u64,
        Action::Deny(errno) => regs.rax = errno.to_syscall_result() as u64,
        Action::Redirect => {
            // SAFETY: as in redirect_run.
            let redirect: Redirect = unsafe {
                core::mem::transmute::<usize, Redirect>(REDIRECT.load(Ordering::Acquire))
            };
            regs.rax = redirect(&mut Syscall::direct(regs, state)) as u64;
        }
        Action::Reissue => {
            let nr = regs.rax as u32;
            // The mask and alternate stack the runtime may have to consult
            // or change, asked of the kernel only for the syscalls that need them.
            let mut sigmask = 0u64;
            let mut altstack = stack_t {
                ss_sp: null_mut(),
                ss_flags: 0,
                ss_size: 0,
            };
            let needs_mask = nr == __NR_rt_sigprocmask;
            if needs_mask {
                sigmask = thread_mask();
            }
            if nr == __NR_sigaltstack {
                // SAFETY: queries into a local stack_t.
                let _ = unsafe {
                    host::syscall2(__NR_sigaltstack, 0, &mut altstack as *mut stack_t as usize)
                };
            }
            let before = sigmask;
            let at = Interrupted {
                regs,
                sigmask: &mut sigmask,
                altstack: &altstack,
                blocked: was_blocked,
            };
            let how = plan_reissue(state, at);
            if needs_mask && sigmask != before {
                set_thread_mask(sigmask);
            }
            continue_at_stub(regs, how);
            go_on_at = regs.rip;
            regs.rip = return_address;
        }
    }
    if !matches!(action, Action::Reissue) {
        regs.rcx = return_address;
        regs.r11 = regs.rflags;
    }
    // Where sud_entry's `ret` goes: just below the caller's RSP, where its
    // `call` left the return address.
    // SAFETY: that word is the caller's return-address slot, ours until we return.
    unsafe { ((regs.rsp - 8) as *mut u64).write(go_on_at) };
    if was_blocked && (!resume_allowed || action == Action::Reissue) {
        // SAFETY: the guest resumes as it called, under BLOCK.
        unsafe { selector.block() };
    }
}

/// How the direct paths keep the extended state: the mode and area size
/// `asm/x86_64/direct.s` reads.
pub(crate) mod xsave {
    use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

    /// The save instructions, as `XSAVE_MODE` names them.
    pub(crate) const FXSAVE: u8 = 0;
    pub(crate) const XSAVE: u8 = 1;
    pub(crate) const XSAVEC: u8 = 2;
    /// The XSAVE header: after the 512-byte legacy area, 64 bytes.
    pub(crate) const HEADER_OFFSET: usize = 512;
    pub(crate) const HEADER_SIZE: usize = 64;
    /// The x87 status word in the legacy area, and its exception-summary
    /// bit (ES): set while an unmasked x87 exception is pending.
    pub(crate) const FSW_OFFSET: usize = 2;
    pub(crate) const FSW_ES: u8 = 0x80;
    /// MXCSR as the ABI hands it to a function: round to nearest, every
    /// exception masked.
    pub(crate) static DEFAULT_MXCSR: u32 = 0x1f80;
    /// The x87 control word as the ABI hands it to a function: 64-bit
    /// precision, round to nearest, every exception masked.
    pub(crate) static DEFAULT_FCW: u16 = 0x37f;

    /// Which save instruction the direct paths use.
    pub(crate) static XSAVE_MODE: AtomicU8 = AtomicU8::new(FXSAVE);
    /// Bytes for the save area: at least the legacy area and the header.
    pub(crate) static XSAVE_SIZE: AtomicUsize = AtomicUsize::new(HEADER_OFFSET + HEADER_SIZE);

    /// Picks the best mode the CPU and kernel offer.  Before any direct
    /// path runs (from [`install`](crate::install) and
    /// [`install_redirect`](crate::install_redirect)), since a mode change
    /// between a save and its restore would mix formats.
    pub(crate) fn init() {
        use core::arch::x86_64::{__cpuid, __cpuid_count};
        let leaf1 = __cpuid(1);
        if leaf1.ecx & (1 << 27) == 0 {
            return; // no OSXSAVE: FXSAVE
        }
        let size = __cpuid_count(0xd, 0).ebx as usize;
        let compacted = __cpuid_count(0xd, 1).eax & (1 << 1) != 0;
        let size = size.max(HEADER_OFFSET + HEADER_SIZE).next_multiple_of(64);
        XSAVE_SIZE.store(size, Ordering::Relaxed);
        XSAVE_MODE.store(if compacted { XSAVEC } else { XSAVE }, Ordering::Release);
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
                    Some(guest) => signals::reset_guest_action(SIGSYS, &guest),
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

/// The calling thread's real signal mask.
fn thread_mask() -> u64 {
    let mut mask = 0u64;
    // SAFETY: no new set; the old one into a local.
    let _ = unsafe {
        host::syscall4(
            __NR_rt_sigprocmask,
            SIG_SETMASK as usize,
            0,
            &mut mask as *mut u64 as usize,
            SIGSET_SIZE,
        )
    };
    mask
}

/// Sets the calling thread's real signal mask.
pub(crate) fn set_thread_mask(mask: u64) {
    // SAFETY: a valid sigset, no old set wanted.
    let _ = unsafe {
        host::syscall4(
            __NR_rt_sigprocmask,
            SIG_SETMASK as usize,
            &mask as *const u64 as usize,
            0,
            SIGSET_SIZE,
        )
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

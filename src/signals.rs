//! Signals around dispatch.
//!
//! - **SIGSYS stays deliverable.**  While a thread is armed, a SIGSYS that
//!   finds it blocked or ignored kills the process.  So when the callback
//!   reissues a syscall that would block or ignore it (rt_sigprocmask,
//!   rt_sigaction, rt_sigsuspend, ppoll, pselect6, epoll_pwait(2),
//!   signalfd(4), rt_sigtimedwait, sigaltstack, and a guest's own
//!   rt_sigreturn, whose frame carries a mask), the runtime carries it out
//!   with SIGSYS left out, and keeps what the guest asked for as virtual
//!   state that it reports back: the guest sees exactly the values it set.
//!   Its own SIGSYS disposition is virtual too, and receives the SIGSYS that
//!   are not dispatch.
//! - **Guest handlers** (installed by trapped rt_sigaction) are entered
//!   through sud: they run as guest code (selector BLOCK), see their virtual
//!   mask, and return through sud's restorer.
//! - **Host handlers** ([`install_host_handler`], [`adopt_signal`]) run with
//!   the interrupted thread's selector at ALLOW, whatever it was, and put it
//!   back on return.
//!
//! Every handler sud installs runs on the thread's alternate signal stack
//! when it has one (SA_ONSTACK).

use crate::asm::addr;
use crate::error::{Errno, Error};
use crate::kernel::{
    KernelSigaction, Registers, SIG_IGN, SigInfo, UContext, sigmask,
};
use crate::sigsys::{Interrupted, Reissue, sigaction};
use crate::syscalls::{guest_memory, host};
use crate::thread::{self, ThreadState};
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use linux_raw_sys::general::{
    __NR_close, __NR_epoll_pwait, __NR_epoll_pwait2, __NR_openat, __NR_ppoll, __NR_pselect6,
    __NR_read, __NR_rt_sigaction, __NR_rt_sigprocmask, __NR_rt_sigsuspend, __NR_rt_sigtimedwait,
    __NR_sigaltstack, __NR_signalfd, __NR_signalfd4, AT_FDCWD, MINSIGSTKSZ, O_RDONLY, SA_ONSTACK,
    SA_RESETHAND, SA_RESTORER, SA_SIGINFO, SIG_BLOCK, SIG_SETMASK, SIG_UNBLOCK, SIGKILL, SIGSTOP,
    SIGSYS, SS_AUTODISARM, SS_DISABLE, SS_ONSTACK,
};

/// Signals 1 to 64; index 0 unused.
const NSIG: usize = 65;
const SIGSYS_BIT: u64 = sigmask(SIGSYS);

/// A kernel_sigaction in atomics, for tables read in signal context.
struct ActionCell {
    handler: AtomicUsize,
    flags: AtomicU64,
    restorer: AtomicUsize,
    mask: AtomicU64,
    /// Whether the cell holds an action at all.
    set: AtomicU64,
}

impl ActionCell {
    const fn new() -> ActionCell {
        ActionCell {
            handler: AtomicUsize::new(0),
            flags: AtomicU64::new(0),
            restorer: AtomicUsize::new(0),
            mask: AtomicU64::new(0),
            set: AtomicU64::new(0),
        }
    }

    fn get(&self) -> Option<KernelSigaction> {
        (self.set.load(Ordering::Acquire) != 0).then(|| KernelSigaction {
            handler: self.handler.load(Ordering::Relaxed),
            flags: self.flags.load(Ordering::Relaxed),
            restorer: self.restorer.load(Ordering::Relaxed),
            mask: self.mask.load(Ordering::Relaxed),
        })
    }

    fn put(&self, action: &KernelSigaction) {
        self.handler.store(action.handler, Ordering::Relaxed);
        self.flags.store(action.flags, Ordering::Relaxed);
        self.restorer.store(action.restorer, Ordering::Relaxed);
        self.mask.store(action.mask, Ordering::Relaxed);
        self.set.store(1, Ordering::Release);
    }

    fn clear(&self) {
        self.set.store(0, Ordering::Release);
    }
}

/// The guest's dispositions, as it set them (SIGSYS's is never installed).
static GUEST_ACTIONS: [ActionCell; NSIG] = [const { ActionCell::new() }; NSIG];
/// The host handlers sud runs for each signal under ALLOW.
static HOST_ACTIONS: [ActionCell; NSIG] = [const { ActionCell::new() }; NSIG];

/// Resets the guest's disposition for `signal` to SIG_DFL (SA_RESETHAND).
pub(crate) fn reset_guest_action(signal: u32) {
    GUEST_ACTIONS[signal as usize].put(&KernelSigaction::default());
}

/// The guest's SIGSYS disposition, if it set one.
pub(crate) fn guest_sigsys_action() -> Option<KernelSigaction> {
    GUEST_ACTIONS[SIGSYS as usize].get()
}

/// The disposition the guest last set for `signal` through a trapped
/// rt_sigaction (which, for a signal with a host handler, and for SIGSYS,
/// sud keeps to itself rather than install), so that a host handler can pass
/// a signal on to the guest.  `None` if the guest never set one.
pub fn guest_action(signal: u32) -> Option<(usize, u64, u64)> {
    GUEST_ACTIONS
        .get(signal as usize)?
        .get()
        .map(|a| (a.handler, a.flags, a.mask))
}

/// A host signal handler: `(signal, siginfo, ucontext)`.
pub type HostHandler = unsafe extern "C" fn(i32, *mut SigInfo, *mut UContext);

/// Installs `handler` for `signal` (not SIGSYS, SIGKILL or SIGSTOP), to run
/// with the interrupted thread's selector at ALLOW whatever it was, on the
/// thread's alternate signal stack when it has one, and return through the
/// allowed restorer with the selector put back.  `mask` are the signals
/// blocked while it runs (never SIGSYS); `flags` may add SA_RESTART,
/// SA_NODEFER or SA_RESETHAND.
pub fn install_host_handler(signal: u32, handler: HostHandler, mask: u64, flags: u64) -> Result<(), Error> {
    if signal == SIGSYS || signal == SIGKILL || signal == SIGSTOP || signal == 0 || signal as usize >= NSIG {
        return Err(Error::Os(Errno::EINVAL));
    }
    let action = KernelSigaction { handler: handler as usize, flags: flags | SA_SIGINFO as u64, restorer: 0, mask };
    HOST_ACTIONS[signal as usize].put(&action);
    let real = real_action(&action);
    if let Err(errno) = sigaction(signal, Some(&real)) {
        HOST_ACTIONS[signal as usize].clear();
        return Err(errno.into());
    }
    Ok(())
}

/// Takes the handler someone else installed for `signal` (std, glibc, a
/// library) and runs it as a host handler from now on: under ALLOW, with
/// its own mask and flags.  Nothing changes for a signal whose disposition
/// is SIG_DFL or SIG_IGN, or already sud's.
pub fn adopt_signal(signal: u32) -> Result<(), Error> {
    if signal == SIGSYS || signal == 0 || signal as usize >= NSIG {
        return Err(Error::Os(Errno::EINVAL));
    }
    let current = sigaction(signal, None)?;
    if current.handler <= SIG_IGN || current.handler == entry() {
        return Ok(());
    }
    // SAFETY: it was installed as this signal's handler, so it has one of
    // the two handler signatures; with SA_SIGINFO it takes all three
    // arguments, without it ignores the two it is not given.
    let handler: HostHandler = unsafe { core::mem::transmute(current.handler) };
    install_host_handler(signal, handler, current.mask, current.flags & !(SA_RESTORER as u64))
}

fn entry() -> usize {
    signal_entry as *const () as usize
}

/// What is really installed for a handler that sud runs: its entry, with
/// SA_SIGINFO, SA_RESTORER (sud's restorer) and SA_ONSTACK, and never SIGSYS
/// in the mask.
fn real_action(action: &KernelSigaction) -> KernelSigaction {
    KernelSigaction {
        handler: entry(),
        flags: action.flags | (SA_SIGINFO | SA_RESTORER | SA_ONSTACK) as u64,
        restorer: addr::sud_restorer(),
        mask: action.mask & !SIGSYS_BIT,
    }
}

/// The entry of every handler sud installs but SIGSYS's: host handlers and
/// guest handlers.
unsafe extern "C" fn signal_entry(signal: i32, info: *mut SigInfo, uc: *mut UContext) {
    // SAFETY: the kernel passes the live frame's siginfo and ucontext.
    let uc_ref = unsafe { &mut *uc };
    let state = thread::current(uc_ref);
    let index = signal as usize;
    if let Some(host) = HOST_ACTIONS[index].get() {
        if host.flags & SA_RESETHAND as u64 != 0 {
            HOST_ACTIONS[index].clear();
        }
        let selector = state.selector();
        let was_blocked = selector.is_blocked();
        selector.allow();
        // SAFETY: an application handler, given what the kernel gave us.
        unsafe { call_handler(host.handler, signal, info, uc) };
        if was_blocked {
            // SAFETY: puts back the state the thread was interrupted in.
            unsafe { selector.block() };
        }
    } else if let Some(guest) = GUEST_ACTIONS[index].get() {
        if guest.flags & SA_RESETHAND as u64 != 0 {
            // The kernel reset the real disposition as it delivered this.
            GUEST_ACTIONS[index].put(&KernelSigaction::default());
        }
        if guest.handler > SIG_IGN {
            // SAFETY: the guest's handler, entered as the kernel would.
            unsafe { run_guest_handler(state, &guest, signal, info, uc) };
        }
    }
}

/// Calls an application's signal handler, as the kernel would.
///
/// # Safety
/// `handler` is a signal handler; the pointers are the live frame's.
pub(crate) unsafe fn call_handler(handler: usize, signal: i32, info: *mut SigInfo, uc: *mut UContext) {
    // SAFETY: with SA_SIGINFO the handler takes all three arguments; without
    // it takes one, and ignores the registers holding the other two, which
    // is how the kernel calls it too.
    unsafe {
        let f: HostHandler = core::mem::transmute(handler);
        f(signal, info, uc);
    }
}

/// Runs a guest handler as guest code: selector BLOCK, its virtual mask in
/// `uc_sigmask`, and on return what its restorer's rt_sigreturn would do to
/// the virtual mask.
///
/// # Safety
/// As for [`call_handler`].
pub(crate) unsafe fn run_guest_handler(
    state: &ThreadState,
    guest: &KernelSigaction,
    signal: i32,
    info: *mut SigInfo,
    uc: *mut UContext,
) {
    let selector = state.selector();
    let was_blocked = selector.is_blocked();
    let before = state.guest_blocks_sigsys.load(Ordering::Relaxed);
    // SAFETY: the live frame's ucontext.
    unsafe {
        if before {
            (*uc).uc_sigmask |= SIGSYS_BIT;
        }
        state.guest_blocks_sigsys.store(before || guest.mask & SIGSYS_BIT != 0, Ordering::Relaxed);
        // SAFETY: guest handlers are guest code.
        selector.block();
        call_handler(guest.handler, signal, info, uc);
        state.guest_blocks_sigsys.store((*uc).uc_sigmask & SIGSYS_BIT != 0, Ordering::Relaxed);
        (*uc).uc_sigmask &= !SIGSYS_BIT;
    }
    if !was_blocked {
        selector.allow();
    }
}

/// A reissued syscall the runtime must carry out itself, or with a
/// sanitised argument, to keep SIGSYS deliverable; `Plain` for the rest.
pub(crate) fn reissue(state: &'static ThreadState, at: &mut Interrupted<'_>) -> Reissue {
    match at.regs.rax as u32 {
        __NR_rt_sigprocmask => Reissue::Done(result(rt_sigprocmask(state, at))),
        __NR_rt_sigaction => Reissue::Done(result(rt_sigaction(at.regs))),
        __NR_sigaltstack if !state.is_global() => sigaltstack(state, at),
        __NR_rt_sigsuspend | __NR_rt_sigtimedwait => sanitise_mask(state, at.regs, Arg::Rdi),
        __NR_signalfd | __NR_signalfd4 => sanitise_mask(state, at.regs, Arg::Rsi),
        __NR_ppoll => sanitise_mask(state, at.regs, Arg::R10),
        __NR_epoll_pwait | __NR_epoll_pwait2 => sanitise_mask(state, at.regs, Arg::R8),
        __NR_pselect6 => sanitise_pselect(state, at.regs),
        _ => Reissue::Plain,
    }
}

fn result(outcome: Result<(), Errno>) -> usize {
    match outcome {
        Ok(()) => 0,
        Err(errno) => errno.to_syscall_result(),
    }
}

/// rt_sigprocmask(how, set, oldset, sigsetsize), carried out on the mask
/// the thread resumes with (`uc_sigmask`, which rt_sigreturn reinstalls),
/// SIGSYS kept out of it and in the virtual mask instead.
fn rt_sigprocmask(state: &ThreadState, at: &mut Interrupted<'_>) -> Result<(), Errno> {
    let regs = &*at.regs;
    let (how, set, oldset, size) = (regs.rdi as u32, regs.rsi as usize, regs.rdx as usize, regs.r10);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let virtual_bit = if state.guest_blocks_sigsys.load(Ordering::Relaxed) { SIGSYS_BIT } else { 0 };
    let old = *at.sigmask | virtual_bit;
    if set != 0 {
        let new: u64 = guest_memory::read(set)?;
        let mask = match how {
            SIG_BLOCK => old | new,
            SIG_UNBLOCK => old & !new,
            SIG_SETMASK => new,
            _ => return Err(Errno::EINVAL),
        } & !(sigmask(SIGKILL) | sigmask(SIGSTOP));
        state.guest_blocks_sigsys.store(mask & SIGSYS_BIT != 0, Ordering::Relaxed);
        *at.sigmask = mask & !SIGSYS_BIT;
    }
    if oldset != 0 {
        guest_memory::write(oldset, &old)?;
    }
    Ok(())
}

/// rt_sigaction(signal, act, oldact, sigsetsize): the guest's disposition is
/// recorded and reported back as it set it; what is installed keeps SIGSYS
/// deliverable (SIGSYS's own disposition, and those of signals with a host
/// handler, are not installed at all).
fn rt_sigaction(regs: &Registers) -> Result<(), Errno> {
    let (signal, act, oldact, size) = (regs.rdi as u32, regs.rsi as usize, regs.rdx as usize, regs.r10);
    if size != 8 || signal == 0 || signal as usize >= NSIG {
        return Err(Errno::EINVAL);
    }
    if act != 0 && (signal == SIGKILL || signal == SIGSTOP) {
        return Err(Errno::EINVAL);
    }
    let new: Option<KernelSigaction> = if act != 0 { Some(guest_memory::read(act)?) } else { None };
    let old = match GUEST_ACTIONS[signal as usize].get() {
        Some(old) => old,
        None => {
            let real = sigaction(signal, None)?;
            if real.handler == entry() || real.handler == addr::sud_sigsys_entry() {
                KernelSigaction::default()
            } else {
                real
            }
        }
    };
    if let Some(mut new) = new {
        new.mask &= !(sigmask(SIGKILL) | sigmask(SIGSTOP));
        let keep_to_ourselves = signal == SIGSYS || HOST_ACTIONS[signal as usize].get().is_some();
        if !keep_to_ourselves {
            let real = if new.handler <= SIG_IGN {
                KernelSigaction { mask: new.mask & !SIGSYS_BIT, ..new }
            } else {
                real_action(&KernelSigaction { flags: new.flags & !(SA_RESTORER as u64), ..new })
            };
            sigaction(signal, Some(&real))?;
        }
        GUEST_ACTIONS[signal as usize].put(&new);
    }
    if oldact != 0 {
        guest_memory::write(oldact, &old)?;
    }
    Ok(())
}

/// The smallest alternate stack the kernel accepts: MINSIGSTKSZ, or the
/// size of this machine's signal frame (AT_MINSIGSTKSZ) if larger.
fn min_altstack_size() -> usize {
    static CACHED: AtomicUsize = AtomicUsize::new(0);
    let cached = CACHED.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    let mut auxv = [0u64; 128];
    let path = b"/proc/self/auxv\0";
    let mut from_kernel = 0;
    // SAFETY: reads /proc/self/auxv into a local buffer.
    unsafe {
        if let Ok(fd) = host::syscall4(__NR_openat, AT_FDCWD as usize, path.as_ptr() as usize, O_RDONLY as usize, 0) {
            if let Ok(len) = host::syscall3(__NR_read, fd, auxv.as_mut_ptr() as usize, size_of_val(&auxv)) {
                for pair in auxv[..len / 8].chunks_exact(2) {
                    if pair[0] == linux_raw_sys::auxvec::AT_MINSIGSTKSZ as u64 {
                        from_kernel = pair[1] as usize;
                    }
                }
            }
            let _ = host::syscall1(__NR_close, fd);
        }
    }
    let size = from_kernel.max(MINSIGSTKSZ as usize);
    CACHED.store(size, Ordering::Relaxed);
    size
}

/// `stack_t`, as the kernel reads and writes it.
#[repr(C)]
#[derive(Clone, Copy)]
struct Stack {
    sp: u64,
    flags: i32,
    _pad: i32,
    size: u64,
}
static_assertions::const_assert_eq!(size_of::<Stack>(), size_of::<linux_raw_sys::general::stack_t>());
static_assertions::const_assert_eq!(offset_of!(Stack, size), offset_of!(linux_raw_sys::general::stack_t, ss_size));

/// sigaltstack(ss, old_ss) for a managed thread.  The guest's own stack is
/// honoured: installed for real, so its handlers and sud's run on it, and
/// recorded so that the runtime still finds the thread's state.  Without
/// one, the thread's own stack is installed and the guest sees none.  The
/// dispatcher answers (every check the kernel makes, against the alternate
/// stack really in use); `sud_reissue_set_altstack` installs the new stack
/// once the handler is off the current one.
fn sigaltstack(state: &ThreadState, at: &mut Interrupted<'_>) -> Reissue {
    let regs = &*at.regs;
    let (ss, old_ss, rsp) = (regs.rdi as usize, regs.rsi as usize, regs.rsp);
    let guest = [0, 1, 2].map(|i| state.guest_altstack[i].load(Ordering::Relaxed));
    let (guest_sp, guest_size, guest_flags) = (guest[0], guest[1], guest[2] as i32);
    let on_guest_stack = guest_size != 0 && rsp > guest_sp && rsp - guest_sp <= guest_size;
    let old = if guest_size == 0 {
        Stack { sp: 0, flags: SS_DISABLE as i32, _pad: 0, size: 0 }
    } else {
        let onstack = if on_guest_stack { SS_ONSTACK as i32 } else { 0 };
        Stack { sp: guest_sp, flags: onstack | (guest_flags & SS_AUTODISARM as i32), _pad: 0, size: guest_size }
    };
    let mut install = None;
    if ss != 0 {
        let new: Stack = match guest_memory::read(ss) {
            Ok(new) => new,
            Err(errno) => return Reissue::Done(errno.to_syscall_result()),
        };
        // The stack really in use, as the kernel will judge it.
        let real = at.altstack;
        let (real_sp, real_size) = (real.ss_sp as u64, real.ss_size);
        let autodisarm = real.ss_flags & SS_AUTODISARM as i32 != 0;
        if !autodisarm && rsp > real_sp && rsp - real_sp <= real_size {
            return Reissue::Done(Errno::EPERM.to_syscall_result());
        }
        let mode = new.flags & !(SS_AUTODISARM as i32);
        if mode != 0 && mode != SS_ONSTACK as i32 && mode != SS_DISABLE as i32 {
            return Reissue::Done(Errno::EINVAL.to_syscall_result());
        }
        if mode != SS_DISABLE as i32 && (new.size as usize) < min_altstack_size() {
            return Reissue::Done(Errno::ENOMEM.to_syscall_result());
        }
        install = Some(new);
    }
    if old_ss != 0 && guest_memory::write(old_ss, &old).is_err() {
        return Reissue::Done(Errno::EFAULT.to_syscall_result());
    }
    let Some(new) = install else {
        return Reissue::Done(0);
    };
    let real = if new.flags & !(SS_AUTODISARM as i32) == SS_DISABLE as i32 {
        thread::forget_guest_altstack(state);
        for field in &state.guest_altstack {
            field.store(0, Ordering::Relaxed);
        }
        [0, 1, 2].map(|i| state.altstack[i].load(Ordering::Relaxed))
    } else {
        if !thread::remember_guest_altstack(state, new.sp as usize) {
            return Reissue::Done(Errno::ENOMEM.to_syscall_result());
        }
        let flags = (new.flags & SS_AUTODISARM as i32) as u64;
        state.guest_altstack[1].store(new.size, Ordering::Relaxed);
        state.guest_altstack[2].store(flags, Ordering::Relaxed);
        [new.sp, flags, new.size]
    };
    for (field, value) in state.pending_altstack.iter().zip(real) {
        field.store(value, Ordering::Relaxed);
    }
    at.regs.rax = 0;
    Reissue::Stub { entry: addr::sud_reissue_set_altstack(), r11: state.pending_altstack.as_ptr() as u64 }
}

/// An argument register.
#[derive(Clone, Copy)]
enum Arg {
    Rdi,
    Rsi,
    R10,
    R8,
}

/// A syscall taking a signal mask through the pointer in `arg`: if the mask
/// holds SIGSYS, the syscall runs with a copy without it, and the register
/// gets its own value back afterwards (`sud_reissue_keep_*`).
fn sanitise_mask(state: &ThreadState, regs: &mut Registers, arg: Arg) -> Reissue {
    let (register, stub) = match arg {
        Arg::Rdi => (&mut regs.rdi, addr::sud_reissue_keep_rdi()),
        Arg::Rsi => (&mut regs.rsi, addr::sud_reissue_keep_rsi()),
        Arg::R10 => (&mut regs.r10, addr::sud_reissue_keep_r10()),
        Arg::R8 => (&mut regs.r8, addr::sud_reissue_keep_r8()),
    };
    let pointer = *register as usize;
    // An unreadable mask is the kernel's to refuse (EFAULT).
    let Ok(mask) = guest_memory::read::<u64>(pointer) else {
        return Reissue::Plain;
    };
    if pointer == 0 || mask & SIGSYS_BIT == 0 {
        return Reissue::Plain;
    }
    state.scratch_mask.store(mask & !SIGSYS_BIT, Ordering::Relaxed);
    *register = state.scratch_mask.as_ptr() as u64;
    Reissue::Stub { entry: stub, r11: pointer as u64 }
}

/// pselect6: its sixth argument points to a (mask pointer, size) pair.
fn sanitise_pselect(state: &ThreadState, regs: &mut Registers) -> Reissue {
    let pair_pointer = regs.r9 as usize;
    let Ok([mask_pointer, size]) = guest_memory::read::<[u64; 2]>(pair_pointer) else {
        return Reissue::Plain;
    };
    let Ok(mask) = guest_memory::read::<u64>(mask_pointer as usize) else {
        return Reissue::Plain;
    };
    if pair_pointer == 0 || mask_pointer == 0 || mask & SIGSYS_BIT == 0 {
        return Reissue::Plain;
    }
    state.scratch_mask.store(mask & !SIGSYS_BIT, Ordering::Relaxed);
    state.scratch_pselect[0].store(state.scratch_mask.as_ptr() as u64, Ordering::Relaxed);
    state.scratch_pselect[1].store(size, Ordering::Relaxed);
    regs.r9 = state.scratch_pselect.as_ptr() as u64;
    Reissue::Stub { entry: addr::sud_reissue_keep_r9(), r11: pair_pointer as u64 }
}

/// A guest's own rt_sigreturn: its frame's mask is the one to reinstall,
/// so SIGSYS goes from it to the virtual mask.  RSP points at the frame's
/// ucontext (the handler's `ret` took the restorer address off the stack).
pub(crate) fn guest_sigreturn(state: &ThreadState, regs: &Registers) {
    let mask_at = regs.rsp as usize + offset_of!(UContext, uc_sigmask);
    // An unreadable frame is for rt_sigreturn itself to fail on.
    if let Ok(mask) = guest_memory::read::<u64>(mask_at) {
        state.guest_blocks_sigsys.store(mask & SIGSYS_BIT != 0, Ordering::Relaxed);
        if mask & SIGSYS_BIT != 0 {
            let _ = guest_memory::write(mask_at, &(mask & !SIGSYS_BIT));
        }
    }
}


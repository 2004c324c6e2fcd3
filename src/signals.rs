//! Signals around dispatch.
//!
//! - **SIGSYS stays deliverable.**  While a thread is armed, a SIGSYS that
//!   finds it blocked or ignored kills the process.  So when the callback
//!   reissues a syscall that would block or ignore it (rt_sigprocmask,
//!   rt_sigaction, the syscalls that wait under a mask of their own —
//!   rt_sigsuspend, ppoll, pselect6, epoll_pwait(2), io_pgetevents,
//!   io_uring_enter — and a guest's own rt_sigreturn, whose frame carries a
//!   mask), the runtime carries it out with SIGSYS left out, and keeps what
//!   the guest asked for as virtual state that it reports back: the guest
//!   sees exactly the values it set.  Its sigaltstack is kept too (below).
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
    KernelSigaction, RED_ZONE, Registers, SIG_IGN, SIGSET_SIZE, SigInfo, UContext, sigmask,
};
use crate::sigsys::{Interrupted, Reissue, set_thread_mask, sigaction};
use crate::syscalls::{guest_memory, host};
use crate::thread::{self, ThreadState};
use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};
use linux_raw_sys::general::{
    __NR_close, __NR_epoll_pwait, __NR_epoll_pwait2, __NR_getpid, __NR_gettid, __NR_io_pgetevents,
    __NR_io_uring_enter, __NR_kcmp, __NR_openat, __NR_ppoll, __NR_pselect6, __NR_read,
    __NR_rt_sigaction, __NR_rt_sigprocmask, __NR_rt_sigsuspend, __NR_sched_yield, __NR_sigaltstack,
    AT_FDCWD, MINSIGSTKSZ, O_RDONLY, SA_ONSTACK, SA_RESETHAND, SA_RESTORER, SA_SIGINFO, SIG_BLOCK,
    SIG_SETMASK, SIG_UNBLOCK, SIGKILL, SIGSTOP, SIGSYS, SS_AUTODISARM, SS_DISABLE, SS_ONSTACK,
};
use linux_raw_sys::io_uring::{
    IORING_ENTER_EXT_ARG, IORING_ENTER_EXT_ARG_REG, IORING_ENTER_GETEVENTS, io_uring_getevents_arg,
};

/// Signals 1 to 64; index 0 unused.
const NSIG: usize = 65;
const SIGSYS_BIT: u64 = sigmask(SIGSYS);

/// A kernel_sigaction in atomics, for tables read in signal context: a
/// sequence count makes every read see one whole action, never half of two.
/// Written only under its signal's [`HolderLock`].
struct ActionCell {
    /// Odd while a write is under way.
    sequence: AtomicU64,
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
            sequence: AtomicU64::new(0),
            handler: AtomicUsize::new(0),
            flags: AtomicU64::new(0),
            restorer: AtomicUsize::new(0),
            mask: AtomicU64::new(0),
            set: AtomicU64::new(0),
        }
    }

    /// The action; `lock` is the one its writers hold.
    fn get(&self, lock: &HolderLock) -> Option<KernelSigaction> {
        let mut wait = Wait::new();
        loop {
            let before = self.sequence.load(Ordering::Acquire);
            if before & 1 == 0 {
                let set = self.set.load(Ordering::Relaxed) != 0;
                let action = KernelSigaction {
                    handler: self.handler.load(Ordering::Relaxed),
                    flags: self.flags.load(Ordering::Relaxed),
                    restorer: self.restorer.load(Ordering::Relaxed),
                    mask: self.mask.load(Ordering::Relaxed),
                };
                fence(Ordering::Acquire);
                if self.sequence.load(Ordering::Relaxed) == before {
                    return set.then_some(action);
                }
            } else if wait.long() && lock.holder_is_gone() {
                // Forked while a thread of the parent was writing: that
                // write will never end here.  The cell is taken as it is.
                let _ = self.sequence.compare_exchange(
                    before,
                    before + 1,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Writes `action` (or clears the cell).  The caller holds the
    /// signal's lock, so no other write is under way (but one abandoned by
    /// a thread the process was forked from).
    fn write(&self, action: Option<&KernelSigaction>) {
        let sequence = self.sequence.load(Ordering::Relaxed);
        let before = sequence + (sequence & 1);
        self.sequence.store(before + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        if let Some(action) = action {
            self.handler.store(action.handler, Ordering::Relaxed);
            self.flags.store(action.flags, Ordering::Relaxed);
            self.restorer.store(action.restorer, Ordering::Relaxed);
            self.mask.store(action.mask, Ordering::Relaxed);
        }
        self.set.store(action.is_some() as u64, Ordering::Relaxed);
        self.sequence.store(before + 2, Ordering::Release);
    }
}

/// Waiting for another thread's few instructions: spinning, then yielding
/// the CPU.  After a while the wait is `long`, and it is worth asking
/// whether the other thread is there at all.
struct Wait {
    rounds: u32,
}

impl Wait {
    const SPINS: u32 = 1 << 10;
    const YIELDS: u32 = 1 << 14;

    fn new() -> Wait {
        Wait { rounds: 0 }
    }

    /// Waits a little; true once the wait has been long (and from then on).
    fn long(&mut self) -> bool {
        self.rounds = self.rounds.saturating_add(1);
        if self.rounds < Self::SPINS {
            core::hint::spin_loop();
        } else {
            // SAFETY: sched_yield has no arguments.
            let _ = unsafe { host::syscall0(__NR_sched_yield) };
        }
        self.rounds >= Self::SPINS + Self::YIELDS
    }
}

/// A lock that names its holder (a tid), taken with every signal blocked
/// (a handler on the holder's thread could want it too).  A process forked
/// while a thread of its parent held it has a copy of it held by no one
/// here: after a long wait a waiter asks the kernel whether the holder
/// shares its memory (kcmp KCMP_VM) and takes the lock over only if it does
/// not, or no longer exists.  A holder that is merely slow (preempted,
/// stopped by a debugger) is waited for, however long.
struct HolderLock {
    holder: AtomicU32,
}

/// `KCMP_VM` of `enum kcmp_type` (include/uapi/linux/kcmp.h).
const KCMP_VM: usize = 1;

impl HolderLock {
    const fn new() -> HolderLock {
        HolderLock {
            holder: AtomicU32::new(0),
        }
    }

    /// Runs `f` holding the lock, with every signal blocked.
    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        let saved = block_all_signals();
        // SAFETY: gettid has no arguments.
        let me = unsafe { host::syscall0(__NR_gettid) }.unwrap_or(0) as u32;
        let mut wait = Wait::new();
        loop {
            let holder = self.holder.load(Ordering::Relaxed);
            let takeable = holder == 0 || (wait.long() && holder_is_gone(holder));
            if takeable
                && self
                    .holder
                    .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
        }
        let out = f();
        self.holder.store(0, Ordering::Release);
        set_thread_mask(saved);
        out
    }

    /// Whether the lock is held by a thread that is not in this memory.
    fn holder_is_gone(&self) -> bool {
        let holder = self.holder.load(Ordering::Relaxed);
        holder != 0 && holder_is_gone(holder)
    }
}

/// Whether thread `holder` does not share this process's memory (or does
/// not exist).  When the kernel cannot tell (no kcmp), it is assumed to.
fn holder_is_gone(holder: u32) -> bool {
    // SAFETY: getpid has no arguments; kcmp only compares.
    unsafe {
        let Ok(me) = host::syscall0(__NR_getpid) else {
            return false;
        };
        match host::syscall5(__NR_kcmp, me, holder as usize, KCMP_VM, 0, 0) {
            Ok(same) => same != 0,
            Err(errno) => errno == Errno::ESRCH,
        }
    }
}

/// One signal's dispositions, the guest's and the host's, and the lock
/// every change to either is made under, with what is installed for it.
struct SignalActions {
    lock: HolderLock,
    /// The guest's disposition, as it set it (SIGSYS's is never installed).
    guest: ActionCell,
    /// The host handler sud runs under ALLOW.
    host: ActionCell,
}

impl SignalActions {
    fn guest(&self) -> Option<KernelSigaction> {
        self.guest.get(&self.lock)
    }

    fn host(&self) -> Option<KernelSigaction> {
        self.host.get(&self.lock)
    }
}

static ACTIONS: [SignalActions; NSIG] = [const {
    SignalActions {
        lock: HolderLock::new(),
        guest: ActionCell::new(),
        host: ActionCell::new(),
    }
}; NSIG];

/// Blocks every signal on this thread; returns the mask to restore.
fn block_all_signals() -> u64 {
    let (all, mut old) = (!0u64, 0u64);
    // SAFETY: valid sigsets in and out.
    let _ = unsafe {
        host::syscall4(
            __NR_rt_sigprocmask,
            SIG_SETMASK as usize,
            &all as *const u64 as usize,
            &mut old as *mut u64 as usize,
            SIGSET_SIZE,
        )
    };
    old
}

/// SA_RESETHAND: the kernel reset `signal`'s disposition as it delivered
/// it; the guest's record follows, unless the guest set another one since
/// (the record is no longer `delivered`).
pub(crate) fn reset_guest_action(signal: u32, delivered: &KernelSigaction) {
    let actions = &ACTIONS[signal as usize];
    actions.lock.with(|| {
        if actions.guest() == Some(*delivered) {
            actions.guest.write(Some(&KernelSigaction::default()));
        }
    });
}

/// The guest's SIGSYS disposition, if it set one.
pub(crate) fn guest_sigsys_action() -> Option<KernelSigaction> {
    ACTIONS[SIGSYS as usize].guest()
}

/// The disposition the guest last set for `signal` through a trapped
/// rt_sigaction (which, for a signal with a host handler, and for SIGSYS,
/// sud keeps to itself rather than install), so that a host handler can pass
/// a signal on to the guest.  `None` if the guest never set one.
pub fn guest_action(signal: u32) -> Option<(usize, u64, u64)> {
    ACTIONS
        .get(signal as usize)?
        .guest()
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
pub fn install_host_handler(
    signal: u32,
    handler: HostHandler,
    mask: u64,
    flags: u64,
) -> Result<(), Error> {
    if signal == SIGSYS
        || signal == SIGKILL
        || signal == SIGSTOP
        || signal == 0
        || signal as usize >= NSIG
    {
        return Err(Error::Os(Errno::EINVAL));
    }
    let action = KernelSigaction {
        handler: handler as usize,
        flags: flags | SA_SIGINFO as u64,
        restorer: 0,
        mask,
    };
    // Under the signal's lock: a guest's rt_sigaction for it at the same
    // time cannot install over this.
    let actions = &ACTIONS[signal as usize];
    actions.lock.with(|| {
        let previous = actions.host();
        actions.host.write(Some(&action));
        let real = real_action(&action);
        if let Err(errno) = sigaction(signal, Some(&real)) {
            actions.host.write(previous.as_ref());
            return Err(errno.into());
        }
        Ok(())
    })
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
    install_host_handler(
        signal,
        handler,
        current.mask,
        current.flags & !(SA_RESTORER as u64),
    )
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
///
/// # Safety
/// Only the kernel calls it, as an SA_SIGINFO handler: `info` and `uc`
/// point into the live signal frame.
unsafe extern "C" fn signal_entry(signal: i32, info: *mut SigInfo, uc: *mut UContext) {
    // SAFETY: the kernel passes the live frame's siginfo and ucontext.
    let uc_ref = unsafe { &mut *uc };
    let state = thread::current(uc_ref);
    let actions = &ACTIONS[signal as usize];
    if let Some(host) = actions.host() {
        if host.flags & SA_RESETHAND as u64 != 0 {
            // The kernel reset the real disposition as it delivered this:
            // the host handler is gone, unless another was installed since.
            actions.lock.with(|| {
                if actions.host() == Some(host) {
                    actions.host.write(None);
                }
            });
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
    } else if let Some(guest) = actions.guest() {
        if guest.flags & SA_RESETHAND as u64 != 0 {
            reset_guest_action(signal as u32, &guest);
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
        state
            .guest_blocks_sigsys
            .store(before || guest.mask & SIGSYS_BIT != 0, Ordering::Relaxed);
        // SAFETY: guest handlers are guest code.
        selector.block();
        call_handler(guest.handler, signal, info, uc);
        state
            .guest_blocks_sigsys
            .store((*uc).uc_sigmask & SIGSYS_BIT != 0, Ordering::Relaxed);
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
        // The syscalls that wait under a mask of their own.
        __NR_rt_sigsuspend => sanitise_mask(at.regs, Arg::Rdi),
        __NR_ppoll => sanitise_mask(at.regs, Arg::R10),
        __NR_epoll_pwait | __NR_epoll_pwait2 => sanitise_mask(at.regs, Arg::R8),
        // Their mask behind a (pointer, size) pair: pselect6's sixth argument,
        // io_pgetevents' struct __aio_sigset.
        __NR_pselect6 | __NR_io_pgetevents => sanitise_mask_pair(at.regs),
        __NR_io_uring_enter => sanitise_io_uring_enter(at.regs),
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
    let (how, set, oldset, size) = (
        regs.rdi as u32,
        regs.rsi as usize,
        regs.rdx as usize,
        regs.r10,
    );
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let virtual_bit = if state.guest_blocks_sigsys.load(Ordering::Relaxed) {
        SIGSYS_BIT
    } else {
        0
    };
    let old = *at.sigmask | virtual_bit;
    if set != 0 {
        let new: u64 = guest_memory::read(set)?;
        let mask = match how {
            SIG_BLOCK => old | new,
            SIG_UNBLOCK => old & !new,
            SIG_SETMASK => new,
            _ => return Err(Errno::EINVAL),
        } & !(sigmask(SIGKILL) | sigmask(SIGSTOP));
        state
            .guest_blocks_sigsys
            .store(mask & SIGSYS_BIT != 0, Ordering::Relaxed);
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
    let (signal, act, oldact, size) = (
        regs.rdi as u32,
        regs.rsi as usize,
        regs.rdx as usize,
        regs.r10,
    );
    if size != 8 || signal == 0 || signal as usize >= NSIG {
        return Err(Errno::EINVAL);
    }
    if act != 0 && (signal == SIGKILL || signal == SIGSTOP) {
        return Err(Errno::EINVAL);
    }
    let new: Option<KernelSigaction> = if act != 0 {
        Some(guest_memory::read(act)?)
    } else {
        None
    };
    let record = records_are_mine();
    let old = ACTIONS[signal as usize]
        .lock
        .with(|| record_and_install(signal, new, record))?;
    if oldact != 0 {
        guest_memory::write(oldact, &old)?;
    }
    Ok(())
}

/// The process whose dispositions the records are (0 until the first
/// guest rt_sigaction): they describe its handler table, in its memory.
static RECORDS_PID: AtomicUsize = AtomicUsize::new(0);

/// `KCMP_SIGHAND` of `enum kcmp_type` (include/uapi/linux/kcmp.h).
const KCMP_SIGHAND: usize = 4;

/// Whether a guest rt_sigaction made here belongs in the records: in the
/// process they describe, or in one with a copy of them (a fork child, whose
/// copy they become), or in one that shares both the memory and the handler
/// table.  Not in a child that shares the memory but has a handler table of
/// its own (vfork, posix_spawn): what it sets (SIG_DFL for every handled
/// signal, before it execs) is its own, and recorded it would become its
/// parent's.  When the kernel cannot tell (no kcmp), they are.
fn records_are_mine() -> bool {
    // SAFETY: getpid has no arguments.
    let Ok(me) = (unsafe { host::syscall0(__NR_getpid) }) else {
        return true;
    };
    let owner = match RECORDS_PID.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => return true,
        Err(owner) => owner,
    };
    if owner == me {
        return true;
    }
    // SAFETY: kcmp only compares two tasks' resources.
    let same = |what: usize| unsafe { host::syscall5(__NR_kcmp, owner, me, what, 0, 0) };
    match same(KCMP_VM) {
        // Shared memory: the records are its too only with the handlers
        // (kcmp answers 1, 2 or 3 for two different ones).
        Ok(0) => !matches!(same(KCMP_SIGHAND), Ok(1..)),
        Err(errno) if errno != Errno::ESRCH => true,
        // Memory of its own (or the owner is gone): the records are this
        // process's from now on.
        _ => {
            RECORDS_PID.store(me, Ordering::Release);
            true
        }
    }
}

/// rt_sigaction's work, under the signal's lock: the guest's previous
/// disposition, and `new` installed and, if `record`, recorded.
fn record_and_install(
    signal: u32,
    new: Option<KernelSigaction>,
    record: bool,
) -> Result<KernelSigaction, Errno> {
    let actions = &ACTIONS[signal as usize];
    let recorded = actions.guest();
    let old = match recorded {
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
        // Recorded first: the signal may come the moment it is installed.
        if record {
            actions.guest.write(Some(&new));
        }
        let keep_to_ourselves = signal == SIGSYS || actions.host().is_some();
        if !keep_to_ourselves {
            let real = if new.handler <= SIG_IGN {
                KernelSigaction {
                    mask: new.mask & !SIGSYS_BIT,
                    ..new
                }
            } else {
                real_action(&KernelSigaction {
                    flags: new.flags & !(SA_RESTORER as u64),
                    ..new
                })
            };
            if let Err(errno) = sigaction(signal, Some(&real)) {
                if record {
                    actions.guest.write(recorded.as_ref());
                }
                return Err(errno);
            }
        }
    }
    Ok(old)
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
        if let Ok(fd) = host::syscall4(
            __NR_openat,
            AT_FDCWD as usize,
            path.as_ptr() as usize,
            O_RDONLY as usize,
            0,
        ) {
            if let Ok(len) = host::syscall3(
                __NR_read,
                fd,
                auxv.as_mut_ptr() as usize,
                size_of_val(&auxv),
            ) {
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
static_assertions::const_assert_eq!(
    size_of::<Stack>(),
    size_of::<linux_raw_sys::general::stack_t>()
);
static_assertions::const_assert_eq!(
    offset_of!(Stack, size),
    offset_of!(linux_raw_sys::general::stack_t, ss_size)
);

/// How far below the guest's RSP `sud_reissue_set_altstack` makes its
/// sigaltstack: the red zone, then the return address and three registers.
const SET_ALTSTACK_STUB_DEPTH: u64 = RED_ZONE as u64 + 4 * 8;

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
        Stack {
            sp: 0,
            flags: SS_DISABLE as i32,
            _pad: 0,
            size: 0,
        }
    } else {
        let onstack = if on_guest_stack { SS_ONSTACK as i32 } else { 0 };
        Stack {
            sp: guest_sp,
            flags: onstack | (guest_flags & SS_AUTODISARM as i32),
            _pad: 0,
            size: guest_size,
        }
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
        // The stub's own RSP too, where the kernel will look: a guest just
        // above the stack gets EPERM rather than a stack never installed.
        let stub_rsp = rsp.wrapping_sub(SET_ALTSTACK_STUB_DEPTH);
        let on_real = |sp: u64| sp > real_sp && sp - real_sp <= real_size;
        if !autodisarm && (on_real(rsp) || on_real(stub_rsp)) {
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
        // The guest's stack stays on record until a later one replaces it:
        // a frame may still land on it before the stub switches.
        for field in &state.guest_altstack {
            field.store(0, Ordering::Relaxed);
        }
        [0, 1, 2].map(|i| state.altstack[i].load(Ordering::Relaxed))
    } else {
        if !thread::remember_guest_altstack(state, new.sp as usize, (new.sp + new.size) as usize) {
            return Reissue::Done(Errno::ENOMEM.to_syscall_result());
        }
        let flags = (new.flags & SS_AUTODISARM as i32) as u64;
        state.guest_altstack[0].store(new.sp, Ordering::Relaxed);
        state.guest_altstack[1].store(new.size, Ordering::Relaxed);
        state.guest_altstack[2].store(flags, Ordering::Relaxed);
        [new.sp, flags, new.size]
    };
    for (field, value) in state.pending_altstack.iter().zip(real) {
        field.store(value, Ordering::Relaxed);
    }
    at.regs.rax = 0;
    Reissue::Stub {
        entry: addr::sud_reissue_set_altstack(),
        r11: state.pending_altstack.as_ptr() as u64,
    }
}

/// An argument register.
#[derive(Clone, Copy)]
enum Arg {
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
fn sanitise_mask(regs: &Registers, arg: Arg) -> Reissue {
    let (pointer, entry) = match arg {
        Arg::Rdi => (regs.rdi, addr::sud_reissue_mask_rdi()),
        Arg::R10 => (regs.r10, addr::sud_reissue_mask_r10()),
        Arg::R8 => (regs.r8, addr::sud_reissue_mask_r8()),
    };
    match mask_holding_sigsys(pointer) {
        Some(mask) => Reissue::Stub {
            entry,
            r11: mask & !SIGSYS_BIT,
        },
        None => Reissue::Plain,
    }
}

/// pselect6 and io_pgetevents: their sixth argument points to a (mask
/// pointer, size) pair.  A size other than the kernel's sigset is for the
/// kernel to refuse (EINVAL), as it is.
fn sanitise_mask_pair(regs: &Registers) -> Reissue {
    let Ok([mask_pointer, size]) = guest_memory::read::<[u64; 2]>(regs.r9 as usize) else {
        return Reissue::Plain;
    };
    match mask_holding_sigsys(mask_pointer) {
        Some(mask) if regs.r9 != 0 && size == SIGSET_SIZE as u64 => Reissue::Stub {
            entry: addr::sud_reissue_mask_pair(),
            r11: mask & !SIGSYS_BIT,
        },
        _ => Reissue::Plain,
    }
}

/// io_uring_enter(fd, to_submit, min_complete, flags, argp, argsz): while it
/// waits for completions it applies a mask, given by `argp` (with
/// IORING_ENTER_GETEVENTS): the mask itself, or with IORING_ENTER_EXT_ARG a
/// `struct io_uring_getevents_arg` whose first field points to it.
fn sanitise_io_uring_enter(regs: &Registers) -> Reissue {
    let flags = regs.r10 as u32;
    // Without GETEVENTS it does not wait; with EXT_ARG_REG, argp is an
    // offset into a registered region, which keeps no mask.
    if flags & IORING_ENTER_GETEVENTS == 0 || flags & IORING_ENTER_EXT_ARG_REG != 0 {
        return Reissue::Plain;
    }
    if flags & IORING_ENTER_EXT_ARG == 0 {
        return sanitise_mask(regs, Arg::R8);
    }
    // Any other size the kernel refuses (EINVAL), as it is.
    if regs.r9 != size_of::<io_uring_getevents_arg>() as u64 {
        return Reissue::Plain;
    }
    let Ok(arg) = guest_memory::read::<io_uring_getevents_arg>(regs.r8 as usize) else {
        return Reissue::Plain;
    };
    match mask_holding_sigsys(arg.sigmask) {
        Some(mask) if regs.r8 != 0 => Reissue::Stub {
            entry: addr::sud_reissue_mask_uring_arg(),
            r11: mask & !SIGSYS_BIT,
        },
        _ => Reissue::Plain,
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

/// A guest's own rt_sigreturn: its frame's mask is the one to reinstall,
/// so SIGSYS goes from it to the virtual mask.  RSP points at the frame's
/// ucontext (the handler's `ret` took the restorer address off the stack).
pub(crate) fn guest_sigreturn(state: &ThreadState, regs: &Registers) {
    let mask_at = regs.rsp as usize + offset_of!(UContext, uc_sigmask);
    // An unreadable frame is for rt_sigreturn itself to fail on.
    if let Ok(mask) = guest_memory::read::<u64>(mask_at) {
        state
            .guest_blocks_sigsys
            .store(mask & SIGSYS_BIT != 0, Ordering::Relaxed);
        if mask & SIGSYS_BIT != 0 {
            let _ = guest_memory::write(mask_at, &(mask & !SIGSYS_BIT));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// A lock left held by a thread of another memory (as in a process
    /// forked while a thread of its parent held it) is taken over.
    #[test]
    fn lock_of_a_holder_in_another_memory_is_taken_over() {
        // A task that is not in this memory: a child process (kcmp says
        // another VM), then, reaped, no task at all (ESRCH).
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let lock = HolderLock::new();
        lock.holder.store(child.id(), Ordering::Relaxed);
        assert!(lock.holder_is_gone(), "a live holder in another memory");
        assert_eq!(lock.with(|| 7), 7);
        assert_eq!(lock.holder.load(Ordering::Relaxed), 0);
        child.kill().unwrap();
        child.wait().unwrap();
        lock.holder.store(child.id(), Ordering::Relaxed);
        assert!(lock.holder_is_gone(), "a holder that no longer exists");
        assert_eq!(lock.with(|| 8), 8);
    }

    /// A lock held by a thread of this process is waited for, however long.
    #[test]
    fn lock_of_a_live_holder_is_waited_for() {
        let lock = Arc::new(HolderLock::new());
        // SAFETY: gettid has no arguments.
        let me = unsafe { host::syscall0(__NR_gettid) }.unwrap() as u32;
        lock.holder.store(me, Ordering::Relaxed);
        assert!(!lock.holder_is_gone());
        let entered = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (lock, entered) = (lock.clone(), entered.clone());
            std::thread::spawn(move || lock.with(|| entered.store(true, Ordering::SeqCst)))
        };
        // Far longer than a Wait takes to become long.
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            !entered.load(Ordering::SeqCst),
            "the lock was taken from a live holder"
        );
        lock.holder.store(0, Ordering::Release);
        waiter.join().unwrap();
        assert!(entered.load(Ordering::SeqCst));
    }
}

//! Tasks the guest creates and ends, under [`Action::Reissue`](crate::Action):
//! fork, vfork, clone and clone3 run natively from a stub that arms every
//! child before it runs a guest instruction (and gives a new thread its own
//! state and alternate stack), and a managed thread's exit leaves nothing
//! behind.  The stubs are in `asm/x86_64/tasks.s`.

use super::continuation::Continuation;
use crate::dispositions::our_sigsys_action;
use crate::error::Errno;
use crate::kernel::Registers;
use crate::kernel::sigaction::KernelSigaction;
use crate::region::addr;
use crate::sys::{self, guest_memory};
use crate::table::{Table, ZeroIsFree, per_page};
use crate::thread::arena;
use crate::thread::spawn::{self, GuestThread, SpawnHook, wait_started};
use crate::thread::state::ThreadState;
use core::mem::size_of;
use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use linux_raw_sys::general::{
    __NR_clone, __NR_clone3, __NR_fork, __NR_vfork, CLONE_ARGS_SIZE_VER0, CLONE_CHILD_CLEARTID,
    CLONE_CHILD_SETTID, CLONE_CLEAR_SIGHAND, CLONE_DETACHED, CLONE_FILES, CLONE_FS,
    CLONE_PARENT_SETTID, CLONE_SETTLS, CLONE_SIGHAND, CLONE_SYSVSEM, CLONE_THREAD, CLONE_VFORK,
    CLONE_VM, SIGCHLD, clone_args,
};

/// Set in the state address `sud_reissue_fork` gets for a child with a
/// memory of its own (a state is aligned: its low bit is free), which
/// clears what the parent's other threads were doing with code writes.
pub(crate) const FORK_OWN_MEMORY: u64 = 1;
static_assertions::const_assert!(core::mem::align_of::<ThreadState>() > FORK_OWN_MEMORY as usize);

/// A thread inside a vfork, as `sud_reissue_vfork` reads it.  A vfork
/// parent wakes to a stack its child has used, so what it needs afterwards
/// is kept here; the stub carries the entry's address across the vfork in
/// RBX, whose guest value waits here meanwhile.
#[repr(C)]
pub(crate) struct VforkParent {
    /// The parent's tid; 0 for a free entry.
    pub tid: AtomicU64,
    /// The guest's RSP at its vfork: with the tid, what tells a call that
    /// never reached its stub (a signal took the thread elsewhere).
    pub rsp: AtomicU64,
    /// The guest's return address.
    pub resume: AtomicU64,
    /// The guest's signal mask, stored by the stub.
    pub mask: AtomicU64,
    /// The state the child is armed from.
    pub state: AtomicU64,
    /// The guest's RBX, while the stub keeps the entry there.
    pub rbx: AtomicU64,
}

// SAFETY: all zeros is a free entry (tid 0) of plain atomics.
unsafe impl ZeroIsFree for VforkParent {}

/// The threads inside a vfork: as many as there are, an entry each.
static VFORK_PARENTS: Table<VforkParent, { per_page::<VforkParent>() }> = Table::new();

/// Where a new thread finds its state: this far below the top of the stack
/// its clone gives it, written there by the dispatcher.
pub(crate) const NEW_THREAD_TICKET_DEPTH: u64 = 16;

/// What a fork, vfork, clone or clone3 asks for.
struct CloneRequest {
    flags: u64,
    /// The top of the child's stack, when it gets one.
    stack_top: Option<u64>,
    /// CLONE_SETTLS's thread pointer, CLONE_PARENT_SETTID's and
    /// CLONE_CHILD_SETTID/CLEARTID's addresses (meaningful with the flag).
    tls: u64,
    parent_tid: u64,
    child_tid: u64,
    /// clone3's fields past the flags, stack and tid words are their
    /// defaults (no exit signal, set_tid, cgroup or bytes past the struct
    /// sud knows): a thread like a pthread may be asked for.
    plain_extras: bool,
}

impl CloneRequest {
    /// Whether the kernel will refuse it for a reason sud can see without
    /// it: clone3 with a stack but no size or a size but no stack, a thread
    /// without shared handlers, shared handlers without shared memory.  The
    /// kernel is left to refuse it, as it is: nothing is written for it.
    fn refused(&self, stack_and_size_disagree: bool) -> bool {
        let flags = self.flags as u32;
        stack_and_size_disagree
            || (flags & CLONE_THREAD != 0 && flags & CLONE_SIGHAND == 0)
            || (flags & CLONE_SIGHAND != 0 && flags & CLONE_VM == 0)
    }
}

/// What the syscall in `regs` asks for, if it creates a task.
fn clone_request(nr: u32, regs: &Registers) -> Option<CloneRequest> {
    let fork_like = |flags: u32| CloneRequest {
        flags: flags as u64,
        stack_top: None,
        tls: 0,
        parent_tid: 0,
        child_tid: 0,
        plain_extras: true,
    };
    match nr {
        __NR_fork => Some(fork_like(SIGCHLD)),
        __NR_vfork => Some(fork_like(CLONE_VM | CLONE_VFORK | SIGCHLD)),
        // clone(flags, stack, parent_tid, child_tid, tls)
        __NR_clone => Some(CloneRequest {
            flags: regs.rdi,
            stack_top: (regs.rsi != 0).then_some(regs.rsi),
            parent_tid: regs.rdx,
            child_tid: regs.r10,
            tls: regs.r8,
            plain_extras: true,
        })
        .filter(|request| !request.refused(false)),
        __NR_clone3 => {
            // Anything the kernel will refuse (a short or unreadable struct)
            // is left for it to refuse.
            if regs.rsi < CLONE_ARGS_SIZE_VER0 as u64 {
                return None;
            }
            // As much of the struct as the guest gave, and sud knows; the
            // rest reads as zero (its defaults).
            let size = (regs.rsi as usize).min(size_of::<clone_args>());
            let args: CloneArgs = guest_memory::read_prefix(regs.rdi as usize, size).ok()?;
            let args = args.0;
            let request = CloneRequest {
                flags: args.flags,
                stack_top: (args.stack != 0).then_some(args.stack.wrapping_add(args.stack_size)),
                parent_tid: args.parent_tid,
                child_tid: args.child_tid,
                tls: args.tls,
                plain_extras: regs.rsi as usize <= size_of::<clone_args>()
                    && args.exit_signal == 0
                    && args.set_tid == 0
                    && args.set_tid_size == 0
                    && args.cgroup == 0,
            };
            let disagree = (args.stack == 0) != (args.stack_size == 0);
            (!request.refused(disagree)).then_some(request)
        }
        _ => None,
    }
}

/// `clone_args`, zero-initialised for a prefix read.
#[derive(Clone, Copy)]
struct CloneArgs(clone_args);

impl Default for CloneArgs {
    fn default() -> CloneArgs {
        // SAFETY: clone_args is plain integers; all zeros is its default.
        CloneArgs(unsafe { core::mem::zeroed() })
    }
}

/// fork, vfork, clone, clone3: picks the stub, and for a new thread
/// prepares its state, or hands it to the host's spawn hook.  `blocked`:
/// whether the guest made the syscall under BLOCK, as a new thread's own
/// selector starts out; `sigmask`: the guest's signal mask.
pub(crate) fn clone(
    state: &'static ThreadState,
    regs: &Registers,
    blocked: bool,
    sigmask: u64,
) -> Continuation {
    let nr = regs.rax as u32;
    let Some(request) = clone_request(nr, regs) else {
        return Continuation::Plain;
    };
    crate::thread::site::before_clone(state);
    let flags = request.flags;
    if let (Some(top), Some(hook), true) = (
        request.stack_top,
        spawn::hook(),
        is_plain_thread(flags) && request.plain_extras,
    ) {
        return spawn_guest_thread(hook, state, regs, &request, top, sigmask);
    }
    let new_stack = request.stack_top;
    let clear_sighand = flags & CLONE_CLEAR_SIGHAND != 0;
    if let Some(top) = new_stack {
        return new_thread(state, regs, flags, top, clear_sighand, blocked);
    }
    // The child runs on this stack and is armed from this thread's state: a
    // fork child from its own copy, a vfork child from the state it shares
    // while its parent sleeps.
    state.sigsys_action_for_child(clear_sighand);
    if flags & CLONE_VFORK as u64 == 0 {
        let own_memory = if flags & CLONE_VM as u64 == 0 {
            FORK_OWN_MEMORY
        } else {
            0
        };
        return Continuation::Stub {
            entry: addr::sud_reissue_fork(),
            r11: state as *const ThreadState as u64 | own_memory,
        };
    }
    let tid = sys::gettid() as u64;
    let rsp = regs.rsp;
    // An entry with this very key is left over from a vfork that never
    // reached its stub (the thread was interrupted and went elsewhere):
    // take it over.  Only this thread writes entries with its tid.
    let stale = VFORK_PARENTS.entries().find(|entry| {
        entry.tid.load(Ordering::Relaxed) == tid && entry.rsp.load(Ordering::Relaxed) == rsp
    });
    let take = |entry: &VforkParent| {
        entry.tid.load(Ordering::Relaxed) == 0
            && entry
                .tid
                .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    };
    let entry = match stale {
        Some(entry) => entry,
        None => {
            // Entries of gone threads are freed before the table grows:
            // checking them costs a syscall each.
            let claimed = VFORK_PARENTS
                .claim_existing(take)
                .map(Ok)
                .unwrap_or_else(|| {
                    free_entries_of_gone_threads();
                    VFORK_PARENTS.claim(take)
                });
            match claimed {
                Ok(entry) => entry,
                // The kernel has no memory for the entry: as it answers a
                // vfork it has no memory for.
                Err(_) => return Continuation::Done(Errno::ENOMEM.to_syscall_result()),
            }
        }
    };
    entry.rsp.store(rsp, Ordering::Relaxed);
    entry.resume.store(regs.rip, Ordering::Relaxed);
    entry
        .state
        .store(state as *const ThreadState as u64, Ordering::Release);
    Continuation::Stub {
        entry: addr::sud_reissue_vfork(),
        r11: entry as *const VforkParent as u64,
    }
}

/// The flags a host thread (a pthread) shares with its process, which a
/// guest thread must ask for all of to be run on one.
const THREAD_SHARES: u32 =
    CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
/// The flags a guest thread run on a host thread may add: the ones whose
/// effect sud carries out itself.
const THREAD_EXTRAS: u32 =
    CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | CLONE_DETACHED;

/// Whether a clone makes a thread like a pthread: everything shared, no
/// exit signal, nothing asked that a host thread cannot give.
fn is_plain_thread(flags: u64) -> bool {
    let shares = THREAD_SHARES as u64;
    flags & shares == shares && flags & !(shares | THREAD_EXTRAS as u64) == 0
}

/// A new guest thread on a host thread: the hook makes the host thread,
/// and this creator waits until it has started (its tid), as a native
/// clone returns once the child exists.
fn spawn_guest_thread(
    hook: SpawnHook,
    parent: &ThreadState,
    regs: &Registers,
    request: &CloneRequest,
    top: u64,
    sigmask: u64,
) -> Continuation {
    let flags = request.flags as u32;
    let started = AtomicI32::new(0);
    let mut child = *regs;
    child.rsp = top;
    child.finish_syscall(0);
    let start = GuestThread {
        regs: child,
        tls: (flags & CLONE_SETTLS != 0).then_some(request.tls),
        set_parent_tid: (flags & CLONE_PARENT_SETTID != 0).then_some(request.parent_tid as usize),
        set_child_tid: (flags & CLONE_CHILD_SETTID != 0).then_some(request.child_tid as usize),
        clear_child_tid: (flags & CLONE_CHILD_CLEARTID != 0).then_some(request.child_tid as usize),
        sigmask,
        blocks_sigsys: parent.guest.blocks_sigsys.load(Ordering::Relaxed),
        arming: parent.task.arming.mode(),
        data: parent.host.data.load(Ordering::Relaxed),
        started: &started,
    };
    if let Err(errno) = hook(start) {
        // The hook dropped the thread: it told `started` already.
        let _ = wait_started(&started);
        return Continuation::Done(errno.to_syscall_result());
    }
    let tid = wait_started(&started);
    Continuation::Done(tid as isize as usize)
}

/// Frees the entries of threads that no longer exist (left by a vfork that
/// never reached its stub, its thread gone since).
fn free_entries_of_gone_threads() {
    for entry in VFORK_PARENTS.entries() {
        let tid = entry.tid.load(Ordering::Relaxed);
        // In any process: a vfork child of this memory files entries too.
        if tid != 0 && !sys::task_exists(tid as i32) {
            let _ = entry
                .tid
                .compare_exchange(tid, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

/// A child on a stack of its own: a state of its own, found by the child
/// 16 bytes below the top of its stack.
fn new_thread(
    parent: &ThreadState,
    regs: &Registers,
    flags: u64,
    top: u64,
    clear_sighand: bool,
    blocked: bool,
) -> Continuation {
    let child = match arena::allocate() {
        Ok(child) => child,
        Err(error) => return Continuation::Done(error.guest_errno().to_syscall_result()),
    };
    // Every new thread gets a selector of its own, a child of a thread on
    // the global selector too: on a shared one, another thread's time in
    // its callback (ALLOW) would let this one's syscalls run untrapped, a
    // mask that blocks SIGSYS among them, and its next trap would then kill
    // the process.  It resumes guest code in the state its parent made the
    // clone in (its own selector starts at ALLOW).
    if blocked {
        // SAFETY: that is the state the parent's guest code runs in.
        unsafe { child.selector().block() };
    }
    let (op, range) = parent.task.arming.mode();
    child.task.arming.set(op, range, child.selector().as_ptr());
    child.task.resume.store(regs.rip, Ordering::Relaxed);
    child
        .host
        .data
        .store(parent.host.data.load(Ordering::Relaxed), Ordering::Relaxed);
    child.guest.blocks_sigsys.store(
        parent.guest.blocks_sigsys.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
    // A child in a memory of its own (no CLONE_VM), or a vfork child, is of
    // no more use to this process once the parent is back.
    let parent_releases = flags & CLONE_VM as u64 == 0 || flags & CLONE_VFORK as u64 != 0;
    child
        .claim
        .parent_releases
        .store(parent_releases, Ordering::Relaxed);
    child.sigsys_action_for_child(clear_sighand);
    let ticket = child as *const ThreadState as u64;
    let ticket_at = top.wrapping_sub(NEW_THREAD_TICKET_DEPTH) as usize;
    if guest_memory::write(ticket_at, &ticket).is_err() {
        // The new stack is not writable memory: no thread could run on it.
        let result = Errno::EFAULT.to_syscall_result();
        arena::release(child);
        // Only now is the creator done with the slot: from here on it may be
        // claimed (an error result makes it reusable), and nothing here
        // touches it again.
        child
            .claim
            .clone_result
            .store(result as u64, Ordering::Release);
        arena::slot_returned();
        return Continuation::Done(result);
    }
    Continuation::Stub {
        entry: addr::sud_reissue_thread(),
        r11: ticket,
    }
}

/// A new thread whose clone never ran (seccomp trapped it in
/// `sud_reissue_thread`, and the guest resumes past the stub): its state is
/// given back, and its creator is done with it.
pub(crate) fn clone_never_ran(child: &ThreadState) {
    arena::release(child);
    child
        .claim
        .clone_result
        .store(Errno::ECHILD.to_syscall_result() as u64, Ordering::Release);
}

impl ThreadState {
    /// Copies sud's SIGSYS action where a child armed from this state finds
    /// it, if its clone clears every handler (CLONE_CLEAR_SIGHAND); clears it
    /// otherwise.
    fn sigsys_action_for_child(&self, clear_sighand: bool) {
        let action = if clear_sighand {
            our_sigsys_action()
        } else {
            KernelSigaction::default()
        };
        self.task.sigsys_action.store(&action);
    }
}

/// A thread's exit: a managed thread releases its state on the way out.
/// Anything else (unmanaged threads, and a fork or vfork child, which runs
/// on a copy of its parent's state or shares it) just exits.  A managed
/// thread may reach here with the process-wide state (through `sud_entry`
/// with `sud_selector`, which a child of an unmanaged thread keeps, or from
/// an alternate stack sud has no record of): its slot is found by its tid.
pub(crate) fn exit(state: &'static ThreadState) -> Continuation {
    let tid = sys::gettid();
    let state = if state.is_global() {
        match arena::find_live(tid) {
            Some(own) => own,
            None => return Continuation::Plain,
        }
    } else {
        state
    };
    if state.claim.tid.load(Ordering::Relaxed) != tid {
        return Continuation::Plain;
    }
    let leave_to = state.task.leave_to.load(Ordering::Relaxed);
    if leave_to != 0 {
        // A guest thread on a host thread: back to the host thread.
        return Continuation::Stub {
            entry: addr::sud_leave_guest(),
            r11: leave_to,
        };
    }
    Continuation::Stub {
        entry: addr::sud_reissue_exit(),
        r11: state as *const ThreadState as u64,
    }
}

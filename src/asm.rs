//! Every line of assembly in the crate: the files in `asm/x86_64/`, given
//! their constants and symbols by Rust.  Nothing imports this module: it
//! only takes from every layer what the asm needs (struct offsets, stack
//! layouts, syscall numbers, the Rust functions it calls), and the layers
//! declare the asm symbols they use themselves (`sys::raw`: the
//! trampolines; `dispatch::direct`: `sud_call_on_stack`; `region`:
//! everything else).
//!
//! The allowed-region files go into a single `global_asm!` so they land in
//! one object file, in this order, as one input section `sud_allowed`.

use crate::dispatch::direct::{DirectFrame, ENTRY_CONTINUE_SLOT, entry_dispatch, redirect_run};
use crate::dispatch::signal::dispatch;
use crate::dispatch::site::site_dispatch;
use crate::kernel::sigaction::{ALL_BUT_SIGSYS, SIGSET_SIZE};
use crate::kernel::stack::{AtomicStack, RED_ZONE, disabled_stack};
use crate::kernel::{Registers, UContext};
use crate::region::sud_restorer;
use crate::reissue::guest_view as view;
use crate::reissue::tasks::{NEW_THREAD_TICKET_DEPTH, VforkParent};
use crate::signals::on_signal;
use crate::thread::arena::SLOTS_RETURNED;
use crate::thread::spawn::HostContext;
use crate::thread::state::{DEAD, ThreadState};
use crate::xsave;
use core::arch::global_asm;
use core::mem::{offset_of, size_of};
use linux_raw_sys::general::{
    __NR_exit, __NR_gettid, __NR_prctl, __NR_rt_sigaction, __NR_rt_sigprocmask, __NR_rt_sigreturn,
    __NR_sigaltstack, SIG_BLOCK, SIG_SETMASK, SIGSYS,
};
use linux_raw_sys::io_uring::io_uring_getevents_arg;
use linux_raw_sys::prctl::{PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF};

/// A `stack_t` that disables the alternate signal stack, for the exit stub.
static NO_ALTSTACK: AtomicStack = AtomicStack::holding(disabled_stack());

// The allowed region: trampolines, reissue and task stubs, restorer.
global_asm!(
    include_str!("../asm/x86_64/trampolines.s"),
    include_str!("../asm/x86_64/reissue.s"),
    include_str!("../asm/x86_64/tasks.s"),
    include_str!("../asm/x86_64/extended_state.s"),
    include_str!("../asm/x86_64/direct.s"),
    include_str!("../asm/x86_64/site.s"),
    include_str!("../asm/x86_64/restorer.s"),
    NR_RT_SIGRETURN = const __NR_rt_sigreturn,
    NR_RT_SIGACTION = const __NR_rt_sigaction,
    NR_RT_SIGPROCMASK = const __NR_rt_sigprocmask,
    NR_PRCTL = const __NR_prctl,
    NR_GETTID = const __NR_gettid,
    NR_SIGALTSTACK = const __NR_sigaltstack,
    NR_EXIT = const __NR_exit,
    PR_SET_SYSCALL_USER_DISPATCH = const PR_SET_SYSCALL_USER_DISPATCH,
    SIGSYS = const SIGSYS,
    SIG_SETMASK = const SIG_SETMASK,
    SIG_BLOCK = const SIG_BLOCK,
    RED_ZONE = const RED_ZONE,
    STATE_ARM_OP = const offset_of!(ThreadState, task.arming.op),
    STATE_ARM_OFFSET = const offset_of!(ThreadState, task.arming.offset),
    STATE_ARM_LEN = const offset_of!(ThreadState, task.arming.len),
    STATE_ARM_SELECTOR = const offset_of!(ThreadState, task.arming.selector),
    STATE_RESUME = const offset_of!(ThreadState, task.resume),
    STATE_ALTSTACK = const offset_of!(ThreadState, task.altstack),
    STATE_CLONE_RESULT = const offset_of!(ThreadState, claim.clone_result),
    STATE_CLONE_MASK = const offset_of!(ThreadState, task.clone_mask),
    STATE_STATE = const offset_of!(ThreadState, claim.status),
    STATE_SIGSYS_ACTION = const offset_of!(ThreadState, task.sigsys_action),
    STATE_TID = const offset_of!(ThreadState, claim.tid),
    STATE_PARENT_RELEASES = const offset_of!(ThreadState, claim.parent_releases),
    STATE_DEAD = const DEAD,
    SLOTS_RETURNED = sym SLOTS_RETURNED,
    FORKS_IN_FLIGHT = sym crate::sys::code::FORKS_IN_FLIGHT,
    WRITE_WINDOW = sym crate::sys::code::WRITE_WINDOW,
    REWRITE_LOCK = sym crate::rewrite::WRITING,
    FORK_OWN_MEMORY = const crate::reissue::tasks::FORK_OWN_MEMORY,
    VFORK_TID = const offset_of!(VforkParent, tid),
    VFORK_RETURN = const offset_of!(VforkParent, resume),
    VFORK_MASK = const offset_of!(VforkParent, mask),
    VFORK_STATE = const offset_of!(VforkParent, state),
    VFORK_RBX = const offset_of!(VforkParent, rbx),
    SIGSET_SIZE = const SIGSET_SIZE,
    URING_ARG_SIGMASK_SZ = const offset_of!(io_uring_getevents_arg, sigmask_sz),
    URING_ARG_TS = const offset_of!(io_uring_getevents_arg, ts),
    ALL_BUT_SIGSYS = sym ALL_BUT_SIGSYS,
    NO_ALTSTACK = sym NO_ALTSTACK,
    PR_SYS_DISPATCH_OFF = const PR_SYS_DISPATCH_OFF,
    XSAVE_HEADER = const xsave::HEADER_OFFSET,
    XSAVE_FSW = const xsave::FSW_OFFSET,
    FSW_ES = const xsave::FSW_ES,
    XSAVE_MODE_FXSAVE = const xsave::FXSAVE,
    XSAVE_MODE_XSAVE = const xsave::XSAVE,
    XSAVE_MODE_XSAVEC = const xsave::XSAVEC,
    XSAVE_MODE_REGISTERS = const xsave::REGISTERS,
    XCOMP_X87 = const xsave::X87,
    XCOMP_AVX = const xsave::AVX,
    XCOMP_OPMASK = const xsave::OPMASK,
    XCOMP_ZMM_HI256 = const xsave::ZMM_HI256,
    XCOMP_HI16_ZMM = const xsave::HI16_ZMM,
    REGS_V0 = const xsave::REGS_V0,
    REGS_V8 = const xsave::REGS_V8,
    REGS_V16 = const xsave::REGS_V16,
    REGS_K0 = const xsave::REGS_K0,
    REGS_MXCSR = const xsave::REGS_MXCSR,
    DEFAULT_MXCSR = sym xsave::DEFAULT_MXCSR,
    DEFAULT_FCW = sym xsave::DEFAULT_FCW,
    FRAME_SIZE = const size_of::<DirectFrame>(),
    ENTRY_CONTINUE_SLOT = const ENTRY_CONTINUE_SLOT,
    NEW_THREAD_TICKET_DEPTH = const NEW_THREAD_TICKET_DEPTH,
    MASK_RETURN = const view::MASK_RETURN,
    PAIR_RETURN = const view::PAIR_RETURN,
    URING_RETURN = const view::URING_RETURN,
    TASK_STATE = const view::TASK_STATE,
    TASK_RETURN = const view::TASK_RETURN,
    FRAME_WORD = const offset_of!(DirectFrame, word),
    REGS_RAX = const offset_of!(Registers, rax),
    REGS_RBX = const offset_of!(Registers, rbx),
    REGS_RCX = const offset_of!(Registers, rcx),
    REGS_RDX = const offset_of!(Registers, rdx),
    REGS_RSI = const offset_of!(Registers, rsi),
    REGS_RDI = const offset_of!(Registers, rdi),
    REGS_RBP = const offset_of!(Registers, rbp),
    REGS_R8 = const offset_of!(Registers, r8),
    REGS_R9 = const offset_of!(Registers, r9),
    REGS_R10 = const offset_of!(Registers, r10),
    REGS_R11 = const offset_of!(Registers, r11),
    REGS_R12 = const offset_of!(Registers, r12),
    REGS_R13 = const offset_of!(Registers, r13),
    REGS_R14 = const offset_of!(Registers, r14),
    REGS_R15 = const offset_of!(Registers, r15),
    REGS_RSP = const offset_of!(Registers, rsp),
    REGS_RIP = const offset_of!(Registers, rip),
    REGS_RFLAGS = const offset_of!(Registers, rflags),
    UC_MCONTEXT = const offset_of!(UContext, uc_mcontext),
    XSAVE_MODE = sym xsave::XSAVE_MODE,
    XSAVE_FALLBACK = sym xsave::XSAVE_FALLBACK,
    XSAVE_SIZE = sym xsave::XSAVE_SIZE,
    ENTRY_DISPATCH = sym entry_dispatch,
    REDIRECT_RUN = sym redirect_run,
    SITE_DISPATCH = sym site_dispatch,
);

// The raw handler entries (ordinary text: they make no syscall).
global_asm!(
    include_str!("../asm/x86_64/sigsys_entry.s"),
    DISPATCH = sym dispatch,
    RESTORER = sym sud_restorer,
);
global_asm!(
    include_str!("../asm/x86_64/signal_entry.s"),
    ON_SIGNAL = sym on_signal,
    RESTORER = sym sud_restorer,
);

// A call on another stack: sud_entry's redirect (ordinary text too).
global_asm!(include_str!("../asm/x86_64/on_stack.s"));

// A host thread entering and leaving a guest thread (ordinary text too).
global_asm!(
    include_str!("../asm/x86_64/guest_thread.s"),
    HOST_RSP = const offset_of!(HostContext, rsp),
    HOST_RBX = const offset_of!(HostContext, rbx),
    HOST_RBP = const offset_of!(HostContext, rbp),
    HOST_R12 = const offset_of!(HostContext, r12),
    HOST_R13 = const offset_of!(HostContext, r13),
    HOST_R14 = const offset_of!(HostContext, r14),
    HOST_R15 = const offset_of!(HostContext, r15),
    REGS_RAX = const offset_of!(Registers, rax),
    REGS_RBX = const offset_of!(Registers, rbx),
    REGS_RDX = const offset_of!(Registers, rdx),
    REGS_RSI = const offset_of!(Registers, rsi),
    REGS_RDI = const offset_of!(Registers, rdi),
    REGS_RBP = const offset_of!(Registers, rbp),
    REGS_R8 = const offset_of!(Registers, r8),
    REGS_R9 = const offset_of!(Registers, r9),
    REGS_R10 = const offset_of!(Registers, r10),
    REGS_R12 = const offset_of!(Registers, r12),
    REGS_R13 = const offset_of!(Registers, r13),
    REGS_R14 = const offset_of!(Registers, r14),
    REGS_R15 = const offset_of!(Registers, r15),
    REGS_RSP = const offset_of!(Registers, rsp),
    REGS_RIP = const offset_of!(Registers, rip),
    REGS_RFLAGS = const offset_of!(Registers, rflags),
);

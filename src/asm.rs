//! Every line of assembly in the crate: the files in `asm/x86_64/`, given
//! their constants and symbols by Rust, and the declarations Rust calls them by.
//!
//! The allowed-region files go into a single `global_asm!` so they land in
//! one object file, in this order, as one input section `sud_allowed`.

use crate::kernel::{RED_ZONE, Registers, SIGSET_SIZE, UContext};
use crate::sigsys::{DirectFrame, entry_dispatch, redirect_run, xsave};
use crate::tasks::{VFORK_PARENTS, VFORK_PARENTS_LEN, VforkParent};
use crate::thread::{DEAD, ThreadState};
use core::arch::global_asm;
use core::mem::{offset_of, size_of};
use linux_raw_sys::general::{
    __NR_exit, __NR_gettid, __NR_prctl, __NR_rt_sigaction, __NR_rt_sigprocmask, __NR_rt_sigreturn,
    __NR_sigaltstack, SIG_BLOCK, SIG_SETMASK, SIGSYS, SS_DISABLE,
};
use linux_raw_sys::io_uring::io_uring_getevents_arg;
use linux_raw_sys::prctl::{PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF};

/// A signal set with every signal but SIGSYS, for the task stubs'
/// rt_sigprocmask: a SIGSYS the kernel forces (seccomp's RET_TRAP on the
/// clone itself) must find it unblocked, or it kills the process.
static ALL_BUT_SIGSYS: u64 = !crate::kernel::sigmask(SIGSYS);
/// A `stack_t` (sp, flags, size) that disables the alternate signal stack.
static NO_ALTSTACK: [u64; 3] = [0, SS_DISABLE as u64, 0];

// The allowed region: trampolines, reissue and task stubs, restorer.
global_asm!(
    include_str!("../asm/x86_64/trampolines.s"),
    include_str!("../asm/x86_64/reissue.s"),
    include_str!("../asm/x86_64/tasks.s"),
    include_str!("../asm/x86_64/direct.s"),
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
    STATE_ARM_OP = const offset_of!(ThreadState, arm),
    STATE_ARM_OFFSET = const offset_of!(ThreadState, arm) + 8,
    STATE_ARM_LEN = const offset_of!(ThreadState, arm) + 16,
    STATE_ARM_SELECTOR = const offset_of!(ThreadState, arm) + 24,
    STATE_RESUME = const offset_of!(ThreadState, resume),
    STATE_ALTSTACK = const offset_of!(ThreadState, altstack),
    STATE_CLONE_RESULT = const offset_of!(ThreadState, clone_result),
    STATE_CLONE_MASK = const offset_of!(ThreadState, clone_mask),
    STATE_STATE = const offset_of!(ThreadState, state),
    STATE_SIGSYS_ACTION = const offset_of!(ThreadState, sigsys_action),
    STATE_TID = const offset_of!(ThreadState, tid),
    STATE_DEAD = const DEAD,
    VFORK_PARENTS = sym VFORK_PARENTS,
    VFORK_PARENTS_LEN = const VFORK_PARENTS_LEN,
    VFORK_TID = const offset_of!(VforkParent, tid),
    VFORK_RSP = const offset_of!(VforkParent, rsp),
    VFORK_RETURN = const offset_of!(VforkParent, resume),
    VFORK_MASK = const offset_of!(VforkParent, mask),
    VFORK_STATE = const offset_of!(VforkParent, state),
    VFORK_ENTRY_SIZE = const size_of::<VforkParent>(),
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
    DEFAULT_MXCSR = sym xsave::DEFAULT_MXCSR,
    DEFAULT_FCW = sym xsave::DEFAULT_FCW,
    FRAME_SIZE = const size_of::<DirectFrame>(),
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
    XSAVE_SIZE = sym xsave::XSAVE_SIZE,
    ENTRY_DISPATCH = sym entry_dispatch,
    REDIRECT_RUN = sym redirect_run,
);

// The raw SIGSYS entry (ordinary text: it makes no syscall).
global_asm!(
    include_str!("../asm/x86_64/sigsys_entry.s"),
    DISPATCH = sym crate::sigsys::dispatch,
    RESTORER = sym sud_restorer,
);

unsafe extern "C" {
    /// Trampoline: syscall `nr` with no argument, from the allowed region.
    pub(crate) fn sud_syscall0(nr: usize) -> usize;
    pub(crate) fn sud_syscall1(nr: usize, a1: usize) -> usize;
    pub(crate) fn sud_syscall2(nr: usize, a1: usize, a2: usize) -> usize;
    pub(crate) fn sud_syscall3(nr: usize, a1: usize, a2: usize, a3: usize) -> usize;
    pub(crate) fn sud_syscall4(nr: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> usize;
    pub(crate) fn sud_syscall5(
        nr: usize,
        a1: usize,
        a2: usize,
        a3: usize,
        a4: usize,
        a5: usize,
    ) -> usize;
    pub(crate) fn sud_syscall6(
        nr: usize,
        a1: usize,
        a2: usize,
        a3: usize,
        a4: usize,
        a5: usize,
        a6: usize,
    ) -> usize;

    // Code Rust never calls, only points the kernel or generated code at:
    // declared as bytes, so that all Rust can do is take their address.

    /// Trampoline with the `syscall` instruction's own registers.
    static sud_syscall: u8;
    /// The restorer: `mov rax, 15; syscall`.
    static sud_restorer: u8;
    /// Reissue stub: runs the guest's syscall and returns to the guest.
    static sud_reissue: u8;
    /// Reissue stub for a guest's rt_sigreturn.
    static sud_reissue_sigreturn: u8;
    /// Installs an alternate stack after rt_sigreturn.
    static sud_reissue_set_altstack: u8;
    /// Reissue stubs running a syscall with a copy of its signal mask
    /// (the argument in one register, behind a pair, or in io_uring's struct).
    static sud_reissue_mask_rdi: u8;
    static sud_reissue_mask_r10: u8;
    static sud_reissue_mask_r8: u8;
    static sud_reissue_mask_pair: u8;
    static sud_reissue_mask_uring_arg: u8;
    /// The signal-free entry and the redirect stubs.
    static sud_entry: u8;
    static sud_redirect: u8;
    static sud_redirect_on_stack: u8;
    /// Task stubs: fork-like, vfork-like, new thread, thread exit.
    static sud_reissue_fork: u8;
    static sud_reissue_vfork: u8;
    static sud_reissue_thread: u8;
    static sud_reissue_exit: u8;
    /// The SIGSYS entry the kernel calls as an SA_SIGINFO handler.
    static sud_sigsys_entry: u8;

    /// First byte of the allowed region; defined by the linker.
    static __start_sud_allowed: u8;
    /// One past the last byte of the allowed region; defined by the linker.
    static __stop_sud_allowed: u8;
}

/// Addresses of the asm code that Rust only points to.
pub(crate) mod addr {
    macro_rules! addresses {
        ($($name:ident),*) => {$(
            #[inline(always)]
            pub(crate) fn $name() -> usize {
                (&raw const super::$name) as usize
            }
        )*};
    }
    addresses!(
        sud_syscall,
        sud_restorer,
        sud_reissue,
        sud_reissue_sigreturn,
        sud_reissue_set_altstack,
        sud_reissue_mask_rdi,
        sud_reissue_mask_r10,
        sud_reissue_mask_r8,
        sud_reissue_mask_pair,
        sud_reissue_mask_uring_arg,
        sud_entry,
        sud_redirect,
        sud_redirect_on_stack,
        sud_reissue_fork,
        sud_reissue_vfork,
        sud_reissue_thread,
        sud_reissue_exit,
        sud_sigsys_entry,
        __start_sud_allowed,
        __stop_sud_allowed
    );
}

//! The bottom layer: the kernel's x86-64 ABI as the runtime uses it, one
//! Rust type per kernel struct.
//!
//! - the signal frame (`ucontext`, `sigcontext`, `siginfo`), here, written out
//!   by hand because linux-raw-sys has none for x86-64;
//! - `kernel_sigaction` and signal sets: [`sigaction`];
//! - `stack_t` ([`SigStack`]) and the red zone: [`stack`].
//!
//! Every struct the SIGSYS path or the assembly touches has its size and
//! field offsets asserted, against linux-raw-sys where it has the type and
//! against the kernel's uapi headers (`asm/sigcontext.h`,
//! `asm-generic/ucontext.h`) where it has not.  Where several threads share
//! one of these structs, its atomic holder is defined beside it.

/// Asserts that `$ours` has the size of `$theirs`, and each named field the
/// offset of its counterpart there.
macro_rules! same_layout {
    ($ours:ty = $theirs:ty { $($field:ident = $counterpart:ident),* $(,)? }) => {
        static_assertions::const_assert_eq!(
            core::mem::size_of::<$ours>(),
            core::mem::size_of::<$theirs>()
        );
        $(static_assertions::const_assert_eq!(
            core::mem::offset_of!($ours, $field),
            core::mem::offset_of!($theirs, $counterpart)
        );)*
    };
}

pub(crate) mod sigaction;
pub(crate) mod stack;

use core::mem::{offset_of, size_of};
use linux_raw_sys::general as sys;
pub use stack::SigStack;
use static_assertions::const_assert_eq;

/// The general registers and flags as the kernel saves them in a signal
/// frame (the head of `struct sigcontext`), in the kernel's order.
///
/// In the SIGSYS path this is the guest's state at its `syscall`: `rip` is
/// the address after the instruction, `rax` the syscall number, `rcx` and
/// `r11` what the `syscall` instruction put there (return address and
/// RFLAGS).  Whatever the callback leaves here is what the guest resumes with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    /// R8: the syscall's fifth argument.
    pub r8: u64,
    /// R9: the syscall's sixth argument.
    pub r9: u64,
    /// R10: the syscall's fourth argument.
    pub r10: u64,
    /// R11: RFLAGS, as the `syscall` instruction saved them (at a `call
    /// sud_entry`: the selector's address).
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
    /// RDI: the syscall's first argument.
    pub rdi: u64,
    /// RSI: the syscall's second argument.
    pub rsi: u64,
    /// RBP.
    pub rbp: u64,
    /// RBX.
    pub rbx: u64,
    /// RDX: the syscall's third argument.
    pub rdx: u64,
    /// RAX: the syscall number; on return, the result.
    pub rax: u64,
    /// RCX: the return address, as the `syscall` instruction saved it.
    pub rcx: u64,
    /// RSP: the stack pointer.
    pub rsp: u64,
    /// RIP: where execution resumes (after the `syscall`).
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
}

impl Registers {
    /// Leaves the registers as a native `syscall` returning `result` would:
    /// RAX = the result, RCX = the return address (RIP), R11 = RFLAGS.
    #[inline]
    pub(crate) fn finish_syscall(&mut self, result: usize) {
        self.rax = result as u64;
        self.rcx = self.rip;
        self.r11 = self.rflags;
    }
}

/// `struct sigcontext` (64-bit): the registers rt_sigreturn reinstalls.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SigContext {
    /// The general registers, RIP and RFLAGS.
    pub regs: Registers,
    /// The code segment selector.
    pub cs: u16,
    /// The GS segment selector (not its base, which the frame does not hold).
    pub gs: u16,
    /// The FS segment selector (not its base).
    pub fs: u16,
    /// The stack segment selector.
    pub ss: u16,
    /// The hardware error code of a fault (SIGSEGV, SIGBUS); 0 for SIGSYS.
    pub err: u64,
    /// The trap number of a fault; 0 for SIGSYS.
    pub trapno: u64,
    /// The low 64 signals of the interrupted mask (legacy: the kernel
    /// restores `uc_sigmask`, not this).
    pub oldmask: u64,
    /// The faulting address of a page fault.
    pub cr2: u64,
    /// The frame's XSAVE area (x87, SSE, AVX, AVX-512 ... state), or null.
    pub fpstate: *mut u8,
    /// Reserved by the kernel.
    pub reserved1: [u64; 8],
}

/// `struct ucontext` as the kernel builds it in an x86-64 rt signal frame.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UContext {
    /// `UC_FP_XSTATE` and friends: which optional parts the frame has.
    pub uc_flags: u64,
    /// Unused on Linux: null.
    pub uc_link: *mut UContext,
    /// The thread's alternate signal stack at delivery; rt_sigreturn reinstalls it.
    pub uc_stack: SigStack,
    /// The saved registers: what rt_sigreturn restores.
    pub uc_mcontext: SigContext,
    /// The signal mask rt_sigreturn reinstalls: the interrupted code's mask.
    pub uc_sigmask: u64,
}

/// The part of `siginfo_t` a SIGSYS carries (`_sigsys` of the kernel's union).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SigInfo {
    /// The signal: SIGSYS.
    pub si_signo: i32,
    /// 0 (no errno comes with a dispatch).
    pub si_errno: i32,
    /// `SYS_USER_DISPATCH` (2) for dispatch, `SYS_SECCOMP` (1) for seccomp's
    /// SECCOMP_RET_TRAP, 0 or negative when another process or thread sent it.
    pub si_code: i32,
    _pad: i32,
    /// The address after the `syscall` instruction.
    pub si_call_addr: u64,
    /// The syscall number.
    pub si_syscall: i32,
    /// The calling convention: `AUDIT_ARCH_X86_64` (0xc000003e) for a
    /// 64-bit `syscall`.
    pub si_arch: u32,
    _rest: [u64; 12],
}

// Offsets from arch/x86/include/uapi/asm/sigcontext.h and the rt frame.
const_assert_eq!(size_of::<Registers>(), 18 * 8);
const_assert_eq!(offset_of!(Registers, rax), 13 * 8);
const_assert_eq!(offset_of!(Registers, rsp), 15 * 8);
const_assert_eq!(offset_of!(Registers, rip), 16 * 8);
const_assert_eq!(offset_of!(Registers, rflags), 17 * 8);
const_assert_eq!(size_of::<SigContext>(), 256);
const_assert_eq!(offset_of!(SigContext, cs), 144);
const_assert_eq!(offset_of!(SigContext, fpstate), 184);
const_assert_eq!(offset_of!(UContext, uc_stack), 16);
const_assert_eq!(offset_of!(UContext, uc_mcontext), 40);
const_assert_eq!(offset_of!(UContext, uc_sigmask), 296);
const_assert_eq!(size_of::<UContext>(), 304);
// siginfo: 128 bytes; the union starts at 16 because it holds pointers.
const_assert_eq!(size_of::<SigInfo>(), size_of::<sys::siginfo>());
const_assert_eq!(offset_of!(SigInfo, si_code), 8);
const_assert_eq!(offset_of!(SigInfo, si_call_addr), 16);
const_assert_eq!(offset_of!(SigInfo, si_syscall), 24);
const_assert_eq!(offset_of!(SigInfo, si_arch), 28);

//! The bottom layer: the kernel's x86-64 ABI as the runtime uses it, one
//! Rust type per kernel struct.
//!
//! - the signal frame (`ucontext`, `sigcontext`, `siginfo`), here, written out
//!   by hand because linux-raw-sys has none for x86-64;
//! - `kernel_sigaction` and signal sets: [`sigaction`];
//! - `stack_t` (linux-raw-sys's) and the red zone: [`stack`].
//!
//! Every struct the SIGSYS path or the assembly touches has its size and
//! field offsets asserted, against linux-raw-sys where it has the type and
//! against the kernel's uapi headers (`asm/sigcontext.h`,
//! `asm-generic/ucontext.h`) where it has not.  Where several threads share
//! one of these structs, its atomic holder is defined beside it.

pub(crate) mod sigaction;
pub(crate) mod stack;

use core::mem::{offset_of, size_of};
use linux_raw_sys::general as sys;
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
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rsp: u64,
    pub rip: u64,
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
    pub regs: Registers,
    pub cs: u16,
    pub gs: u16,
    pub fs: u16,
    pub ss: u16,
    pub err: u64,
    pub trapno: u64,
    pub oldmask: u64,
    pub cr2: u64,
    /// The frame's XSAVE area (x87, SSE, AVX, AVX-512 ... state), or null.
    pub fpstate: *mut u8,
    pub reserved1: [u64; 8],
}

/// `struct ucontext` as the kernel builds it in an x86-64 rt signal frame.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UContext {
    pub uc_flags: u64,
    pub uc_link: *mut UContext,
    /// The thread's alternate signal stack at delivery; rt_sigreturn reinstalls it.
    pub uc_stack: sys::stack_t,
    pub uc_mcontext: SigContext,
    /// The signal mask rt_sigreturn reinstalls: the interrupted code's mask.
    pub uc_sigmask: u64,
}

/// The part of `siginfo_t` a SIGSYS carries (`_sigsys` of the kernel's union).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SigInfo {
    pub si_signo: i32,
    pub si_errno: i32,
    /// `SYS_USER_DISPATCH` (2) for dispatch, `SYS_SECCOMP` (1) for seccomp's
    /// SECCOMP_RET_TRAP, 0 or negative when another process or thread sent it.
    pub si_code: i32,
    _pad: i32,
    /// The address after the `syscall` instruction.
    pub si_call_addr: u64,
    pub si_syscall: i32,
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
const_assert_eq!(size_of::<sys::stack_t>(), 24);
const_assert_eq!(offset_of!(UContext, uc_mcontext), 40);
const_assert_eq!(offset_of!(UContext, uc_sigmask), 296);
const_assert_eq!(size_of::<UContext>(), 304);
// siginfo: 128 bytes; the union starts at 16 because it holds pointers.
const_assert_eq!(size_of::<SigInfo>(), size_of::<sys::siginfo>());
const_assert_eq!(offset_of!(SigInfo, si_code), 8);
const_assert_eq!(offset_of!(SigInfo, si_call_addr), 16);
const_assert_eq!(offset_of!(SigInfo, si_syscall), 24);
const_assert_eq!(offset_of!(SigInfo, si_arch), 28);

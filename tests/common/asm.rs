//! Every line of the tests' guest code in assembly: `guest.s` (guest code
//! making task and signal syscalls itself) and `entry.s` (guest code calling
//! `sud_entry`), given their numbers, offsets and symbols by Rust; the
//! structs they read and write; the declarations the tests call them by.
//!
//! Each test program compiles `common` once, so each holds this code once;
//! a program that calls none of it just carries it.

use super::guest::FAKE_PPID;
use super::signals::KernelSigaction;
use linux_raw_sys::general::{
    __NR_clone, __NR_clone3, __NR_execve, __NR_execveat, __NR_exit, __NR_exit_group, __NR_futex,
    __NR_getppid, __NR_nanosleep, __NR_rt_sigaction, __NR_rt_sigprocmask, __NR_vfork, AT_FDCWD,
    CLONE_VFORK, CLONE_VM, FUTEX_WAIT, SIGCHLD, SIGUSR1, clone_args, kernel_sigset_t,
};
use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64};

core::arch::global_asm!(
    include_str!("guest.s"),
    include_str!("entry.s"),
    NR_CLONE = const __NR_clone,
    NR_CLONE3 = const __NR_clone3,
    NR_VFORK = const __NR_vfork,
    NR_EXECVE = const __NR_execve,
    NR_EXECVEAT = const __NR_execveat,
    NR_NANOSLEEP = const __NR_nanosleep,
    NR_GETPPID = const __NR_getppid,
    NR_EXIT = const __NR_exit,
    NR_EXIT_GROUP = const __NR_exit_group,
    FAKE_PPID = const FAKE_PPID,
    AT_FDCWD = const AT_FDCWD,
    VFORK_CLONE_FLAGS = const CLONE_VM | CLONE_VFORK | SIGCHLD,
    CLONE_ARGS_SIZE = const size_of::<clone_args>(),
    T_FLAGS = const offset_of!(CloneTest, flags),
    T_STACK = const offset_of!(CloneTest, stack_top),
    T_PARENT_TID = const offset_of!(CloneTest, parent_tid),
    T_CHILD_TID = const offset_of!(CloneTest, child_tid),
    T_CLONE3 = const offset_of!(CloneTest, clone3),
    T_ARGS = const offset_of!(CloneTest, args),
    T_PARENT_FLAGS = const offset_of!(CloneTest, parent_flags),
    T_CHILD_FLAGS = const offset_of!(CloneTest, child_flags),
    T_CHILD_REGS = const offset_of!(CloneTest, child_regs),
    T_CHILD_ARGS = const offset_of!(CloneTest, child_args),
    T_CHILD_RSP = const offset_of!(CloneTest, child_rsp),
    T_CHILD_GETPPID = const offset_of!(CloneTest, child_getppid),
    T_CHILD_MASK = const offset_of!(CloneTest, child_mask),
    NR_RT_SIGPROCMASK = const __NR_rt_sigprocmask,
    NR_RT_SIGACTION = const __NR_rt_sigaction,
    SIGUSR1 = const SIGUSR1,
    EXPECTED_CHILD_MASK = sym EXPECTED_CHILD_MASK,
    V_MASK = const offset_of!(VforkTest, mask),
    V_USE_CLONE = const offset_of!(VforkTest, use_clone),
    V_USE_EXECVEAT = const offset_of!(VforkTest, use_execveat),
    V_MARKER = const offset_of!(VforkTest, marker),
    V_SLEEP = const offset_of!(VforkTest, sleep),
    V_PATH = const offset_of!(VforkTest, path),
    V_ARGV = const offset_of!(VforkTest, argv),
    V_ENVP = const offset_of!(VforkTest, envp),
    SIGSET_SIZE = const size_of::<kernel_sigset_t>(),
    NR_FUTEX = const __NR_futex,
    FUTEX_WAIT = const FUTEX_WAIT,
    P_PPID = const offset_of!(Parked, ppid),
    P_RELEASE = const offset_of!(Parked, release),
    ENTRY = sym sud_entry,
);

unsafe extern "C" {
    pub fn guest_clone(test: *mut CloneTest) -> i64;
    pub fn guest_fork(nr: u64, a1: u64, a2: u64) -> i64;
    pub fn guest_vfork_exec(test: *const VforkTest) -> i64;
    pub fn guest_syscall2_at(rsp: u64, nr: u64, a1: u64, a2: u64) -> i64;
    pub fn guest_clone_parked(
        flags: u64,
        stack_top: u64,
        child_tid: *const AtomicU32,
        p: *const Parked,
    ) -> i64;
    pub fn guest_vfork_sigaction(act: *const KernelSigaction) -> i64;
    pub fn entry_clone(flags: u64, stack_top: u64, child_tid: *mut u32, marker: *mut u64) -> i64;
    pub fn entry_with_pending_x87() -> u64;
    /// sud's signal-free entry, called by entry.s.
    fn sud_entry();
}

/// guest_clone's arguments and the child's report.
#[repr(C)]
#[derive(Default)]
pub struct CloneTest {
    pub flags: u64,
    pub stack_top: u64,
    pub parent_tid: u64,
    pub child_tid: u64,
    pub clone3: u64,
    pub args: [u64; 11],
    pub parent_flags: u64,
    pub child_flags: u64,
    pub child_regs: [u64; 5],
    pub child_args: [u64; 5],
    pub child_rsp: u64,
    pub child_getppid: u64,
    pub child_mask: u64,
}

/// The signal mask a guest_fork child must have.
pub static EXPECTED_CHILD_MASK: AtomicU64 = AtomicU64::new(0);

/// guest_vfork_exec's arguments.
#[repr(C)]
pub struct VforkTest {
    pub use_clone: u64,
    pub use_execveat: u64,
    pub marker: *mut u64,
    pub sleep: libc::timespec,
    pub path: *const u8,
    pub argv: *const *const u8,
    pub envp: *const *const u8,
    pub mask: u64,
}

/// guest_clone_parked's report: the child's getppid, and the word it waits
/// on until it is non-zero.
#[repr(C)]
pub struct Parked {
    pub ppid: AtomicU64,
    pub release: *const AtomicU32,
}

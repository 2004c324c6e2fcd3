//! The allowed region: the one linker section, `sud_allowed`, whose syscalls
//! the kernel never dispatches, because the runtime arms every thread in
//! exclusive mode over exactly this range.
//!
//! It holds every instruction that must run while the selector says BLOCK,
//! and nothing else:
//!
//! | symbol | file | what it is |
//! |---|---|---|
//! | `sud_syscall0` .. `sud_syscall6` | `asm/x86_64/trampolines.s` | C-convention syscall trampolines |
//! | `sud_syscall` | `asm/x86_64/trampolines.s` | trampoline with the `syscall` instruction's registers |
//! | `sud_reissue`, `sud_reissue_sigreturn` | `asm/x86_64/reissue.s` | run a trapped guest syscall natively |
//! | `sud_reissue_*`, task stubs | `asm/x86_64/reissue.s`, `tasks.s` | reissue with a signal mask without SIGSYS, install an alternate stack; clone, fork, vfork, exit |
//! | `sud_entry`, `sud_redirect*` | `asm/x86_64/direct.s` | the signal-free entry; redirect functions |
//! | `sud_restorer` | `asm/x86_64/restorer.s` | the rt_sigreturn restorer |
//!
//! Its bounds are `__start_sud_allowed` and `__stop_sud_allowed`, which the
//! linker (GNU ld or lld) defines itself, so no linker flag is needed; a
//! freestanding executable may add `link.ld` to give the region pages of its
//! own.  The section is marked retained ("axR") so no `--gc-sections` drops
//! it, and every `syscall` in it is followed by another instruction, because
//! the kernel tests the address *after* the `syscall`.

//!
//! This module also declares every asm entry point Rust refers to but the
//! trampolines and `sud_call_on_stack` (which `sys` and `dispatch::direct`
//! declare, since they call them): the code that
//! Rust only points the kernel, a signal frame or generated code at is
//! declared as bytes, so that all Rust can do is take its address.

use crate::sys::raw;
use core::ops::Range;

unsafe extern "C" {
    /// `asm/x86_64/on_stack.s`: calls `function(arg)` with RSP at
    /// `stack_end` (rounded down to 16 bytes), back on this stack after.
    pub(crate) fn sud_call_on_stack(
        arg: *mut core::ffi::c_void,
        function: unsafe extern "C" fn(*mut core::ffi::c_void),
        stack_end: u64,
    );
    /// Trampoline with the `syscall` instruction's own registers.
    static sud_syscall: u8;
    /// The restorer: `mov rax, 15; syscall`.
    pub(crate) static sud_restorer: u8;
    /// Reissue stub: runs the guest's syscall and returns to the guest.
    static sud_reissue: u8;
    /// Reissue stub for a guest's rt_sigreturn.
    static sud_reissue_sigreturn: u8;
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
    /// Where the thunk of a rewritten site goes.
    static sud_site_entry: u8;
    /// Task stubs: fork-like, vfork-like, new thread, thread exit.
    static sud_reissue_fork: u8;
    static sud_reissue_vfork: u8;
    static sud_reissue_thread: u8;
    static sud_reissue_exit: u8;
    /// The SIGSYS entry the kernel calls as an SA_SIGINFO handler.
    static sud_sigsys_entry: u8;
    /// The entry of every other handler sud installs (host and guest handlers).
    static sud_signal_entry: u8;
    /// Where the exit of a guest thread run by `Thread::run_guest` goes.
    static sud_leave_guest: u8;

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
        sud_reissue_mask_rdi,
        sud_reissue_mask_r10,
        sud_reissue_mask_r8,
        sud_reissue_mask_pair,
        sud_reissue_mask_uring_arg,
        sud_entry,
        sud_redirect,
        sud_redirect_on_stack,
        sud_site_entry,
        sud_reissue_fork,
        sud_reissue_vfork,
        sud_reissue_thread,
        sud_reissue_exit,
        sud_sigsys_entry,
        sud_signal_entry,
        sud_leave_guest,
        __start_sud_allowed,
        __stop_sud_allowed
    );
}

/// The allowed region's address range in this process.
pub fn allowed_region() -> Range<usize> {
    addr::__start_sud_allowed()..addr::__stop_sud_allowed()
}

/// Addresses of the allowed region's entry points, for generated code that
/// cannot use the symbol names, and for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionSymbols {
    /// `sud_syscall0` .. `sud_syscall6`, C calling convention.
    pub syscall_c: [usize; 7],
    /// `sud_syscall`: the `syscall` instruction's registers.
    pub syscall: usize,
    /// `sud_reissue`.
    pub reissue: usize,
    /// `sud_reissue_sigreturn`.
    pub reissue_sigreturn: usize,
    /// `sud_restorer`.
    pub restorer: usize,
    /// `sud_entry`, the signal-free entry for generated code.
    pub entry: usize,
    /// `sud_reissue_fork`, the stub that runs a guest's fork.
    pub fork: usize,
}

/// Where each entry point of the allowed region lies in this process.
pub fn region_symbols() -> RegionSymbols {
    RegionSymbols {
        syscall_c: [
            raw::sud_syscall0 as *const () as usize,
            raw::sud_syscall1 as *const () as usize,
            raw::sud_syscall2 as *const () as usize,
            raw::sud_syscall3 as *const () as usize,
            raw::sud_syscall4 as *const () as usize,
            raw::sud_syscall5 as *const () as usize,
            raw::sud_syscall6 as *const () as usize,
        ],
        syscall: addr::sud_syscall(),
        reissue: addr::sud_reissue(),
        reissue_sigreturn: addr::sud_reissue_sigreturn(),
        restorer: addr::sud_restorer(),
        entry: addr::sud_entry(),
        fork: addr::sud_reissue_fork(),
    }
}

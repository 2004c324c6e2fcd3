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

use core::ops::Range;

/// The allowed region's address range in this process.
pub fn allowed_region() -> Range<usize> {
    crate::asm::addr::__start_sud_allowed()..crate::asm::addr::__stop_sud_allowed()
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
    use crate::asm::{self, addr};
    RegionSymbols {
        syscall_c: [
            asm::sud_syscall0 as *const () as usize,
            asm::sud_syscall1 as *const () as usize,
            asm::sud_syscall2 as *const () as usize,
            asm::sud_syscall3 as *const () as usize,
            asm::sud_syscall4 as *const () as usize,
            asm::sud_syscall5 as *const () as usize,
            asm::sud_syscall6 as *const () as usize,
        ],
        syscall: addr::sud_syscall(),
        reissue: addr::sud_reissue(),
        reissue_sigreturn: addr::sud_reissue_sigreturn(),
        restorer: addr::sud_restorer(),
        entry: addr::sud_entry(),
        fork: addr::sud_reissue_fork(),
    }
}

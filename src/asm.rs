//! Every line of assembly in the crate: the files in `asm/x86_64/`, given
//! their constants and symbols by Rust, and the declarations Rust calls them by.
//!
//! The allowed-region files go into a single `global_asm!` so they land in
//! one object file, in this order, as one input section `sud_allowed`.

use crate::kernel::RED_ZONE;
use core::arch::global_asm;
use linux_raw_sys::general::__NR_rt_sigreturn;

// The allowed region: trampolines, restorer, reissue stubs.
global_asm!(
    include_str!("../asm/x86_64/trampolines.s"),
    include_str!("../asm/x86_64/reissue.s"),
    include_str!("../asm/x86_64/restorer.s"),
    NR_RT_SIGRETURN = const __NR_rt_sigreturn,
    RED_ZONE = const RED_ZONE,
);

// The raw SIGSYS entry (ordinary text: it makes no syscall).
global_asm!(
    include_str!("../asm/x86_64/sigsys_entry.s"),
    DISPATCH = sym crate::sigsys::dispatch,
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
        sud_sigsys_entry,
        __start_sud_allowed,
        __stop_sud_allowed
    );
}

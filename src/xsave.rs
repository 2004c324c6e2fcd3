//! How the direct paths (`sud_entry`, redirect) keep the guest's extended
//! state: the save instruction and area size `asm/x86_64/direct.s` reads,
//! picked once from what the CPU and kernel offer.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// The save instructions, as `XSAVE_MODE` names them.
pub(crate) const FXSAVE: u8 = 0;
pub(crate) const XSAVE: u8 = 1;
pub(crate) const XSAVEC: u8 = 2;
/// The XSAVE header: after the 512-byte legacy area, 64 bytes.
pub(crate) const HEADER_OFFSET: usize = 512;
pub(crate) const HEADER_SIZE: usize = 64;
/// The x87 status word in the legacy area, and its exception-summary
/// bit (ES): set while an unmasked x87 exception is pending.
pub(crate) const FSW_OFFSET: usize = 2;
pub(crate) const FSW_ES: u8 = 0x80;
/// MXCSR as the ABI hands it to a function: round to nearest, every
/// exception masked.
pub(crate) static DEFAULT_MXCSR: u32 = 0x1f80;
/// The x87 control word as the ABI hands it to a function: 64-bit
/// precision, round to nearest, every exception masked.
pub(crate) static DEFAULT_FCW: u16 = 0x37f;

/// Which save instruction the direct paths use.
pub(crate) static XSAVE_MODE: AtomicU8 = AtomicU8::new(FXSAVE);
/// Bytes for the save area: at least the legacy area and the header.
pub(crate) static XSAVE_SIZE: AtomicUsize = AtomicUsize::new(HEADER_OFFSET + HEADER_SIZE);

/// Picks the best mode the CPU and kernel offer.  Before any direct path
/// runs (from `install` and `install_redirect`), since a mode change
/// between a save and its restore would mix formats.
pub(crate) fn init() {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // `__cpuid` is safe since Rust 1.89 and unsafe before: the block keeps
    // both compiling.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU.
    let (leaf1, leaf_d0, leaf_d1) =
        unsafe { (__cpuid(1), __cpuid_count(0xd, 0), __cpuid_count(0xd, 1)) };
    if leaf1.ecx & (1 << 27) == 0 {
        return; // no OSXSAVE: FXSAVE
    }
    let size = leaf_d0.ebx as usize;
    let compacted = leaf_d1.eax & (1 << 1) != 0;
    let size = size.max(HEADER_OFFSET + HEADER_SIZE).next_multiple_of(64);
    XSAVE_SIZE.store(size, Ordering::Relaxed);
    XSAVE_MODE.store(if compacted { XSAVEC } else { XSAVE }, Ordering::Release);
}

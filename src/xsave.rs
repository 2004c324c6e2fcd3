//! How the direct paths (`sud_entry`, redirect, rewritten sites) keep the
//! guest's extended state: the way `asm/x86_64/extended_state.s` saves it
//! and the area's size, picked once from what the CPU and kernel offer,
//! and the layout of the area in [`REGISTERS`] mode.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use static_assertions::const_assert;

/// The ways, as `XSAVE_MODE` names them: a save instruction, or
/// [`REGISTERS`], plain moves of the registers in use.
pub(crate) const FXSAVE: u8 = 0;
pub(crate) const XSAVE: u8 = 1;
pub(crate) const XSAVEC: u8 = 2;
pub(crate) const REGISTERS: u8 = 3;

/// XSAVE state components (their bits in XCR0 and XINUSE).
pub(crate) const X87: u32 = 1 << 0;
pub(crate) const SSE: u32 = 1 << 1;
pub(crate) const AVX: u32 = 1 << 2;
pub(crate) const OPMASK: u32 = 1 << 5;
pub(crate) const ZMM_HI256: u32 = 1 << 6;
pub(crate) const HI16_ZMM: u32 = 1 << 7;
const AVX512: u32 = OPMASK | ZMM_HI256 | HI16_ZMM;

/// The area in [`REGISTERS`] mode, 64-byte aligned: zmm0-7 (or ymm, xmm:
/// one 64-byte slot each), the XSAVE header's place left free (the
/// initial-state XRSTOR uses it), zmm8-15, zmm16-31, k0-7, MXCSR.
pub(crate) const REGS_V0: usize = 0;
pub(crate) const REGS_V8: usize = HEADER_OFFSET + HEADER_SIZE;
pub(crate) const REGS_V16: usize = REGS_V8 + 8 * 64;
pub(crate) const REGS_K0: usize = REGS_V16 + 16 * 64;
pub(crate) const REGS_MXCSR: usize = REGS_K0 + 8 * 8;
const REGS_SIZE: usize = (REGS_MXCSR + 4).next_multiple_of(64);
const_assert!(REGS_V0 + 8 * 64 <= HEADER_OFFSET);
const_assert!(REGS_V8 % 64 == 0 && REGS_V16 % 64 == 0 && REGS_K0 % 8 == 0);
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

/// How the direct paths save the extended state.
pub(crate) static XSAVE_MODE: AtomicU8 = AtomicU8::new(FXSAVE);
/// The save instruction [`REGISTERS`] mode falls back to, for a call whose
/// x87 state is in use.
pub(crate) static XSAVE_FALLBACK: AtomicU8 = AtomicU8::new(FXSAVE);
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
    let instruction = if compacted { XSAVEC } else { XSAVE };
    XSAVE_FALLBACK.store(instruction, Ordering::Relaxed);
    let registers = registers_mode_fits(leaf_d1.eax) && !FORCE_INSTRUCTION.load(Ordering::Relaxed);
    XSAVE_SIZE.store(
        if registers { size.max(REGS_SIZE) } else { size },
        Ordering::Relaxed,
    );
    XSAVE_MODE.store(
        if registers { REGISTERS } else { instruction },
        Ordering::Release,
    );
}

/// Whether [`REGISTERS`] mode can keep every component the kernel enables
/// (`leaf_d1` is CPUID 0xd.1's EAX): XGETBV reads XINUSE, XCR0 holds no
/// component but x87, SSE, AVX and AVX-512 (not PKRU, AMX, ...), and
/// AVX-512 comes whole with 64-bit mask moves (AVX512BW).
fn registers_mode_fits(leaf_d1: u32) -> bool {
    use core::arch::x86_64::__cpuid_count;
    let xcr0 = xgetbv(0);
    // See `init` on `__cpuid_count`'s safety.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU.
    let avx512bw = unsafe { __cpuid_count(7, 0) }.ebx & (1 << 30) != 0;
    let xgetbv1 = leaf_d1 & (1 << 2) != 0;
    let known = X87 | SSE | AVX | AVX512;
    if xcr0 & !(known as u64) != 0 {
        return false;
    }
    let xcr0 = xcr0 as u32;
    let avx512 = match xcr0 & AVX512 {
        0 => true,
        AVX512 => avx512bw && xcr0 & AVX != 0,
        _ => false,
    };
    xgetbv1 && xcr0 & SSE != 0 && avx512
}

/// XGETBV of register `ecx` (0: XCR0), EDX:EAX as one number.
fn xgetbv(ecx: u32) -> u64 {
    let (eax, edx): (u32, u32);
    // SAFETY: OSXSAVE is set (checked by the caller): XGETBV reads XCR0.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") ecx, out("eax") eax, out("edx") edx,
            options(nomem, nostack, preserves_flags));
    }
    (edx as u64) << 32 | eax as u64
}

/// Set by [`force_instruction`]: `init` keeps to the save instruction.
static FORCE_INSTRUCTION: AtomicBool = AtomicBool::new(false);

/// Makes the direct paths save the extended state with XSAVEC or XSAVE
/// even where [`REGISTERS`] mode fits: for tests and benchmarks of both.
pub(crate) fn force_instruction() {
    FORCE_INSTRUCTION.store(true, Ordering::Relaxed);
    if XSAVE_MODE.load(Ordering::Relaxed) == REGISTERS {
        XSAVE_MODE.store(XSAVE_FALLBACK.load(Ordering::Relaxed), Ordering::Release);
    }
}

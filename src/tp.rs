//! The thread pointers, FS base and GS base, which a libc (FS) or a Windows
//! environment (GS) points at its thread's data: read and written with
//! `rdfsbase`/`wrfsbase`/`rdgsbase`/`wrgsbase` where the kernel enables them
//! (FSGSBASE: AT_HWCAP2 bit 1, Linux 5.9), through `arch_prctl` otherwise.
//! Which, is found out once, by [`init`].

use crate::sys;
use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};
use linux_raw_sys::auxvec::AT_HWCAP2;
use linux_raw_sys::general::ARCH_SET_FS;

/// `arch_prctl` codes (arch/x86/include/uapi/asm/prctl.h); linux-raw-sys
/// has only ARCH_SET_FS.
const ARCH_SET_GS: u32 = 0x1001;
const ARCH_GET_FS: u32 = 0x1003;
const ARCH_GET_GS: u32 = 0x1004;
const _: () = assert!(ARCH_SET_FS == 0x1002);
/// `HWCAP2_FSGSBASE` (arch/x86/include/uapi/asm/hwcap2.h).
const HWCAP2_FSGSBASE: u64 = 1 << 1;

const UNKNOWN: u8 = 0;
const ARCH_PRCTL: u8 = 1;
const INSTRUCTIONS: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Finds out, once, whether the FSGSBASE instructions may be used.
pub(crate) fn init() {
    if MODE.load(Ordering::Relaxed) == UNKNOWN {
        let enabled = sys::auxv(AT_HWCAP2).is_some_and(|caps| caps & HWCAP2_FSGSBASE != 0);
        let mode = if enabled { INSTRUCTIONS } else { ARCH_PRCTL };
        MODE.store(mode, Ordering::Relaxed);
    }
}

/// Uses `arch_prctl` from now on even where FSGSBASE is enabled: for
/// benchmarks and tests of the path other machines take.
pub(crate) fn force_arch_prctl() {
    MODE.store(ARCH_PRCTL, Ordering::Relaxed);
}

/// Whether reading the thread pointers is cheap (a few cycles, with no
/// syscall): the FSGSBASE instructions are enabled.
#[inline(always)]
pub(crate) fn cheap() -> bool {
    MODE.load(Ordering::Relaxed) == INSTRUCTIONS
}

/// A thread's FS base and GS base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ThreadPointers {
    pub fs: u64,
    pub gs: u64,
}

/// The calling thread's thread pointers.
#[inline(always)]
pub(crate) fn read() -> ThreadPointers {
    if cheap() {
        let (fs, gs): (u64, u64);
        // SAFETY: FSGSBASE is enabled (the kernel said so); reading the
        // bases has no effect.
        unsafe {
            asm!(
                "rdfsbase {fs}",
                "rdgsbase {gs}",
                fs = out(reg) fs,
                gs = out(reg) gs,
                options(nomem, nostack, preserves_flags),
            )
        };
        ThreadPointers { fs, gs }
    } else {
        ThreadPointers {
            fs: sys::arch_prctl_get(ARCH_GET_FS).unwrap_or(0),
            gs: sys::arch_prctl_get(ARCH_GET_GS).unwrap_or(0),
        }
    }
}

/// Sets the calling thread's FS base.
///
/// # Safety
/// Code that runs on the thread afterwards finds its thread-local data
/// through the new pointer.
#[inline(always)]
pub(crate) unsafe fn write_fs(fs: u64) {
    if cheap() {
        // SAFETY: FSGSBASE is enabled; the caller answers for the pointer.
        unsafe { asm!("wrfsbase {}", in(reg) fs, options(nostack, preserves_flags)) };
    } else {
        // SAFETY: as above.
        let _ = unsafe { sys::arch_prctl_set(ARCH_SET_FS, fs) };
    }
}

/// Sets the calling thread's GS base.
///
/// # Safety
/// As for [`write_fs`].
#[inline(always)]
pub(crate) unsafe fn write_gs(gs: u64) {
    if cheap() {
        // SAFETY: FSGSBASE is enabled; the caller answers for the pointer.
        unsafe { asm!("wrgsbase {}", in(reg) gs, options(nostack, preserves_flags)) };
    } else {
        // SAFETY: as above.
        let _ = unsafe { sys::arch_prctl_set(ARCH_SET_GS, gs) };
    }
}

//! Writing a rewrite into the guest's code, and undoing it: the thunks,
//! near the sites, and the cross-modifying writes, done as the kernel's
//! text_poke_bp does them.

use crate::error::Errno;
use crate::kernel::sigaction::KernelSigaction;
use crate::region::addr;
use crate::sys::code::{CodeWriter, mmap_exec_at, sync_cores};
use crate::{dispositions, sys};
use core::sync::atomic::{AtomicUsize, Ordering};
use linux_raw_sys::general::SIGTRAP;

/// `int3`: what a thread finds at a site's first byte while it is written.
pub(crate) const INT3: u8 = 0xcc;
/// `jmp rel32`, and `jmp rel8`.
const JMP: u8 = 0xe9;
pub(crate) const JMP_REL8: u8 = 0xeb;
/// A thunk: `lea rsp, [rsp - 128]; mov eax, imm32; call [rip + 8]`, then the
/// address after the site, then `sud_site_entry`'s.  For a site that set
/// EAX itself ([`SiteForm::Island`](super::SiteForm)), a five-byte `nop`
/// takes the `mov`'s place.
pub(crate) const THUNK_SIZE: usize = 32;
const THUNK_CODE: [u8; 16] = [
    0x48, 0x8d, 0x64, 0x24, 0x80, // lea rsp, [rsp - 128]: below the red zone
    0xb8, 0, 0, 0, 0, // mov eax, imm32: the site's number
    0xff, 0x15, 8, 0, 0, 0, // call [rip + 8]: sud_site_entry, past the next word
];
const THUNK_MOV: usize = 5;
const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];

/// Thunk pools: 64 KiB each, mapped near the sites they serve.
const POOL_SIZE: usize = 64 * 1024;
const POOLS: usize = 64;
static POOL_BASE: [AtomicUsize; POOLS] = [const { AtomicUsize::new(0) }; POOLS];
static POOL_USED: [AtomicUsize; POOLS] = [const { AtomicUsize::new(0) }; POOLS];
/// The farthest a `jmp rel32` reaches, with room for a pool.
const REACH: usize = (1 << 31) - POOL_SIZE;

fn reaches(from: usize, to: usize) -> bool {
    from.abs_diff(to) < REACH
}

/// Room for a thunk within reach of `site`, in a pool there is or a new one
/// mapped below the site (1 MiB steps) or well above it (past a heap).
/// Only the rewriting thread (under the rewrite lock) calls it.
fn thunk_room(site: usize) -> Option<usize> {
    for (base, used) in POOL_BASE.iter().zip(&POOL_USED) {
        let at = base.load(Ordering::Relaxed);
        let offset = used.load(Ordering::Relaxed);
        if at == 0 {
            let mib = 1 << 20;
            let below = (1..=32).filter_map(|step| (site & !(mib - 1)).checked_sub(step * mib));
            let above = (0..16).map(|step| (site & !(mib - 1)) + (1 << 30) + step * (64 * mib));
            let fresh = below
                .filter(|&at| at >= mib)
                .chain(above)
                .find_map(|at| mmap_exec_at(at, POOL_SIZE).ok())?;
            base.store(fresh, Ordering::Relaxed);
            used.store(THUNK_SIZE, Ordering::Relaxed);
            return Some(fresh);
        }
        if reaches(site, at) && offset + THUNK_SIZE <= POOL_SIZE {
            used.store(offset + THUNK_SIZE, Ordering::Relaxed);
            return Some(at + offset);
        }
    }
    None
}

/// Makes sure a SIGTRAP reaches sud's handler (`signals::on_signal`), which
/// sends a thread that met a site's `int3` back to the site; with no host or
/// guest handler, it then takes the default action as before.
fn route_sigtrap() -> Result<(), Errno> {
    let current = sys::sigaction(SIGTRAP, None)?;
    if dispositions::is_sud_entry(current.handler) {
        return Ok(());
    }
    let real = dispositions::real_action(&KernelSigaction {
        handler: current.handler,
        flags: current.flags,
        restorer: 0,
        mask: current.mask,
    });
    if current.handler > 1 {
        // Someone's handler: adopted, as `install` adopts fault handlers.
        return Err(Errno::EBUSY);
    }
    sys::sigaction(SIGTRAP, Some(&real)).map(drop)
}

/// Writes `new` (one instruction) over the instruction at `site` of the
/// same length (first byte last), through `int3`, each step seen by every
/// core before the next.  Threads running the site meanwhile execute the
/// old instruction, meet the `int3` (and are sent back to the site by
/// sud's SIGTRAP handler), or execute the new one.
///
/// # Safety
/// `site` holds an instruction of `new.len()` bytes, and it and `new`
/// execute correctly at any moment.
pub(crate) unsafe fn write_site(site: usize, new: &[u8]) -> Result<(), Errno> {
    route_sigtrap()?;
    let code = CodeWriter::open()?;
    // SAFETY: each state the site passes through executes correctly: the
    // old bytes, int3 (which sud handles), the new bytes.
    unsafe {
        code.write(site, &[INT3])?;
        sync_cores()?;
        code.write(site + 1, &new[1..])?;
        sync_cores()?;
        code.write(site, &new[..1])?;
    }
    sync_cores()
}

/// Writes `jmp` into the island at `island`, padding no thread executes,
/// in one piece, and `int3` padding after it up to `end` (the end of the
/// no-op the `jmp` ends in), so that the padding still decodes whole for
/// the next island search; `write_site`, which leads threads there, makes
/// every core see it first.
///
/// # Safety
/// No thread executes the bytes from `island` to `end`.
pub(crate) unsafe fn write_island(island: usize, end: usize, jmp: &[u8; 5]) -> bool {
    let mut bytes = [INT3; 16];
    let len = end - island;
    if len > bytes.len() || len < jmp.len() {
        return false;
    }
    bytes[..jmp.len()].copy_from_slice(jmp);
    let Ok(code) = CodeWriter::open() else {
        return false;
    };
    // SAFETY: dead code, by the caller's word.
    unsafe { code.write(island, &bytes[..len]) }.is_ok()
}

/// A thunk for a site whose `syscall` ends at `resume`, loading `number`
/// into EAX if it is `Some`, and the `jmp rel32` at `from` that leads
/// there (the site's `mov`, or its island).
pub(crate) fn make_thunk(
    from: usize,
    number: Option<u32>,
    resume: usize,
) -> Option<(usize, [u8; 5])> {
    let thunk = thunk_room(from)?;
    let mut bytes = [0u8; THUNK_SIZE];
    bytes[..16].copy_from_slice(&THUNK_CODE);
    match number {
        Some(number) => bytes[THUNK_MOV + 1..THUNK_MOV + 5].copy_from_slice(&number.to_le_bytes()),
        None => bytes[THUNK_MOV..THUNK_MOV + 5].copy_from_slice(&NOP5),
    }
    bytes[16..24].copy_from_slice(&(resume as u64).to_le_bytes());
    bytes[24..32].copy_from_slice(&(addr::sud_site_entry() as u64).to_le_bytes());
    let code = CodeWriter::open().ok()?;
    // SAFETY: fresh thunk memory no thread runs yet.
    unsafe { code.write(thunk, &bytes) }.ok()?;
    let rel = (thunk as i64 - (from as i64 + 5)) as i32;
    let mut jmp = [JMP, 0, 0, 0, 0];
    jmp[1..].copy_from_slice(&rel.to_le_bytes());
    Some((thunk, jmp))
}

/// Whether the five bytes at a site are the `jmp` to `thunk`.
pub(crate) fn jumps_to(site: usize, bytes: [u8; 5], thunk: usize) -> bool {
    let rel = i32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    bytes[0] == JMP && (site as i64 + 5 + rel as i64) as usize == thunk
}

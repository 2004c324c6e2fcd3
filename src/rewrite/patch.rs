//! Writing a rewrite into the guest's code, and undoing it: the thunks,
//! near the sites, and the cross-modifying writes, made so that a thread
//! running the site meanwhile only ever executes whole instructions, with
//! no signal (a trap would kill a thread that blocks it, as glibc's do
//! while a thread starts).

use crate::error::Errno;
use crate::region::addr;
use crate::sys::code::{CodeWriter, PAGE, Writable, WriteWindow, mmap_exec_at, sync_cores};
use core::sync::atomic::{AtomicUsize, Ordering};

/// `int3`: what follows an island's `jmp` to the end of its no-op.
pub(crate) const INT3: u8 = 0xcc;
/// `jmp rel32`, and `jmp rel8`.
const JMP: u8 = 0xe9;
pub(crate) const JMP_REL8: u8 = 0xeb;
/// `jmp $`: a two-byte jump to itself, where a five-byte site's first two
/// bytes are while its other three are written.
const JMP_SELF: [u8; 2] = [JMP_REL8, 0xfe];
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

/// Whether a site of `len` bytes at `at` can be written: in one page, its
/// first two bytes (stored at once) in one 16-byte block.
pub(crate) fn writable_site(at: usize, len: usize) -> bool {
    at % 16 != 15 && at / PAGE == (at + len - 1) / PAGE
}

/// Writes `new` (one instruction, two or five bytes) over the instruction
/// of the same length at `site`, its page made writable for the while (and
/// no fork copying the process meanwhile), each step seen by every core
/// before the next, so that a thread running the site meanwhile executes
/// the old instruction or the new one, or waits on `jmp $` in between:
///
/// - two bytes: one store;
/// - five bytes (as the HotSpot JVM patches code other threads run): `jmp $`
///   over the first two bytes, then the last three, then the first two.
///
/// Nothing can fail between the first store and the last.  `EAGAIN`, with
/// nothing written, if a fork is on its way.
///
/// # Safety
/// `site` holds an instruction of `new.len()` bytes no code jumps into the
/// middle of, it and `new` execute correctly at any moment, and
/// [`writable_site`] says yes.
pub(crate) unsafe fn write_site(site: usize, new: &[u8]) -> Result<(), Errno> {
    let window = WriteWindow::open()?;
    let page = Writable::page_of(site, &window)?;
    // membarrier cannot fail once registered (rewrite_sites did): its
    // result is reported, not acted on, so that the last store is made.
    let mut synced = Ok(());
    // SAFETY: the caller's word on the instructions; `jmp $` only waits,
    // and no thread executes the last three bytes while it does.
    unsafe {
        if new.len() > 2 {
            page.store_u16(site, JMP_SELF);
            synced = synced.and(sync_cores());
            page.store(site + 2, &new[2..]);
            synced = synced.and(sync_cores());
        }
        page.store_u16(site, [new[0], new[1]]);
    }
    drop(page);
    drop(window);
    synced.and(sync_cores())
}

/// Writes `jmp` into the island at `island`, padding no thread executes,
/// and `int3` padding after it up to `end` (the end of the no-op the `jmp`
/// ends in), so that the padding still decodes whole for the next island
/// search; the `sync_cores` in `write_site`, before any thread is led
/// there, makes every core see it.
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

//! Rewriting hot trap sites (opt-in, [`rewrite_sites`]): a guest's
//! `mov eax, imm32; syscall` (`b8 imm32 0f 05`) that traps in a range the
//! host named is rewritten, after its first trap or its Nth, to
//! `jmp thunk; syscall`: the `jmp rel32` takes the place of the `mov`, and
//! the `syscall` stays where it was, for code that jumps to it.  The thunk,
//! within ±2 GiB, moves RSP below the red zone, sets EAX and calls
//! `sud_site_entry`, which reaches the callback as `sud_entry` does, with
//! the registers a trap would have shown, and returns after the `syscall`.
//!
//! Every site is recorded ([`rewritten_sites`]) and can be put back
//! ([`forget_sites`]).  Sites that cannot be rewritten stay trapped.

pub(crate) mod patch;

use crate::error::{Errno, Error};
use crate::sys::{code, guest_memory};
use crate::tp;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use patch::{INT3, jumps_to, make_thunk, write_site};

/// When a trap site is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// At its first trap.
    FirstTrap,
    /// At its Nth trap.
    AfterTraps(u32),
}

/// A rewritten site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// The address of the `mov eax, imm32` that became the `jmp`.
    pub addr: usize,
    /// The syscall number it makes.
    pub number: u32,
    /// Its thunk.
    pub thunk: usize,
}

/// A site's status word: a trap count below PATCHING.
const PATCHING: u32 = u32::MAX - 2;
const REWRITTEN: u32 = u32::MAX - 1;
const REFUSED: u32 = u32::MAX;

struct Entry {
    addr: AtomicUsize,
    status: AtomicU32,
    number: AtomicU32,
    thunk: AtomicU64,
}

const TABLE: usize = 1 << 13;
const PROBES: usize = 64;
static SITES: [Entry; TABLE] = [const {
    Entry {
        addr: AtomicUsize::new(0),
        status: AtomicU32::new(0),
        number: AtomicU32::new(0),
        thunk: AtomicU64::new(0),
    }
}; TABLE];

const MAX_RANGES: usize = 16;
static RANGES: [(AtomicUsize, AtomicUsize); MAX_RANGES] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_RANGES];
static ENABLED: AtomicBool = AtomicBool::new(false);
static TRAPS_BEFORE: AtomicU32 = AtomicU32::new(1);
/// Held by the one thread writing code (rewriting or forgetting).
static WRITING: AtomicBool = AtomicBool::new(false);

fn slots(site: usize) -> impl Iterator<Item = &'static Entry> {
    let hash = (site as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 51;
    (0..PROBES).map(move |i| &SITES[(hash as usize + i) % TABLE])
}

/// The entry of `site`, if it has one.
fn find(site: usize) -> Option<&'static Entry> {
    slots(site)
        .take_while(|e| e.addr.load(Ordering::Acquire) != 0)
        .find(|e| e.addr.load(Ordering::Acquire) == site)
}

/// The entry of `site`, made if needed; `None` if the table is full there.
fn find_or_insert(site: usize) -> Option<&'static Entry> {
    for entry in slots(site) {
        match entry
            .addr
            .compare_exchange(0, site, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return Some(entry),
            Err(found) if found == site => return Some(entry),
            Err(_) => {}
        }
    }
    None
}

/// Rewrites the hot trap sites in `range` (a guest's code) from now on, by
/// `policy`.  Call it after [`install`](crate::install).  Needs the
/// membarrier SYNC_CORE command (Linux 4.16) and a writable
/// `/proc/self/mem`; a site whose thunk cannot be placed within ±2 GiB, or
/// whose bytes are not the pattern, stays trapped.  A rewritten site finds
/// its thread with `rdgsbase`: [`Error::NoFsGsBase`] where the kernel does
/// not enable FSGSBASE (before Linux 5.9, or a CPU without it).
pub fn rewrite_sites(range: Range<usize>, policy: Policy) -> Result<(), Error> {
    tp::init();
    if !tp::cheap() {
        return Err(Error::NoFsGsBase);
    }
    code::register_sync_cores()?;
    drop(code::CodeWriter::open()?);
    let traps = match policy {
        Policy::FirstTrap => 1,
        Policy::AfterTraps(n) => n.clamp(1, PATCHING - 1),
    };
    TRAPS_BEFORE.store(traps, Ordering::Relaxed);
    let free = RANGES
        .iter()
        .find(|(start, end)| start.load(Ordering::Relaxed) == 0 && end.load(Ordering::Relaxed) == 0)
        .ok_or(Error::Os(Errno::ENOSPC))?;
    free.0.store(range.start, Ordering::Relaxed);
    free.1.store(range.end, Ordering::Release);
    ENABLED.store(true, Ordering::Release);
    Ok(())
}

fn in_ranges(site: usize) -> bool {
    RANGES.iter().any(|(start, end)| {
        (start.load(Ordering::Relaxed)..end.load(Ordering::Acquire)).contains(&site)
    })
}

/// Calls `each` with every site rewritten now.
pub fn rewritten_sites(mut each: impl FnMut(Site)) {
    for entry in &SITES {
        if entry.status.load(Ordering::Acquire) == REWRITTEN {
            each(Site {
                addr: entry.addr.load(Ordering::Relaxed),
                number: entry.number.load(Ordering::Relaxed),
                thunk: entry.thunk.load(Ordering::Relaxed) as usize,
            });
        }
    }
}

/// Puts back the original bytes of every site rewritten in `range` (and
/// stops rewriting there): for code the guest is about to unmap, remap or
/// write.  A site whose bytes are no longer sud's `jmp` (the guest already
/// changed or unmapped them) is only forgotten.  Returns the sites put back.
pub fn forget_sites(range: Range<usize>) -> usize {
    for (start, end) in &RANGES {
        let (s, e) = (start.load(Ordering::Relaxed), end.load(Ordering::Relaxed));
        if s >= range.start && e <= range.end && e != 0 {
            start.store(0, Ordering::Relaxed);
            end.store(0, Ordering::Release);
        }
    }
    let mut restored = 0;
    while WRITING.swap(true, Ordering::Acquire) {
        core::hint::spin_loop();
    }
    for entry in &SITES {
        let site = entry.addr.load(Ordering::Acquire);
        if !range.contains(&site) || entry.status.load(Ordering::Acquire) != REWRITTEN {
            continue;
        }
        let thunk = entry.thunk.load(Ordering::Relaxed) as usize;
        let number = entry.number.load(Ordering::Relaxed);
        entry.status.store(PATCHING, Ordering::Release);
        if guest_memory::read::<[u8; 5]>(site).is_ok_and(|now| jumps_to(site, now, thunk)) {
            let mut original = [0xb8, 0, 0, 0, 0];
            original[1..].copy_from_slice(&number.to_le_bytes());
            // SAFETY: the site's own bytes, as they were.
            if unsafe { write_site(site, original) }.is_ok() {
                restored += 1;
            }
        }
        entry.status.store(0, Ordering::Release);
    }
    WRITING.store(false, Ordering::Release);
    restored
}

/// A trapped syscall `number` ending at `resume`: counts the trap, and
/// rewrites the site when the policy says so and its bytes allow.
pub(crate) fn on_trap(resume: usize, number: u64) {
    if !ENABLED.load(Ordering::Acquire) {
        return;
    }
    let site = resume.wrapping_sub(7);
    // The pattern within one page (the one the `syscall` ran from), in a
    // range the host named.
    if site / 4096 != (resume - 1) / 4096 || !in_ranges(site) {
        return;
    }
    let Some(entry) = find_or_insert(site) else {
        return;
    };
    let status = entry.status.load(Ordering::Acquire);
    if status == REWRITTEN {
        // A trap from a rewritten site: its `syscall` was jumped to, or the
        // guest wrote or mapped new code there.  New code is counted anew.
        let thunk = entry.thunk.load(Ordering::Relaxed) as usize;
        match guest_memory::read::<[u8; 5]>(site) {
            Ok(now) if jumps_to(site, now, thunk) => return,
            _ => entry.status.store(0, Ordering::Release),
        }
    } else if status >= PATCHING {
        return;
    }
    let count = entry.status.fetch_add(1, Ordering::AcqRel) + 1;
    if count < TRAPS_BEFORE.load(Ordering::Relaxed) || count >= PATCHING {
        return;
    }
    if WRITING.swap(true, Ordering::Acquire) {
        return; // another thread is writing code: next trap
    }
    let done = rewrite(entry, site, resume, number);
    entry
        .status
        .store(if done { REWRITTEN } else { REFUSED }, Ordering::Release);
    WRITING.store(false, Ordering::Release);
}

/// Rewrites `site` if its bytes are `mov eax, number; syscall`.
fn rewrite(entry: &Entry, site: usize, resume: usize, number: u64) -> bool {
    let Ok(bytes) = guest_memory::read::<[u8; 8]>(site - 1) else {
        return false;
    };
    let imm = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    // b8 must begin an instruction: the number it loads is the one trapped,
    // and no prefix (REX, operand or address size, segment, lock, rep) is
    // before it.
    let prefix = matches!(bytes[0], 0x40..=0x4f | 0x26 | 0x2e | 0x36 | 0x3e | 0x64..=0x67 | 0xf0 | 0xf2 | 0xf3);
    if bytes[1] != 0xb8 || bytes[6..8] != [0x0f, 0x05] || imm as u64 != number || prefix {
        return false;
    }
    entry.status.store(PATCHING, Ordering::Release);
    let Some((thunk, jmp)) = make_thunk(site, imm, resume) else {
        return false;
    };
    entry.number.store(imm, Ordering::Relaxed);
    entry.thunk.store(thunk as u64, Ordering::Relaxed);
    // SAFETY: `mov eax, imm32` and `jmp thunk` both lead to the syscall
    // `number` with the same registers, and continue after the `syscall`.
    unsafe { write_site(site, jmp) }.is_ok()
}

/// A SIGTRAP at `rip` (after the `int3`): if it is a site's first byte
/// while sud writes it, the address to resume at, the site's start, which
/// then holds the old or the new instruction.
pub(crate) fn int3_site(rip: usize) -> Option<usize> {
    let site = rip.wrapping_sub(1);
    let entry = find(site)?;
    let status = entry.status.load(Ordering::Acquire);
    let first = guest_memory::read::<u8>(site).ok()?;
    (status == PATCHING || first != INT3).then_some(site)
}

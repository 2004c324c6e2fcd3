//! Rewriting hot trap sites (opt-in, [`rewrite_sites`]): a `syscall` a
//! guest's code traps on, in a range the host named, is rewritten after its
//! first trap (or its Nth) to jump to a thunk of its own within ±2 GiB,
//! which moves RSP below the red zone and calls `sud_site_entry`; that
//! reaches the callback as `sud_entry` does, with the registers a trap
//! would have shown, and returns after the `syscall`.  Two forms:
//!
//! - [`SiteForm::Mov`]: `mov eax, imm32; syscall` (`b8 imm32 0f 05`, what
//!   most libc wrappers are) becomes `jmp thunk; syscall`: the `jmp rel32`
//!   takes the `mov`'s place (the thunk sets EAX), and the `syscall` stays
//!   for code that jumps to it.
//! - [`SiteForm::Island`]: any other `syscall` becomes `jmp rel8` to an
//!   island, five bytes of alignment padding within 127 bytes after it,
//!   which becomes `jmp thunk` (`island.rs`).
//!
//! Every site is recorded ([`rewritten_sites`]) and can be put back
//! ([`forget_sites`]).  Sites that cannot be rewritten stay trapped.

mod decode;
mod island;
pub(crate) mod patch;
mod ranges;

use crate::error::{Errno, Error};
use crate::sys::{code, guest_memory};
use crate::tp;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use patch::{JMP_REL8, jumps_to, make_thunk, writable_site, write_island, write_site};

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
    /// The address of its `syscall` instruction.
    pub syscall: usize,
    /// How it was rewritten.
    pub form: SiteForm,
    /// Its thunk.
    pub thunk: usize,
}

/// How a site was rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteForm {
    /// The `mov eax, number` right before the `syscall` became
    /// `jmp thunk`; the `syscall` is unchanged.
    Mov {
        /// The syscall number the `mov` loaded (and the thunk loads).
        number: u32,
    },
    /// The `syscall` became `jmp island` (`eb rel8`), and the five bytes at
    /// `island`, alignment padding, `jmp thunk`.  Putting the site back
    /// leaves the island's `jmp`: a thread may be on its way there, and
    /// nothing else runs padding.
    Island {
        /// The island's address.
        island: usize,
    },
}

/// A site's status word: a trap count below PATCHING.
const PATCHING: u32 = u32::MAX - 2;
const REWRITTEN: u32 = u32::MAX - 1;
const REFUSED: u32 = u32::MAX;

/// A site: the address of its `syscall` (its key), its status, and how it
/// was rewritten: `island` 0 for [`SiteForm::Mov`].  `number`, `island`
/// and `thunk` are set before the site's status becomes PATCHING, and read
/// once it is PATCHING or REWRITTEN.
struct Entry {
    addr: AtomicUsize,
    status: AtomicU32,
    number: AtomicU32,
    island: AtomicUsize,
    thunk: AtomicU64,
}

impl Entry {
    fn form(&self) -> SiteForm {
        match self.island.load(Ordering::Relaxed) {
            0 => SiteForm::Mov {
                number: self.number.load(Ordering::Relaxed),
            },
            island => SiteForm::Island { island },
        }
    }

    /// Where the bytes sud writes over start: the `mov`, or the `syscall`.
    fn patched(&self, syscall: usize) -> usize {
        match self.form() {
            SiteForm::Mov { .. } => syscall - MOV_SIZE,
            SiteForm::Island { .. } => syscall,
        }
    }
}

/// `mov eax, imm32`, and `syscall`.
const MOV_SIZE: usize = 5;
const SYSCALL_SIZE: usize = 2;

const TABLE: usize = 1 << 13;
const PROBES: usize = 64;
static SITES: [Entry; TABLE] = [const {
    Entry {
        addr: AtomicUsize::new(0),
        status: AtomicU32::new(0),
        number: AtomicU32::new(0),
        island: AtomicUsize::new(0),
        thunk: AtomicU64::new(0),
    }
}; TABLE];

/// Held by the one thread writing code (rewriting or forgetting); cleared
/// in a fork child (`sud_reissue_fork`), where that thread is not.
pub(crate) static WRITING: AtomicBool = AtomicBool::new(false);

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
/// `policy` (each range keeps its own; `EINVAL` for an empty range).  Call
/// it after [`install`](crate::install).  Needs the membarrier SYNC_CORE
/// command (Linux 4.16) and a writable `/proc/self/mem` (errors from them
/// are returned).  A site stays trapped if its thunk cannot be placed
/// within ±2 GiB, if it is neither form of [`SiteForm`] (no `mov eax,
/// imm32` before it, no island after it), if it crosses a page or its
/// first two bytes straddle a 16-byte block, or if its page is a shared
/// mapping's.  A rewritten site finds its thread with `rdgsbase`:
/// [`Error::NoFsGsBase`] where the kernel does not enable FSGSBASE (before
/// Linux 5.9, or a CPU without it).  At most 16 ranges at a time
/// (`ENOSPC`); [`forget_sites`] frees theirs.
pub fn rewrite_sites(range: Range<usize>, policy: Policy) -> Result<(), Error> {
    if range.is_empty() {
        return Err(Error::Os(Errno::EINVAL));
    }
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
    let lock = WritingLock::take();
    ranges::add(range, traps)?;
    drop(lock);
    ON_TRAP.store(count_trap as fn(usize, u64) as usize, Ordering::Release);
    Ok(())
}

/// The rewrite lock, held by the one thread writing code or changing the
/// ranges; waited for by host code, only tried in signal context.  Every
/// signal but SIGSYS is blocked while it is held: a handler that ran on the
/// holder meanwhile could wait for the lock, the write window or a `jmp $`
/// that only the holder itself would end.  (A blocked SIGSYS that a
/// seccomp filter forces kills the process: SIGSYS stays deliverable, as
/// in the task stubs.)
struct WritingLock {
    mask: u64,
}

/// Blocks every signal but SIGSYS; returns the mask to restore.
fn block_all_but_sigsys() -> u64 {
    let mask = crate::sys::thread_mask();
    crate::sys::set_thread_mask(!crate::kernel::sigaction::SIGSYS_BIT | mask);
    mask
}

impl WritingLock {
    fn take() -> WritingLock {
        let mask = block_all_but_sigsys();
        while WRITING.swap(true, Ordering::Acquire) {
            crate::sys::sched_yield();
        }
        WritingLock { mask }
    }

    fn try_take() -> Option<WritingLock> {
        let mask = block_all_but_sigsys();
        if WRITING.swap(true, Ordering::Acquire) {
            crate::sys::set_thread_mask(mask);
            return None;
        }
        Some(WritingLock { mask })
    }
}

impl Drop for WritingLock {
    fn drop(&mut self) {
        WRITING.store(false, Ordering::Release);
        crate::sys::set_thread_mask(self.mask);
    }
}

/// Calls `each` with every site rewritten now.
pub fn rewritten_sites(mut each: impl FnMut(Site)) {
    for entry in &SITES {
        if entry.status.load(Ordering::Acquire) == REWRITTEN {
            each(Site {
                syscall: entry.addr.load(Ordering::Relaxed),
                form: entry.form(),
                thunk: entry.thunk.load(Ordering::Relaxed) as usize,
            });
        }
    }
}

/// Puts back the original bytes of every site rewritten in `range`, and
/// stops rewriting there (what the ranges given to [`rewrite_sites`] keep
/// outside `range` is still rewritten): for code the guest is about to
/// unmap, remap or write.  A site is in `range` if any byte sud wrote for it is: the `mov`,
/// the `syscall` or the island.  A site whose bytes are no longer sud's
/// jump (the guest already changed or unmapped them) is only forgotten.
/// Returns the sites put back.
pub fn forget_sites(range: Range<usize>) -> usize {
    let lock = WritingLock::take();
    ranges::remove(range.clone());
    let overlaps = |at: usize, len: usize| at < range.end && range.start < at + len;
    let mut restored = 0;
    for entry in &SITES {
        let syscall = entry.addr.load(Ordering::Acquire);
        if syscall == 0 {
            continue;
        }
        if entry.thunk.load(Ordering::Relaxed) == 0 {
            // Never rewritten; refused, it is judged anew if it traps again
            // (new code may come here).
            if range.contains(&syscall) && entry.status.load(Ordering::Acquire) == REFUSED {
                entry.status.store(0, Ordering::Release);
            }
            continue;
        }
        let patched = entry.patched(syscall);
        let island = match entry.form() {
            SiteForm::Island { island } => overlaps(island, island::ISLAND_SIZE),
            SiteForm::Mov { .. } => false,
        };
        if !overlaps(patched, syscall + SYSCALL_SIZE - patched) && !island {
            continue;
        }
        // Whatever its status says, a site whose bytes are still sud's jump
        // is put back; any other is judged anew if it traps again (new code
        // may come here).
        if entry.status.load(Ordering::Acquire) != REWRITTEN && !still_ours(entry, syscall) {
            entry.status.store(0, Ordering::Release);
            continue;
        }
        entry.status.store(PATCHING, Ordering::Release);
        let mut status = 0;
        if still_ours(entry, syscall) {
            // Forks on their way hold the write back for a moment.
            let put_back = (0..1000).map(|_| {
                // SAFETY: the site's own bytes, as they were.
                let done = unsafe { restore(entry, syscall) };
                if done == Err(Errno::EAGAIN) {
                    crate::sys::sched_yield();
                }
                done
            });
            match put_back
                .into_iter()
                .find(|done| *done != Err(Errno::EAGAIN))
            {
                Some(Ok(())) => restored += 1,
                _ => status = REWRITTEN, // still sud's jump: still listed
            }
        }
        entry.status.store(status, Ordering::Release);
    }
    drop(lock);
    restored
}

/// Whether the site's patched bytes are still the jump sud wrote.
fn still_ours(entry: &Entry, syscall: usize) -> bool {
    let thunk = entry.thunk.load(Ordering::Relaxed) as usize;
    match entry.form() {
        SiteForm::Mov { .. } => guest_memory::read::<[u8; 5]>(syscall - MOV_SIZE)
            .is_ok_and(|now| jumps_to(syscall - MOV_SIZE, now, thunk)),
        SiteForm::Island { island } => guest_memory::read::<[u8; 2]>(syscall)
            .is_ok_and(|now| now == jump_rel8(syscall, island)),
    }
}

/// Writes the site's original bytes back.
///
/// # Safety
/// The site's bytes are still sud's jump.
unsafe fn restore(entry: &Entry, syscall: usize) -> Result<(), crate::error::Errno> {
    match entry.form() {
        SiteForm::Mov { number } => {
            let mut original = [MOV_EAX, 0, 0, 0, 0];
            original[1..].copy_from_slice(&number.to_le_bytes());
            // SAFETY: `mov eax, number` is what the `jmp` replaced.
            unsafe { write_site(syscall - MOV_SIZE, &original) }
        }
        // SAFETY: as above, the `syscall`.
        SiteForm::Island { .. } => unsafe { write_site(syscall, &SYSCALL) },
    }
}

/// [`count_trap`], once [`rewrite_sites`] was called (0 before): a program
/// that never rewrites does not link the rewriting code (the decoder, the
/// island search) at all.
static ON_TRAP: AtomicUsize = AtomicUsize::new(0);

/// A trapped syscall `number` ending at `resume`: counts the trap, and
/// rewrites the site when the policy says so and its bytes allow.
#[inline]
pub(crate) fn on_trap(resume: usize, number: u64) {
    let count = ON_TRAP.load(Ordering::Acquire);
    if count != 0 {
        // SAFETY: only `rewrite_sites` stores, and it stores `count_trap`.
        let count: fn(usize, u64) = unsafe { core::mem::transmute(count) };
        count(resume, number);
    }
}

fn count_trap(resume: usize, number: u64) {
    let syscall = resume.wrapping_sub(SYSCALL_SIZE);
    let Some(traps) = ranges::traps_at(syscall) else {
        return;
    };
    let Some(entry) = find_or_insert(syscall) else {
        return;
    };
    let status = entry.status.load(Ordering::Acquire);
    if status == REWRITTEN {
        // A trap from a rewritten site: a thread ran its `syscall` while it
        // was rewritten, or jumped to it (Mov), or the guest wrote or
        // mapped new code there.  New code is counted anew; the status is
        // changed under the lock, where no rewrite or forget is half done.
        if still_ours(entry, syscall) {
            return;
        }
        let Some(lock) = WritingLock::try_take() else {
            return;
        };
        if entry.status.load(Ordering::Acquire) == REWRITTEN && !still_ours(entry, syscall) {
            entry.status.store(0, Ordering::Release);
        }
        drop(lock);
    } else if status == PATCHING {
        // PATCHING is only ever set under the lock: with the lock free, it
        // is a fork child's copy of a rewrite its parent was making, which
        // nobody will finish.  Judged anew.
        if let Some(lock) = WritingLock::try_take() {
            let _ = entry
                .status
                .compare_exchange(PATCHING, 0, Ordering::AcqRel, Ordering::Acquire);
            drop(lock);
        }
        return;
    } else if status > PATCHING {
        return;
    }
    // Counted only while the status is a count: a thread that read a count
    // before another began rewriting must not add to PATCHING or REWRITTEN.
    let counted = entry
        .status
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            // `then`: `then_some(n + 1)` would add (and overflow, at REFUSED)
            // whatever the status.
            (n < PATCHING - 1).then(|| n + 1)
        });
    let Ok(before) = counted else {
        return;
    };
    if before + 1 < traps {
        return;
    }
    let Some(lock) = WritingLock::try_take() else {
        return; // another thread is writing code: next trap
    };
    if entry.status.load(Ordering::Acquire) >= PATCHING {
        // Another thread rewrote the site (or gave up on it) between this
        // trap's count and the lock.
        return;
    }
    let status = match rewrite(entry, syscall, number) {
        Ok(()) => REWRITTEN,
        // A fork was on its way, or the range was just forgotten: counted
        // anew, tried again.
        Err(Errno::EAGAIN) => 0,
        Err(_) => REFUSED,
    };
    entry.status.store(status, Ordering::Release);
    drop(lock);
}

/// `mov eax, imm32`'s opcode, and `syscall`.
const MOV_EAX: u8 = 0xb8;
const SYSCALL: [u8; 2] = [0x0f, 0x05];

/// Rewrites the site whose `syscall` (of `number`, just trapped) is at
/// `syscall`, in the first form its bytes allow.
fn rewrite(entry: &Entry, syscall: usize, number: u64) -> Result<(), Errno> {
    if code::fork_in_flight() || ranges::traps_at(syscall).is_none() {
        return Err(Errno::EAGAIN); // before a thunk is made for nothing
    }
    let resume = syscall + SYSCALL_SIZE;
    let mov = mov_before(syscall, number).filter(|_| writable_site(syscall - MOV_SIZE, MOV_SIZE));
    if let Some(imm) = mov {
        entry.number.store(imm, Ordering::Relaxed);
        entry.island.store(0, Ordering::Relaxed);
        entry.status.store(PATCHING, Ordering::Release);
        let site = syscall - MOV_SIZE;
        let (thunk, jmp) = make_thunk(site, Some(imm), resume).ok_or(Errno::ENOMEM)?;
        entry.thunk.store(thunk as u64, Ordering::Relaxed);
        // SAFETY: `mov eax, imm32` and `jmp thunk` both lead to the syscall
        // `number` with the same registers, and continue after the `syscall`.
        return unsafe { write_site(site, &jmp) };
    }
    if !writable_site(syscall, SYSCALL_SIZE) {
        return Err(Errno::EINVAL);
    }
    if let Some(island) = island_left(entry, syscall) {
        // The island of an earlier rewrite of this site, still jumping to
        // its thunk (which serves any number): only the `syscall` to write.
        entry.status.store(PATCHING, Ordering::Release);
        // SAFETY: as below.
        return unsafe { write_site(syscall, &jump_rel8(syscall, island)) };
    }
    let usable = ranges::hold;
    let rewritten = |at: usize| find(at).is_some() || find(at + MOV_SIZE).is_some();
    let (island, island_end) = island::find(resume, usable, rewritten).ok_or(Errno::ENOENT)?;
    entry.island.store(island, Ordering::Relaxed);
    entry.status.store(PATCHING, Ordering::Release);
    let (thunk, jmp) = make_thunk(island, None, resume).ok_or(Errno::ENOMEM)?;
    entry.thunk.store(thunk as u64, Ordering::Relaxed);
    // SAFETY: the island is padding no thread runs: it can be written
    // whole.  `write_site` makes every core see it before the `syscall`
    // leads there; `jmp island` then `jmp thunk` make the same syscall with
    // the same registers and continue after the `syscall`.
    unsafe {
        if !write_island(island, island_end, &jmp) {
            return Err(Errno::EFAULT);
        }
        write_site(syscall, &jump_rel8(syscall, island))
    }
}

/// The island an earlier `Island` rewrite of the site at `syscall` left (a
/// site put back keeps it), if it still jumps to that rewrite's thunk and
/// lies in a range the host named.
fn island_left(entry: &Entry, syscall: usize) -> Option<usize> {
    let SiteForm::Island { island } = entry.form() else {
        return None;
    };
    let thunk = entry.thunk.load(Ordering::Relaxed) as usize;
    let reach = island.checked_sub(syscall + SYSCALL_SIZE)?;
    let bytes = guest_memory::read::<[u8; 5]>(island).ok()?;
    (reach <= i8::MAX as usize
        && ranges::hold(island, island + island::ISLAND_SIZE)
        && jumps_to(island, bytes, thunk))
    .then_some(island)
}

/// The immediate of a `mov eax, imm32` right before the `syscall` at
/// `syscall`, if it is one, loads the `number` just trapped, and is in a
/// range the host named.
fn mov_before(syscall: usize, number: u64) -> Option<u32> {
    let site = syscall.checked_sub(MOV_SIZE)?;
    let bytes = guest_memory::read::<[u8; 5]>(site).ok()?;
    let imm = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    // b8 must begin an instruction: the number it loads is the one trapped,
    // and no prefix (REX, operand or address size, segment, lock, rep) is
    // before it.  (Nothing is before it if the page before is not there.)
    let before = guest_memory::read::<u8>(site.wrapping_sub(1)).unwrap_or(0x90);
    let prefix = matches!(before, 0x40..=0x4f | 0x26 | 0x2e | 0x36 | 0x3e | 0x64..=0x67 | 0xf0 | 0xf2 | 0xf3);
    (bytes[0] == MOV_EAX && imm as u64 == number && !prefix && ranges::hold(site, syscall))
        .then_some(imm)
}

/// `jmp rel8` from the `syscall` at `syscall` to `island`.
fn jump_rel8(syscall: usize, island: usize) -> [u8; 2] {
    [JMP_REL8, (island - (syscall + SYSCALL_SIZE)) as u8]
}

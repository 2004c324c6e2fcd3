//! The syscalls that rewriting code in place needs (`rewrite/`): writing
//! bytes into code no thread executes, whatever its pages' protection;
//! storing into code threads may be executing (the page made writable
//! around the store); making every core see them; mapping thunks near a
//! site.

use super::{Fd, host};
use crate::error::Errno;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use linux_raw_sys::general::{
    __NR_membarrier, __NR_mmap, __NR_mprotect, __NR_munmap, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE,
    MAP_PRIVATE, O_RDONLY, O_RDWR, PROT_EXEC, PROT_READ, PROT_WRITE, membarrier_cmd,
};

/// `/proc/self/mem`, open for writing: writes through it reach pages that
/// are not writable (as a debugger's do), for code no thread executes yet
/// (thunks, islands); not one store, so not for code that may be running.
pub(crate) struct CodeWriter(Fd);

impl CodeWriter {
    pub(crate) fn open() -> Result<CodeWriter, Errno> {
        Fd::open(c"/proc/self/mem", O_RDWR).map(CodeWriter)
    }

    /// Writes `bytes` at `at`, all of them or an error.
    ///
    /// # Safety
    /// Code at `at` may be executing: the caller makes every state the
    /// bytes pass through one that executes correctly.
    pub(crate) unsafe fn write(&self, at: usize, bytes: &[u8]) -> Result<(), Errno> {
        if self.0.pwrite(bytes, at)? == bytes.len() {
            Ok(())
        } else {
            Err(Errno::EFAULT)
        }
    }
}

/// Registers the process for [`sync_cores`].
pub(crate) fn register_sync_cores() -> Result<(), Errno> {
    let cmd = membarrier_cmd::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE as usize;
    // SAFETY: membarrier touches no memory of ours.
    unsafe { host::syscall3(__NR_membarrier, cmd, 0, 0) }.map(drop)
}

/// Makes every thread of the process serialize its instruction stream
/// before it next runs user code: the user-space counterpart of the
/// kernel's text_poke_sync, after a cross-modifying write.
pub(crate) fn sync_cores() -> Result<(), Errno> {
    let cmd = membarrier_cmd::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE as usize;
    // SAFETY: as above.
    unsafe { host::syscall3(__NR_membarrier, cmd, 0, 0) }.map(drop)
}

/// `len` bytes of fresh, zeroed, readable and executable memory exactly at
/// `at`, if nothing is mapped there.
pub(crate) fn mmap_exec_at(at: usize, len: usize) -> Result<usize, Errno> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let got = unsafe {
        host::syscall6(
            __NR_mmap,
            at,
            len,
            (PROT_READ | PROT_EXEC) as usize,
            (MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE) as usize,
            usize::MAX,
            0,
        )
    }?;
    if got != at {
        // A kernel before 4.17 took the flag as a hint.
        // SAFETY: the mapping just made, never published.
        let _ = unsafe { host::syscall2(__NR_munmap, got, len) };
        return Err(Errno::EEXIST);
    }
    Ok(got)
}

/// The page size this code assumes for the pages it protects.
pub(crate) const PAGE: usize = 4096;

/// Forks on their way through `sud_reissue_fork`, which counts itself in
/// with every signal but SIGSYS blocked, once no [`WriteWindow`] is open,
/// and out
/// after its syscall (the parent; a child with a memory of its own clears
/// it, as it clears [`WRITE_WINDOW`] and the rewrite lock; a seccomp trap
/// of the fork counts it out in `guest_view`).  A write does not begin
/// while a fork is on its way, so that no child copies a half-written site
/// (its `jmp $`, or a page made writable).  A guest's SIGSYS handler that
/// runs in the few instructions between the count and the syscall (a
/// SIGSYS another process sent) and never returns leaves the fork counted:
/// code writes then wait for good (sites stay trapped, `forget_sites`
/// cannot put sites back).
pub(crate) static FORKS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Set while a [`WriteWindow`] is open.
pub(crate) static WRITE_WINDOW: AtomicBool = AtomicBool::new(false);

/// Whether a fork is on its way: [`WriteWindow::open`] would say `EAGAIN`.
pub(crate) fn fork_in_flight() -> bool {
    FORKS_IN_FLIGHT.load(Ordering::Relaxed) != 0
}

/// The time a write into code threads may be executing takes, during
/// which no fork copies the process (see [`FORKS_IN_FLIGHT`]).
pub(crate) struct WriteWindow(());

impl WriteWindow {
    /// Opens the window, or `EAGAIN` if a fork is on its way (the write is
    /// for another time: waiting here could wait for a fork that a guest's
    /// signal handler abandoned).
    pub(crate) fn open() -> Result<WriteWindow, Errno> {
        WRITE_WINDOW.store(true, Ordering::SeqCst);
        if FORKS_IN_FLIGHT.load(Ordering::SeqCst) != 0 {
            WRITE_WINDOW.store(false, Ordering::SeqCst);
            return Err(Errno::EAGAIN);
        }
        Ok(WriteWindow(()))
    }
}

impl Drop for WriteWindow {
    fn drop(&mut self) {
        WRITE_WINDOW.store(false, Ordering::SeqCst);
    }
}

/// A page of a private mapping made writable for a while, given its
/// protection back when dropped.
pub(crate) struct Writable {
    page: usize,
    prot: u32,
}

impl Writable {
    /// The page holding `at`, writable until dropped, inside `window`.
    pub(crate) fn page_of(at: usize, _window: &WriteWindow) -> Result<Writable, Errno> {
        let page = at & !(PAGE - 1);
        let prot = private_protection(at)?;
        if prot & PROT_WRITE == 0 {
            mprotect(page, prot | PROT_WRITE)?;
        }
        Ok(Writable { page, prot })
    }

    /// Stores the two bytes `new` at `at` in one store, while other
    /// threads may be executing them.
    ///
    /// # Safety
    /// `at` and `at + 1` lie in this page and in one 16-byte block (the
    /// store is one access to one line, which instruction fetch sees
    /// whole), and the old and the new bytes both execute correctly.
    pub(crate) unsafe fn store_u16(&self, at: usize, new: [u8; 2]) {
        debug_assert!(at & !(PAGE - 1) == self.page && at % 16 != 15);
        // SAFETY: a mapped, writable page; the caller's word on the bytes.
        unsafe {
            core::arch::asm!("mov word ptr [{at}], {new:x}", at = in(reg) at,
                new = in(reg) u16::from_le_bytes(new), options(nostack, preserves_flags));
        }
    }

    /// Stores `bytes` at `at`, where no thread executes them.
    ///
    /// # Safety
    /// `at..at + bytes.len()` lies in this page and no thread executes it.
    pub(crate) unsafe fn store(&self, at: usize, bytes: &[u8]) {
        debug_assert!((at + bytes.len() - 1) & !(PAGE - 1) == self.page);
        // SAFETY: a mapped, writable page; the caller's word on the bytes.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len()) };
    }
}

impl Drop for Writable {
    fn drop(&mut self) {
        if self.prot & PROT_WRITE == 0 {
            // Nothing to do if it fails: the page stays writable.
            let _ = mprotect(self.page, self.prot);
        }
    }
}

fn mprotect(page: usize, prot: u32) -> Result<(), Errno> {
    // SAFETY: a page of a private mapping; only its protection changes.
    unsafe { host::syscall3(__NR_mprotect, page, PAGE, prot as usize) }.map(drop)
}

/// The protection (`PROT_*`) of the private mapping holding `addr`, as
/// `/proc/self/maps` says; EFAULT if nothing is mapped there, EACCES for a
/// shared mapping (a store would reach the file or other processes).
pub(crate) fn private_protection(addr: usize) -> Result<u32, Errno> {
    let maps = Fd::open(c"/proc/self/maps", O_RDONLY)?;
    let mut line = [0u8; 256];
    let mut len = 0;
    let mut chunk = [0u8; 1024];
    loop {
        let read = maps.read(&mut chunk)?;
        if read == 0 {
            return Err(Errno::EFAULT);
        }
        for &byte in &chunk[..read] {
            if byte != b'\n' {
                // Only the start of a line matters: its range and its flags.
                if len < line.len() {
                    line[len] = byte;
                    len += 1;
                }
                continue;
            }
            if let Some(prot) = protection_in(&line[..len], addr) {
                return prot;
            }
            len = 0;
        }
    }
}

/// If the maps line `line` ("start-end rwxp ...") covers `addr`, its
/// protection.
fn protection_in(line: &[u8], addr: usize) -> Option<Result<u32, Errno>> {
    let mut fields = line.split(|&b| b == b' ');
    let range = fields.next()?;
    let flags = fields.next()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    let (start, end) = (hex(&range[..dash])?, hex(&range[dash + 1..])?);
    if !(start..end).contains(&addr) || flags.len() < 4 {
        return None;
    }
    if flags[3] != b'p' {
        return Some(Err(Errno::EACCES));
    }
    let bit = |i: usize, c: u8, prot: u32| if flags[i] == c { prot } else { 0 };
    Some(Ok(bit(0, b'r', PROT_READ)
        | bit(1, b'w', PROT_WRITE)
        | bit(2, b'x', PROT_EXEC)))
}

fn hex(digits: &[u8]) -> Option<usize> {
    digits.iter().try_fold(0usize, |n, &d| {
        let v = (d as char).to_digit(16)?;
        n.checked_mul(16)?.checked_add(v as usize)
    })
}
